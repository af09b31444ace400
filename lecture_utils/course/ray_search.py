"""Searches on Ray: ``search(..., engine=RayEngine(...))`` runs each trial's objective as a Ray task.

    from lecture_utils.course.ray_search import RayEngine
    from lecture_utils.search import search

    result = search(objective, space, strategy="bayes", n_trials=200, storage="sqlite:///runs/search.db",
                    engine=RayEngine(address="auto", resources_per_trial={"cpu": 1, "gpu": 0.25}))

The driver keeps the study (its sampler, its storage and the trials' heartbeats): it asks the study
for a trial, sends ``objective(params)`` to Ray as a task, and tells the study each result as it
arrives (Optuna's ask-and-tell interface, all from this one thread). So the workers need no database
and no shared disk, the sampler is the very one of a search in process, and a stopped search resumes
as one in process:

- Ctrl-C, SIGTERM or SIGHUP cancel the trials running on Ray; they are marked and run again on a resume;
- a killed driver leaves its trials RUNNING, their heartbeats stopped: a resume (either engine) reruns them;
- a worker process that dies (killed, out of memory, its node lost) is the cluster's failure, not the
  objective's: its trial runs again with the same parameters, as a cut-off one does (a copy queued in the
  study, listed in the result's ``retried``), at most ``MAX_RETRIES`` times; after that it fails, saying
  how often its worker died. An objective that raises fails its trial and is not run again.

Ray is optional: ``pip install -e ".[cluster]"``.
"""

import copy
import time

from lecture_utils.course.cluster import ray_session, require_ray
from lecture_utils.search import HEARTBEAT_SECONDS, MAX_RETRIES, TrialInterrupted

POLL_SECONDS = 0.2  # how long the driver waits for a result before it looks whether the search was stopped
DEATHS_ATTR = "worker_deaths"  # user attribute: how often the trial's worker died (its reruns inherit it)
# Ray's errors that say the process or node running a task died or was killed (not that the task raised)
WORKER_DEATHS = ("WorkerCrashedError", "NodeDiedError", "LocalRayletDiedError", "ObjectLostError", "RayActorError",
                 "OutOfMemoryError")


def _resources(resources):
    """``ray.remote`` options from ``{"cpu": 1, "gpu": 0}``-style resources (defaults: one CPU, no GPU)."""
    if resources is not None and not isinstance(resources, dict):
        raise ValueError(f"resources_per_trial must be a dict such as {{'cpu': 1, 'gpu': 0.5}}, got {resources!r}")
    resources = dict(resources or {})
    unknown = set(resources) - {"cpu", "gpu"}
    if unknown:
        raise ValueError(f"unknown resources {', '.join(sorted(map(str, unknown)))}: allowed are 'cpu' and 'gpu'")
    cpu, gpu = resources.get("cpu", 1), resources.get("gpu", 0)
    for name, value in (("cpu", cpu), ("gpu", gpu)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
            raise ValueError(f"resources_per_trial[{name!r}] must be a number >= 0, got {value!r}")
    return dict(num_cpus=cpu, num_gpus=gpu, max_retries=0)


def _positive_int(name, value):
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name} must be None or an int >= 1, got {value!r}")


def _call(objective, params):
    """What a Ray task runs for one trial: the objective, on the worker."""
    return objective(dict(params))


def _reason(ray, err):
    """One line saying why a trial failed on Ray: the objective's own error (or Ray's, for the task)."""
    if isinstance(err, ray.exceptions.RayTaskError):
        cause = err.cause if getattr(err, "cause", None) is not None else err
        text = str(cause).strip()
        return f"{type(cause).__name__}: {text.splitlines()[-1] if text else ''}"
    return f"{type(err).__name__}: {err}"


def _worker_died(ray, err):
    """Whether ``err`` says that the trial's worker process (or its node) died, not that the objective raised."""
    if isinstance(err, ray.exceptions.RayTaskError):  # the objective's own error, whatever its class
        return False
    return isinstance(err, tuple(getattr(ray.exceptions, n) for n in WORKER_DEATHS if hasattr(ray.exceptions, n)))


def _rerun_dead(job, trial):
    """The worker of ``trial`` died: queue a copy with the same parameters and return True, or, once the trial
    has had its ``MAX_RETRIES`` reruns, fail it saying how often its worker died and return False.

    The copy is queued as ``rerun_cut_off`` queues a trial cut off by a stop (Optuna's
    ``RetryHeartbeatStaleTrialCallback``): it counts once, the next ``job.ask()`` runs it, and a
    driver killed between the two leaves a marked trial that a resume runs again.
    """
    import optuna

    retry = optuna.storages.RetryHeartbeatStaleTrialCallback
    frozen = next(t for t in job.study.get_trials(deepcopy=False) if t.number == trial.number)
    deaths, runs = frozen.user_attrs.get(DEATHS_ATTR, 0) + 1, len(retry.retry_history(frozen)) + 1
    trial.set_user_attr(DEATHS_ATTR, deaths)
    if runs > MAX_RETRIES:  # the first run and MAX_RETRIES reruns: no more
        job.tell(trial, error=f"its Ray worker process died while it ran, {deaths} time{'s' * (deaths > 1)} "
                              f"in {runs} runs (a trial is run again at most {MAX_RETRIES} times)")
        return False
    job.tell(trial, interrupted=True)  # failed and marked as cut off: hidden from the result once its copy exists
    frozen = next(t for t in job.study.get_trials(deepcopy=False) if t.number == trial.number)
    retry(max_retry=MAX_RETRIES)(job.study, copy.deepcopy(frozen))  # the callback appends to the history it gets
    if job.verbose:
        print(f"trial {trial.number}: its Ray worker process died; running it again ({runs} of at most "
              f"{MAX_RETRIES} reruns)", flush=True)
    return True


class RayEngine:
    """Run a search's trials as Ray tasks, at most ``max_concurrent`` at once.

    ``address``: None starts a local Ray instance (``num_cpus`` CPUs) for the search, ``"auto"``,
    ``"HOST:PORT"`` or ``"ray://HOST:10001"`` join a running cluster (see ``cluster.ray_session``).
    ``resources_per_trial``: ``{"cpu": 1, "gpu": 0}`` by default. ``max_concurrent``: by default
    as many trials as the cluster's CPUs hold.
    """

    def __init__(self, address=None, resources_per_trial=None, max_concurrent=None, num_cpus=None):
        if address is not None and not isinstance(address, str):
            raise ValueError(f"address must be None, 'auto', 'HOST:PORT' or 'ray://HOST:PORT', got {address!r}")
        self.options = _resources(resources_per_trial)
        _positive_int("max_concurrent", max_concurrent)
        _positive_int("num_cpus", num_cpus)
        require_ray()  # an ImportError that says how to install Ray, before any work
        self.address, self.resources_per_trial = address, resources_per_trial
        self.max_concurrent, self.num_cpus = max_concurrent, num_cpus

    def __repr__(self):
        return (f"RayEngine(address={self.address!r}, resources_per_trial={self.resources_per_trial!r}, "
                f"max_concurrent={self.max_concurrent!r}, num_cpus={self.num_cpus!r})")

    def __call__(self, job):
        """Run ``job.n_to_run`` trials of ``job.study`` (a ``lecture_utils.search.Job``) on Ray."""
        with ray_session(self.address, num_cpus=self.num_cpus) as ray, job.stop.catching():
            # job.stop.catching() again after ray.init, which installs a SIGTERM handler of its own
            lanes = self.max_concurrent
            if lanes is None:
                lanes = max(1, int(ray.cluster_resources().get("CPU", 1) // max(self.options["num_cpus"], 1e-3)))
            task = ray.remote(**self.options)(_call)
            objective = ray.put(job.objective)  # sent to the object store once, not with every trial
            pending, started, beaten = {}, 0, time.monotonic()  # pending: Ray's reference -> the Optuna trial
            to_run = job.n_to_run  # grows by one for each trial queued again after its worker died
            try:
                while started < to_run or pending:
                    while started < to_run and len(pending) < lanes and not job.stop.requested:
                        trial, params = job.ask()
                        pending[task.remote(objective, params)] = trial
                        started += 1
                    if job.stop.requested:  # Ctrl-C, SIGTERM or SIGHUP (the handler only sets the flag)
                        raise TrialInterrupted("stopped")
                    done, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_SECONDS)
                    for ref in done:
                        trial = pending.pop(ref)
                        try:
                            value = ray.get(ref)
                        except Exception as err:  # the objective raised (RayTaskError), or its worker died
                            if not _worker_died(ray, err):
                                job.tell(trial, error=_reason(ray, err))
                            elif _rerun_dead(job, trial):
                                to_run += 1  # its copy: asked for next, it runs with the same parameters
                        else:
                            job.tell(trial, value)
                    if time.monotonic() - beaten >= HEARTBEAT_SECONDS:
                        job.beat(pending.values())
                        beaten = time.monotonic()
            except KeyboardInterrupt:  # a stop: the trials still running are cancelled, to be run again
                for ref, trial in pending.items():
                    ray.cancel(ref, force=True)
                    job.tell(trial, interrupted=True)
                raise
