"""Ray for what outgrows one machine: joining a cluster, and batch runs of the notebooks on it.

The same call runs on a laptop and on a cluster; only ``address`` changes:

- ``address=None``: a local Ray instance sized to this machine (``num_cpus``, no dashboard, a
  capped object store), started for the call and stopped after it;
- ``address="auto"`` (the cluster this machine is part of, or ``$RAY_ADDRESS``), ``"HOST:PORT"`` of a
  head node, or ``"ray://HOST:10001"`` (Ray Client): an existing cluster, joined and left as it was.

An address is probed before Ray joins it, within ``CONNECT_SECONDS``: a port that refuses, a
listener that never answers and a server that does not speak gRPC (a web server) are one-line
``ConnectionError``s, never a wait of Ray's own (minutes of "Failed to connect to GCS").

``run_all_on_ray`` sends each notebook as one task that runs it with the local runner on the
worker node and sends back the executed notebook. Searches on Ray are ``ray_search.RayEngine``'s.

Ray is optional: ``pip install -e ".[cluster]"``.
"""

import contextlib
import os
import signal
import socket
import time

INSTALL_HINT = 'Ray is not installed: pip install -e ".[cluster]" (or pip install "ray>=2.40")'
CONNECT_SECONDS = 5  # an address that does not answer as Ray within this is an error, never a hang
OBJECT_STORE_BYTES = 256 * 2**20  # a local instance's object store: notebooks and trials pass little data
# The first bytes an HTTP/2 client sends (RFC 9113, 3.4), and an empty SETTINGS frame: a gRPC server,
# as Ray's head (GCS) and Ray Client's server are, answers with a SETTINGS frame of its own.
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
SETTINGS_FRAME = 4


def require_ray():
    """The ``ray`` module, or an ImportError that says how to install it."""
    try:
        import ray
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    return ray


def _host_port(address):
    """``(host, port)`` of ``"HOST:PORT"`` or ``"ray://HOST:PORT"``; a ValueError for anything else."""
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"Ray address {address!r} is not 'auto', 'HOST:PORT' or 'ray://HOST:PORT'")
    return host.strip("[]"), int(port)


def _check_reachable(address, seconds=CONNECT_SECONDS):
    """Fail within about ``seconds`` unless ``address`` answers as Ray does: a gRPC (HTTP/2) server.

    Connects, sends HTTP/2's client preface and waits for the server's first frame: a gRPC
    server answers with SETTINGS at once; a web server answers ``HTTP/1.1 400``, other servers
    close or say nothing. ``"auto"`` is probed when ``$RAY_ADDRESS`` names a ``HOST:PORT``.
    """
    if address == "auto":
        address = os.environ.get("RAY_ADDRESS", "")
        if ":" not in address:
            return
    host, port = _host_port(address)
    hint = ("start it with 'ray start --head' (see docs/cluster.md, 'Running on a cluster') or pass address=None "
            "for a local instance")
    deadline = time.monotonic() + seconds
    try:
        with socket.create_connection((host, port), timeout=seconds) as s:
            s.sendall(HTTP2_PREFACE)
            reply = b""
            while len(reply) < 9:  # a frame header: length (3 bytes), type, flags, stream id (4)
                s.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = s.recv(9 - len(reply))
                if not chunk:
                    break
                reply += chunk
    except socket.timeout:
        raise ConnectionError(f"cannot join the Ray cluster at {address}: it accepts connections but does not "
                              f"answer as Ray's head within {seconds:g} s (is it another server?); {hint}") from None
    except OSError as err:
        raise ConnectionError(f"cannot reach the Ray cluster at {address} ({err.strerror or err}); {hint}") from None
    if len(reply) < 9 or reply[3] != SETTINGS_FRAME:
        seen = f"answered {reply.split(bytes(2))[0][:40].decode('ascii', 'replace')!r}" if reply else \
            "closed the connection"
        raise ConnectionError(f"cannot join the Ray cluster at {address}: it is not a Ray head (it {seen} when "
                              "spoken to as Ray is); check the address and port (the head's GCS port, 6379 by "
                              "default, or ray://HOST:10001)")


@contextlib.contextmanager
def ray_session(address=None, num_cpus=None, num_gpus=None):
    """Connect to Ray for the ``with`` block: start a local instance (``address=None``) or join a cluster.

    An address is probed first (``_check_reachable``): one that does not answer as Ray is a
    ConnectionError within seconds. A local instance started here is shut down at the end; a
    session that was already open (``ray.init`` called by the user) is used as it is and left open.
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
        ray.shutdown()
        raise ConnectionError(f"cannot join the Ray cluster at {address}: {err}") from None
    except OSError as err:  # a local instance that cannot start (its socket paths, the disk)
        ray.shutdown()
        raise ConnectionError(f"cannot start a local Ray instance: {err}") from None
    except BaseException:  # a signal while Ray starts: stop what it started
        ray.shutdown()
        raise
    try:
        yield ray
    finally:
        ray.shutdown()


# ---------------------------------------------------------------- batch runs of notebooks

CANCEL_GRACE_SECONDS = 120  # past a notebook's own time limit, before its task is cancelled from here
CANCEL_WAIT_SECONDS = 10  # for a cancelled task to stop its kernel and clean up, before it is killed


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


def _check_resources(gpus_per_notebook, cpus_per_notebook):
    for name, value, low in (("gpus_per_notebook", gpus_per_notebook, ">= 0"),
                             ("cpus_per_notebook", cpus_per_notebook, "> 0")):
        if value is None and name.startswith("gpus"):
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 \
                or value == float("inf") or (low == "> 0" and value == 0):
            raise ValueError(f"{name} must be a number {low}, got {value!r}")


def run_all_on_ray(paths, profile=None, out_dir="runs", stop_on_error=False, parameters=None,
                   default_dir="notebooks", timeout=None, *, address=None, gpus_per_notebook=None,
                   cpus_per_notebook=1):
    """``runner.run_all`` with each notebook as a Ray task: same checks, statuses, copies and summary.

    ``gpus_per_notebook``: None gives each notebook one GPU when the cluster has GPUs, else none.
    A failing notebook is marked and the others go on (``stop_on_error`` cancels the rest); each
    has its time limit. Ctrl-C, SIGTERM and SIGHUP, while Ray is joined or the notebooks run,
    cancel the tasks still running, mark them interrupted (``stopped_by`` names the signal) and
    write the summary; before Ray is joined they raise ``runner.Interrupted``.
    """
    from lecture_utils.course.runner import (STOP_SIGNALS, Result, _report, _result, _stop_signals_interrupt,
                                             prepare_run)
    from lecture_utils.course.summary import write_summary

    profile, notebooks, given, unreadable, timeout, out_dir = prepare_run(paths, profile, out_dir, parameters,
                                                                          default_dir, timeout)
    _check_resources(gpus_per_notebook, cpus_per_notebook)
    require_ray()
    results = []
    with _stop_signals_interrupt() as fired:  # from the join on: a probe or join that waits stops at once
        ours = {s: signal.getsignal(s) for s in STOP_SIGNALS}
        with ray_session(address) as ray:
            for s, handler in ours.items():  # ray.init put its own SIGTERM handler in: ours again
                signal.signal(s, handler)
            pending, started = {}, {}
            try:
                gpus = ray.cluster_resources().get("GPU", 0)
                if gpus_per_notebook is None:
                    gpus_per_notebook = 1 if gpus >= 1 else 0
                where = "a local Ray instance" if address is None else f"the Ray cluster at {address}"
                print(f"running {len(notebooks)} notebook(s) on {where} ({ray.cluster_resources().get('CPU', 0):g} "
                      f"CPUs, {gpus:g} GPUs; {cpus_per_notebook:g} CPU and {gpus_per_notebook:g} GPU per notebook)",
                      flush=True)
                task = ray.remote(num_cpus=cpus_per_notebook, num_gpus=gpus_per_notebook, max_retries=0)(_run_on_node)
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
            except KeyboardInterrupt:  # our handler's Interrupted, or the bare one Ray raises inside ray.wait
                name = signal.Signals(fired[0]).name if fired and fired[0] else "SIGINT"
                how = "Ctrl-C" if name == "SIGINT" else name
                print(f"  {how}: cancelling {len(pending)} running notebook(s) on Ray", flush=True)
                _cancel(ray, pending, results, out_dir, profile, started, f"{how}: the batch was stopped",
                        status="interrupted", stopped_by=name)
    order = {nb.stem: i for i, nb in enumerate(notebooks)}
    results.sort(key=lambda r: order.get(r.notebook, len(order)))  # as given, not as they finished
    write_summary(out_dir, results)
    return results


class _StopOnError(Exception):
    """--stop-on-error: a notebook failed, the others are cancelled."""


def _failure(ray, err):
    """One line saying why a notebook's task failed: its own error, or that its worker or node died."""
    if isinstance(err, ray.exceptions.RayTaskError):
        cause = err.cause if getattr(err, "cause", None) is not None else err
        text = str(cause).strip()
        return f"{type(cause).__name__}: {text.splitlines()[-1] if text else ''}"
    if isinstance(err, (ray.exceptions.WorkerCrashedError, ray.exceptions.RayActorError)):
        return "its Ray worker process died while it ran"
    return f"{type(err).__name__}: {err}"


def _gather(ray, ref, nb, out_dir, profile, seconds):
    """The ``Result`` of a finished task, its executed copy written into ``out_dir``."""
    from lecture_utils.course.runner import Result

    out = out_dir.resolve() / nb.name
    try:
        row, executed = ray.get(ref)
    except Exception as err:  # the task itself died (its node or worker process went away)
        return Result(nb.stem, "failed", round(seconds, 1), str(out), f"its Ray task failed: {_failure(ray, err)}",
                      profile=profile)
    if executed is not None:
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_bytes(executed)
        os.replace(tmp, out)
    row.pop("node", None)
    row["output"] = str(out)
    return Result(**row)


def _cancel(ray, pending, results, out_dir, profile, started, why, status="failed", stopped_by=""):
    """Cancel every task still running; a row for each.

    A task is first asked to stop (Ray raises KeyboardInterrupt in it: the runner on the node stops its
    worker and kernel and removes its temporary folders); one that has not ended within
    ``CANCEL_WAIT_SECONDS`` is killed with its Ray worker process (its worker and kernel die with it).
    """
    from lecture_utils.course.runner import Result

    refs = list(pending)
    for ref in refs:
        ray.cancel(ref)
    if refs:
        _, left = ray.wait(refs, num_returns=len(refs), timeout=CANCEL_WAIT_SECONDS)
        for ref in left:
            ray.cancel(ref, force=True)
    for ref, nb in pending.items():
        results.append(Result(nb.stem, status, round(time.time() - started[ref], 1), str(out_dir.resolve() / nb.name),
                              why, profile=profile, stopped_by=stopped_by))
    pending.clear()
