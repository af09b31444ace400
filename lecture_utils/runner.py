"""Batch runs of the notebooks with papermill, and a summary of what each one measured.

Each notebook runs in a worker process of its own (``python -m lecture_utils.runner``)
under a time limit: a notebook that fails, hangs or runs past its limit costs
that notebook only. Its executed copy is kept either way, for inspection.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lecture_utils.profiles import ENV_VAR as PROFILE_ENV
from lecture_utils.profiles import TIME_LIMITS, get_profile
from lecture_utils.record import read_records

PROGRESS_ENV = "LECTURE_PROGRESS"  # train.PROGRESS_ENV; not imported from there, to keep torch out of the worker

STATUSES = ("ok", "failed", "timed out", "interrupted")
GRACE_SECONDS = 5  # after SIGTERM, before SIGKILL


@dataclass
class Result:
    """How one notebook's run went."""

    notebook: str
    status: str  # one of STATUSES
    seconds: float
    output: str
    error: str = ""
    metrics: dict = field(default_factory=dict)


def find_notebooks(paths, default_dir):
    """The notebooks named in ``paths`` (files or folders), or every notebook in ``default_dir``."""
    paths = [Path(p) for p in paths] or [Path(default_dir)]
    found = []
    for p in paths:
        if p.is_dir():
            found += sorted(q for q in p.glob("*.ipynb") if not q.name.startswith("."))
        elif p.suffix == ".ipynb" and p.is_file():
            found.append(p)
        else:
            raise ValueError(f"{p} is not a notebook (.ipynb) or a folder of notebooks")
    if not found:
        raise ValueError(f"no notebooks found in {', '.join(map(str, paths))}")
    return found


def notebook_parameters(path):
    """The names in a notebook's ``parameters`` cell (empty if it has none)."""
    import papermill

    return set(papermill.inspect_notebook(str(path)))


def check_parameters(notebooks, parameters):
    """``{notebook: its parameters}``: each notebook gets the ``-p`` names its parameters cell has.

    A name no notebook has (a typo) is a ValueError listing the known ones,
    before anything runs; ``PROFILE`` is set with ``--profile``, not ``-p``.
    """
    if "PROFILE" in parameters:
        raise ValueError("set the profile with --profile, not -p PROFILE")
    known = {nb: notebook_parameters(nb) for nb in notebooks}
    everything = set().union(*known.values())
    unknown = sorted(set(parameters) - everything)
    if unknown:
        raise ValueError(f"unknown parameter {', '.join(unknown)}: the notebooks' parameters are "
                         f"{', '.join(sorted(everything)) or 'none'}")
    return {nb: {k: v for k, v in parameters.items() if k in known[nb]} for nb in notebooks}


def run_notebook(path, profile, out_dir, parameters=None, timeout=None):
    """Execute one notebook in a worker process, in the notebook's folder; never raises for a cell error.

    The worker is stopped after ``timeout`` seconds (None: no limit); the
    executed copy so far is kept, with a note at its top.
    """
    path = Path(path).resolve()
    out = Path(out_dir).resolve() / path.name
    if out == path:
        raise ValueError(f"the executed copy of {path} would overwrite it: choose another --out folder")
    package_root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, PROFILE_ENV: profile, PROGRESS_ENV: "0",
           "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryDirectory(prefix="lecture_run_") as tmp:
        job = {"input": str(path), "output": str(out), "result": str(Path(tmp) / "result.json"),
               "parameters": repr({"PROFILE": profile, **(parameters or {})})}  # Python literals, read back as such
        log = Path(tmp) / "worker.log"
        start = time.perf_counter()
        with open(log, "wb") as log_file:
            proc = subprocess.Popen([sys.executable, "-m", "lecture_utils.runner", json.dumps(job)], env=env,
                                    stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
            status, error = _wait(proc, timeout)
        seconds = time.perf_counter() - start
        if status == "timed out":
            error = _mark_timed_out(out, timeout)
        elif status == "ok":
            status, error = _worker_outcome(proc.returncode, Path(job["result"]), log)
    return Result(path.stem, status, round(seconds, 1), str(out), error, _metrics(out))


def _wait(proc, timeout):
    """Wait for the worker: ("ok", "") when it exits, ("timed out"/"interrupted", error) when stopped."""
    try:
        proc.wait(timeout=timeout)
        return "ok", ""
    except subprocess.TimeoutExpired:
        _stop(proc)
        return "timed out", ""
    except KeyboardInterrupt:
        _stop(proc)
        return "interrupted", "interrupted (Ctrl-C) before it finished"


def _stop(proc):
    """SIGTERM the worker's process group, SIGKILL it after a grace period.

    Its kernel (a session of its own) notices its parent is gone and exits within a second.
    """
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=GRACE_SECONDS)
            return
        except subprocess.TimeoutExpired:
            continue


def _worker_outcome(returncode, result_file, log):
    """("ok", "") or ("failed", the cell and the error's last line) from what the worker left."""
    if result_file.is_file():
        error = json.loads(result_file.read_text()).get("error", "")
        return ("failed" if error else "ok"), error
    tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
    return "failed", f"the worker exited with code {returncode} before reporting: {tail[0]}"


def _mark_timed_out(out, timeout):
    """Say where the time ran out, and note it at the top of the kept copy (rewritten atomically)."""
    try:
        nb = json.loads(out.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"after {timeout:g} s (no readable executed copy)"
    where = ""
    for index, cell in enumerate(nb.get("cells", [])):
        if cell.get("metadata", {}).get("papermill", {}).get("status") == "running":
            count = cell.get("execution_count")
            where = f" in cell {index}" + (f" (In [{count}])" if count else "")
            break
    note = {"cell_type": "markdown", "metadata": {"tags": ["lecture-utils-timeout"]},
            "source": f"**Timed out** after {timeout:g} s{where}: `python -m lecture_utils run` stopped this "
                      "notebook (`--timeout`). The cells below show what ran before."}
    if "id" in (nb.get("cells") or [{}])[0]:
        note["id"] = "lecture-utils-timeout"
    nb["cells"] = [note, *nb.get("cells", [])]
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(nb, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, out)
    return f"after {timeout:g} s{where}"


def _metrics(out):
    """What the executed copy recorded; nothing if it is missing or half-written."""
    try:
        return read_records(out) if out.is_file() else {}
    except ValueError:
        return {}


def summary_markdown(results, profile):
    """A markdown table of the runs: the README's per-notebook timing table is a copy of this."""
    lines = [f"Profile `{profile}`", "", "| notebook | status | seconds | recorded |", "| --- | --- | ---: | --- |"]
    for r in results:
        recorded = ", ".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}" for k, v in r.metrics.items())
        status = r.status if not r.error else f"{r.status}: {r.error}"
        lines.append(f"| {r.notebook} | {status.replace('|', '/')} | {r.seconds:.1f} | {recorded} |")
    return "\n".join(lines) + "\n"


def run_all(paths, profile=None, out_dir="runs", stop_on_error=False, parameters=None, default_dir="notebooks",
            timeout=None):
    """Run the notebooks, write executed copies and ``summary.json`` / ``summary.md`` to ``out_dir``.

    ``timeout``: seconds per notebook (None: the profile's ``TIME_LIMITS``; 0: no limit).
    A failing or timed-out notebook does not stop the others unless ``stop_on_error``.
    """
    profile = get_profile(profile)
    notebooks = find_notebooks(paths, default_dir)
    given = check_parameters(notebooks, parameters or {})
    if timeout is None:
        timeout = TIME_LIMITS[profile]
    if not isinstance(timeout, (int, float)) or timeout < 0:
        raise ValueError(f"timeout must be a number of seconds >= 0 (0: no limit), got {timeout!r}")
    out_dir = Path(out_dir)
    for nb in notebooks:
        if (out_dir / nb.name).resolve() == nb.resolve():
            raise ValueError(f"the executed copy of {nb} would overwrite it: choose another --out folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for nb in notebooks:
        print(f"running {nb} at profile {profile} ...", flush=True)
        result = run_notebook(nb, profile, out_dir, given[nb], timeout or None)
        print(f"  {result.status} in {result.seconds:.1f}s" + (f": {result.error}" if result.error else ""), flush=True)
        results.append(result)
        if result.status == "interrupted" or (result.status != "ok" and stop_on_error):
            break
    (out_dir / "summary.json").write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    (out_dir / "summary.md").write_text(summary_markdown(results, profile))
    return results


def _worker(job):
    """In the worker process: execute one notebook with papermill, write how it went to ``job["result"]``."""
    import ast

    import papermill
    from papermill.exceptions import PapermillExecutionError

    error = ""
    try:
        papermill.execute_notebook(job["input"], job["output"], parameters=ast.literal_eval(job["parameters"]),
                                   cwd=str(Path(job["input"]).parent), kernel_name="python3", progress_bar=False,
                                   log_output=False)
    except PapermillExecutionError as err:
        last = (err.evalue or "").strip().splitlines()
        error = f"cell {err.cell_index} (In [{err.exec_count}]): {err.ename}: {last[-1] if last else ''}"
    except Exception as err:  # a broken notebook file, a kernel that died: still a result, not a crash
        last = (str(err).strip().splitlines() or [""])[-1]
        error = f"could not run: {type(err).__name__}: {last}"
    Path(job["result"]).write_text(json.dumps({"error": error}))


if __name__ == "__main__":
    _worker(json.loads(sys.argv[1]))
