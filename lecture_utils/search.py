"""Grid, random and Bayesian (Gaussian-process) hyperparameter search, all through Optuna.

One library for the three strategies keeps the comparison fair: the same
study, storage and bookkeeping, only the sampler differs (Optuna's
``GridSampler``, ``RandomSampler`` and ``GPSampler``)::

    space = {"lr": ("log", 1e-3, 1.0), "width": ("int", 16, 128), "act": ("choice", ["relu", "tanh"])}
    result = search(lambda p: train(**p), space, strategy="bayes", n_trials=20, seed=0)
    result.best_value, result.best_params, result.trials

``objective(params) -> float`` is minimised. A trial whose objective raises
or returns NaN/inf is marked failed, the search goes on, and the result
reports it. With ``storage="sqlite:///runs/search.db"`` the study lives in a
database: ``n_trials`` is then the study's total, and the same call again runs
only the trials still missing; a trial whose process was killed (its
heartbeat stopped: a resume that finds trials still running waits 4 s to tell)
or stopped by Ctrl-C is run again with the same parameters. Sampling is seeded per trial, so an interrupted and
resumed grid or random search runs exactly the trials the uninterrupted one
would (a GP search nearly: Optuna warm-starts each kernel fit from the last).

``engine="local"`` runs the trials one after another in this process;
``engine="ray"`` hands them to ``lecture_utils.course.cluster`` (Ray tasks; an optional
extra). An engine is a function of a ``Job`` in ``ENGINES``.
"""

import contextlib
import hashlib
import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field

STRATEGIES = ("grid", "random", "bayes")
KINDS = ("log", "linear", "int", "choice")
HEARTBEAT_SECONDS = 1  # a running trial's process writes a heartbeat this often to an RDB storage...
GRACE_SECONDS = 3  # ...and a trial without one for this long is taken as dead and run again
MAX_RETRIES = 3  # times a trial whose process died is run again before it counts as failed
ERROR_ATTR = "error"  # user attribute of a trial whose objective failed: what went wrong
INTERRUPTED_ATTR = "interrupted"  # user attribute of a trial stopped by Ctrl-C: it is run again on a resume


@dataclass
class TrialResult:
    """One finished trial: its number in the study, parameters, value (None if failed), state and error."""

    number: int
    params: dict
    value: float | None
    state: str  # "complete" or "failed"
    error: str | None = None
    seconds: float | None = None


@dataclass
class SearchResult:
    """What a search found: ``best_value``, ``best_params`` and every finished ``trials`` in order."""

    strategy: str
    best_value: float | None
    best_params: dict | None
    trials: list
    study_name: str
    grid_shape: dict | None = None  # grid search: the number of values of each dimension
    retried: list = field(default_factory=list)  # numbers of trials run again after their process died
    study: object = field(default=None, repr=False)  # the optuna.Study, for anything else

    @property
    def failed(self):
        """The trials that failed (their ``error`` says why)."""
        return [t for t in self.trials if t.state == "failed"]

    @property
    def values(self):
        """Each finished trial's value, in order (NaN for a failed trial)."""
        return [math.nan if t.value is None else t.value for t in self.trials]

    def best_so_far(self):
        """The best value after each trial, in order (NaN until a trial has completed)."""
        best, out = math.inf, []
        for t in self.trials:
            if t.value is not None:
                best = min(best, t.value)
            out.append(best if math.isfinite(best) else math.nan)
        return out

    def table(self):
        """A plain-text table: one row per trial."""
        names = list(self.trials[0].params) if self.trials else []
        lines = ["  ".join([f"{'trial':>5}", *(f"{n:>12}" for n in names), f"{'value':>12}", "state"])]
        for t in self.trials:
            cells = [f"{t.number:>5}", *(f"{_fmt(t.params.get(n)):>12}" for n in names),
                     f"{_fmt(t.value):>12}", t.state + (f" ({t.error})" if t.error else "")]
            lines.append("  ".join(cells))
        return "\n".join(lines)

    def __str__(self):
        failed = f", {len(self.failed)} failed" if self.failed else ""
        best = "no trial completed" if self.best_params is None else \
            f"best {_fmt(self.best_value)} at {_params_text(self.best_params)}"
        return f"{self.strategy} search, {len(self.trials)} trials{failed}: {best}"


def _fmt(v):
    if v is None:
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _params_text(params):
    return "{" + ", ".join(f"{k}={_fmt(v)}" for k, v in params.items()) + "}"


# ---------------------------------------------------------------- checking the input

def check_space(space):
    """The search space as ``{name: (kind, ...)}`` with numbers normalised; ValueError naming what is wrong."""
    allowed = ('("log", low, high), ("linear", low, high), ("int", low, high) or ("choice", [values])')
    if not isinstance(space, dict) or not space:
        raise ValueError(f"space must be a non-empty dict {{name: spec}}, got {space!r}; a spec is {allowed}")
    out = {}
    for name, spec in space.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"space: parameter names must be non-empty strings, got {name!r}")
        where = f"space[{name!r}] = {spec!r}"
        if not isinstance(spec, (tuple, list)) or not spec or spec[0] not in KINDS:
            raise ValueError(f"{where}: unknown or missing kind; a spec is {allowed}")
        kind = spec[0]
        if kind == "choice":
            if len(spec) != 2 or not isinstance(spec[1], (list, tuple)) or not spec[1]:
                raise ValueError(f"{where}: a choice is (\"choice\", [values]) with at least one value")
            values = list(spec[1])
            if not all(v is None or isinstance(v, (bool, int, float, str)) for v in values):
                raise ValueError(f"{where}: choice values must be None, bool, int, float or str")
            if len({json.dumps(v) for v in values}) != len(values):
                raise ValueError(f"{where}: choice values must be distinct")
            out[name] = ("choice", values)
            continue
        if len(spec) != 3:
            raise ValueError(f"{where}: a {kind} range is ({kind!r}, low, high)")
        low, high = spec[1], spec[2]
        number = (int,) if kind == "int" else (int, float)
        if not all(isinstance(v, number) and not isinstance(v, bool) and math.isfinite(v) for v in (low, high)):
            raise ValueError(f"{where}: low and high must be finite {'ints' if kind == 'int' else 'numbers'}")
        if not low < high:
            raise ValueError(f"{where}: low must be less than high")
        if kind == "log" and low <= 0:
            raise ValueError(f"{where}: a log range needs 0 < low")
        out[name] = (kind, low, high) if kind == "int" else (kind, float(low), float(high))
    return out


def _check_arguments(objective, strategy, n_trials, seed):
    if not callable(objective):
        raise TypeError(f"objective must be a function params -> float, got {type(objective).__name__}")
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}: choose one of {', '.join(STRATEGIES)}")
    if not isinstance(n_trials, int) or isinstance(n_trials, bool) or n_trials < 1:
        raise ValueError(f"n_trials must be an int >= 1, got {n_trials!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")


# ---------------------------------------------------------------- grids and samplers

def _max_values(spec):
    """How many distinct grid values a dimension can take (None: as many as wanted)."""
    kind = spec[0]
    if kind == "choice":
        return len(spec[1])
    if kind == "int":
        return spec[2] - spec[1] + 1
    return None


def grid_shape(space, n_trials):
    """Values per dimension of the most even grid with at most ``n_trials`` points (3 x 3 for 9 in 2-D)."""
    space = check_space(space)
    counts = {name: 1 for name in space}
    while True:
        total = math.prod(counts.values())
        for name in sorted(counts, key=lambda n: counts[n]):  # grow the coarsest dimension that still fits
            limit = _max_values(space[name])
            if (limit is None or counts[name] < limit) and total // counts[name] * (counts[name] + 1) <= n_trials:
                counts[name] += 1
                break
        else:
            return counts


def grid_values(spec, m):
    """``m`` evenly spread values of one dimension: ends included, the middle for m = 1."""
    import numpy as np

    kind = spec[0]
    if kind == "choice":
        idx = [len(spec[1]) // 2] if m == 1 else np.linspace(0, len(spec[1]) - 1, m).round().astype(int)
        return [spec[1][i] for i in idx]
    low, high = spec[1], spec[2]
    if kind == "log":
        v = [math.sqrt(low * high)] if m == 1 else np.geomspace(low, high, m)
    else:
        v = [(low + high) / 2] if m == 1 else np.linspace(low, high, m)
    if kind == "int":
        return sorted({int(round(x)) for x in v})
    return [float(x) for x in v]


def _reseed(rng, seed, study, trial):
    """Seed ``rng`` from (seed, the trial's place among the study's new trials): resumed = uninterrupted."""
    retries_before = sum(1 for t in study.get_trials(deepcopy=False)
                         if t.number < trial.number and "failed_trial" in t.system_attrs)
    rng.seed([seed, trial.number - retries_before])


def make_sampler(strategy, space, n_trials, seed):
    """The Optuna sampler of ``strategy`` (and, for grid search, the grid's shape)."""
    import optuna

    class TrialSeededRandomSampler(optuna.samplers.RandomSampler):
        """Optuna's RandomSampler, its generator seeded anew for each trial from the trial's place."""

        def before_trial(self, study, trial):
            _reseed(self._rng.rng, seed, study, trial)

    class TrialSeededGPSampler(optuna.samplers.GPSampler):
        """Optuna's GPSampler (Matern-5/2 GP, log expected improvement), seeded per trial likewise."""

        def before_trial(self, study, trial):
            _reseed(self._rng.rng, seed, study, trial)
            super().before_trial(study, trial)

    if strategy == "grid":
        shape = grid_shape(space, n_trials)
        grid = {name: grid_values(space[name], shape[name]) for name in space}
        return optuna.samplers.GridSampler(grid, seed=seed), {n: len(v) for n, v in grid.items()}
    if strategy == "random":
        return TrialSeededRandomSampler(seed=seed), None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return TrialSeededGPSampler(seed=seed, independent_sampler=TrialSeededRandomSampler(seed=seed),
                                    n_startup_trials=min(10, max(2, n_trials // 3))), None


def suggest(trial, space):
    """Ask an Optuna trial for one value of every dimension, in the space's order."""
    params = {}
    for name, spec in space.items():
        kind = spec[0]
        if kind == "choice":
            params[name] = trial.suggest_categorical(name, spec[1])
        elif kind == "int":
            params[name] = trial.suggest_int(name, spec[1], spec[2])
        else:
            params[name] = trial.suggest_float(name, spec[1], spec[2], log=kind == "log")
    return params


# ---------------------------------------------------------------- studies and storage

_STORAGE_HINT = ("give an RDB URL such as 'sqlite:///runs/search.db' in a writable folder, "
                 "or None to keep the study in memory")


def open_storage(storage):
    """An Optuna storage for ``storage``: None (in memory), an RDB URL (``sqlite:///runs/search.db``) or a storage."""
    import optuna

    if storage is None or not isinstance(storage, str):
        return storage
    if storage.startswith("sqlite:///") and not storage.startswith("sqlite:///:memory:"):
        folder = os.path.dirname(os.path.abspath(storage[len("sqlite:///"):]))
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as err:
            raise ValueError(f"storage {storage!r} cannot be opened: its folder {folder} cannot be made ({err}); "
                             f"{_STORAGE_HINT}") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                storage, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES))
    except Exception as err:  # sqlalchemy raises many kinds: a bad URL, a missing driver, an unreadable file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"storage {storage!r} cannot be opened ({type(err).__name__}: {first}); "
                         f"{_STORAGE_HINT}") from None


def _default_name(strategy, space, seed, shape):
    digest = hashlib.sha1(json.dumps(space, sort_keys=True).encode()).hexdigest()[:10]
    grid = "" if shape is None else "-grid" + "x".join(str(m) for m in shape.values())
    return f"{strategy}{grid}-seed{seed}-{digest}"


def open_study(space, strategy, n_trials, seed, storage=None, study_name=None):
    """Create, or load from ``storage``, the study of this search; refuse a stored one of another search."""
    import optuna

    sampler, shape = make_sampler(strategy, space, n_trials, seed)
    name = study_name or _default_name(strategy, space, seed, shape)
    store = open_storage(storage)
    study = optuna.create_study(study_name=name, storage=store, sampler=sampler, direction="minimize",
                                load_if_exists=True)
    meta = {"space": json.dumps(space, sort_keys=True), "strategy": strategy, "seed": seed,
            "grid": None if shape is None else json.dumps(shape)}
    stored = {k: study.user_attrs.get(k) for k in meta}
    if not study.get_trials(deepcopy=False) and all(v is None for v in stored.values()):
        for k, v in meta.items():
            study.set_user_attr(k, v)
    elif stored != meta:
        diff = ", ".join(f"{k} {stored[k]!r} (now {meta[k]!r})" for k in meta if stored[k] != meta[k])
        raise ValueError(f"study {name!r} in {storage!r} belongs to another search: {diff}; "
                         "pass another study_name, or the same space, strategy, seed (and grid) to resume it")
    return study, shape


def _retried_numbers(trials):
    return {n for t in trials for n in t.system_attrs.get("retry_history", [])}


def _requeue_dead(study):
    """Queue again, with the same parameters, the trials a killed or interrupted process did not finish.

    A killed process leaves its trial RUNNING: after its heartbeat's grace
    period Optuna fails it and queues a copy. A trial stopped by Ctrl-C is
    FAIL with ``INTERRUPTED_ATTR``: it is queued here the same way.
    """
    import optuna
    from optuna.trial import TrialState

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        beat = getattr(study._storage, "get_heartbeat_interval", None)
        if beat is not None and beat():  # an RDB storage with heartbeats
            if study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                time.sleep(GRACE_SECONDS + HEARTBEAT_SECONDS)  # a live process refreshes its heartbeat meanwhile
            optuna.storages.fail_stale_trials(study)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES)
        trials = study.get_trials(deepcopy=False)
        retried = _retried_numbers(trials)
        for t in trials:
            if (t.state == TrialState.FAIL and t.user_attrs.get(INTERRUPTED_ATTR) and ERROR_ATTR not in t.user_attrs
                    and t.number not in retried):
                retry(study, t)


def missing_trials(study, n_trials, grid_size=None):
    """How many trials this call still has to run for the study to hold ``n_trials`` finished ones."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    retried = _retried_numbers(trials)
    counted = [t for t in trials if t.number not in retried and t.state != TrialState.WAITING]
    target = n_trials if grid_size is None else min(n_trials, grid_size)
    return max(0, target - len(counted))


def check_value(value):
    """An objective's return value as a finite float; TypeError/ValueError saying what it returned instead."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "item"):
        raise TypeError(f"objective returned {type(value).__name__} {value!r}: it must return a number")
    value = float(value.item() if hasattr(value, "item") else value)
    if not math.isfinite(value):
        raise ValueError(f"objective returned {value}")
    return value


def objective_for_optuna(objective, space):
    """The Optuna objective: suggest, call ``objective(params)``, record why a trial failed, and re-raise."""

    def run(trial):
        storage = trial.study._storage
        if getattr(storage, "get_heartbeat_interval", None) and storage.get_heartbeat_interval():
            # Optuna's heartbeat thread may not have written yet; a trial without one is never taken as dead
            storage.record_heartbeat(trial._trial_id)
        params = suggest(trial, space)
        try:
            value = check_value(objective(dict(params)))
        except KeyboardInterrupt:
            trial.set_user_attr(INTERRUPTED_ATTR, True)
            raise
        except Exception as err:
            trial.set_user_attr(ERROR_ATTR, f"{type(err).__name__}: {err}"[:500])
            raise
        return value

    return run


def collect(study, strategy, shape=None):
    """The ``SearchResult`` of a study: finished trials in order, a retried trial's dead attempt left out."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    retried = _retried_numbers(trials)
    out = []
    for t in trials:
        if t.number in retried or not t.state.is_finished():
            continue
        complete = t.state == TrialState.COMPLETE
        error = None if complete else t.user_attrs.get(ERROR_ATTR) or (
            "interrupted: a resume runs it again" if t.user_attrs.get(INTERRUPTED_ATTR)
            else "its process stopped while it ran")
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() \
            if t.datetime_complete and t.datetime_start else None
        out.append(TrialResult(t.number, dict(t.params), t.value if complete else None,
                               "complete" if complete else "failed", error, seconds))
    done = [t for t in out if t.state == "complete"]
    best = min(done, key=lambda t: t.value) if done else None
    return SearchResult(strategy, best.value if best else None, best.params if best else None, out,
                        study.study_name, shape, sorted(retried), study)


# ---------------------------------------------------------------- engines

@dataclass
class Job:
    """What an engine gets: the search's arguments, its opened ``study`` and how many trials to run.

    An engine that runs trials elsewhere (processes sharing an RDB ``storage``)
    reopens the study there with ``open_study(space, strategy, n_trials, seed,
    storage, study.study_name)`` and runs ``objective_for_optuna(objective, space)``.
    """

    objective: object
    space: dict
    strategy: str
    n_trials: int
    seed: int
    storage: object
    study: object
    n_to_run: int
    verbose: bool = False


def report_trial(study, trial):
    """One line for a finished trial (an Optuna callback)."""
    what = _fmt(trial.value) if trial.value is not None else f"failed: {trial.user_attrs.get(ERROR_ATTR)}"
    print(f"trial {trial.number}: {_params_text(trial.params)} -> {what}")


def _run_local(job):
    """Run ``job.n_to_run`` trials one after another in this process."""
    job.study.optimize(objective_for_optuna(job.objective, job.space), n_trials=job.n_to_run, catch=(Exception,),
                       callbacks=[report_trial] if job.verbose else [], gc_after_trial=False)


@contextlib.contextmanager
def _quiet_optuna():
    """Optuna's log level at ERROR for the duration: failures are reported by the result, not as tracebacks."""
    import optuna

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(level)


def _run_ray(job, **options):
    """Run the trials as Ray tasks (``lecture_utils.course.cluster``, issue 17): ``address``, ``resources_per_trial``..."""
    from lecture_utils.course.cluster import run_trials

    run_trials(job.study, job.objective, job.space, job.n_to_run, job.verbose, **options)


# engine name -> function(job: Job, **engine_options); it runs job.n_to_run trials of job.study (in this
# process, or in workers sharing the study's RDB storage) and returns when they have finished.
ENGINES = {"local": _run_local, "ray": _run_ray}


def _check_engine(engine, options):
    """Before any work: the engine exists, its options are its own, and what it needs is installed."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}: choose one of {', '.join(ENGINES)}")
    if engine == "local" and options:
        raise ValueError(f"engine 'local' takes no options, got {', '.join(sorted(options))}")
    if engine == "ray":
        try:
            from lecture_utils.course.cluster import require_ray
        except ImportError:
            raise ValueError("engine 'ray' is not available in this version of lecture_utils "
                             "(no lecture_utils.course.cluster): use engine='local'") from None
        require_ray()  # an ImportError that says how to install Ray


def search(objective, space, strategy="grid", n_trials=10, seed=0, storage=None, study_name=None, *,
           engine="local", verbose=False, **engine_options):
    """Minimise ``objective(params)`` over ``space`` with ``n_trials`` trials; return a ``SearchResult``.

    ``space`` maps a name to ``("log", low, high)``, ``("linear", low, high)``,
    ``("int", low, high)`` or ``("choice", [values])``. ``strategy``: ``"grid"``
    (the most even grid of at most ``n_trials`` points, e.g. 3 x 3 for 9 in 2-D),
    ``"random"`` or ``"bayes"`` (Optuna's GPSampler after a few random trials).
    ``storage``: an RDB URL such as ``"sqlite:///runs/search.db"`` keeps the
    study (named ``study_name``, by default from strategy, space and seed);
    ``n_trials`` is then its total and a rerun only adds the missing trials.
    ``verbose`` prints a line per trial. ``engine`` picks where trials run.
    """
    _check_arguments(objective, strategy, n_trials, seed)
    space = check_space(space)
    _check_engine(engine, engine_options)
    if study_name is not None and (not isinstance(study_name, str) or not study_name):
        raise ValueError(f"study_name must be a non-empty string or None, got {study_name!r}")
    with _quiet_optuna():
        study, shape = open_study(space, strategy, n_trials, seed, storage, study_name)
        _requeue_dead(study)
        n_to_run = missing_trials(study, n_trials, None if shape is None else math.prod(shape.values()))
        if n_to_run:
            ENGINES[engine](Job(objective, space, strategy, n_trials, seed, storage, study, n_to_run, verbose),
                            **engine_options)
        result = collect(study, strategy, shape)
    if verbose:
        print(result)
    return result
