"""The three run sizes, and the check of a notebook's sizes and parameters.

``smoke`` proves every cell runs (CI, under a minute), ``default`` shows the
lecture's effect on a laptop CPU (at most 10 minutes), ``full`` reproduces the
papers' numbers on one GPU (at most 15 minutes). A notebook keeps its sizes in
its parameters cell, one entry per size with its value at every profile::

    SIZES = {
        "N_TRAIN": {"smoke": 500, "default": 1_000, "full": 60_000},  # training digits
        "EPOCHS": {"smoke": 2, "default": 40, "full": 40},  # epochs per run
    }
    DATASET = "mnist"
    SEED = 0

and its setup cell asks for the values of its profile, every one checked::

    cfg = settings(PROFILE, SIZES, dataset=DATASET, datasets=("mnist", "digits"), seed=SEED)
    cfg["n_train"], cfg["epochs"], cfg["dataset"], cfg["seed"]

``python -m lecture_utils run -p EPOCHS 3`` sets one entry to 3 at every
profile; the same rules as here check it before the notebook starts.
Errors name the notebook's parameter (``EPOCHS``), the value and what is allowed.
"""

import math
import os
from dataclasses import dataclass

PROFILES = ("smoke", "default", "full")
ENV_VAR = "LECTURE_PROFILE"
PROGRESS_ENV = "LECTURE_PROGRESS"  # "1": fit shows progress bars (the runner sets "0")
# Per-notebook time limit of the batch runner, by profile: three times the budget above.
TIME_LIMITS = {"smoke": 300, "default": 1800, "full": 2700}
SCHEDULES = ("constant", "cosine", "linear", "step")  # train.SCHEDULES, without importing torch here


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v):
    return _is_int(v) or isinstance(v, float)


@dataclass(frozen=True)
class Rule:
    """What a parameter allows: ``kind`` "int", "number" (an int or a finite float), "str", "bool" or "choice";
    a lower bound ``low`` (allowed when ``closed``), an upper bound ``high`` (never allowed), or ``choices``."""

    kind: str
    low: float = None
    closed: bool = False
    high: float = None
    choices: tuple = ()
    high_text: str = ""  # how ``high`` reads ("2**63")

    def words(self):
        """What is allowed, as the error message says it: ``an int > 0``, ``one of 'step', 'cosine'``."""
        if self.kind == "choice":
            return "one of " + ", ".join(map(repr, self.choices))
        text = {"int": "an int", "number": "a finite number", "str": "a non-empty string",
                "bool": "True or False"}[self.kind]
        if self.low is not None:
            text += f" {'>=' if self.closed else '>'} {self.low:g}"
        if self.high is not None:
            text += f"{' and' if self.low is not None else ''} < {self.high_text or format(self.high, 'g')}"
        return text

    def problem(self, value):
        """What is wrong with ``value`` ("has type str", "is out of range", ...), or "" when it is allowed."""
        if self.kind == "choice":
            return "" if any(value == c and type(value) is type(c) for c in self.choices) else "is not allowed here"
        ok_type = {"int": _is_int(value), "number": _is_number(value), "str": isinstance(value, str),
                   "bool": isinstance(value, bool)}[self.kind]
        if not ok_type:
            return f"has type {type(value).__name__}"
        if self.kind == "str" and not value.strip():
            return "is empty"
        if self.kind == "number" and not math.isfinite(value):
            return "is not a finite number"
        if self.low is not None and (value < self.low or (value == self.low and not self.closed)):
            return "is out of range"
        if self.high is not None and value >= self.high:
            return "is out of range"
        return ""


# Parameters outside SIZES, by name: what each allows. ``settings`` knows these names only.
RULES = {
    "seed": Rule("int", 0, closed=True, high=2**63, high_text="2**63"),
    "lr": Rule("number", 0),
    "sigma": Rule("number", 0),
    "alpha": Rule("number", 0, closed=True),
    "momentum": Rule("number", 0, closed=True, high=1),
    "weight_decay": Rule("number", 0, closed=True),
    "warmup_epochs": Rule("number", 0, closed=True),
    "schedule": Rule("choice", choices=(None, *SCHEDULES)),  # None: the notebook's choice by profile
}
POSITIVE = {int: Rule("int", 0), float: Rule("number", 0), str: Rule("str"), bool: Rule("bool")}  # a size's rule
# Sizes that count examples of a split: each must fit in the data set in use.
SPLIT_OF = {"n_train": "train", "n_capacity": "train", "n_small": "train", "n_val": "train", "n_test": "test",
            "n_monitor": "test"}


def get_profile(name=None):
    """The profile to use: ``name`` if given, else ``$LECTURE_PROFILE``, else ``"default"``."""
    if name is None:
        name = os.environ.get(ENV_VAR) or "default"
    if not isinstance(name, str) or name.strip().lower() not in PROFILES:
        raise ValueError(f"unknown profile {name!r}: valid profiles are {', '.join(PROFILES)} "
                         f"(set it with --profile or ${ENV_VAR})")
    return name.strip().lower()


def _refuse(name, value, problem, rule, shown=None):
    shown = repr(value) if shown is None else shown
    if rule.kind == "choice":
        return ValueError(f"parameter {name.upper()}={shown} {problem}: allowed are "
                          f"{', '.join(map(repr, rule.choices))}")
    return ValueError(f"parameter {name.upper()}={shown} {problem}: allowed is {rule.words()}")


def check_value(name, value, rule, shown=None):
    """``value`` if ``rule`` allows it (an int where a number is allowed becomes a float), else a ValueError.

    ``shown``: how the message writes the value (the command line's text, such as ``1e400``); default its repr.
    """
    problem = rule.problem(value)
    if problem:
        raise _refuse(name, value, problem, rule, shown)
    return float(value) if rule.kind == "number" else value


def size_rule(name, entry):
    """The rule of a SIZES entry ``{profile: value}``: its values' type (an int may stand for a float), and
    positive unless the name has a rule of its own (``ALPHA`` may be 0). A broken entry is a ValueError."""
    label = f"SIZES[{name!r}]"
    if not isinstance(name, str) or not name.isidentifier() or name != name.upper():
        raise ValueError(f"SIZES key {name!r} must be an upper-case name such as N_TRAIN")
    if not isinstance(entry, dict):
        raise ValueError(f"{label} must be a dict {{profile: value}} with {', '.join(PROFILES)}, got {entry!r}")
    missing, unknown = [p for p in PROFILES if p not in entry], [p for p in entry if p not in PROFILES]
    if missing or unknown:
        what = f"has no value for {', '.join(missing)}" if missing else f"has unknown profile {unknown[0]!r}"
        raise ValueError(f"{label} {what}: every entry gives {', '.join(PROFILES)}")
    types = {type(v) for v in entry.values()}
    if types == {int, float}:
        types = {float}
    if len(types) > 1 or next(iter(types)) not in POSITIVE:
        found = ", ".join(f"{p} {type(v).__name__}" for p, v in entry.items())
        raise ValueError(f"{label} must hold one type at every profile (int, float, str or bool; an int may stand "
                         f"for a float), got {found}")
    kind = next(iter(types))
    own = RULES.get(name.lower())
    if own is not None and own.kind != "choice" and kind in (int, float):
        return Rule("int" if kind is int else "number", own.low, own.closed, own.high, high_text=own.high_text)
    return own if own is not None and own.kind == "choice" else POSITIVE[kind]


def check_size(name, value, entry, shown=None):
    """An override of SIZES entry ``name`` (``-p NAME VALUE``): the entry's type and rule; the value, checked."""
    return check_value(name, value, size_rule(name, entry), shown)


def parameter_rule(name, datasets=None):
    """The rule of a parameter outside SIZES (``dataset`` uses ``datasets``); None for a name without a rule."""
    if name.lower() == "dataset":
        return Rule("choice", choices=tuple(datasets)) if datasets else Rule("str")
    return RULES.get(name.lower())


def settings(profile, sizes, *, datasets=None, **parameters):
    """The sizes of ``profile`` from a notebook's ``SIZES`` table and its other parameters, every value checked.

    Returns a dict with lower-case keys: ``{"n_train": 1000, "epochs": 40, ..., "dataset": "mnist", "seed": 0}``.
    Each SIZES entry needs a value for every profile, one type at every
    profile (an int may stand for a float) and positive values. A parameter
    must be one ``settings`` knows (``dataset``, which must be one of
    ``datasets``, ``seed``, ``lr``, ``schedule``, ...: see ``RULES``). Anything
    else raises ValueError naming the parameter (``EPOCHS``), the value and what is allowed.
    """
    profile = get_profile(profile)
    if not isinstance(sizes, dict):
        raise ValueError(f"SIZES must be a dict {{NAME: {{profile: value}}}}, got {type(sizes).__name__}")
    if datasets is not None and (isinstance(datasets, str) or not all(isinstance(d, str) for d in datasets)
                                 or not datasets):
        raise ValueError(f"datasets must be a tuple of data set names such as ('mnist', 'digits'), got {datasets!r}")
    cfg = {}
    for name, entry in sizes.items():
        rule = size_rule(name, entry)
        for p in PROFILES:  # every profile's value, so a typo in the full column shows at smoke
            value = check_value(name, entry[p], rule, None if p == profile else f"{entry[p]!r} at profile {p}")
            if p == profile:
                cfg[name.lower()] = value
    for key, value in parameters.items():
        rule = parameter_rule(key, datasets)
        if rule is None:
            raise ValueError(f"unknown parameter {key!r}: settings knows {', '.join(['dataset', *RULES])} "
                             "(a size goes into SIZES)")
        if key.lower() in cfg:
            raise ValueError(f"parameter {key.upper()} is both a SIZES entry and {key}=...: give it once")
        cfg[key.lower()] = check_value(key, value, rule)
    if "n_monitor" in cfg and "n_test" in cfg and cfg["n_monitor"] > cfg["n_test"]:
        raise ValueError(f"parameter N_MONITOR={cfg['n_monitor']:,} is larger than N_TEST={cfg['n_test']:,}: "
                         "the monitor set is the first N_MONITOR test images")
    return cfg


def cap_to_data(cfg, data):
    """``cfg`` with every size that counts examples (``n_train``, ``n_test``, ...) checked against ``data``.

    ``data`` is what ``load_data`` returned. A size larger than the split it
    counts is cut to the split, with a printed note, when ``data`` is the
    fallback (``data.fallback_reason`` says why it ran instead of the data set
    asked for); on the data set asked for it is a ValueError.
    """
    if not isinstance(cfg, dict):
        raise TypeError(f"cfg must be the dict settings(...) returned, got {type(cfg).__name__}")
    out = dict(cfg)
    name = getattr(data, "dataset", "") or getattr(data, "name", "the data")
    for key in [k for k in SPLIT_OF if k in cfg]:  # n_monitor after n_test: it is a slice of the test subset
        split = SPLIT_OF[key]
        available = len(data.train_labels if split == "train" else data.test_labels)
        if key == "n_monitor" and "n_test" in out:
            available = min(available, out["n_test"])
        if out[key] <= available:
            continue
        if not getattr(data, "fallback_reason", ""):
            raise ValueError(f"parameter {key.upper()}={out[key]:,} is larger than the {available:,} {split} "
                             f"images of {name}: allowed is 1 to {available:,}")
        print(f"{key.upper()}: {out[key]:,} is more than the {available:,} {split} images of {name} (the fallback) "
              f"in use: using {available:,}")
        out[key] = available
    return out


def read_times(path, notebook):
    """``{profile: "412 s on 2 threads (AMD EPYC 7B13, 2026-12-04)"}``: the measured times of ``notebook``.

    ``path`` is the JSON file the batch runner writes with ``--update-times``
    (``notebooks/measured_times.json``); a profile never measured, or no file, is left out.
    """
    import json

    try:
        with open(path, encoding="utf-8") as f:
            entries = json.load(f).get(notebook, {})
    except (OSError, ValueError, AttributeError):
        return {}
    out = {}
    for profile, e in entries.items():
        try:
            out[profile] = (f"{e['seconds']:.0f} s on {e['threads']} thread{'s' if e['threads'] != 1 else ''} "
                            f"({e['cpu']}, {e['date']})")
        except (KeyError, TypeError, ValueError):
            continue
    return out


def sizes_table(sizes, times=None):
    """A text table of a notebook's SIZES: one row per size, one column per profile, then the measured times.

    ``times`` is ``read_times(...)``'s dict; a profile without a measurement reads "not measured".
    """
    times = times or {}
    rows = [[name, *(f"{entry[p]:,}" if isinstance(entry[p], int) else f"{entry[p]:g}"
                     if isinstance(entry[p], float) else str(entry[p]) for p in PROFILES)]
            for name, entry in sizes.items()]
    width = [max(len(r[i]) for r in rows + [["size", *PROFILES]]) for i in range(len(PROFILES) + 1)]
    lines = ["  ".join(c.ljust(width[i]) if i == 0 else c.rjust(width[i]) for i, c in enumerate(r))
             for r in [["size", *PROFILES], *rows]]
    lines.insert(1, "  ".join("-" * w for w in width))
    lines.append("measured time per profile (python -m lecture_utils run --profile P):")
    lines += [f"  {p:<8} {times.get(p, 'not measured')}" for p in PROFILES]
    return "\n".join(lines)
