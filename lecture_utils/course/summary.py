"""The summary of an ``--out`` folder: one row per notebook (its latest run), as ``summary.json`` and ``summary.md``.

A row names the data set the notebook actually ran on (what it recorded as
``dataset``) beside the one its ``DATASET`` parameter asked for, and flags a
fallback; recorded rates read as the notebooks show them (``record(...,
percent=True)``: ``3.92%``). ``summary.json`` also holds each notebook's
verdicts (``record_verdict``), by name, as the notebook stored them.
"""

import json
import os
from pathlib import Path

from lecture_utils.record import format_value

JSON_NAME, MARKDOWN_NAME = "summary.json", "summary.md"
DATA_KEYS = ("dataset", "dataset_requested")  # shown in their own column
VERDICT_MIME = "application/vnd.lecture-utils.verdict+json"  # record.record_verdict's output type


def read_verdicts(notebook):
    """``{name: verdict}`` that an executed notebook (a path or a parsed nbformat dict) recorded; the last of a
    name wins. ``record.read_verdicts`` when the library has it, else the same reading of the outputs."""
    try:
        from lecture_utils.record import read_verdicts as read
    except ImportError:
        read = None
    if read is not None:
        return dict(read(notebook))
    if not isinstance(notebook, dict):
        try:
            notebook = json.loads(Path(notebook).read_text(encoding="utf-8"))
        except ValueError as err:
            raise ValueError(f"{notebook} is not a readable notebook (JSON): {err}") from None
    found = {}
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []):
            item = output.get("data", {}).get(VERDICT_MIME)
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                found[item["name"]] = item
    return found


def data_set_text(row):
    """``mnist``, ``digits (FALLBACK: mnist requested)``, or "" when the notebook recorded none."""
    used, requested = row.get("dataset") or "", row.get("dataset_requested") or ""
    if row.get("fallback"):
        return f"{used} (FALLBACK: {requested} requested)"
    return used


def recorded_text(row):
    """``name = value, ...`` of what the notebook recorded, rates as percentages (the data set has its own column)."""
    shown = row.get("recorded")
    if shown is None:  # a row of an older summary: raw values only
        shown = {k: format_value(v) for k, v in row.get("metrics", {}).items()}
    return ", ".join(f"{k} = {v}" for k, v in shown.items() if k not in DATA_KEYS)


def summary_markdown(rows, title=""):
    """A markdown table of ``rows`` (dicts or ``Result``s): the README's per-notebook timing table is a copy of it."""
    lines = [title, ""] if title else []
    lines += ["| notebook | status | profile | data set | finished (UTC) | seconds | recorded |",
              "| --- | --- | --- | --- | --- | ---: | --- |"]
    for row in rows:
        row = row if isinstance(row, dict) else row.as_row()
        status = row["status"] if not row.get("error") else f"{row['status']}: {row['error']}"
        cells = [row["notebook"], status, row.get("profile") or "", data_set_text(row),
                 (row.get("date") or "").replace("T", " ").removesuffix("Z"), f"{row.get('seconds', 0):.1f}",
                 recorded_text(row)]
        lines.append("| " + " | ".join(str(c).replace("|", "/").replace("\n", " ") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def read_summary(out_dir):
    """The rows of an existing ``summary.json`` in ``out_dir`` ([] if there is none or it cannot be read)."""
    path = Path(out_dir) / JSON_NAME
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as err:
        print(f"note: {path} could not be read ({err}); it is replaced by this run's summary", flush=True)
        return []
    if not isinstance(rows, list):
        return []
    return [r for r in rows if isinstance(r, dict) and "notebook" in r and "status" in r]


def merge(previous, results, out_dir):
    """One row per notebook: this run's results replace earlier rows of the same notebook.

    An earlier row is kept only while its executed copy is still in ``out_dir``.
    Rows are sorted by notebook name (the order of the notebooks/ folder).
    """
    rows = {}
    for row in previous:
        copy = Path(out_dir) / Path(row.get("output") or f"{row['notebook']}.ipynb").name
        if copy.is_file():
            rows[copy.name] = row
    for result in results:
        row = result.as_row()
        rows[Path(row["output"]).name] = row
    return [rows[name] for name in sorted(rows)]


def _write_atomically(path, text):
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_summary(out_dir, results):
    """Merge ``results`` into ``out_dir``'s summary and write ``summary.json`` and ``summary.md``; the rows."""
    out_dir = Path(out_dir)
    rows = merge(read_summary(out_dir), results, out_dir)
    _write_atomically(out_dir / JSON_NAME, json.dumps(rows, indent=2) + "\n")
    title = f"Executed notebooks in `{out_dir}`: one row per notebook, its latest run."
    _write_atomically(out_dir / MARKDOWN_NAME, summary_markdown(rows, title))
    return rows


def update_times(path, results):
    """Write each ok run's seconds into the JSON file ``path``: ``{notebook: {profile: {...}}}``, others kept.

    What the notebooks' opening tables show as "measured" (``profiles.read_times``): the seconds, the date,
    the CPU and the number of threads of the run, so no time in a notebook is typed by hand.
    """
    path = Path(path)
    try:
        times = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except ValueError:
        times = {}
    threads = os.environ.get("OMP_NUM_THREADS") or str(os.cpu_count() or 1)
    for r in results:
        if r.status != "ok" or not r.profile:
            continue
        times.setdefault(r.notebook, {})[r.profile] = {
            "seconds": r.seconds, "date": r.date[:10], "cpu": r.cpu, "threads": int(threads),
            "dataset": r.dataset}
    _write_atomically(path, json.dumps(dict(sorted(times.items())), indent=2, sort_keys=True) + "\n")
    return times
