"""lecture_utils.search: grid / random / GP search through Optuna, failed trials, bad input, resuming."""

import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

optuna = pytest.importorskip("optuna")

import lecture_utils.search as search_module  # noqa: E402
from lecture_utils.search import grid_shape, grid_values, search  # noqa: E402

SPACE = {"lr": ("log", 1e-4, 1.0), "width": ("linear", 0.0, 1.0)}


def bowl(params):
    """A minimum at lr = 1e-2; width matters a little."""
    return (math.log10(params["lr"]) + 2) ** 2 + 0.1 * params["width"]


def keys(trials):
    return sorted(tuple(sorted(t.params.items())) for t in trials)


# ---------------------------------------------------------------- strategies

def test_grid_is_as_even_as_a_grid_can_be():
    assert grid_shape(SPACE, 9) == {"lr": 3, "width": 3}
    assert grid_shape(SPACE, 10) == {"lr": 3, "width": 3}
    assert grid_shape(SPACE, 8) in ({"lr": 4, "width": 2}, {"lr": 2, "width": 4})
    assert grid_shape(SPACE, 1) == {"lr": 1, "width": 1}
    # a choice (or int) dimension never gets more values than it has
    assert grid_shape({"a": ("choice", ["x", "y"]), "b": ("linear", 0, 1)}, 12) == {"a": 2, "b": 6}
    assert grid_shape({"k": ("int", 1, 3)}, 10) == {"k": 3}
    assert grid_values(("log", 1e-4, 1.0), 3) == pytest.approx([1e-4, 1e-2, 1.0])
    assert grid_values(("linear", 0.0, 1.0), 1) == [0.5]
    assert grid_values(("int", 1, 10), 4) == [1, 4, 7, 10]
    assert grid_values(("choice", ["a", "b", "c", "d", "e"]), 3) == ["a", "c", "e"]


def test_grid_search_visits_every_grid_point_once():
    result = search(bowl, SPACE, "grid", n_trials=9, seed=3)
    assert result.grid_shape == {"lr": 3, "width": 3}
    assert len(result.trials) == 9 and not result.failed
    assert keys(result.trials) == sorted((("lr", lr), ("width", w)) for lr in grid_values(SPACE["lr"], 3)
                                         for w in (0.0, 0.5, 1.0))
    assert result.best_params == {"lr": pytest.approx(1e-2), "width": 0.0}
    assert result.best_value == pytest.approx(0.0, abs=1e-12)


def test_grid_search_runs_at_most_n_trials():
    assert len(search(bowl, SPACE, "grid", n_trials=10).trials) == 9


def test_random_search_is_seeded_and_inside_the_space():
    a = search(bowl, SPACE, "random", n_trials=12, seed=5)
    b = search(bowl, SPACE, "random", n_trials=12, seed=5)
    c = search(bowl, SPACE, "random", n_trials=12, seed=6)
    assert [t.params for t in a.trials] == [t.params for t in b.trials]
    assert [t.params for t in a.trials] != [t.params for t in c.trials]
    lrs = [t.params["lr"] for t in a.trials]
    assert all(1e-4 <= lr <= 1.0 for lr in lrs)
    assert len(set(lrs)) == 12  # random search tries a new value of each dimension every trial
    assert a.best_value == min(a.values) and a.best_so_far()[-1] == a.best_value
    assert all(x >= y for x, y in zip(a.best_so_far(), a.best_so_far()[1:]))


def test_bayes_search_finds_the_minimum_of_a_smooth_1d_function():
    space = {"lr": ("log", 1e-5, 1.0)}
    bayes = search(lambda p: (math.log10(p["lr"]) + 2) ** 2, space, "bayes", n_trials=10, seed=0)
    assert len(bayes.trials) == 10
    assert abs(math.log10(bayes.best_params["lr"]) + 2) < 0.15  # within 0.15 decades of 1e-2


def test_all_kinds_of_dimension():
    space = {"lr": ("log", 1e-3, 1e-1), "x": ("linear", -1, 1), "k": ("int", 1, 4), "act": ("choice", ["relu", "tanh"])}
    for strategy in ("grid", "random", "bayes"):
        result = search(lambda p: p["x"] ** 2 + p["k"] + (p["act"] == "tanh"), space, strategy, n_trials=8, seed=1)
        assert result.trials and not result.failed
        for t in result.trials:
            assert isinstance(t.params["k"], int) and 1 <= t.params["k"] <= 4
            assert t.params["act"] in ("relu", "tanh") and -1 <= t.params["x"] <= 1


# ---------------------------------------------------------------- failed trials

def test_failed_trials_are_marked_and_the_search_goes_on():
    def objective(p):
        if p["x"] < 0.25:
            return float("nan")
        if p["x"] > 0.75:
            raise RuntimeError("out of memory (pretend)")
        if 0.5 < p["x"] < 0.6:
            return "not a number"
        return p["x"]

    result = search(objective, {"x": ("linear", 0.0, 1.0)}, "random", n_trials=30, seed=0)
    assert len(result.trials) == 30
    failed = result.failed
    assert failed and len(failed) < 30
    for t in result.trials:
        x = t.params["x"]
        bad = x < 0.25 or x > 0.75 or 0.5 < x < 0.6
        assert (t.state == "failed") == bad and (t.value is None) == bad
    errors = {t.error.split(":")[0] for t in failed}
    assert errors <= {"ValueError", "RuntimeError", "TypeError"} and "RuntimeError" in errors
    assert any("nan" in t.error for t in failed)
    assert result.best_value == min(t.value for t in result.trials if t.value is not None)
    assert "failed" in str(result) and "out of memory" in result.table()
    assert math.isnan(result.values[[t.state for t in result.trials].index("failed")])


def test_a_search_where_every_trial_fails():
    result = search(lambda p: 1 / 0, {"x": ("linear", 0, 1)}, "grid", n_trials=3)
    assert result.best_value is None and result.best_params is None and len(result.failed) == 3
    assert "ZeroDivisionError" in result.failed[0].error and "no trial completed" in str(result)


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("space, words", [
    ({}, "non-empty dict"),
    ([("lr", 1)], "non-empty dict"),
    ({"lr": ("exp", 1, 2)}, "unknown or missing kind"),
    ({"lr": "log"}, "unknown or missing kind"),
    ({"lr": ("log", 0, 1)}, "0 < low"),
    ({"lr": ("log", 1e-3)}, "a log range is"),
    ({"lr": ("linear", 1, 1)}, "less than high"),
    ({"lr": ("linear", 0, float("inf"))}, "finite"),
    ({"k": ("int", 1.5, 3)}, "finite ints"),
    ({"a": ("choice", [])}, "at least one value"),
    ({"a": ("choice", [1, 1])}, "distinct"),
    ({"a": ("choice", [1, True])}, "1 and True are 1 == True in Python"),  # Optuna would merge them
    ({"a": ("choice", [0, False])}, "0 and False are 0 == False in Python"),
    ({"a": ("choice", [1, 1.0])}, "1 and 1.0 are 1 == 1.0 in Python"),
    ({"a": ("choice", ["x", float("nan")])}, "NaN"),
    ({"a": ("choice", [[1], 2])}, "None, bool, int, float or str"),
    ({"": ("linear", 0, 1)}, "non-empty strings"),
])
def test_malformed_space(space, words):
    with pytest.raises(ValueError, match="space") as err:
        search(bowl, space, "random", n_trials=2)
    assert words in str(err.value)


@pytest.mark.parametrize("kwargs, words", [
    (dict(n_trials=0), "n_trials must be an int >= 1"),
    (dict(n_trials=2.5), "n_trials must be an int >= 1"),
    (dict(n_trials=True), "n_trials must be an int >= 1"),
    (dict(strategy="hyperband"), "unknown strategy 'hyperband': choose one of grid, random, bayes"),
    (dict(seed=-1), "seed must be an int >= 0"),
    (dict(seed=2**40), "seed must be an int >= 0 and < 2**32, got 1099511627776"),
    (dict(engine="spark"), "unknown engine 'spark'"),
    (dict(engine="ray"), "pass engine=RayEngine(...) from lecture_utils.course.ray_search"),
    (dict(engine=42), "unknown engine 42"),
    (dict(study_name=""), "study_name must be a non-empty string"),
])
def test_bad_arguments(kwargs, words):
    calls = []
    with pytest.raises(ValueError) as err:
        search(lambda p: calls.append(p) or 0.0, SPACE, **{"n_trials": 2, **kwargs})
    assert words in str(err.value) and not calls


def test_engine_options_belong_to_the_engine():
    with pytest.raises(TypeError, match="got engine options address: give them to the engine, e.g. "
                                        r"engine=RayEngine\(address='auto'\)"):
        search(bowl, SPACE, "grid", n_trials=2, address="auto")


def test_an_engine_is_a_callable_of_a_job():
    seen = []

    def engine(job):  # runs the trials in this process, as the default does, and says what it got
        seen.append((job.strategy, job.n_trials, job.n_to_run))
        job.run()

    result = search(bowl, SPACE, "grid", n_trials=4, engine=engine)
    assert seen == [("grid", 4, 4)] and len(result.trials) == 4 and not result.failed


def test_objective_must_be_callable():
    with pytest.raises(TypeError, match="objective must be a function"):
        search(3, SPACE, "grid", n_trials=2)


@pytest.mark.parametrize("url", ["nosuchdb://nowhere/x", "sqlite:////proc/no/such/folder/s.db", "not a url"])
def test_storage_that_cannot_be_opened(url):
    with pytest.raises(ValueError, match="cannot be opened") as err:
        search(bowl, SPACE, "random", n_trials=2, storage=url)
    assert "sqlite:///runs/search.db" in str(err.value) and len(str(err.value).splitlines()) == 1


def test_storage_of_the_wrong_type_is_a_clear_error():
    with pytest.raises(TypeError) as err:
        search(bowl, SPACE, "random", n_trials=2, storage=42)
    assert str(err.value) == ("storage must be None, an RDB URL such as 'sqlite:///runs/search.db' or an optuna "
                              "storage, got int 42")


def test_an_sqlite_file_of_another_program_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "places.sqlite"
    with sqlite3.connect(path) as db:  # what a browser or another tool keeps
        db.execute("CREATE TABLE moz_places (id INTEGER PRIMARY KEY, url TEXT)")
        db.execute("INSERT INTO moz_places (url) VALUES ('https://example.org')")
    before = path.read_bytes()
    with pytest.raises(ValueError) as err:
        search(bowl, SPACE, "random", n_trials=2, storage=f"sqlite:///{path}")
    assert str(err.value).startswith(f"storage 'sqlite:///{path}' is the SQLite database of another program "
                                     "(tables moz_places; no Optuna study)")
    assert "give a new file name" in str(err.value) and len(str(err.value).splitlines()) == 1
    assert path.read_bytes() == before  # no Optuna tables added to it


def test_a_file_that_is_not_a_database_is_refused(tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("my notes, not a database\n" * 200)
    with pytest.raises(ValueError, match=f"{path} is not an SQLite database") as err:
        search(bowl, SPACE, "random", n_trials=2, storage=f"sqlite:///{path}")
    assert len(str(err.value).splitlines()) == 1 and path.read_text().startswith("my notes")


def test_a_database_locked_mid_search_is_one_line_and_the_search_resumes(tmp_path, monkeypatch):
    monkeypatch.setattr(search_module.studies, "LOCK_WAIT_SECONDS", 1)  # SQLite's wait for a lock: 5 s by default
    path = tmp_path / "s.db"
    url, held = f"sqlite:///{path}", []

    def objective(p):
        if not held and len(calls) == 2:  # another connection takes the write lock during the third trial
            db = sqlite3.connect(path, isolation_level=None)
            db.execute("BEGIN EXCLUSIVE")
            held.append(db)
        calls.append(p)
        return bowl(p)

    calls = []
    with pytest.raises(search_module.StorageError) as err:
        search(objective, SPACE, "random", n_trials=6, seed=1, storage=url)
    message = str(err.value)
    assert message.startswith(f"storage '{url}': the database is locked: another program or connection held it")
    assert "run the same search again" in message and len(message.splitlines()) == 1
    assert "UnboundLocalError" not in message
    with pytest.raises(ValueError) as err:  # still locked when the search starts again
        search(objective, SPACE, "random", n_trials=6, seed=1, storage=url)
    assert str(err.value).startswith(f"storage '{url}' cannot be opened: the database is locked by another program")
    held[0].rollback()  # the other program lets go
    held[0].close()
    result = search(objective, SPACE, "random", n_trials=6, seed=1, storage=url)
    assert len(result.trials) == 6 and not result.failed
    assert result.retried == [2]  # the trial whose result could not be stored ran again
    assert keys(result.trials) == keys(search(bowl, SPACE, "random", n_trials=6, seed=1).trials)


def test_a_stored_study_of_another_search_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    search(bowl, SPACE, "random", n_trials=2, storage=url, study_name="mine")
    with pytest.raises(ValueError, match="belongs to another search: strategy 'random'"):
        search(bowl, SPACE, "bayes", n_trials=2, storage=url, study_name="mine")
    assert len(optuna.load_study(study_name="mine", storage=url).trials) == 2  # nothing lost


# ---------------------------------------------------------------- storage and resuming

def test_a_stored_study_runs_only_the_missing_trials(tmp_path):
    url = f"sqlite:///{tmp_path}/sub/dir/search.db"  # folders are made
    calls = []

    def objective(p):
        calls.append(p)
        return bowl(p)

    first = search(objective, SPACE, "random", n_trials=4, seed=2, storage=url)
    assert len(calls) == 4
    again = search(objective, SPACE, "random", n_trials=4, seed=2, storage=url)
    assert len(calls) == 4 and keys(again.trials) == keys(first.trials)
    more = search(objective, SPACE, "random", n_trials=7, seed=2, storage=url)
    assert len(calls) == 7 and len(more.trials) == 7
    assert keys(more.trials) == keys(search(bowl, SPACE, "random", n_trials=7, seed=2).trials)


def test_a_search_in_memory_says_a_rerun_starts_over():
    def objective(p):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt, match=r"0 of 3 trials finished; the study was in memory \(storage=None\), "
                                                "so a rerun starts over: pass storage="):
        search(objective, SPACE, "grid", n_trials=3)


@pytest.mark.parametrize("strategy", ["grid", "bayes"])
def test_interrupted_trial_runs_again_on_resume(tmp_path, strategy):
    url = f"sqlite:///{tmp_path}/s.db"
    n = {"calls": 0}

    def objective(p):
        n["calls"] += 1
        if n["calls"] == 4:
            raise KeyboardInterrupt
        return bowl(p)

    with pytest.raises(KeyboardInterrupt) as err:
        search(objective, SPACE, strategy, n_trials=6, seed=0, storage=url)
    assert str(err.value).startswith(f"search stopped by KeyboardInterrupt: 3 of 6 trials finished and kept in "
                                     f"'{url}'")
    result = search(bowl, SPACE, strategy, n_trials=6, seed=0, storage=url)
    assert len(result.trials) == 6 and not result.failed and result.retried == [3]
    assert len(set(keys(result.trials))) == 6
    # a fresh sampler per trial, seeded by the trial's place: the GP search too runs the same trials
    assert keys(result.trials) == keys(search(bowl, SPACE, strategy, n_trials=6, seed=0).trials)


KILLED = """
import sys, time
from lecture_utils.search import search
sys.path.insert(0, {tests!r})
from test_search import SPACE, bowl
calls = 0
def objective(p):
    global calls
    calls += 1
    if calls == 4:
        open({marker!r}, "w").write(repr(p))
        time.sleep(120)
    time.sleep(0.05)
    return bowl(p)
search(objective, SPACE, {strategy!r}, n_trials={n}, seed=1, storage={url!r})
"""


@pytest.mark.parametrize("strategy", ["grid", "random"])
def test_a_killed_study_resumes_with_every_finished_trial_once(tmp_path, strategy):
    n = 9 if strategy == "grid" else 8
    url, marker = f"sqlite:///{tmp_path}/s.db", tmp_path / "killed-in-trial"
    code = KILLED.format(tests=os.path.dirname(__file__), marker=str(marker), strategy=strategy, n=n, url=url)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=os.path.dirname(
        os.path.dirname(os.path.abspath(__file__))))
    deadline = time.time() + 60
    while not marker.exists():
        assert proc.poll() is None, "the study's process ended before the kill"
        assert time.time() < deadline, "the study did not reach its fourth trial"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stored = optuna.load_study(study_name=optuna.get_all_study_names(url)[0], storage=url)
    before = {t.number: (t.params, t.value) for t in stored.trials if t.state.name == "COMPLETE"}
    running = [t for t in stored.trials if t.state.name == "RUNNING"]
    assert len(before) == 3 and len(running) == 1  # killed inside its fourth trial

    result = search(bowl, SPACE, strategy, n_trials=n, seed=1, storage=url)
    assert len(result.trials) == n and not result.failed
    assert len(set(keys(result.trials))) == n  # no trial repeated
    numbers = [t.number for t in result.trials]
    for number, (params, value) in before.items():  # every trial finished before the kill, once, as it was
        assert numbers.count(number) == 1
        kept = result.trials[numbers.index(number)]
        assert kept.params == params and kept.value == value
    assert result.retried == [running[0].number]  # the killed trial ran again, with its parameters
    assert running[0].params in [t.params for t in result.trials]
    # the same trials as a search that was never interrupted
    assert keys(result.trials) == keys(search(bowl, SPACE, strategy, n_trials=n, seed=1).trials)


STOPPED = """
import sys, time
sys.path.insert(0, {tests!r})
from lecture_utils.search import search
from test_search import SPACE, bowl
calls = 0
def objective(p):
    global calls
    calls += 1
    if calls == 3:
        open({marker!r}, "w").close()
        time.sleep(60)
    return bowl(p)
search(objective, SPACE, "random", n_trials=8, seed=1, storage={url!r})
"""


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_a_search_stopped_by_a_signal_says_so_and_resumes_whole(tmp_path, how):
    how = getattr(signal, how)
    url, marker = f"sqlite:///{tmp_path}/s.db", tmp_path / "in-third-trial"
    code = STOPPED.format(tests=os.path.dirname(__file__), marker=str(marker), url=url)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    deadline = time.time() + 60
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "the search did not reach its third trial"
        time.sleep(0.05)
    proc.send_signal(how)
    out, err = proc.communicate(timeout=30)
    line = f"search stopped by {how.name}: 2 of 8 trials finished and kept in '{url}'"
    if how == signal.SIGINT:  # a KeyboardInterrupt: Python ends as Ctrl-C ends it, its last line says the rest
        assert proc.returncode == -signal.SIGINT and line in err.strip().splitlines()[-1]
    else:  # one line, no traceback, the exit status of the signal (as the runner's)
        assert proc.returncode == 128 + how, err
        assert err.strip().startswith(line) and len(err.strip().splitlines()) == 1
    assert "run the same search again to resume" in err
    stored = optuna.load_study(study_name=optuna.get_all_study_names(url)[0], storage=url)
    assert sorted(t.state.name for t in stored.trials) == ["COMPLETE", "COMPLETE", "FAIL"]

    result = search(bowl, SPACE, "random", n_trials=8, seed=1, storage=url)
    assert len(result.trials) == 8 and not result.failed and result.retried == [2]
    assert keys(result.trials) == keys(search(bowl, SPACE, "random", n_trials=8, seed=1).trials)
