"""Ray for what outgrows one machine: hyperparameter searches and batch runs of the notebooks.

The same call runs on a laptop and on a cluster; only ``address`` changes:

- ``address=None``: a local Ray instance sized to this machine (``num_cpus``, no dashboard, a
  capped object store), started for the call and stopped after it;
- ``address="auto"`` (the cluster this machine is part of, or ``$RAY_ADDRESS``), ``"HOST:PORT"`` of a
  head node, or ``"ray://HOST:10001"`` (Ray Client): an existing cluster, joined and left as it was.

Searches stay Optuna studies: the driver keeps the study (and its sampler and storage) and asks it
for trials, Ray runs ``objective(params)`` as tasks on the workers, and the driver tells the study the
results (Optuna's ask-and-tell interface). So the workers need no database and no shared disk, the
sampler is the very one of ``engine="local"``, and an RDB storage keeps the study resumable exactly
as in-process. Batch runs send each notebook as one task that runs it with the local runner on the
worker node and sends back the executed notebook.

Ray is optional: ``pip install -e ".[cluster]"``.
"""

import contextlib
import os
import socket
import time
import warnings

INSTALL_HINT = 'Ray is not installed: pip install -e ".[cluster]" (or pip install "ray>=2.40")'
CONNECT_SECONDS = 5  # an address that does not answer within this is an error, never a hang
OBJECT_STORE_BYTES = 256 * 2**20  # a local instance's object store: trials and notebooks pass little data


def require_ray():
    """The ``ray`` module, or an ImportError that says how to install it."""
    try:
        import ray
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    return ray


def _check_reachable(address, seconds=CONNECT_SECONDS):
    """Fail within ``seconds`` when ``HOST:PORT`` (or ``ray://HOST:PORT``) does not accept a connection."""
    if address == "auto":
        return
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"Ray address {address!r} is not 'auto', 'HOST:PORT' or 'ray://HOST:PORT'")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=seconds):
            pass
    except OSError as err:
        raise ConnectionError(f"cannot reach the Ray cluster at {address} ({err}); start it with "
                              "'ray start --head' (see the README, 'Running on a cluster') or pass "
                              "address=None for a local instance") from None


@contextlib.contextmanager
def ray_session(address=None, num_cpus=None, num_gpus=None):
    """Connect to Ray for the ``with`` block: start a local instance (``address=None``) or join a cluster.

    A local instance started here is shut down at the end; a session that was already
    open (``ray.init`` called by the user) is used as it is and left open.
    """
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    if address is not None and not isinstance(address, str):
        raise ValueError(f"address must be None, 'auto', 'HOST:PORT' or 'ray://HOST:PORT', got {address!r}")
    options = dict(include_dashboard=False, log_to_driver=False, configure_logging=True, logging_level="error")
    if address is None:
        options.update(num_cpus=num_cpus or os.cpu_count() or 1, num_gpus=num_gpus,
                       object_store_memory=OBJECT_STORE_BYTES,
                       _node_ip_address="127.0.0.1")  # a local instance talks over loopback only
    else:
        _check_reachable(address)
        options = dict(address=address, log_to_driver=False, logging_level="error")
    try:
        ray.init(**options)
    except ConnectionError as err:
        raise ConnectionError(f"cannot join the Ray cluster at {address}: {err}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def _task_options(resources):
    """``ray.remote`` options from ``{"cpu": 1, "gpu": 0}``-style resources (defaults: one CPU, no GPU)."""
    resources = dict(resources or {})
    unknown = set(resources) - {"cpu", "gpu"}
    if unknown:
        raise ValueError(f"unknown resources {', '.join(sorted(unknown))}: allowed are 'cpu' and 'gpu'")
    cpu, gpu = resources.get("cpu", 1), resources.get("gpu", 0)
    for name, value in (("cpu", cpu), ("gpu", gpu)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"resources[{name!r}] must be a number >= 0, got {value!r}")
    return dict(num_cpus=cpu, num_gpus=gpu, max_retries=0)


def _call(objective, params):
    """What a Ray task runs for one trial: the objective, timed, on the worker."""
    start = time.perf_counter()
    value = objective(dict(params))
    return value, time.perf_counter() - start


def run_trials(study, objective, space, n_to_run, verbose=False, *, address=None, resources_per_trial=None,
               max_concurrent=None, num_cpus=None):
    """Run ``n_to_run`` trials of ``study`` as Ray tasks, at most ``max_concurrent`` at once.

    The driver asks the study for a trial, sends ``objective(params)`` to Ray, and tells
    the study each result as it arrives: a value, or a failed trial (the objective
    raised, returned NaN, or its worker process died); the others go on.
    """
    from optuna.trial import TrialState

    from lecture_utils.search import ERROR_ATTR, check_value, suggest

    options = _task_options(resources_per_trial)
    with ray_session(address, num_cpus=num_cpus) as ray, warnings.catch_warnings():
        # trials asked here are told here: an RDB storage's heartbeats (for study.optimize) are not needed
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        if max_concurrent is None:
            per_trial = max(options["num_cpus"], 1e-3)
            max_concurrent = max(1, int(ray.cluster_resources().get("CPU", 1) // per_trial))
        if isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int) or max_concurrent < 1:
            raise ValueError(f"max_concurrent must be an int >= 1, got {max_concurrent!r}")
        remote = ray.remote(**options)(_call)
        pending, started = {}, 0
        while started < n_to_run or pending:
            while started < n_to_run and len(pending) < max_concurrent:
                trial = study.ask()
                params = suggest(trial, space)
                pending[remote.remote(objective, params)] = (trial, params)
                started += 1
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                trial, params = pending.pop(ref)
                try:
                    value, seconds = ray.get(ref)
                    value = check_value(value)
                except Exception as err:  # the objective raised (RayTaskError), or its worker died
                    reason = _failure(err)
                    trial.set_user_attr(ERROR_ATTR, reason[:500])
                    _tell(study, trial, state=TrialState.FAIL)
                    if verbose:
                        print(f"trial {trial.number}: {params} -> failed: {reason}")
                    continue
                _tell(study, trial, value)
                if verbose:
                    print(f"trial {trial.number}: {params} -> {value:.4g} ({seconds:.1f} s on a Ray worker)")


def _tell(study, trial, value=None, state=None):
    """``study.tell``; Optuna's GridSampler then calls ``study.stop()`` when its grid is done, which outside
    ``study.optimize`` raises after the result is stored: that is the end of the grid, not an error."""
    try:
        study.tell(trial, value, state=state)
    except RuntimeError as err:
        if "Study.stop" not in str(err):
            raise


def _failure(err):
    """One line saying why a trial failed: the objective's own error, or that its worker died."""
    ray = require_ray()
    if isinstance(err, ray.exceptions.RayTaskError):
        cause = err.cause if getattr(err, "cause", None) is not None else err
        return f"{type(cause).__name__}: {str(cause).strip().splitlines()[-1] if str(cause).strip() else ''}"
    if isinstance(err, (ray.exceptions.WorkerCrashedError, ray.exceptions.RayActorError)):
        return "its Ray worker process died while it ran"
    return f"{type(err).__name__}: {err}"


# ---------------------------------------------------------------- batch runs of notebooks

CANCEL_GRACE_SECONDS = 120  # past a notebook's own time limit, before its task is cancelled from here


def _run_on_node(path, source, profile, parameters, timeout, threads):
    """A Ray task: run one notebook with the local runner on this node; its result row and executed copy.

    The notebook runs from ``path`` when this node has it (a shared file system, or the same
    checkout on every node), else from the ``source`` sent along, in a temporary folder.
    """
    import tempfile
    from dataclasses import asdict
    from pathlib import Path

    from lecture_utils.course.runner import run_notebook

    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    with tempfile.TemporaryDirectory(prefix="lecture_ray_") as tmp:
        here = Path(path)
        if not here.is_file():
            here = Path(tmp) / "notebook" / Path(path).name
            here.parent.mkdir()
            here.write_bytes(source)
        (Path(tmp) / "out").mkdir()
        result = run_notebook(here, profile, Path(tmp) / "out", parameters, timeout or None)
        out = Path(result.output)
        executed = out.read_bytes() if out.is_file() else None
    row = asdict(result)
    row["node"] = socket.gethostname()
    return row, executed


def run_all_on_ray(paths, profile=None, out_dir="runs", stop_on_error=False, parameters=None,
                   default_dir="notebooks", timeout=None, *, address=None, gpus_per_notebook=None,
                   cpus_per_notebook=1):
    """``runner.run_all`` with each notebook as a Ray task: same checks, statuses, copies and summary.

    ``gpus_per_notebook``: None gives each notebook one GPU when the cluster has GPUs, else none.
    A failing notebook is marked and the others go on (``stop_on_error`` cancels the rest); each
    has its time limit; Ctrl-C, SIGTERM and SIGHUP cancel the tasks still running, mark them
    interrupted and write the summary.
    """
    from lecture_utils.course.runner import Result, _report, _result, _stop_signals_interrupt, prepare_run
    from lecture_utils.course.summary import write_summary

    profile, notebooks, given, unreadable, timeout, out_dir = prepare_run(paths, profile, out_dir, parameters,
                                                                          default_dir, timeout)
    for name, value in (("gpus_per_notebook", gpus_per_notebook), ("cpus_per_notebook", cpus_per_notebook)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
            raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    results = []
    with ray_session(address) as ray:
        gpus = ray.cluster_resources().get("GPU", 0)
        if gpus_per_notebook is None:
            gpus_per_notebook = 1 if gpus >= 1 else 0
        where = "a local Ray instance" if address is None else f"the Ray cluster at {address}"
        print(f"running {len(notebooks)} notebook(s) on {where} ({ray.cluster_resources().get('CPU', 0):g} CPUs, "
              f"{gpus:g} GPUs; {cpus_per_notebook:g} CPU and {gpus_per_notebook:g} GPU per notebook)", flush=True)
        task = ray.remote(num_cpus=cpus_per_notebook, num_gpus=gpus_per_notebook, max_retries=0)(_run_on_node)
        pending, started = {}, {}
        with _stop_signals_interrupt():  # after ray.init, which replaces the SIGTERM handler
            try:
                for nb in notebooks:
                    if nb in unreadable:
                        result = _result(nb.stem, "failed", 0.0, out_dir.resolve() / nb.name,
                                         f"could not run: {unreadable[nb]}", profile)
                        print(f"{nb}:{_report(result)}", flush=True)
                        results.append(result)
                        continue
                    threads = max(1, int(cpus_per_notebook))
                    ref = task.remote(str(nb.resolve()), nb.read_bytes(), profile, given[nb], timeout, threads)
                    pending[ref], started[ref] = nb, time.time()
                    print(f"submitted {nb} at profile {profile}", flush=True)
                while pending:
                    done, _ = ray.wait(list(pending), num_returns=1, timeout=5)
                    for ref in done:
                        nb = pending.pop(ref)
                        result = _gather(ray, ref, nb, out_dir, profile, time.time() - started[ref])
                        print(f"{nb}:{_report(result)}", flush=True)
                        results.append(result)
                        if result.status != "ok" and stop_on_error:
                            raise _StopOnError
                    for ref in [r for r in pending if timeout and time.time() - started[r] > timeout
                                + CANCEL_GRACE_SECONDS]:
                        ray.cancel(ref, force=True)
                        nb = pending.pop(ref)
                        results.append(Result(nb.stem, "timed out", round(time.time() - started[ref], 1),
                                              str(out_dir.resolve() / nb.name), f"its Ray task ran past {timeout:g} s "
                                              f"+ {CANCEL_GRACE_SECONDS} s and was cancelled", profile=profile))
            except _StopOnError:
                _cancel(ray, pending, results, out_dir, profile, started, "not finished: --stop-on-error")
            except KeyboardInterrupt as err:
                how = err.args[0] if err.args else "SIGINT"
                _cancel(ray, pending, results, out_dir, profile, started, f"{how}: the batch was stopped",
                        status="interrupted", stopped_by=how)
                write_summary(out_dir, results)
                raise
        order = {nb.stem: i for i, nb in enumerate(notebooks)}
        results.sort(key=lambda r: order.get(r.notebook, len(order)))  # as given, not as they finished
        write_summary(out_dir, results)
    return results


class _StopOnError(Exception):
    """--stop-on-error: a notebook failed, the others are cancelled."""


def _gather(ray, ref, nb, out_dir, profile, seconds):
    """The ``Result`` of a finished task, its executed copy written into ``out_dir``."""
    from lecture_utils.course.runner import Result

    out = out_dir.resolve() / nb.name
    try:
        row, executed = ray.get(ref)
    except Exception as err:  # the task itself died (its node or worker process went away)
        return Result(nb.stem, "failed", round(seconds, 1), str(out), f"its Ray task failed: {_failure(err)}",
                      profile=profile)
    if executed is not None:
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_bytes(executed)
        os.replace(tmp, out)
    row.pop("node", None)
    row["output"] = str(out)
    return Result(**row)


def _cancel(ray, pending, results, out_dir, profile, started, why, status="failed", stopped_by=""):
    """Cancel every task still running; a row for each."""
    from lecture_utils.course.runner import Result

    for ref, nb in list(pending.items()):
        ray.cancel(ref, force=True)
        results.append(Result(nb.stem, status, round(time.time() - started[ref], 1), str(out_dir.resolve() / nb.name),
                              why, profile=profile, stopped_by=stopped_by))
    pending.clear()
