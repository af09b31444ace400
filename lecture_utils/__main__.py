"""``python -m lecture_utils run [NOTEBOOK ...] --profile smoke|default|full --out DIR``."""

import argparse
import sys

from lecture_utils.profiles import PROFILES


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lecture_utils", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute notebooks with papermill and summarise what they recorded")
    run.add_argument("notebooks", nargs="*", help="notebooks or folders (default: every notebook in notebooks/)")
    run.add_argument("--profile", choices=PROFILES, default=None,
                     help="run size (default: $LECTURE_PROFILE, else 'default')")
    run.add_argument("--out", default="runs", help="folder for the executed copies and summary (default: runs)")
    run.add_argument("--stop-on-error", action="store_true", help="stop at the first failing notebook")
    run.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                     help="override a notebook parameter (VALUE is read as Python literal if it parses)")
    args = parser.parse_args(argv)

    import ast

    from lecture_utils.profiles import get_profile
    from lecture_utils.runner import run_all, summary_markdown

    params = {}
    for name, value in args.parameter:
        try:
            params[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            params[name] = value
    try:
        results = run_all(args.notebooks, args.profile, args.out, args.stop_on_error, params)
    except ValueError as err:
        parser.error(str(err))
    print()
    print(summary_markdown(results, get_profile(args.profile)), end="")
    failed = [r for r in results if r.status != "ok"]
    for r in failed:
        print(f"FAILED: {r.notebook}: {r.error} (executed copy: {r.output})", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
