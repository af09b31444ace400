"""Batch runs of the notebooks with papermill, and a summary of what each one measured.

Each notebook runs in a worker process of its own (``lecture_utils.course.worker``)
under a time limit: a notebook that fails, hangs or runs past its limit costs
that notebook only. Its executed copy is kept either way, for inspection.
Ctrl-C, SIGTERM (a CI cancel, ``timeout``) and SIGHUP (a closed terminal)
stop the running notebook, mark it interrupted and write the summary; worker
and kernel never outlive the runner, even one killed with SIGKILL.

Before the first notebook starts, every ``-p NAME VALUE`` is checked against
the notebooks' parameters cells (``parameters.py``: a SIZES entry is set at
every profile). A ``Result`` names the data set the notebook recorded
(``record("dataset", ...)``) beside the one its DATASET asked for, and holds its
recorded numbers and verdicts.

``run_notebook`` runs one notebook and returns its ``Result``: the unit a
distributed runner calls.
"""

import contextlib
import datetime
import difflib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lecture_utils.course.parameters import (NotebookParameters, check_overrides, notebook_parameters,
                                             requested_dataset)
from lecture_utils.course.summary import read_verdicts, summary_markdown, write_summary
from lecture_utils.course.worker import executed_cells, user_cell_index
from lecture_utils.profiles import ENV_VAR as PROFILE_ENV
from lecture_utils.profiles import PROGRESS_ENV, TIME_LIMITS, get_profile
from lecture_utils.record import format_value, read_record_items

STATUSES = ("ok", "failed", "timed out", "interrupted")
GRACE_SECONDS = 5  # after SIGTERM, before SIGKILL
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))

__all__ = ["Result", "find_notebooks", "notebook_parameters", "check_parameters", "run_notebook", "run_all",
           "summary_markdown"]


@dataclass
class Result:
    """How one notebook's run went (a row of the summary)."""

    notebook: str
    status: str  # one of STATUSES
    seconds: float
    output: str
    error: str = ""
    metrics: dict = field(default_factory=dict)  # what it recorded, raw values (rates as fractions)
    recorded: dict = field(default_factory=dict)  # the same as the notebook shows them ("3.92%")
    profile: str = ""
    date: str = ""  # when it finished, UTC, ISO 8601
    dataset: str = ""  # the data set that ran (the notebook's record("dataset", ...)), "" if none was recorded
    dataset_requested: str = ""  # its DATASET parameter (as injected, else the parameters cell's)
    fallback: bool = False  # the data set that ran is not the one requested
    stopped_by: str = ""  # the signal that interrupted it (SIGINT for Ctrl-C, SIGTERM, SIGHUP)
    verdicts: dict = field(default_factory=dict)  # name -> the verdict record_verdict stored (see summary.py)
    cpu: str = ""  # the CPU model of the machine it ran on

    def as_row(self):
        return asdict(self)


class Interrupted(KeyboardInterrupt):
    """A stop signal during a batch run: handled like Ctrl-C."""

    def __init__(self, signum=signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def _stop_signals_interrupt():
    """While notebooks run, SIGINT, SIGTERM and SIGHUP raise ``Interrupted``; signals after the first are ignored.

    The first signal stops the running notebook; later ones must not cut the
    cleanup and the summary short. Outside the main thread signals cannot be handled: nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = []

    def handler(signum, frame):
        if not fired:
            fired.append(signum)
            raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield fired
    finally:
        fired.append(None)  # from here on, ignored until the old handlers are back
        for s, h in previous.items():
            signal.signal(s, h)


def _suggestions(name, candidates):
    """The candidates a mistyped ``name`` probably meant: those it begins (``02_elastic`` -> ``02_elastic_...``),
    else those with its number (``02_``), else the one closest in spelling (difflib, a strict cutoff)."""
    stem = name.removesuffix(".ipynb")
    begun = [c for c in candidates if c.startswith(stem) or stem.startswith(c.removesuffix(".ipynb"))]
    if begun:
        return begun[:3]
    number = stem.split("_")[0]
    if number.isdigit():
        numbered = [c for c in candidates if c.split("_")[0] == number]
        if numbered:
            return numbered[:3]
    return difflib.get_close_matches(name, candidates, n=1, cutoff=0.75)


def _missing_path_message(p, default_dir):
    """``p`` does not exist: say so and name the notebooks (or folders) beside it or in ``default_dir`` it may mean."""
    folders = [f for f in (p.parent, Path(default_dir)) if f.is_dir()]
    candidates = {}
    for folder in folders:
        for q in sorted(folder.iterdir()):
            if not q.name.startswith(".") and (q.suffix == ".ipynb" or q.is_dir()):
                candidates.setdefault(q.name, q)
    close = _suggestions(p.name, list(candidates))
    message = f"{p} does not exist"
    if close:
        message += "; did you mean " + " or ".join(str(candidates[c]) for c in close) + "?"
    return message


def find_notebooks(paths, default_dir):
    """The notebooks named in ``paths`` (files or folders), or every notebook in ``default_dir``."""
    paths = [Path(p) for p in paths] or [Path(default_dir)]
    found = []
    for p in paths:
        if p.is_dir():
            found += sorted(q for q in p.glob("*.ipynb") if not q.name.startswith("."))
        elif p.suffix == ".ipynb" and p.is_file():
            found.append(p)
        elif not p.exists():
            raise ValueError(_missing_path_message(p, default_dir))
        else:
            raise ValueError(f"{p} is not a notebook (.ipynb) or a folder of notebooks")
    if not found:
        raise ValueError(f"no notebooks found in {', '.join(map(str, paths))}")
    return found


def check_parameters(notebooks, parameters, profile="default"):
    """``({notebook: what papermill injects}, {notebook: why it cannot be read})``, before anything runs.

    Each notebook gets the ``-p`` names its parameters cell has, checked
    (``parameters.check_overrides``); a name no notebook has, a bad value or
    ``-p PROFILE`` is a ValueError.
    """
    read, unreadable = {}, {}
    for nb in notebooks:
        try:
            read[nb] = notebook_parameters(nb)
        except ValueError as err:
            unreadable[nb] = str(err)
            read[nb] = NotebookParameters(nb)
    return check_overrides(read, parameters or {}, profile), unreadable


def check_out_dir(out_dir):
    """Create ``out_dir`` and make sure files can be written there; else a one-line ValueError naming the folder."""
    out_dir = Path(out_dir)
    existing = next((p for p in [out_dir, *out_dir.parents] if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise ValueError(f"cannot write to --out {out_dir}: {existing} is a file, not a folder")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        where = "it is" if existing == out_dir else f"{existing} is"
        raise ValueError(f"cannot write to --out {out_dir}: {where} read-only; choose a writable --out folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as err:
        raise ValueError(f"cannot write to --out {out_dir}: {err.strerror or err}; "
                         "choose a writable --out folder") from None


def run_notebook(path, profile, out_dir, parameters=None, timeout=None):
    """Execute one notebook in a worker process, in the notebook's folder: its ``Result`` (no raise for a cell error).

    The worker is stopped after ``timeout`` seconds (None: no limit), or on
    Ctrl-C / SIGTERM / SIGHUP; the executed copy so far is kept, with a note
    at its top. The temporary folder is removed in every case (by the worker if this process dies).
    """
    path = Path(path).resolve()
    requested = requested_dataset(path, parameters or {})
    out = Path(out_dir).resolve() / path.name
    if out == path:
        raise ValueError(f"the executed copy of {path} would overwrite it: choose another --out folder")
    package_root = str(Path(__file__).resolve().parents[2])
    stopped_by = ""
    with tempfile.TemporaryDirectory(prefix="lecture_run_") as tmp:
        env = {**os.environ, PROFILE_ENV: profile, PROGRESS_ENV: "0", "JUPYTER_RUNTIME_DIR": str(Path(tmp) / "jupyter"),
               "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
        job = {"input": str(path), "output": str(out), "result": str(Path(tmp) / "result.json"), "tmp": tmp,
               "parent": os.getpid(),
               "parameters": repr({"PROFILE": profile, **(parameters or {})})}  # Python literals, read back as such
        log = Path(tmp) / "worker.log"
        start, started_at = time.perf_counter(), time.time()
        proc = None
        try:
            with open(log, "wb") as log_file:
                proc = subprocess.Popen([sys.executable, "-m", "lecture_utils.course.worker", json.dumps(job)], env=env,
                                        stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
                proc.wait(timeout=timeout)
            status, error = _worker_outcome(proc.returncode, Path(job["result"]), log)
        except subprocess.TimeoutExpired:
            _stop(proc)
            status, error = "timed out", _mark_stopped(out, "Timed out", f"after {timeout:g} s",
                                                       "stopped this notebook (`--timeout`)")
        except KeyboardInterrupt as err:
            _stop(proc)
            stopped_by = err.args[0] if isinstance(err, Interrupted) else "SIGINT"
            how = "Ctrl-C" if stopped_by == "SIGINT" else stopped_by
            where = _mark_stopped(out, f"Interrupted ({how})", f"after {time.perf_counter() - start:.0f} s",
                                  "was stopped while this notebook ran")
            status, error = "interrupted", f"{how} {where}"
        seconds = time.perf_counter() - start
    return _result(path.stem, status, seconds, out, error, profile, stopped_by, since=started_at, requested=requested)


def _result(name, status, seconds, out, error, profile, stopped_by="", since=None, requested=""):
    """The ``Result``, with what the executed copy ``out`` recorded if it was written ``since`` (a time.time()).

    A copy left by an earlier run (this run failed before writing one) is not read; ``since=None``: nothing is read.
    ``requested``: the data set the run asked for (else a recorded ``dataset_requested``, as older notebooks have).
    """
    fresh = since is not None and _mtime(out) >= since - 1
    items = _records(out) if fresh else {}
    metrics = {k: v["value"] for k, v in items.items()}
    recorded = {k: format_value(v["value"], v["percent"]) for k, v in items.items()}
    used, requested = str(metrics.get("dataset", "")), requested or str(metrics.get("dataset_requested", ""))
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return Result(name, status, round(seconds, 1), str(out), error, metrics, recorded, profile, date, used, requested,
                  is_fallback(used, requested), stopped_by, _verdicts(out) if fresh else {}, cpu_model())


def cpu_model():
    """This machine's CPU as /proc/cpuinfo names it (``AMD EPYC 7B13``), else what ``platform`` says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def is_fallback(used, requested):
    """Whether the data set that ran is another one than requested; a qualifier (``"cifar10 (JPEG copy)"``) is not."""
    return bool(used and requested) and used.split(" (")[0].strip() != requested.strip()


def _stop(proc):
    """SIGTERM the worker's process group (the worker then kills its kernel), SIGKILL it after a grace period."""
    if proc is None or proc.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            break
        try:
            proc.wait(timeout=GRACE_SECONDS)
            return
        except subprocess.TimeoutExpired:
            continue
    proc.wait()


def _worker_outcome(returncode, result_file, log):
    """("ok", "") or ("failed", the cell and the error's last line) from what the worker left."""
    if result_file.is_file():
        error = json.loads(result_file.read_text()).get("error", "")
        return ("failed" if error else "ok"), error
    tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
    return "failed", f"the worker exited with code {returncode} before reporting: {tail[0]}"


def _mark_stopped(out, headline, when, what):
    """Say where the notebook was stopped, and note it at the top of the kept copy (rewritten atomically).

    Cells are counted as in the user's notebook: papermill's injected cell is not counted.
    """
    try:
        nb = json.loads(out.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"{when} (no readable executed copy)"
    where = ""
    for index, cell in enumerate(executed_cells(nb)):
        if cell.get("metadata", {}).get("papermill", {}).get("status") == "running":
            count = cell.get("execution_count")
            where = f" in cell {user_cell_index(nb, index)}" + (f" (In [{count}])" if count else "")
            break
    note = {"cell_type": "markdown", "metadata": {"tags": ["lecture-utils-stopped"]},
            "source": f"**{headline}** {when}{where}: `python -m lecture_utils run` {what}. "
                      "The cells below show what ran before."}
    if "id" in (nb.get("cells") or [{}])[0]:
        note["id"] = "lecture-utils-stopped"
    nb["cells"] = [note, *nb.get("cells", [])]
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(nb, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, out)
    return f"{when}{where}"


def _mtime(path):
    try:
        return path.stat().st_mtime
    except OSError:
        return float("-inf")


def _records(out):
    """What the executed copy recorded; nothing if it is missing or half-written."""
    try:
        return read_record_items(out) if out.is_file() else {}
    except ValueError:
        return {}


def _verdicts(out):
    """The verdicts the executed copy recorded (``record_verdict``); none if it is missing or half-written."""
    try:
        return read_verdicts(out) if out.is_file() else {}
    except ValueError:
        return {}


def _report(result):
    """The terminal line after a notebook: status, time, the data set that ran, and a fallback in capitals."""
    line = f"  {result.status} in {result.seconds:.1f}s"
    if result.dataset:
        line += f" on {result.dataset}"
    if result.fallback:
        line += f" (FALLBACK: {result.dataset_requested} was requested and could not be had)"
    return line + (f": {result.error}" if result.error else "")


def prepare_run(paths, profile, out_dir, parameters, default_dir, timeout):
    """Everything a batch run checks before the first notebook starts (local and on Ray alike).

    Returns ``(profile, notebooks, {notebook: what papermill injects}, {notebook: why unreadable}, timeout,
    out_dir)``.
    """
    profile = get_profile(profile)
    notebooks = find_notebooks(paths, default_dir)
    given, unreadable = check_parameters(notebooks, parameters or {}, profile)
    if timeout is None:
        timeout = TIME_LIMITS[profile]
    if not isinstance(timeout, (int, float)) or timeout < 0:
        raise ValueError(f"timeout must be a number of seconds >= 0 (0: no limit), got {timeout!r}")
    out_dir = Path(out_dir)
    for nb in notebooks:
        if (out_dir / nb.name).resolve() == nb.resolve():
            raise ValueError(f"the executed copy of {nb} would overwrite it: choose another --out folder")
    check_out_dir(out_dir)
    return profile, notebooks, given, unreadable, timeout, out_dir


def run_all(paths, profile=None, out_dir="runs", stop_on_error=False, parameters=None, default_dir="notebooks",
            timeout=None):
    """Run the notebooks, write executed copies and ``summary.json`` / ``summary.md`` to ``out_dir``; this run's
    results.

    ``timeout``: seconds per notebook (None: the profile's ``TIME_LIMITS``; 0: no limit).
    A failing, unreadable or timed-out notebook does not stop the others unless
    ``stop_on_error``; Ctrl-C, SIGTERM and SIGHUP stop the run. The summary keeps
    one row per notebook of ``out_dir``: rows of earlier runs stay for notebooks not run now.
    """
    profile, notebooks, given, unreadable, timeout, out_dir = prepare_run(paths, profile, out_dir, parameters,
                                                                          default_dir, timeout)
    results = []
    with _stop_signals_interrupt():
        try:
            for nb in notebooks:
                print(f"running {nb} at profile {profile} ...", flush=True)
                if nb in unreadable:
                    result = _result(nb.stem, "failed", 0.0, out_dir.resolve() / nb.name,
                                     f"could not run: {unreadable[nb]}", profile)
                else:
                    result = run_notebook(nb, profile, out_dir, given[nb], timeout or None)
                print(_report(result), flush=True)
                results.append(result)
                if result.status == "interrupted" or (result.status != "ok" and stop_on_error):
                    break
        except KeyboardInterrupt:  # between two notebooks: nothing of theirs to stop; summary, then stop
            print("  interrupted between notebooks", flush=True)
            write_summary(out_dir, results)
            raise
        write_summary(out_dir, results)
    return results
