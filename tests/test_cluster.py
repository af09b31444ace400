"""Searches and batch runs on Ray: a local instance started and stopped by these tests (2 CPUs).

One Ray instance serves the whole module (starting one costs 5-20 s on 2 cores); the batch-run test
joins it by address, as a user joins a cluster.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install -e '.[cluster]'")

from lecture_utils.search import search  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "tests" / "notebooks"
SPACE = {"lr": ("log", 1e-3, 1.0), "width": ("int", 8, 64)}
# Ray's workers cannot import this test module: send its functions by value, as a notebook's are.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def test_unreachable_cluster_fails_within_seconds():
    import socket

    with socket.socket() as s:  # a port on this machine that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    from lecture_utils.course.cluster import ray_session

    if ray.is_initialized():
        pytest.skip("a Ray session is open in this process")
    t = time.perf_counter()
    with pytest.raises(ConnectionError, match=f"cannot reach the Ray cluster at 127.0.0.1:{port}"):
        with ray_session(f"127.0.0.1:{port}"):
            pass
    assert time.perf_counter() - t < 10


def test_bad_resources_and_address_are_clear_errors():
    from lecture_utils.course.cluster import _check_reachable, _task_options

    with pytest.raises(ValueError, match="unknown resources memory"):
        _task_options({"memory": 4})
    with pytest.raises(ValueError, match="must be a number >= 0"):
        _task_options({"cpu": -1})
    with pytest.raises(ValueError, match="is not 'auto', 'HOST:PORT'"):
        _check_reachable("headnode")


def test_engine_ray_without_ray_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(ImportError, match=r'pip install -e "\.\[cluster\]"'):
        search(bowl, SPACE, strategy="grid", n_trials=2, engine="ray")


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray instance for this module: 2 CPUs, no dashboard; its address for joining it."""
    context = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="error",
                       object_store_memory=128 * 2**20, _node_ip_address="127.0.0.1")
    yield context.address_info["gcs_address"]
    ray.shutdown()


def bowl(params):
    """A smooth objective with its minimum at lr = 0.03, width = 32."""
    import math

    return (math.log10(params["lr"]) - math.log10(0.03)) ** 2 + ((params["width"] - 32) / 32) ** 2


def test_ray_grid_search_equals_in_process(local_ray):
    local = search(bowl, SPACE, strategy="grid", n_trials=9, seed=0)
    on_ray = search(bowl, SPACE, strategy="grid", n_trials=9, seed=0, engine="ray", max_concurrent=2)
    assert len(on_ray.trials) == len(local.trials) == 9
    assert not on_ray.failed
    assert on_ray.best_value == local.best_value
    assert on_ray.best_params == local.best_params
    assert sorted(t.value for t in on_ray.trials) == sorted(t.value for t in local.trials)


def test_trials_run_two_at_a_time(local_ray):
    def slow(params):
        import os
        import time

        start = time.time()
        time.sleep(1.0)
        return float(os.getpid()) + 0 * start

    t = time.perf_counter()
    result = search(slow, SPACE, strategy="random", n_trials=4, seed=1, engine="ray", max_concurrent=2)
    wall = time.perf_counter() - t
    assert len(result.trials) == 4 and not result.failed
    assert len({t.value for t in result.trials}) == 2  # two worker processes shared the four trials
    assert wall < 4.0  # four 1-second trials, two at a time: about 2 s, not 4


def test_killed_worker_fails_its_trial_and_the_study_goes_on(local_ray):
    def fragile(params):
        import os
        import signal

        if params["width"] == 8:  # one grid column: its worker process is killed mid-trial
            os.kill(os.getpid(), signal.SIGKILL)
        return params["lr"]

    result = search(fragile, SPACE, strategy="grid", n_trials=9, seed=0, engine="ray", max_concurrent=2)
    assert len(result.trials) == 9
    killed = [t for t in result.trials if t.params["width"] == 8]
    assert killed and all(t.state == "failed" and "worker" in t.error for t in killed)
    assert all(t.state == "complete" for t in result.trials if t.params["width"] != 8)
    assert result.best_value == min(t.params["lr"] for t in result.trials if t.params["width"] != 8)


def test_objective_errors_and_nan_are_failed_trials(local_ray):
    def picky(params):
        if params["width"] > 50:
            raise RuntimeError("out of memory (planted)")
        return float("nan") if params["width"] < 20 else params["lr"]

    result = search(picky, SPACE, strategy="grid", n_trials=9, seed=0, engine="ray")
    states = {t.params["width"]: (t.state, t.error) for t in result.trials}
    assert states[64][0] == "failed" and "out of memory (planted)" in states[64][1]
    assert states[8][0] == "failed" and "nan" in states[8][1].lower()
    assert states[36][0] == "complete"


def test_ray_search_resumes_a_stored_study(local_ray, tmp_path):
    storage = f"sqlite:///{tmp_path / 'search.db'}"
    first = search(bowl, SPACE, strategy="random", n_trials=3, seed=2, storage=storage, engine="ray")
    again = search(bowl, SPACE, strategy="random", n_trials=5, seed=2, storage=storage, engine="ray")
    assert [t.number for t in again.trials] == [0, 1, 2, 3, 4]
    assert [t.params for t in again.trials[:3]] == [t.params for t in first.trials]


def test_runner_on_ray_runs_demo_and_failing_notebook(local_ray, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "LECTURE_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "lecture_utils", "run", str(NOTEBOOKS / "demo.ipynb"), str(NOTEBOOKS / "failing.ipynb"),
         "--profile", "smoke", "--out", str(out), "--ray", local_ray],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    rows = {r["notebook"]: r for r in json.loads((out / "summary.json").read_text())}
    assert rows["demo"]["status"] == "ok"
    assert rows["failing"]["status"] == "failed"
    assert "cell" in rows["failing"]["error"]
    assert (out / "demo.ipynb").is_file() and (out / "failing.ipynb").is_file()
    assert "ray" in proc.stdout.lower()


def test_runner_ray_unreachable_address_fails_fast(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "lecture_utils", "run", str(NOTEBOOKS / "demo.ipynb"), "--profile", "smoke",
         "--out", str(tmp_path / "out"), "--ray", f"127.0.0.1:{port}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert f"cannot reach the Ray cluster at 127.0.0.1:{port}" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
    assert time.perf_counter() - t < 30  # Python and the CLI start included; the connection gives up in 5 s

