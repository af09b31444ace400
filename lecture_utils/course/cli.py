"""``python -m lecture_utils run [NOTEBOOK ...] --profile P --out DIR [--timeout S] [-p NAME VALUE] ...``."""

import argparse
import ast
import os
import signal
import sys
import textwrap

from lecture_utils.profiles import PROFILES, TIME_LIMITS

DESCRIPTION = "Helpers of the 'Convolutional Networks II' lecture notebooks. Command: run (batch-run notebooks)."

PROFILE_MEANINGS = {
    "smoke": "every cell runs, under a minute per notebook on 2 CPU cores; the numbers are noise (CI)",
    "default": "a laptop CPU or Colab, at most 10 minutes per notebook; shows the lecture's effect",
    "full": "one GPU, at most 15 minutes per notebook; aims at the papers' numbers",
}

RUN_DESCRIPTION = """\
Execute notebooks with papermill, each in a worker process of its own with a
kernel of this Python environment (whatever the notebook's kernel metadata
says), and keep the executed copies and a summary in the --out folder:
summary.md and summary.json, one row per notebook (its latest run): status,
seconds, profile, the data set it ran on, and what it recorded (rates as %).
A failing, timed-out or unreadable notebook is marked and the others go on;
Ctrl-C, SIGTERM and SIGHUP stop the running notebook, mark it interrupted and
write the summary.

profiles (--profile, else $LECTURE_PROFILE, else default):
{profiles}
"""

RUN_EPILOG = """\
parameters:
  Each notebook has a cell tagged "parameters"; -p NAME VALUE overrides one
  of its names (not PROFILE: use --profile). To see a notebook's parameters,
  their defaults and what they mean:
    python -m lecture_utils run notebooks/02_elastic_distortions.ipynb --list-parameters

data:
  Without its data set (offline, nothing in data/), a notebook runs on
  scikit-learn's bundled digits and says so in a red banner; the summary and
  this command's output mark such a run FALLBACK. Set LECTURE_STRICT_DATA=1 to
  make a missing data set an error instead (CI does).

examples:
  python -m lecture_utils run --profile default --out runs/
  python -m lecture_utils run notebooks/02_elastic_distortions.ipynb --profile smoke -p EPOCHS 3
  python -m lecture_utils run --profile full --ray auto --out runs/full   # on a Ray cluster

exit status: 0 all ok, 1 a notebook failed or timed out, 2 bad command line,
128+signal when interrupted (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP).
"""


def _seconds(text):
    """argparse type of ``--timeout``: a number of seconds >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of seconds >= 0 (0: no limit)")
    return value


def parse_parameters(pairs):
    """``{NAME: value}`` from ``-p NAME VALUE`` pairs: VALUE as a Python literal if it parses, else a string."""
    params = {}
    for name, value in pairs:
        if not name.isidentifier():
            raise ValueError(f"-p {name!r}: a parameter name is a Python identifier, such as EPOCHS or N_TRAIN")
        if name in params:
            raise ValueError(f"-p {name} is given twice")
        try:
            params[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            params[name] = value
    return params


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m lecture_utils", description=DESCRIPTION,
                                     epilog="python -m lecture_utils run --help: what run does and its options")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    profiles = "\n".join(textwrap.fill(PROFILE_MEANINGS.get(p, ""), 78, initial_indent=f"  {p:<9}",
                                        subsequent_indent=" " * 11) for p in PROFILES)
    run = sub.add_parser("run", help="execute notebooks with papermill and summarise what they recorded",
                         description=RUN_DESCRIPTION.format(profiles=profiles), epilog=RUN_EPILOG,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("notebooks", nargs="*", help="notebooks or folders (default: every notebook in notebooks/)")
    run.add_argument("--profile", choices=PROFILES, default=None,
                     help="run size (default: $LECTURE_PROFILE, else 'default'); see profiles above")
    run.add_argument("--out", default="runs", help="folder for the executed copies and summary (default: runs)")
    run.add_argument("--stop-on-error", action="store_true", help="stop at the first failing notebook")
    run.add_argument("--timeout", type=_seconds, default=None, metavar="SECONDS",
                     help="time limit per notebook; 0: none (default, by profile: "
                          + ", ".join(f"{p} {s} s" for p, s in TIME_LIMITS.items()) + ")")
    run.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                     help="override a notebook parameter (VALUE is read as Python literal if it parses)")
    run.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                     help="run each notebook as a Ray task: on a local Ray instance (no ADDRESS), the cluster this "
                          "machine is part of (auto), or a head node (HOST:PORT, ray://HOST:PORT); needs "
                          "pip install -e \".[cluster]\"")
    run.add_argument("--gpus-per-notebook", type=float, default=None, metavar="N",
                     help="with --ray: GPUs per notebook (default: 1 when the cluster has GPUs, else 0)")
    run.add_argument("--cpus-per-notebook", type=float, default=1, metavar="N",
                     help="with --ray: CPUs per notebook, also its torch threads (default: 1)")
    run.add_argument("--list-parameters", action="store_true",
                     help="list each notebook's parameters (name, type, default, meaning) and exit")
    return parser


def list_parameters(notebooks):
    """The text of ``--list-parameters``: each notebook's parameters (PROFILE is --profile)."""
    from lecture_utils.course.runner import notebook_parameters

    lines = []
    for nb in notebooks:
        lines.append(f"{nb}:")
        try:
            params = notebook_parameters(nb)
        except ValueError as err:
            lines.append(f"  cannot be read: {err}")
            continue
        for p in params:
            if p.name == "PROFILE":
                lines.append("  PROFILE: set with --profile (" + ", ".join(PROFILES) + ")")
                continue
            kind = "" if p.inferred_type_name in ("None", "") else f" ({p.inferred_type_name})"
            meaning = f"  # {p.help}" if p.help else ""
            lines.append(f"  -p {p.name}{kind} = {p.default}{meaning}")
        if not params:
            lines.append("  no parameters cell")
    return "\n".join(lines)


def _fail(message):
    """A bad command line found after parsing: one line naming what was wrong, exit 2."""
    print(f"python -m lecture_utils run: error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)

    from lecture_utils.course.runner import find_notebooks, run_all

    try:
        params = parse_parameters(args.parameter)
        if args.list_parameters:
            print(list_parameters(find_notebooks(args.notebooks, "notebooks")))
            return 0
        if args.ray is not None and (args.ray.endswith(".ipynb") or os.path.isdir(args.ray)):
            args.notebooks.append(args.ray)  # `--ray NOTEBOOK`: a local instance, and the notebook to run
            args.ray = "local"
        if args.ray is None:
            if args.gpus_per_notebook is not None:
                raise ValueError("--gpus-per-notebook needs --ray")
            results = run_all(args.notebooks, args.profile, args.out, args.stop_on_error, params,
                              timeout=args.timeout)
        else:
            from lecture_utils.course.cluster import run_all_on_ray

            results = run_all_on_ray(args.notebooks, args.profile, args.out, args.stop_on_error, params,
                                     timeout=args.timeout, address=None if args.ray == "local" else args.ray,
                                     gpus_per_notebook=args.gpus_per_notebook,
                                     cpus_per_notebook=args.cpus_per_notebook)
    except (ValueError, ImportError, ConnectionError) as err:
        _fail(str(err))
    except KeyboardInterrupt as err:  # between two notebooks; the summary is written
        name = err.args[0] if err.args and err.args[0] in signal.Signals.__members__ else "SIGINT"
        return 128 + signal.Signals[name]
    from lecture_utils.course.summary import summary_markdown

    print()
    print(summary_markdown(results), end="")
    print(f"every notebook of {args.out}, earlier runs included: {args.out.rstrip('/')}/summary.md")
    for r in results:
        if r.status != "ok":
            print(f"{r.status.upper()}: {r.notebook}: {r.error} (executed copy: {r.output})", file=sys.stderr)
        if r.fallback:
            print(f"FALLBACK: {r.notebook} ran on {r.dataset}, not {r.dataset_requested}: its numbers are not "
                  f"comparable with the README's (LECTURE_STRICT_DATA=1 makes this an error)", file=sys.stderr)
    stopped = [r.stopped_by for r in results if r.status == "interrupted"]
    if stopped:
        return 128 + signal.Signals[stopped[0]] if stopped[0] in signal.Signals.__members__ else 130
    return 1 if any(r.status != "ok" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
