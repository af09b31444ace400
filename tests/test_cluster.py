"""Batch runs on Ray: a local instance started and stopped by these tests (2 CPUs); searches on Ray are in
tests/test_cluster_search.py.

One Ray instance serves the whole module (starting one costs 5-20 s on 2 cores); the batch-run test
joins it by address, as a user joins a cluster.
"""

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install -e '.[cluster]'")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "tests" / "notebooks"


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


def test_a_bad_address_is_a_clear_error():
    from lecture_utils.course.cluster import _check_reachable

    with pytest.raises(ValueError, match="is not 'auto', 'HOST:PORT'"):
        _check_reachable("headnode")


# --- an address that accepts connections but is not a Ray head (issue: a 13.7-minute hang) ----------------------


@pytest.fixture
def web_server():
    """A web server on a free loopback port (what a mistyped port often reaches): its port."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail("the web server did not start")
            time.sleep(0.1)
    yield port
    proc.kill()
    proc.wait()


@pytest.fixture
def silent_listener():
    """A port that accepts connections and never says a word: (its port, the listening socket)."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    yield s.getsockname()[1], s
    s.close()


def test_a_web_server_is_not_joined_as_ray(web_server):
    from lecture_utils.course.cluster import ray_session

    if ray.is_initialized():
        pytest.skip("a Ray session is open in this process")
    t = time.perf_counter()
    with pytest.raises(ConnectionError, match=f"127.0.0.1:{web_server}: it is not a Ray head"):
        with ray_session(f"127.0.0.1:{web_server}"):
            pass
    assert time.perf_counter() - t < 5 and not ray.is_initialized()


def test_a_listener_that_never_answers_is_given_up_within_seconds(silent_listener):
    from lecture_utils.course.cluster import CONNECT_SECONDS, ray_session

    port, _ = silent_listener
    t = time.perf_counter()
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        with pytest.raises(ConnectionError, match="does not answer as Ray's head within"):
            with ray_session(address):
                pass
    assert time.perf_counter() - t < 2 * CONNECT_SECONDS + 4 and not ray.is_initialized()


def tagged(tag):
    """Process ids whose environment holds LECTURE_TEST_RUN_TAG=tag (a process of the run left behind)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and f"LECTURE_TEST_RUN_TAG={tag}".encode() in \
                    (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.skipif(not Path("/proc/self/environ").is_file(), reason="needs Linux's /proc")
def test_run_ray_on_a_web_server_fails_in_one_line_within_seconds(web_server, tmp_path):
    tag = uuid.uuid4().hex
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "lecture_utils", "run", str(NOTEBOOKS / "demo.ipynb"), "--profile", "smoke",
         "--out", str(tmp_path / "out"), "--ray", f"127.0.0.1:{web_server}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, "LECTURE_TEST_RUN_TAG": tag})
    assert time.perf_counter() - t < 30  # Python and the CLI start included; the probe answers at once
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert f"cannot join the Ray cluster at 127.0.0.1:{web_server}: it is not a Ray head" in proc.stderr
    assert tagged(tag) == []  # nothing of the run lives on


@pytest.mark.skipif(not Path("/proc/self/environ").is_file(), reason="needs Linux's /proc")
def test_sigterm_while_waiting_for_an_address_acts_at_once(silent_listener, tmp_path):
    import signal

    port, listener = silent_listener
    proc = subprocess.Popen(
        [sys.executable, "-m", "lecture_utils", "run", str(NOTEBOOKS / "demo.ipynb"), "--profile", "smoke",
         "--out", str(tmp_path / "out"), "--ray", f"127.0.0.1:{port}"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    listener.settimeout(60)
    connection, _ = listener.accept()  # the runner is in its probe, waiting for an answer
    t = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    connection.close()
    assert time.perf_counter() - t < 2
    assert proc.returncode == 143 and "INTERRUPTED: SIGTERM" in stderr and "Traceback" not in stderr, stderr


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray instance for this module: 2 CPUs, no dashboard; its address for joining it."""
    context = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="error",
                       object_store_memory=128 * 2**20, _node_ip_address="127.0.0.1")
    yield context.address_info["gcs_address"]
    ray.shutdown()


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

