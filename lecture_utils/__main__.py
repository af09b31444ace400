"""``python -m lecture_utils run [NOTEBOOK ...] --profile P --out DIR [--timeout S] [-p NAME VALUE] ...``."""

import argparse
import ast
import sys

from lecture_utils.profiles import PROFILES, TIME_LIMITS


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


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lecture_utils", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute notebooks with papermill and summarise what they recorded")
    run.add_argument("notebooks", nargs="*", help="notebooks or folders (default: every notebook in notebooks/)")
    run.add_argument("--profile", choices=PROFILES, default=None,
                     help="run size (default: $LECTURE_PROFILE, else 'default')")
    run.add_argument("--out", default="runs", help="folder for the executed copies and summary (default: runs)")
    run.add_argument("--stop-on-error", action="store_true", help="stop at the first failing notebook")
    run.add_argument("--timeout", type=_seconds, default=None, metavar="SECONDS",
                     help="time limit per notebook; 0: none (default, by profile: "
                          + ", ".join(f"{p} {s} s" for p, s in TIME_LIMITS.items()) + ")")
    run.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                     help="override a notebook parameter (VALUE is read as Python literal if it parses)")
    args = parser.parse_args(argv)

    from lecture_utils.profiles import get_profile
    from lecture_utils.runner import run_all, summary_markdown

    try:
        params = parse_parameters(args.parameter)
        results = run_all(args.notebooks, args.profile, args.out, args.stop_on_error, params, timeout=args.timeout)
    except ValueError as err:
        parser.error(str(err))
    print()
    print(summary_markdown(results, get_profile(args.profile)), end="")
    for r in results:
        if r.status != "ok":
            print(f"{r.status.upper()}: {r.notebook}: {r.error} (executed copy: {r.output})", file=sys.stderr)
    if any(r.status == "interrupted" for r in results):
        return 130
    return 1 if any(r.status != "ok" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
