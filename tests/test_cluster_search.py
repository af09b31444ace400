"""Searches on Ray (lecture_utils.course.ray_search): a local instance started and stopped by these tests (2 CPUs).

One Ray instance serves the module (starting one costs 10-20 s on 2 cores); the stopped searches run in
child processes, which join it by address as a user joins a cluster, except one that starts its own.
"""

import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install -e '.[cluster]'")
optuna = pytest.importorskip("optuna")

from lecture_utils.course.ray_search import RayEngine  # noqa: E402
from lecture_utils.search import search  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SPACE = {"lr": ("log", 1e-3, 1.0), "width": ("int", 8, 64)}
# Ray's workers cannot import this test module: send its functions by value, as a notebook's are.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def bowl(params):
    """A smooth objective with its minimum at lr = 0.03, width = 32."""
    return (math.log10(params["lr"]) - math.log10(0.03)) ** 2 + ((params["width"] - 32) / 32) ** 2


def keys(trials):
    return sorted(tuple(sorted(t.params.items())) for t in trials)


# ---------------------------------------------------------------- without a Ray instance

def test_ray_engine_without_ray_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(ImportError, match=r'pip install -e "\.\[cluster\]"'):
        RayEngine()


@pytest.mark.parametrize("kwargs, words", [
    (dict(resources_per_trial={"memory": 4}), "unknown resources memory: allowed are 'cpu' and 'gpu'"),
    (dict(resources_per_trial={"cpu": -1}), "resources_per_trial['cpu'] must be a number >= 0"),
    (dict(resources_per_trial=2), "resources_per_trial must be a dict"),
    (dict(max_concurrent=0), "max_concurrent must be None or an int >= 1"),
    (dict(num_cpus=1.5), "num_cpus must be None or an int >= 1"),
    (dict(address=6379), "address must be None, 'auto', 'HOST:PORT'"),
])
def test_bad_engine_options_are_refused_before_any_work(kwargs, words):
    with pytest.raises(ValueError) as err:
        RayEngine(**kwargs)
    assert words in str(err.value) and len(str(err.value).splitlines()) == 1


def test_search_imports_nothing_of_the_course_tooling():
    code = ("import sys; from lecture_utils.search import search; "
            "search(lambda p: p['x'], {'x': ('linear', 0, 1)}, 'grid', n_trials=2); "
            "print(sorted(m for m in sys.modules if m.startswith('lecture_utils.course')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------- on a local instance

@pytest.fixture(scope="module")
def local_ray():
    """A local Ray instance for this module: 2 CPUs, no dashboard; its address for joining it."""
    context = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="error",
                       object_store_memory=128 * 2**20, _node_ip_address="127.0.0.1")
    yield context.address_info["gcs_address"]
    ray.shutdown()


def test_ray_grid_search_equals_in_process(local_ray):
    local = search(bowl, SPACE, strategy="grid", n_trials=9, seed=0)
    on_ray = search(bowl, SPACE, strategy="grid", n_trials=9, seed=0, engine=RayEngine(max_concurrent=2))
    assert len(on_ray.trials) == len(local.trials) == 9
    assert not on_ray.failed
    assert on_ray.best_value == local.best_value
    assert on_ray.best_params == local.best_params
    assert sorted(t.value for t in on_ray.trials) == sorted(t.value for t in local.trials)


def test_trials_run_two_at_a_time_and_draw_what_a_search_in_process_draws(local_ray):
    def slow(params):
        import os
        import time

        time.sleep(1.0)
        return float(os.getpid())

    t = time.perf_counter()
    result = search(slow, SPACE, strategy="random", n_trials=4, seed=1, engine=RayEngine(max_concurrent=2))
    wall = time.perf_counter() - t
    assert len(result.trials) == 4 and not result.failed
    assert len({t.value for t in result.trials}) == 2  # two worker processes shared the four trials
    assert wall < 4.0  # four 1-second trials, two at a time: about 2 s, not 4
    # seeded per trial: the threads' order does not change what each trial draws
    assert [t.params for t in result.trials] == [t.params for t in search(bowl, SPACE, "random", 4, seed=1).trials]


def test_a_trial_whose_worker_is_killed_runs_again_and_the_search_finishes_whole(local_ray, tmp_path):
    marker = str(tmp_path / "killed")

    def fragile(params):
        import os
        import signal

        if params["width"] == 8 and not os.path.exists(marker):  # the first trial of one grid column, once
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)  # its worker process dies mid-trial
        return params["lr"]

    storage = f"sqlite:///{tmp_path / 'search.db'}"
    result = search(fragile, SPACE, strategy="grid", n_trials=9, seed=0, storage=storage,
                    engine=RayEngine(max_concurrent=2))
    assert os.path.exists(marker)  # a worker was killed
    assert len(result.trials) == 9 and not result.failed  # ... and its trial ran again, to the count asked for
    assert len(result.retried) == 1
    killed = optuna.load_study(study_name=result.study_name, storage=storage).trials[result.retried[0]]
    assert killed.state.name == "FAIL" and killed.params["width"] == 8
    rerun = [t for t in result.trials if t.params == killed.params]
    assert len(rerun) == 1 and rerun[0].state == "complete" and rerun[0].number > killed.number
    assert keys(result.trials) == keys(search(bowl, SPACE, "grid", n_trials=9, seed=0).trials)
    assert result.best_value == min(t.params["lr"] for t in result.trials)

    def never(params):
        raise AssertionError("the study is whole: a resume runs nothing")

    again = search(never, SPACE, strategy="grid", n_trials=9, seed=0, storage=storage)
    assert [(t.number, t.value) for t in again.trials] == [(t.number, t.value) for t in result.trials]


def test_a_trial_whose_worker_always_dies_fails_after_its_retries(local_ray):
    from lecture_utils.search import MAX_RETRIES

    def doomed(params):
        import os
        import signal

        if params["width"] == 8:
            os.kill(os.getpid(), signal.SIGKILL)
        return params["width"]

    result = search(doomed, {"width": ("int", 8, 64)}, strategy="grid", n_trials=2, seed=0,
                    engine=RayEngine(max_concurrent=2))
    assert sorted((t.params["width"], t.state) for t in result.trials) == [(8, "failed"), (64, "complete")]
    dead = result.failed[0]
    runs = MAX_RETRIES + 1
    assert f"its Ray worker process died while it ran, {runs} times in {runs} runs" in dead.error
    assert len(result.retried) == MAX_RETRIES  # each earlier run of it, hidden from the result
    assert len(result.study.trials) == 1 + runs
    assert result.best_value == 64


def test_objective_errors_and_nan_are_failed_trials(local_ray):
    def picky(params):
        if params["width"] > 50:
            raise RuntimeError("out of memory (planted)")
        return float("nan") if params["width"] < 20 else params["lr"]

    result = search(picky, SPACE, strategy="grid", n_trials=9, seed=0, engine=RayEngine())
    states = {t.params["width"]: (t.state, t.error) for t in result.trials}
    assert states[64] == ("failed", "RuntimeError: out of memory (planted)")
    assert states[8][0] == "failed" and "nan" in states[8][1].lower()
    assert states[36][0] == "complete"
    assert not result.retried  # an objective that raises is not run again


def test_ray_search_resumes_a_stored_study(local_ray, tmp_path):
    storage = f"sqlite:///{tmp_path / 'search.db'}"
    first = search(bowl, SPACE, strategy="random", n_trials=3, seed=2, storage=storage, engine=RayEngine())
    again = search(bowl, SPACE, strategy="random", n_trials=5, seed=2, storage=storage, engine=RayEngine())
    assert [t.number for t in again.trials] == [0, 1, 2, 3, 4]
    assert [t.params for t in again.trials[:3]] == [t.params for t in first.trials]


# ---------------------------------------------------------------- stopped by a signal, resumed whole

STOPPED = """
import time
from lecture_utils.course.ray_search import RayEngine
from lecture_utils.search import search

def objective(p):  # on a Ray worker: the first two trials finish, the next ones hang until stopped
    import math, time
    with open({started!r}, "a") as f:
        f.write("x\\n")
    with open({started!r}) as f:
        if len(f.read().split()) > 2:
            time.sleep(120)
    time.sleep(0.1)
    return (math.log10(p["lr"]) - math.log10(0.03)) ** 2 + ((p["width"] - 32) / 32) ** 2

search(objective, {space!r}, "random", n_trials=8, seed=1, storage={url!r}, engine=RayEngine({engine}))
"""


def states(url):
    study = optuna.load_study(study_name=optuna.get_all_study_names(url)[0], storage=url)
    return sorted(t.state.name for t in study.trials)


@pytest.mark.parametrize("how, engine, resume_on_ray", [
    (signal.SIGTERM, "num_cpus=2, max_concurrent=2", False),  # its own local instance, as a user's script starts
    (signal.SIGINT, "address={address!r}, max_concurrent=2", True),
    (signal.SIGKILL, "address={address!r}, max_concurrent=2", True),
])
def test_a_stopped_ray_search_resumes_whole(local_ray, tmp_path, how, engine, resume_on_ray):
    url, started = f"sqlite:///{tmp_path}/s.db", tmp_path / "started"
    code = STOPPED.format(started=str(started), space=SPACE, url=url, engine=engine.format(address=local_ray))
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (started.exists() and len(started.read_text().split()) >= 4):  # 2 finished, 2 hanging
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "the search did not start its third and fourth trials"
        time.sleep(0.2)
    time.sleep(0.5)
    assert states(url) == ["COMPLETE", "COMPLETE", "RUNNING", "RUNNING"]
    proc.send_signal(how)
    out, err = proc.communicate(timeout=60)

    if how == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
        assert states(url) == ["COMPLETE", "COMPLETE", "RUNNING", "RUNNING"]  # the driver had no say
    else:  # the running trials were cancelled, marked, and the search said so in one line
        assert proc.returncode == (143 if how == signal.SIGTERM else -signal.SIGINT), err
        assert states(url) == ["COMPLETE", "COMPLETE", "FAIL", "FAIL"]
        line = err.strip().splitlines()[-1]
        assert f"search stopped by {how.name}: 2 of 8 trials finished and kept in '{url}'" in line
        assert "run the same search again to resume" in line
        assert "SIGTERM received" not in err and "PC: @" not in err  # no Ray dump
        if how == signal.SIGTERM:
            assert err.strip() == line  # one line, no traceback

    result = search(bowl, SPACE, "random", n_trials=8, seed=1, storage=url,
                    engine=RayEngine(max_concurrent=2) if resume_on_ray else None)
    assert len(result.trials) == 8 and not result.failed
    assert len(result.retried) == 2  # the two trials that were cut off ran again
    assert keys(result.trials) == keys(search(bowl, SPACE, "random", n_trials=8, seed=1).trials)
