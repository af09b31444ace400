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
only the trials still missing. A trial cut off by Ctrl-C, SIGTERM or SIGHUP,
or left running by a process that was killed (its heartbeat stopped: a resume
that finds trials still running waits up to 5 s to tell), runs again with the
same parameters. Each trial's sampler is seeded from (seed, the trial's place
among the study's new trials), so an interrupted and resumed search runs
exactly the trials the uninterrupted one would.

Trials run in this process (``engine=None``) or wherever an engine sends them:
an engine is a callable ``engine(job)`` that runs the job's ``n_to_run`` trials
(see ``Job``); ``lecture_utils.course.ray_search.RayEngine`` runs them as Ray tasks.

The package, one seam per module (import the names from here, ``lecture_utils.search``):
    ``space``      ``check_space``, ``grid_shape``, ``grid_values``, ``suggest``, ``KINDS``
    ``samplers``   ``make_sampler``, ``trial_seed``, ``STRATEGIES``
    ``studies``    ``open_storage``, ``open_study``, ``rerun_cut_off``, ``missing_trials``, ``StorageError``
    ``results``    ``SearchResult``, ``TrialResult``, ``collect``
    ``stopping``   ``Stop``, ``TrialInterrupted``, ``SearchStopped``
    ``jobs``       ``Job``, ``check_value``
and here ``search`` itself.
"""

import contextlib
import math
import signal
import sys
import threading
import warnings

from lecture_utils.search.jobs import Job, _check_engine, check_value
from lecture_utils.search.results import SearchResult, TrialResult, collect, report_trial
from lecture_utils.search.samplers import STRATEGIES, make_sampler, trial_seed
from lecture_utils.search.space import KINDS, check_space, grid_shape, grid_values, suggest
from lecture_utils.search.stopping import STOP_SIGNALS, SearchStopped, Stop, TrialInterrupted
from lecture_utils.search.studies import (ERROR_ATTR, GRACE_SECONDS, HEARTBEAT_SECONDS, INTERRUPTED_ATTR,
                                          LOCK_WAIT_SECONDS, MAX_RETRIES, StorageError, _database_error,
                                          _storage_failed, missing_trials, open_storage, open_study,
                                          rerun_cut_off)

__all__ = [
    "search", "SearchResult", "TrialResult", "Job", "check_space", "grid_shape", "grid_values", "suggest",
    "STRATEGIES", "KINDS", "StorageError", "SearchStopped", "TrialInterrupted", "Stop", "check_value",
    "collect", "report_trial", "make_sampler", "trial_seed", "open_storage", "open_study", "rerun_cut_off",
    "missing_trials", "STOP_SIGNALS", "HEARTBEAT_SECONDS", "GRACE_SECONDS", "MAX_RETRIES", "LOCK_WAIT_SECONDS",
    "ERROR_ATTR", "INTERRUPTED_ATTR",
]


def _check_arguments(objective, strategy, n_trials, seed, study_name):
    if not callable(objective):
        raise TypeError(f"objective must be a function params -> float, got {type(objective).__name__}")
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}: choose one of {', '.join(STRATEGIES)}")
    if not isinstance(n_trials, int) or isinstance(n_trials, bool) or n_trials < 1:
        raise ValueError(f"n_trials must be an int >= 1, got {n_trials!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an int >= 0 and < 2**32, got {seed!r}")
    if study_name is not None and (not isinstance(study_name, str) or not study_name):
        raise ValueError(f"study_name must be a non-empty string or None, got {study_name!r}")


@contextlib.contextmanager
def _quiet_optuna():
    """For the duration: Optuna at ERROR (the result reports failed trials), its experimental notes off, and
    a failing database does not kill Optuna's heartbeat threads with a traceback each (the search says it once)."""
    import optuna

    level, hook = optuna.logging.get_verbosity(), threading.excepthook

    def quiet_database_errors(args):
        if _database_error(args.exc_value) is None:
            hook(args)

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    threading.excepthook = quiet_database_errors
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # an engine that asks and tells writes the heartbeats itself (Job.beat)
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
            yield
    finally:
        optuna.logging.set_verbosity(level)
        threading.excepthook = hook


def _stopped_line(job, how, storage):
    """One line: what a stopped search finished, what is kept, how to resume."""
    finished = sum(1 for t in collect(job.study, job.strategy).trials if t.state == "complete")
    head = f"search stopped by {how}: {finished} of {job.n_trials} trials finished"
    if storage is None:
        return (f"{head}; the study was in memory (storage=None), so a rerun starts over: "
                "pass storage='sqlite:///runs/search.db' to keep finished trials")
    return (f"{head} and kept in {storage!r} (study {job.study.study_name!r}); run the same search again to "
            "resume: the trials cut off run again, then the rest")


def search(objective, space, strategy="grid", n_trials=10, seed=0, storage=None, study_name=None, *,
           engine=None, verbose=False, **engine_options):
    """Minimise ``objective(params)`` over ``space`` with ``n_trials`` trials; return a ``SearchResult``.

    ``space`` maps a name to ``("log", low, high)``, ``("linear", low, high)``,
    ``("int", low, high)`` or ``("choice", [values])``. ``strategy``: ``"grid"``
    (the most even grid of at most ``n_trials`` points, e.g. 3 x 3 for 9 in 2-D),
    ``"random"`` or ``"bayes"`` (Optuna's GPSampler after a few random trials).
    ``storage``: an RDB URL such as ``"sqlite:///runs/search.db"`` keeps the
    study (named ``study_name``, by default from strategy, space and seed);
    ``n_trials`` is then its total and a rerun only adds the missing trials.
    ``verbose`` prints a line per trial. ``engine``: None runs the trials here,
    ``RayEngine(...)`` (``lecture_utils.course.ray_search``) as Ray tasks.

    Ctrl-C raises a KeyboardInterrupt; SIGTERM and SIGHUP print one line and raise ``SearchStopped``
    (exit status 143, 129); both say what finished and how to resume.
    """
    _check_arguments(objective, strategy, n_trials, seed, study_name)
    space = check_space(space)
    engine = _check_engine(engine, engine_options)
    with _quiet_optuna():
        job = None
        try:
            store = open_storage(storage)
            study, shape = open_study(space, strategy, n_trials, seed, store, study_name)
            job = Job(objective, space, strategy, n_trials, seed, storage, study, 0, verbose, store)
            rerun_cut_off(study, store)
            job.n_to_run = missing_trials(study, n_trials, None if shape is None else math.prod(shape.values()))
            if job.n_to_run:
                with job.stop.catching():
                    engine(job)
                if job.stop.requested:  # the signal came as the last trial ended: still a stop
                    raise TrialInterrupted
            result = collect(study, strategy, shape)
        except KeyboardInterrupt:
            if job is None:
                raise
            signum = job.stop.signum or signal.SIGINT
            how = signal.Signals(signum).name if job.stop.requested else "KeyboardInterrupt"
            line = _stopped_line(job, how, storage)
            if signum == signal.SIGINT:
                raise KeyboardInterrupt(line) from None  # a plain one: uncaught, Python exits as by SIGINT
            print(line, file=sys.stderr, flush=True)
            raise SearchStopped(line, 128 + signum) from None
        except Exception as err:
            if _database_error(err) is None:
                raise
            raise _storage_failed(storage, err) from None
    if verbose:
        print(result)
    return result
