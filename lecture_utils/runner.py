"""Batch runs of the notebooks with papermill, and a summary of what each one measured."""

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lecture_utils.profiles import ENV_VAR as PROFILE_ENV
from lecture_utils.profiles import get_profile
from lecture_utils.record import read_records
from lecture_utils.train import PROGRESS_ENV


@dataclass
class Result:
    """How one notebook's run went."""

    notebook: str
    status: str  # "ok" or "failed"
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


def run_notebook(path, profile, out_dir, parameters=None):
    """Execute one notebook in this environment's kernel, in the notebook's folder; never raises for a cell error."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    path = Path(path).resolve()
    out = Path(out_dir).resolve() / path.name
    params = {"PROFILE": profile, **(parameters or {})}
    env = {PROFILE_ENV: profile, PROGRESS_ENV: "0"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits these
    start = time.perf_counter()
    error = ""
    try:
        papermill.execute_notebook(
            str(path), str(out), parameters=params, cwd=str(path.parent), kernel_name="python3",
            progress_bar=False, log_output=False,
        )
    except PapermillExecutionError as err:
        last = (err.evalue or "").strip().splitlines()
        error = f"cell {err.cell_index} (In [{err.exec_count}]): {err.ename}: {last[-1] if last else ''}"
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    seconds = time.perf_counter() - start
    metrics = read_records(out) if out.is_file() else {}
    return Result(path.stem, "failed" if error else "ok", round(seconds, 1), str(out), error, metrics)


def summary_markdown(results, profile):
    """A markdown table of the runs: the README's per-notebook timing table is a copy of this."""
    lines = [f"Profile `{profile}`", "", "| notebook | status | seconds | recorded |", "| --- | --- | ---: | --- |"]
    for r in results:
        recorded = ", ".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}" for k, v in r.metrics.items())
        status = r.status if not r.error else f"{r.status}: {r.error}"
        lines.append(f"| {r.notebook} | {status} | {r.seconds:.1f} | {recorded} |")
    return "\n".join(lines) + "\n"


def run_all(paths, profile=None, out_dir="runs", stop_on_error=False, parameters=None, default_dir="notebooks"):
    """Run the notebooks, write executed copies and ``summary.json`` / ``summary.md`` to ``out_dir``."""
    profile = get_profile(profile)
    notebooks = find_notebooks(paths, default_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for nb in notebooks:
        print(f"running {nb} at profile {profile} ...", flush=True)
        result = run_notebook(nb, profile, out_dir, parameters)
        print(f"  {result.status} in {result.seconds:.1f}s" + (f": {result.error}" if result.error else ""), flush=True)
        results.append(result)
        if result.error and stop_on_error:
            break
    (out_dir / "summary.json").write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    (out_dir / "summary.md").write_text(summary_markdown(results, profile))
    return results
