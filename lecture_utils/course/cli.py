"""``python -m lecture_utils COMMAND``: the course's command line.

- ``run [NOTEBOOK ...] --profile P --out DIR [--timeout S] [-p NAME VALUE] ...``: batch-run notebooks (runner.py)
- ``replicate [NOTEBOOK ...] --profile P --out DIR [--seed-offset N] [--against DIR]``: verdicts on fresh seeds
- ``student``, ``site``, ``clean``: the student edition, the course site, clean committed notebooks
  (``lecture_utils.course.student``, ``.site``, ``.nbclean``; each parses its own options)
"""

import argparse
import importlib
import math
import os
import signal
import sys
import textwrap

from lecture_utils.profiles import PROFILES, TIME_LIMITS

DESCRIPTION = "Tools of the 'Convolutional Networks II' lecture notebooks."
OTHER_COMMANDS = {  # command -> (module whose main(argv) it runs, what it does)
    "student": ("lecture_utils.course.student", "write the student edition of the notebooks (exercises blanked)"),
    "site": ("lecture_utils.course.site", "build the course site (Sphinx) from the committed notebooks"),
    "clean": ("lecture_utils.course.nbclean", "clean committed notebooks (no volatile metadata, no machine paths)"),
}

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
  Each notebook has a cell tagged "parameters": its SIZES table (each size at
  smoke, default and full) and plain values such as DATASET, SEED and LR.
  -p NAME VALUE sets a size at every profile, or a plain value; each VALUE is
  checked before any notebook starts (PROFILE is not a -p: use --profile).
  To see a notebook's sizes and parameters, their defaults and meanings:
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

exit status: 0 all ok, 1 a notebook failed or timed out (or a --ray address
does not answer as Ray), 2 bad command line, 128+signal when interrupted
(130 Ctrl-C, 143 SIGTERM, 129 SIGHUP), with --ray as without.
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


def _number(at_least_zero):
    """argparse type of a finite number >= 0 (``at_least_zero``) or > 0."""

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not at_least_zero):
            raise argparse.ArgumentTypeError(f"{text}: give a number {'>=' if at_least_zero else '>'} 0")
        return value

    return parse


def parse_parameters(pairs):
    """``{NAME: VALUE text}`` from ``-p NAME VALUE`` pairs; the runner reads each VALUE as the notebook's
    parameter takes it (a Python literal, or the text itself for a string parameter) and checks it."""
    params = {}
    for name, value in pairs:
        if not name.isidentifier():
            raise ValueError(f"-p {name!r}: a parameter name is a Python identifier, such as EPOCHS or N_TRAIN")
        if name in params:
            raise ValueError(f"-p {name} is given twice")
        params[name] = value
    return params


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m lecture_utils", description=DESCRIPTION,
                                     epilog="python -m lecture_utils COMMAND --help: what a command does and its "
                                            "options")
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
    run.add_argument("--timeout", type=_seconds, default=None, metavar="SECONDS", help=TIMEOUT_HELP)
    run.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                     help="set a notebook parameter; a size (SIZES entry) is set at every profile (VALUE is read as "
                          "a Python literal, or as text for a string parameter)")
    run.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                     help="run each notebook as a Ray task: on a local Ray instance (no ADDRESS), the cluster this "
                          "machine is part of (auto), or a head node (HOST:PORT, ray://HOST:PORT); needs "
                          "pip install -e \".[cluster]\"")
    run.add_argument("--gpus-per-notebook", type=_number(at_least_zero=True), default=None, metavar="N",
                     help="with --ray: GPUs per notebook (default: 1 when the cluster has GPUs, else 0)")
    run.add_argument("--cpus-per-notebook", type=_number(at_least_zero=False), default=None, metavar="N",
                     help="with --ray: CPUs per notebook (> 0), also its torch threads (default: 1)")
    run.add_argument("--update-times", default=None, metavar="FILE",
                     help="after the run, write each notebook's measured time at this profile into FILE (JSON; "
                          "the notebooks' opening tables read notebooks/measured_times.json)")
    run.add_argument("--list-parameters", action="store_true",
                     help="list each notebook's parameters (sizes at every profile, defaults, meanings) and exit")

    from lecture_utils.course.replicate import REPLICATE_DESCRIPTION, add_arguments

    rep = sub.add_parser("replicate", help="rerun notebooks on fresh seeds and say which verdicts replicate",
                         description=REPLICATE_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(rep, timeout_type=_seconds, timeout_help=TIMEOUT_HELP)
    for name, (_, what) in OTHER_COMMANDS.items():  # listed in the help; main() hands their options over as given
        sub.add_parser(name, help=what, add_help=False)
    return parser


TIMEOUT_HELP = ("seconds per notebook (default: by profile: "
                + ", ".join(f"{p} {s} s" for p, s in TIME_LIMITS.items()) + "; 0: no limit)")


def list_parameters(notebooks):
    """The text of ``--list-parameters``: each notebook's sizes (every profile) and parameters, with meanings."""
    from lecture_utils.course.parameters import describe, notebook_parameters

    lines = []
    for nb in notebooks:
        lines.append(f"{nb}:")
        try:
            lines += describe(notebook_parameters(nb))
        except ValueError as err:
            lines.append(f"  cannot be read: {err}")
    return "\n".join(lines)


def _fail(message, command="run"):
    """A bad command line found after parsing: one line per problem naming what was wrong, exit 2."""
    for line in str(message).splitlines() or [""]:
        print(f"python -m lecture_utils {command}: error: {line}", file=sys.stderr)
    sys.exit(2)


def other_command(name, argv):
    """``student``, ``site``, ``clean``: their module's ``main(argv)``; one line if the module is not there."""
    module_name = OTHER_COMMANDS[name][0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name != module_name:
            raise
        print(f"python -m lecture_utils {name}: not available in this version ({module_name} is missing)",
              file=sys.stderr)
        return 2
    return module.main(argv) or 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in OTHER_COMMANDS:
        return other_command(argv[0], argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "replicate":
            from lecture_utils.course.replicate import main as replicate_main

            return replicate_main(args)
        return run(args)
    except BrokenPipeError:  # the output piped into `head`: nothing more to say, and no error at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _signal_name(err):
    return err.args[0] if err.args and err.args[0] in signal.Signals.__members__ else "SIGINT"


def run(args):
    """``python -m lecture_utils run``: the exit status."""
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
            for option, value in (("--gpus-per-notebook", args.gpus_per_notebook),
                                  ("--cpus-per-notebook", args.cpus_per_notebook)):
                if value is not None:
                    raise ValueError(f"{option} needs --ray (without it, notebooks run one at a time here)")
            results = run_all(args.notebooks, args.profile, args.out, args.stop_on_error, params,
                              timeout=args.timeout)
        else:
            from lecture_utils.course.cluster import run_all_on_ray

            results = run_all_on_ray(args.notebooks, args.profile, args.out, args.stop_on_error, params,
                                     timeout=args.timeout, address=None if args.ray == "local" else args.ray,
                                     gpus_per_notebook=args.gpus_per_notebook,
                                     cpus_per_notebook=1 if args.cpus_per_notebook is None else args.cpus_per_notebook)
    except (ValueError, ImportError) as err:
        _fail(str(err))
    except BrokenPipeError:
        raise
    except ConnectionError as err:  # a Ray address that does not answer as Ray: not a usage error
        print(f"python -m lecture_utils run: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:  # before the first notebook or between two; the summary is written
        name = _signal_name(err)
        how = "Ctrl-C" if name == "SIGINT" else name
        summary = os.path.join(args.out, "summary.md")
        print(f"INTERRUPTED: {how}: the run stopped" + (f"; what finished is in {summary}" if os.path.isfile(summary)
                                                       else ""), file=sys.stderr)
        return 128 + signal.Signals[name]
    from lecture_utils.course.summary import summary_markdown, update_times

    if args.update_times:
        update_times(args.update_times, results)
    print()
    print(summary_markdown(results), end="")
    print(f"every notebook of {args.out}, earlier runs included: {args.out.rstrip('/')}/summary.md")
    for r in results:
        if r.status != "ok":
            print(f"{r.status.upper()}: {r.notebook}: {r.error} (executed copy: {r.output})", file=sys.stderr)
        if r.fallback:
            print(f"FALLBACK: {r.notebook} ran on {r.dataset}, not {r.dataset_requested}: its numbers are not "
                  f"comparable with the committed results (LECTURE_STRICT_DATA=1 makes this an error)", file=sys.stderr)
    stopped = [r.stopped_by for r in results if r.status == "interrupted"]
    if stopped:
        return 128 + signal.Signals[stopped[0]] if stopped[0] in signal.Signals.__members__ else 130
    return 1 if any(r.status != "ok" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
