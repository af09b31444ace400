"""The runner killed as CI, ``timeout`` or a closed terminal kill it: nothing of its run may live on.

Each test starts ``python -m lecture_utils run`` on a notebook that sleeps,
waits until its kernel runs, signals the runner, and then looks at every
process on the machine (``/proc``) for the run's tag, an environment variable
that the worker and the kernel inherit. Linux only (``/proc``).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from lecture_utils.course import runner
from lecture_utils.course.cli import main

HERE = Path(__file__).parent
SLEEPER = HERE / "notebooks" / "faults" / "sleeper.ipynb"
TAG = "LECTURE_TEST_RUN_TAG"

needs_proc = pytest.mark.skipif(not Path("/proc/self/environ").is_file(), reason="needs Linux's /proc")


def processes_with(tag):
    """Process ids whose environment holds ``TAG=tag`` (zombies, dead but not yet reaped, do not count)."""
    found = []
    needle = f"{TAG}={tag}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0") and \
                    "zombie" not in (entry / "status").read_text():
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def start_sleeping_run(tmp_path, *options, env=None):
    """The runner on the sleeper notebook (600 s), once its kernel runs: (process, tag, out, temp folder, kernel)."""
    tag, out, tmp = uuid.uuid4().hex, tmp_path / "runs", tmp_path / "tmp"
    tmp.mkdir()
    pid_file = tmp_path / "kernel.pid"
    env = {**os.environ, TAG: tag, "TMPDIR": str(tmp), "OMP_NUM_THREADS": "1", **(env or {})}
    proc = subprocess.Popen([sys.executable, "-m", "lecture_utils", "run", str(SLEEPER), "--profile", "smoke",
                             "--out", str(out), "-p", "SLEEP", "600", "-p", "PID_FILE", str(pid_file), *options],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + (240 if options else 120)  # a local Ray instance starts first
    while not (pid_file.is_file() and pid_file.read_text()):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the kernel never started: {proc.communicate()}")
        time.sleep(0.2)
    kernel = int(pid_file.read_text())
    assert kernel in processes_with(tag) and len(processes_with(tag)) >= 3  # runner, worker, kernel: found by the tag
    return proc, tag, out, tmp, kernel


def assert_nothing_left(tag, tmp, seconds=10):
    deadline = time.monotonic() + seconds
    while processes_with(tag) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_with(tag) == [], f"processes of the run still alive {seconds} s after its runner went"
    assert list(tmp.iterdir()) == []  # the temporary folder and the kernel's connection file are gone


@needs_proc
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_sigterm_sighup_and_ctrl_c_stop_the_kernel_mark_it_interrupted_and_write_the_summary(tmp_path, sig):
    proc, tag, out, tmp, kernel = start_sleeping_run(tmp_path)
    started = time.monotonic()
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=30)
    assert time.monotonic() - started < 10  # not the 600 s of the notebook, nor the 300 s --timeout
    assert proc.returncode == 128 + sig, stdout + stderr
    assert_nothing_left(tag, tmp)
    row = json.loads((out / "summary.json").read_text())[0]
    name = signal.Signals(sig).name
    how = "Ctrl-C" if sig == signal.SIGINT else name
    assert row["status"] == "interrupted" and row["stopped_by"] == name
    assert row["error"].startswith(f"{how} after ") and row["error"].endswith(" s in cell 3")
    assert f"| sleeper | interrupted: {how} after" in (out / "summary.md").read_text()
    assert f"INTERRUPTED: sleeper: {how} after" in stderr
    kept = json.loads((out / "sleeper.ipynb").read_text())
    note = "".join(kept["cells"][0]["source"])
    assert note.startswith(f"**Interrupted ({how})** after ") and " in cell 3: " in note  # as a timed-out copy
    assert "started" in json.dumps(kept["cells"][4]["outputs"])


@needs_proc
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_on_ray_sigterm_and_sighup_exit_as_the_local_runner_does(tmp_path, sig):
    """``run --ray``: SIGTERM exits 143 and SIGHUP 129 (schedulers such as SLURM read them), the summary names
    the signal, the terminal gets a line, and nothing of the run (Ray's processes included) lives on."""
    pytest.importorskip("ray", reason="Ray is an optional extra: pip install -e '.[cluster]'")
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay short: not under TMPDIR
    try:
        check_ray_run_stops(tmp_path, sig, ray_tmp)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


def check_ray_run_stops(tmp_path, sig, ray_tmp):
    proc, tag, out, tmp, kernel = start_sleeping_run(tmp_path, "--ray", env={"RAY_TMPDIR": ray_tmp})
    started = time.monotonic()
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    name = signal.Signals(sig).name
    assert proc.returncode == 128 + sig, stdout + stderr
    assert time.monotonic() - started < 60  # the task is cancelled and Ray stopped, not the notebook's 600 s
    row = json.loads((out / "summary.json").read_text())[0]
    assert row["status"] == "interrupted" and row["stopped_by"] == name and row["error"].startswith(name)
    assert f"| sleeper | interrupted: {name}" in (out / "summary.md").read_text()
    assert f"INTERRUPTED: sleeper: {name}" in stderr and f"{name}: cancelling 1 running notebook" in stdout
    deadline = time.monotonic() + 30
    while processes_with(tag) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert processes_with(tag) == [], "processes of the run (its kernel, Ray's) still alive 30 s after it ended"


@needs_proc
def test_sigkill_of_the_runner_takes_worker_kernel_and_temp_folder_with_it(tmp_path):
    proc, tag, out, tmp, kernel = start_sleeping_run(tmp_path)
    proc.kill()  # SIGKILL: no handler runs in the runner
    proc.communicate(timeout=30)
    assert_nothing_left(tag, tmp)


@needs_proc
def test_a_worker_started_by_a_parent_that_is_already_gone_exits_at_once(tmp_path):
    """The race before the parent-death signal is armed: the worker checks its parent itself, and cleans up."""
    scratch = tmp_path / "lecture_run_x"
    scratch.mkdir()
    job = {"input": str(SLEEPER), "output": str(tmp_path / "o.ipynb"), "result": str(scratch / "r.json"),
           "tmp": str(scratch), "parent": 1, "parameters": "{}"}  # "parent" is not its parent
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "lecture_utils.course.worker", json.dumps(job)], capture_output=True,
                          timeout=60)
    assert proc.returncode == 1 and time.monotonic() - started < 30
    assert not scratch.exists() and not (tmp_path / "o.ipynb").exists()


# --- a read-only --out -------------------------------------------------------------------------------------


@pytest.fixture
def nothing_runs(monkeypatch):
    ran = []
    monkeypatch.setattr(runner, "run_notebook", lambda *a, **k: ran.append(a) or pytest.fail("a notebook ran"))
    return ran


def read_only(monkeypatch, folder):
    """``folder`` read-only as ``os.access`` sees it (root ignores permission bits, so a chmod would not do)."""
    real = os.access
    monkeypatch.setattr(runner.os, "access",
                        lambda p, mode, **k: False if mode & os.W_OK and Path(p) == folder else real(p, mode, **k))


@pytest.mark.parametrize("under", [False, True])
def test_a_read_only_out_folder_is_refused_in_one_line_before_any_notebook_runs(tmp_path, monkeypatch, capsys,
                                                                                nothing_runs, under):
    ro = tmp_path / "ro"
    ro.mkdir()
    read_only(monkeypatch, ro)
    out = ro / "runs" if under else ro
    with pytest.raises(SystemExit) as info:
        main(["run", str(SLEEPER), "--out", str(out)])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1 and "Traceback" not in err
    where = f"{ro} is" if under else "it is"
    assert f"cannot write to --out {out}: {where} read-only; choose a writable --out folder" in err
    assert not nothing_runs and list(ro.iterdir()) == []


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores permission bits")
def test_a_really_read_only_out_folder(tmp_path, capsys, nothing_runs):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(SystemExit):
            main(["run", str(SLEEPER), "--out", str(ro / "runs")])
    finally:
        ro.chmod(0o755)
    assert f"cannot write to --out {ro / 'runs'}: {ro} is read-only" in capsys.readouterr().err


def test_an_out_path_through_a_file_is_refused(tmp_path, capsys, nothing_runs):
    (tmp_path / "f").write_text("")
    with pytest.raises(SystemExit):
        main(["run", str(SLEEPER), "--out", str(tmp_path / "f" / "runs")])
    assert f"{tmp_path / 'f'} is a file, not a folder" in capsys.readouterr().err
