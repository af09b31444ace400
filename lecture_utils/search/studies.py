"""Where a study lives and how a stopped one resumes: storage, opening a study, trials cut off or left dead.

``open_storage`` opens None (memory) or an RDB URL with heartbeats; ``open_study`` creates or loads
the study of a search and refuses one of another search; ``rerun_cut_off`` queues again the trials
a stop or a killed process cut off; ``missing_trials`` says how many are left to run. A database
that fails while a search runs becomes one ``StorageError`` line.
"""

import contextlib
import hashlib
import json
import os
import sqlite3
import sys
import time

from lecture_utils.search.samplers import make_sampler

HEARTBEAT_SECONDS = 1  # a running trial's process writes a heartbeat this often to an RDB storage...
GRACE_SECONDS = 4  # ...and a trial without one for this long is taken as dead and run again
MAX_RETRIES = 3  # times a cut-off trial is run again before it counts as failed
LOCK_WAIT_SECONDS = 5  # how long an SQLite write waits for another connection's lock before it fails
ERROR_ATTR = "error"  # user attribute of a trial whose objective failed: what went wrong
INTERRUPTED_ATTR = "interrupted"  # user attribute of a trial cut off by a stop: it is run again on a resume


# ---------------------------------------------------------------- storage

_STORAGE_HINT = ("give an RDB URL such as 'sqlite:///runs/search.db' in a writable folder, "
                 "or None to keep the study in memory")


def _first_line(err):
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


def _check_sqlite_file(url, path):
    """An existing SQLite file must hold Optuna's tables (or none): never add them to another program's database."""
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        return
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=LOCK_WAIT_SECONDS)) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error as err:
        if "locked" in str(err):
            raise ValueError(f"storage {url!r} cannot be opened: the database is locked by another program or "
                             "connection; close it (SQLite has one writer at a time) and call again") from None
        raise ValueError(f"storage {url!r} cannot be opened: {path} is not an SQLite database ({err}); "
                         "give the file of an earlier search or a new file name") from None
    if tables and not {"studies", "trials", "version_info"} <= tables:
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise ValueError(f"storage {url!r} is the SQLite database of another program (tables {shown}; no Optuna "
                         "study): it is left as it is; give a new file name, e.g. 'sqlite:///runs/search.db'")


def open_storage(storage):
    """An Optuna storage for ``storage``: None (in memory), an RDB URL (``sqlite:///runs/search.db``) or a storage.

    An RDB URL gets heartbeats: a running trial writes one every ``HEARTBEAT_SECONDS``; one silent
    for ``GRACE_SECONDS`` is failed and queued again (Optuna's ``RetryHeartbeatStaleTrialCallback``).
    """
    import optuna

    if storage is None or isinstance(storage, optuna.storages.BaseStorage):
        return storage
    if not isinstance(storage, str):
        raise TypeError(f"storage must be None, an RDB URL such as 'sqlite:///runs/search.db' or an optuna "
                        f"storage, got {type(storage).__name__} {storage!r}")
    options = {}
    if storage.startswith("sqlite:///") and not storage.startswith("sqlite:///:memory:"):
        path = os.path.abspath(storage[len("sqlite:///"):].split("?")[0])
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        except OSError as err:
            raise ValueError(f"storage {storage!r} cannot be opened: its folder {os.path.dirname(path)} cannot be "
                             f"made ({err}); {_STORAGE_HINT}") from None
        _check_sqlite_file(storage, path)
        options = {"connect_args": {"timeout": LOCK_WAIT_SECONDS}}
    try:
        return optuna.storages.RDBStorage(
            storage, engine_kwargs=options, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES))
    except Exception as err:  # sqlalchemy raises many kinds: a bad URL, a missing driver, an unreadable file
        raise ValueError(f"storage {storage!r} cannot be opened ({_first_line(err)}); {_STORAGE_HINT}") from None


def _chain(err):
    """``err`` and the errors behind it, as Python's traceback shows them."""
    out = []
    while err is not None and err not in out:
        out.append(err)
        err = err.__cause__ if err.__cause__ is not None else None if err.__suppress_context__ else err.__context__
    return out


def _database_error(err):
    """The database's own error behind ``err`` (through Optuna's wrapping and its follow-on errors), or None."""
    import optuna

    for e in _chain(err):
        if isinstance(e, (sqlite3.Error, optuna.exceptions.StorageInternalError)) or \
                type(e).__module__.split(".")[0] == "sqlalchemy":
            return e
    return None


class StorageError(RuntimeError):
    """The search's database failed while the search ran (locked, gone, full): the finished trials are kept."""


def _storage_failed(storage, err):
    cause = _database_error(err)
    if any("database is locked" in str(e) for e in _chain(err)):
        what = (f"the database is locked: another program or connection held it for more than {LOCK_WAIT_SECONDS} s "
                "(SQLite has one writer at a time); close it")
    else:
        what = f"the database failed ({_first_line(cause)}); check that it is reachable and writable"
    return StorageError(f"storage {storage!r}: {what}, then run the same search again: the finished trials are "
                        "kept and it resumes")


# ---------------------------------------------------------------- studies

def _default_name(strategy, space, seed, shape):
    digest = hashlib.sha1(json.dumps(space, sort_keys=True).encode()).hexdigest()[:10]
    grid = "" if shape is None else "-grid" + "x".join(str(m) for m in shape.values())
    return f"{strategy}{grid}-seed{seed}-{digest}"


def open_study(space, strategy, n_trials, seed, storage=None, study_name=None):
    """Create, or load from ``storage``, the study of this search; refuse a stored one of another search."""
    import optuna

    sampler, shape = make_sampler(strategy, space, n_trials, seed)
    name = study_name or _default_name(strategy, space, seed, shape)
    study = optuna.create_study(study_name=name, storage=open_storage(storage), sampler=sampler,
                                direction="minimize", load_if_exists=True)
    meta = {"space": json.dumps(space, sort_keys=True), "strategy": strategy, "seed": seed,
            "grid": None if shape is None else json.dumps(shape)}
    stored = {k: study.user_attrs.get(k) for k in meta}
    if not study.get_trials(deepcopy=False) and all(v is None for v in stored.values()):
        for k, v in meta.items():
            study.set_user_attr(k, v)
    elif stored != meta:
        diff = ", ".join(f"{k} {stored[k]!r} (now {meta[k]!r})" for k in meta if stored[k] != meta[k])
        raise ValueError(f"study {name!r} in {getattr(storage, 'url', storage)!r} belongs to another search: {diff}; "
                         "pass another study_name, or the same space, strategy, seed (and grid) to resume it")
    return study, shape


def _retried_numbers(trials):
    """Numbers of the trials that were cut off and run again (each rerun lists those it replaces)."""
    import optuna

    history = optuna.storages.RetryHeartbeatStaleTrialCallback.retry_history
    return {n for t in trials for n in history(t)}


def rerun_cut_off(study, store):
    """Queue again, with their parameters, the trials a stop or a dead process cut off.

    A trial stopped by a signal is FAIL with ``INTERRUPTED_ATTR``. A killed process leaves
    its trial RUNNING and silent: once its heartbeat is ``GRACE_SECONDS`` old,
    ``optuna.storages.fail_stale_trials`` fails it and the storage's callback queues a copy.
    A trial still beating after that runs in another live process and is left to it.
    """
    import optuna
    from optuna.trial import TrialState

    beat = getattr(store, "get_heartbeat_interval", None)
    if beat is not None and beat():
        deadline = time.monotonic() + GRACE_SECONDS + HEARTBEAT_SECONDS
        while True:
            optuna.storages.fail_stale_trials(study)
            running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if not running or time.monotonic() > deadline:
                break
            time.sleep(0.25)  # a live process refreshes its heartbeat meanwhile
        if running:
            print(f"note: trial(s) {', '.join(str(t.number) for t in running)} of study {study.study_name!r} still "
                  "beat in another process: they count as running and are not run here", file=sys.stderr, flush=True)
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

