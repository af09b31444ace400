"""``python -m lecture_utils replicate``: does each verdict of a notebook hold on a fresh set of seeds?

The first run is the notebook as committed (its saved outputs), or with
``--against DIR`` the executed copies a ``run --out DIR`` left. The second run
executes the notebook again, here, with ``SEED`` moved by ``--seed-offset``:
a notebook runs seeds ``SEED, SEED + 1, ..., SEED + REPEATS - 1``, so an
offset of at least the largest such count (``REPEATS``, ``SEARCH_SEEDS``, ...)
gives a disjoint set of seeds. A verdict *agrees* when its ``outcome`` (``"elastic
better"``, ``"not established"``, ``"pool > 3x3 > 1x1"``) is the same in both runs.

Writes ``replication.json`` and ``replication.md`` to ``--out`` (beside the
second run's executed copies and summary) and prints how many verdicts, and how
many of the claims the notebooks teach, agree.
"""

import datetime
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from lecture_utils.course.parameters import SIZES_NAME, notebook_parameters, read_notebook
from lecture_utils.course.runner import cpu_model, find_notebooks, run_all
from lecture_utils.course.summary import JSON_NAME, read_summary, read_verdicts
from lecture_utils.profiles import PROFILES, get_profile
from lecture_utils.record import read_records

JSON_OUT, MARKDOWN_OUT = "replication.json", "replication.md"
KERNEL_SETTINGS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")
DEFAULT_OFFSET = 100

REPLICATE_DESCRIPTION = """\
Run notebooks a second time on a disjoint set of seeds and compare their
recorded verdicts (record_verdict) with the first run's: the committed
notebook's saved outputs, or the executed copies in --against DIR. The second
run uses SEED + --seed-offset; the offset must be at least the notebook's
largest seed count (REPEATS, SEARCH_SEEDS, ...) at the profile, or 0: the same
seeds again, to check that the verdicts survive another machine's arithmetic
(another CPU, or ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 on this one). Writes
replication.md and replication.json to --out: per verdict the outcome and
interval of both runs and whether they agree; per notebook and overall how many
verdicts, and how many claims, agree.

examples:
  python -m lecture_utils replicate --profile default --out runs/replicate
  python -m lecture_utils replicate notebooks/03_alexnet_ablations.ipynb --against runs/default
  python -m lecture_utils replicate --merge docs/replication.json runs/replicate/replication.json --out docs

--merge REPORT ... runs nothing: it joins replication.json files of earlier
runs into one table (a notebook in a later file replaces it in an earlier one),
so a replication run in parts, or of one notebook after a change, updates the
published table.
"""


def add_arguments(parser, timeout_type, timeout_help):
    """The ``replicate`` command's options (cli.py builds the parser)."""
    parser.add_argument("notebooks", nargs="*", help="notebooks or folders (default: every notebook in notebooks/)")
    parser.add_argument("--profile", choices=PROFILES, default=None,
                        help="run size of the second run (default: $LECTURE_PROFILE, else 'default'); the first "
                             "run's should be the same")
    parser.add_argument("--out", default="runs/replicate",
                        help="folder for the second run's copies and the replication table (default: runs/replicate)")
    parser.add_argument("--seed-offset", type=int, default=DEFAULT_OFFSET, metavar="N",
                        help=f"the second run's SEED is the first's + N (default: {DEFAULT_OFFSET}; 0: the same seeds, "
                             "a rerun on other arithmetic)")
    parser.add_argument("--against", default=None, metavar="DIR",
                        help="the first run: executed copies in DIR (from run --out DIR), not the committed outputs")
    parser.add_argument("--timeout", type=timeout_type, default=None, metavar="SECONDS", help=timeout_help)
    parser.add_argument("--merge", nargs="+", default=None, metavar="REPORT",
                        help="run nothing: join these replication.json files into one table in --out (a notebook "
                             "in a later file replaces it in an earlier one)")


# ---------------------------------------------------------------- the two runs


def seed_count(params, profile):
    """How many seeds from SEED a notebook runs at ``profile``: its largest REPEATS-like size (1 if none)."""
    counts = [entry[profile] for name, entry in params.sizes.items()
              if (name == "REPEATS" or name.endswith(("_REPEATS", "SEEDS"))) and isinstance(entry[profile], int)]
    return max(counts, default=1)


def _injected(nb):
    """What papermill injected into an executed copy (``{}`` for a committed notebook)."""
    import ast

    for cell in nb.cells:
        if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            values = {}
            for node in ast.parse(cell.source).body:
                if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
                    try:
                        values[node.targets[0].id] = ast.literal_eval(node.value)
                    except (ValueError, TypeError, SyntaxError):
                        pass
            return values
    return {}


def _committed_date(path):
    """When ``path`` was last committed (git), "" outside a checkout."""
    try:
        path = Path(path).resolve()  # a relative path would be read from the notebook's folder, not from here
        out = subprocess.run(["git", "log", "-1", "--format=%cI", "--", path.name], capture_output=True, text=True,
                             timeout=10, cwd=path.parent)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def first_run(path, params, against):
    """The first run of notebook ``path``: where its outputs are, its SEED, profile, date, CPU and verdicts."""
    source = Path(against) / path.name if against else path
    if not source.is_file():
        raise ValueError(f"--against {against}: {source} does not exist (run python -m lecture_utils run "
                         f"{path} --out {against} first)")
    injected = _injected(read_notebook(source))
    seed = injected.get("SEED", params.default("SEED"))
    row = {}
    if against:
        row = next((r for r in read_summary(against) if r["notebook"] == path.stem), {})
    profile = injected.get("PROFILE") or row.get("profile") or read_records(source).get("profile")
    return {"source": str(source), "seed": seed, "profile": profile, "injected": injected,
            "date": row.get("date") or ("" if against else _committed_date(path)), "cpu": row.get("cpu", ""),
            "status": row.get("status", "ok"), "verdicts": read_verdicts(source)}


def same_budget(first, params, profile):
    """The ``-p`` values that give the second run the first run's budget: what that run was given besides
    PROFILE and SEED (its SIZES entries that differ from the notebook's, at ``profile``)."""
    given = {k: v for k, v in first["injected"].items() if k not in ("PROFILE", "SEED", SIZES_NAME)}
    for name, entry in (first["injected"].get(SIZES_NAME) or {}).items():
        if name in params.sizes and entry != params.sizes[name] and profile in entry:
            given[name] = entry[profile]
    return given


def plan(notebooks, profile, offset, against):
    """Everything checked before the second runs start: ``{notebook: (first run, seed count)}``."""
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValueError(f"--seed-offset must be an int >= 0 (0: the same seeds, a numerical rerun), got {offset!r}")
    if against is not None and not Path(against).is_dir():
        raise ValueError(f"--against {against} is not a folder (give the --out folder of an earlier run)")
    planned = {}
    for path in notebooks:
        params = notebook_parameters(path)
        if "SEED" not in params.plain or not isinstance(params.default("SEED"), int):
            raise ValueError(f"{path} has no SEED parameter with an int default: it cannot be run on fresh seeds")
        first = first_run(path, params, against)
        profiles = {profile} | ({first["profile"]} if first["profile"] in PROFILES else set())
        count = max(seed_count(params, p) for p in profiles)
        if 0 < offset < count:
            raise ValueError(f"--seed-offset {offset} is less than the {count} seeds {path.name} runs from SEED "
                             f"at {'/'.join(sorted(profiles))}: the seed sets would overlap; give "
                             f"--seed-offset {count} or more")
        if first["profile"] in PROFILES and first["profile"] != profile:
            print(f"note: the first run of {path.name} ran at profile {first['profile']}, this one at {profile}: "
                  "verdicts of two budgets are compared", flush=True)
        planned[path] = (first, count, same_budget(first, params, profile))
    return planned


# ---------------------------------------------------------------- the comparison


def _side(verdict):
    """What a verdict shows of one run: outcome, difference and interval (None where it has none)."""
    if verdict is None:
        return None
    return {k: verdict.get(k) for k in ("outcome", "difference", "low", "high", "n", "unit", "established", "text")}


def compare_verdicts(first, second):
    """One row per verdict name (the first run's order, then new names): claim, both runs' sides, agree."""
    rows = []
    for name in [*first, *(n for n in second if n not in first)]:
        a, b = first.get(name), second.get(name)
        claim = bool((a or {}).get("claim") or (b or {}).get("claim"))
        agree = a is not None and b is not None and a.get("outcome") == b.get("outcome")
        rows.append({"name": name, "kind": (a or b).get("kind", ""), "claim": claim, "first": _side(a),
                     "second": _side(b), "agree": agree})
    return rows


def counts(rows):
    claims = [r for r in rows if r["claim"]]
    return {"verdicts": len(rows), "agree": sum(r["agree"] for r in rows), "claims": len(claims),
            "claims_agree": sum(r["agree"] for r in claims)}


def _seeds(seed, count):
    return f"{seed}" if count == 1 else f"{seed}-{seed + count - 1}"


def side_text(side):
    """``elastic better: +0.16 (0.00 to 0.32)``, ``not established: +0.14 (-0.11 to 0.39)``, ``missing``."""
    if side is None:
        return "missing"
    text = side["outcome"] or ""
    if side.get("difference") is not None and side.get("low") is not None:
        unit = "" if not side.get("unit") else f" {side['unit']}"
        text += f": {side['difference']:+.3g}{unit} ({side['low']:.3g} to {side['high']:.3g})"
    return text


def _when(side):
    """``, <date>, <cpu>`` of one run, whichever of the two it has."""
    return "".join(f", {x}" for x in (side.get("date"), side.get("cpu")) if x)


def markdown(report):
    """``replication.md``: the overall counts, a line per notebook, then each notebook's verdicts."""
    o = report["overall"]
    made = (f"Generated by `python -m lecture_utils replicate --profile {report['profile']}`"
            + (f", merged from {report['merged']} such runs (`replicate --merge`); each notebook's dates are in its "
               "row" if report.get("merged") else "") + ". A verdict that does not agree is *fragile*: the effect is "
            "at the edge of what this budget resolves.")
    same = report["seed_offset"] == 0
    title = ("Replication: do the verdicts hold with the same seeds on other arithmetic?" if same else
             "Replication: do the verdicts hold on fresh seeds?")
    kernels = f" (kernels limited by {report['kernels']})" if report.get("kernels") else ""
    seeds = "the same seeds" if same else f"SEED + {report['seed_offset']}"
    lines = [f"# {title}", "", made, "",
             f"Second run {report['date']} on {report['cpu']}{kernels}, profile {report['profile']}, {seeds}; "
             f"first run: {report['first_run']}. A verdict agrees when both runs reach the same outcome.", "",
             f"**{o['agree']} of {o['verdicts']} verdicts agree; {o['claims_agree']} of {o['claims']} claims agree.**",
             "", "| notebook | verdicts that agree | claims that agree | first run: seeds | second run: seeds |",
             "| --- | ---: | ---: | --- | --- |"]
    for nb in report["notebooks"]:
        c, f, s = nb["counts"], nb["first"], nb["second"]
        second = s["seeds"] + ("" if s["status"] == "ok" else f" ({s['status']}: {s['error']})")
        first = f["seeds"] + _when(f)
        if report.get("merged"):
            second += _when(s)
        lines.append(f"| {nb['notebook']} | {c['agree']} of {c['verdicts']} | {c['claims_agree']} of {c['claims']} | "
                     f"{first} | {second} |")
    for nb in report["notebooks"]:
        lines += ["", f"## {nb['notebook']}", "", "| verdict | claim | first run | second run | agree |",
                  "| --- | --- | --- | --- | --- |"]
        for r in nb["verdicts"]:
            cells = [r["name"], "yes" if r["claim"] else "", side_text(r["first"]), side_text(r["second"]),
                     "yes" if r["agree"] else "**no**"]
            lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
        if not nb["verdicts"]:
            lines.append("| (no verdicts recorded) | | | | |")
    return "\n".join(lines) + "\n"


def replicate(paths, profile=None, out_dir="runs/replicate", seed_offset=DEFAULT_OFFSET, against=None,
              timeout=None, default_dir="notebooks"):
    """Run the second runs and write the replication table; ``(report dict, exit status)``."""
    profile = get_profile(profile)
    notebooks = find_notebooks(paths, default_dir)
    planned = plan(notebooks, profile, seed_offset, against)
    out_dir = Path(out_dir)
    report = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
              "cpu": cpu_model(), "kernels": kernel_limits(), "profile": profile, "seed_offset": seed_offset,
              "first_run": f"the executed copies in {against}" if against else "the committed notebooks",
              "notebooks": []}
    status = 0
    for path, (first, count, given) in planned.items():
        seed = first["seed"] + seed_offset
        results = run_all([path], profile, out_dir, parameters={**given, "SEED": seed}, timeout=timeout)
        result = results[0] if results else None
        second = {"source": result.output if result else "", "seed": seed, "seeds": _seeds(seed, count),
                  "profile": profile, "date": result.date if result else "", "cpu": result.cpu if result else "",
                  "status": result.status if result else "not run", "error": result.error if result else ""}
        rows = compare_verdicts(first["verdicts"], result.verdicts if result else {})
        first_side = {k: first[k] for k in ("source", "seed", "profile", "date", "cpu", "status")}
        first_side["seeds"] = _seeds(first["seed"], count)
        report["notebooks"].append({"notebook": path.stem, "first": first_side, "second": second, "verdicts": rows,
                                    "counts": counts(rows)})
        if result is None or result.status != "ok":
            status = 1
        if result is not None and result.status == "interrupted":
            status = 128 + signal.Signals[result.stopped_by or "SIGINT"]
            break
    every = [r for nb in report["notebooks"] for r in nb["verdicts"]]
    report["overall"] = counts(every)
    write_table(report, out_dir)
    return report, status


def merge(reports, out_dir):
    """Join replication.json files (``replicate --merge``): a notebook in a later file replaces it in an earlier
    one; the counts are recomputed. Writes replication.json and .md to ``out_dir``; returns the merged report."""
    loaded = []
    for path in reports:
        try:
            report = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise ValueError(f"--merge {path}: not a readable replication.json ({type(err).__name__}: {err})") from None
        if not isinstance(report, dict) or not isinstance(report.get("notebooks"), list) or "profile" not in report:
            raise ValueError(f"--merge {path}: not a replication.json (no profile and notebooks in it)")
        rows = ("notebook", "first", "second", "verdicts")
        if not all(isinstance(nb, dict) and all(k in nb for k in rows) for nb in report["notebooks"]):
            raise ValueError(f"--merge {path}: a notebook's entry lacks one of {', '.join(rows)}: not a "
                             "replication.json that replicate wrote")
        loaded.append(report)
    for key in ("profile", "seed_offset", "kernels"):
        values = sorted({str(r.get(key) or "") for r in loaded})
        if len(values) > 1:
            raise ValueError(f"--merge: the reports differ in {key} ({', '.join(values)}): only runs of one {key} "
                             "make one table")
    notebooks = {nb["notebook"]: nb for report in loaded for nb in report["notebooks"]}  # a later entry wins
    ordered = [notebooks[name] for name in sorted(notebooks)]
    dates = sorted(nb["second"]["date"] for nb in ordered if nb["second"].get("date"))
    merged = {"date": dates[0] if len(set(dates)) == 1 else (f"{dates[0]} to {dates[-1]}" if dates else ""),
              "cpu": ", ".join(sorted({nb["second"].get("cpu") or "?" for nb in ordered})),
              "kernels": loaded[0].get("kernels", ""), "profile": loaded[0]["profile"],
              "seed_offset": loaded[0]["seed_offset"],
              "first_run": "; ".join(dict.fromkeys(r.get("first_run") or "?" for r in loaded)),
              "merged": sum(r.get("merged") or 1 for r in loaded) if len(loaded) > 1 else loaded[0].get("merged"),
              "notebooks": ordered}
    for nb in ordered:
        nb["counts"] = counts(nb["verdicts"])
    merged["overall"] = counts([r for nb in ordered for r in nb["verdicts"]])
    write_table(merged, out_dir)
    return merged


def kernel_limits():
    """The environment settings that limit which CPU kernels torch runs (ISA), e.g. ``ATEN_CPU_CAPABILITY=avx2``."""
    return ", ".join(f"{k}={os.environ[k]}" for k in KERNEL_SETTINGS if os.environ.get(k))


def write_table(report, out_dir):
    """replication.json and replication.md of ``report`` in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write(out_dir / JSON_OUT, json.dumps(report, indent=2) + "\n")
    _write(out_dir / MARKDOWN_OUT, markdown(report))


def _write(path, text):
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def main(args):
    """``python -m lecture_utils replicate``: print the counts; the exit status (1: a second run failed)."""
    try:
        if args.merge:
            if args.notebooks or args.against:
                raise ValueError("--merge runs nothing: give it replication.json files, not notebooks or --against")
            report, status = merge(args.merge, args.out), 0
        else:
            report, status = replicate(args.notebooks, args.profile, args.out, args.seed_offset, args.against,
                                       args.timeout)
    except ValueError as err:
        for line in str(err).splitlines():
            print(f"python -m lecture_utils replicate: error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # between two notebooks: what ran is in --out's summary
        name = err.args[0] if err.args and err.args[0] in signal.Signals.__members__ else "SIGINT"
        print(f"INTERRUPTED: {name}: the replication stopped before its table was written", file=sys.stderr)
        return 128 + signal.Signals[name]
    print()
    for nb in report["notebooks"]:
        c = nb["counts"]
        failed = "" if nb["second"]["status"] == "ok" else f" (second run {nb['second']['status']})"
        print(f"{nb['notebook']}: {c['agree']} of {c['verdicts']} verdicts agree, {c['claims_agree']} of "
              f"{c['claims']} claims{failed}")
        for r in nb["verdicts"]:
            if not r["agree"]:
                print(f"  not replicated: {r['name']}: {side_text(r['first'])} -> {side_text(r['second'])}")
    o = report["overall"]
    print(f"all: {o['agree']} of {o['verdicts']} verdicts agree, {o['claims_agree']} of {o['claims']} claims agree")
    print(f"table: {Path(args.out) / MARKDOWN_OUT} and {JSON_OUT}" + ("" if args.merge else
          f"; the second run's copies and {JSON_NAME} beside it"))
    return status
