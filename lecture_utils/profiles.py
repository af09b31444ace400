"""The three run sizes of every notebook, in one place, and the check of a notebook's parameters.

``smoke`` proves every cell runs (CI, under a minute), ``default`` shows the
lecture's effect on a laptop CPU (at most 10 minutes), ``full`` reproduces the
papers' numbers on one GPU (at most 15 minutes). A notebook asks for its sizes
with ``settings("elastic", PROFILE, epochs=EPOCHS, ...)``: a size left at
``None`` takes the profile's value, anything else overrides it. The same call
checks the notebook's other parameters (``dataset=DATASET``, ``seed=SEED``,
``lr=LR``, ...), so a bad ``-p`` value stops the notebook in its first cells.
A setting ``n_train`` is the notebook parameter ``N_TRAIN``: messages use that name.
"""

import math
import os

PROFILES = ("smoke", "default", "full")
ENV_VAR = "LECTURE_PROFILE"
# Per-notebook time limit of the batch runner, by profile: three times the budget above.
TIME_LIMITS = {"smoke": 300, "default": 1800, "full": 2700}

# One table per notebook: name -> {profile -> sizes}. Every profile of a table
# has the same keys, so a parameter means the same thing at every size.
SETTINGS = {
    # tests/notebooks/demo.ipynb: proves the runner and the wiring.
    "demo": {
        "smoke": dict(n_train=256, epochs=1),
        "default": dict(n_train=2048, epochs=2),
        "full": dict(n_train=60000, epochs=5),
    },
    # 01_invariance_and_augmentation
    "invariance": {
        "smoke": dict(n_train=500, n_test=300, epochs=1, batch_size=128, n_curve=3),
        "default": dict(n_train=10000, n_test=5000, epochs=6, batch_size=128, n_curve=9),
        "full": dict(n_train=60000, n_test=10000, epochs=15, batch_size=256, n_curve=13),
    },
    # 02_elastic_distortions
    "elastic": {
        "smoke": dict(n_train=500, n_test=500, n_monitor=200, epochs=2, batch_size=128, repeats=1),
        "default": dict(n_train=2000, n_test=10000, n_monitor=1000, epochs=40, batch_size=128, repeats=2),
        "full": dict(n_train=60000, n_test=10000, n_monitor=2000, epochs=40, batch_size=256, repeats=1),
    },
}

# Parameters with one default at every profile (it lives in the notebook's
# parameters cell): notebook -> {name: what is allowed}. A tuple lists the
# allowed values; a string names a rule of ``RULES``.
PARAMETERS = {
    "demo": {"dataset": ("digits", "mnist"), "seed": "int>=0", "lr": "number>0"},
    "invariance": {"dataset": ("mnist", "digits"), "seed": "int>=0", "lr": "number>0"},
    "elastic": {"dataset": ("mnist", "digits"), "seed": "int>=0", "lr": "number>0", "alpha": "number>=0",
                "sigma": "number>0"},
}


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v):
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


RULES = {  # rule -> (test, what is allowed, in words)
    "int>0": (lambda v: _is_int(v) and v > 0, "an int > 0"),
    "int>=0": (lambda v: _is_int(v) and v >= 0, "an int >= 0"),
    "number>0": (lambda v: _is_number(v) and v > 0, "a finite number > 0"),
    "number>=0": (lambda v: _is_number(v) and v >= 0, "a finite number >= 0"),
}
# Sizes that count examples of a split: each must fit in the data set.
SPLIT_OF = {"n_train": "train", "n_test": "test", "n_monitor": "test"}


class Settings(dict):
    """A notebook's settings; ``explicit`` names the sizes the user set rather than the profile."""

    def __init__(self, values, notebook, profile, explicit=()):
        super().__init__(values)
        self.notebook, self.profile, self.explicit = notebook, profile, frozenset(explicit)


def get_profile(name=None):
    """The profile to use: ``name`` if given, else ``$LECTURE_PROFILE``, else ``"default"``."""
    if name is None:
        name = os.environ.get(ENV_VAR) or "default"
    if not isinstance(name, str) or name.strip().lower() not in PROFILES:
        raise ValueError(
            f"unknown profile {name!r}: valid profiles are {', '.join(PROFILES)} "
            f"(set it with the PROFILE parameter or ${ENV_VAR})"
        )
    return name.strip().lower()


def _check_size(key, value, default, profile):
    """An override of a profile size: same type as the profile's value (an int may stand for a float), positive."""
    expected = type(default)
    rule = "int>0" if expected is int else "number>0"
    if expected is float and _is_int(value):
        value = float(value)
    ok_type = isinstance(value, expected) and not isinstance(value, bool)
    if not ok_type or not RULES[rule][0](value):
        problem = f"has type {type(value).__name__}" if not ok_type else "is out of range"
        raise ValueError(f"parameter {key.upper()}={value!r} {problem}: allowed is {RULES[rule][1]} "
                         f"(or None for the {profile} profile's {default!r})")
    return value


def _check_fixed(key, value, allowed):
    """A parameter outside the profile tables: one of a tuple of values, or a rule of ``RULES``."""
    if isinstance(allowed, tuple):
        if value not in allowed:
            raise ValueError(f"parameter {key.upper()}={value!r} is not allowed here: "
                             f"allowed are {', '.join(map(repr, allowed))}")
        return value
    test, words = RULES[allowed]
    if not test(value):
        raise ValueError(f"parameter {key.upper()}={value!r} is not allowed: it must be {words}")
    return float(value) if allowed.startswith("number") else value


def _check_against_data(table, explicit, dataset):
    """Explicit sizes larger than the data set they count, and a monitor set larger than the test set."""
    from lecture_utils.data import SIZES

    for key in explicit & SPLIT_OF.keys():
        split = SPLIT_OF[key]
        available = SIZES[dataset][split == "test"]
        if table[key] > available:
            raise ValueError(f"parameter {key.upper()}={table[key]:,} is larger than {dataset}'s {available:,} "
                             f"{split} images: allowed is 1 to {available:,} (or None for the profile's size)")
    if "n_monitor" in explicit and table["n_monitor"] > table["n_test"]:
        raise ValueError(f"parameter N_MONITOR={table['n_monitor']:,} is larger than N_TEST={table['n_test']:,}: "
                         "the monitor set is the first N_MONITOR test images")


def settings(notebook, profile=None, **parameters):
    """Sizes and parameters for ``notebook`` at ``profile``: sizes that are not ``None`` override the profile's.

    Every value is checked: a size must have the profile value's type and be
    positive, and, when ``dataset`` is given, fit in that data set; other
    parameters must be what ``PARAMETERS`` allows. Anything else raises
    ``ValueError`` naming the parameter, the value and what is allowed.
    """
    if notebook not in SETTINGS:
        raise ValueError(f"no settings for notebook {notebook!r}: known are {', '.join(SETTINGS)}")
    profile = get_profile(profile)
    table, fixed = dict(SETTINGS[notebook][profile]), PARAMETERS.get(notebook, {})
    explicit = set()
    for key, value in parameters.items():
        if key in table:
            if value is not None:
                table[key] = _check_size(key, value, table[key], profile)
                explicit.add(key)
        elif key in fixed:
            table[key] = _check_fixed(key, value, fixed[key])
        else:
            raise ValueError(f"unknown setting {key!r} for notebook {notebook!r}: "
                             f"known are {', '.join([*table, *fixed])}")
    if "dataset" in table:
        _check_against_data(table, explicit, table["dataset"])
    return Settings(table, notebook, profile, explicit)


def fit_to_data(cfg, data):
    """``cfg`` with its subset sizes cut to the examples ``data`` (a ``load_data`` result) holds.

    A profile's size larger than the data set is cut, with a note (the
    ``full`` profile on the small digits fallback); an explicit one is an
    error, unless the data set is a fallback that already says so in a banner.
    """
    if not isinstance(cfg, Settings):
        raise TypeError(f"cfg must be what settings(...) returned, got {type(cfg).__name__}")
    out = Settings(cfg, cfg.notebook, cfg.profile, cfg.explicit)
    for key in [k for k in SPLIT_OF if k in cfg]:  # n_monitor after n_test: it is a slice of the test subset
        split = SPLIT_OF[key]
        available = len(data.train_labels if split == "train" else data.test_labels)
        if key == "n_monitor" and "n_test" in out:
            available = min(available, out["n_test"])
        if cfg[key] <= available:
            continue
        if key in cfg.explicit and not data.fallback_reason:
            raise ValueError(f"parameter {key.upper()}={cfg[key]:,} is larger than the {available:,} "
                             f"{split} images of {data.name}: allowed is 1 to {available:,}")
        whose = "your" if key in cfg.explicit else f"the {cfg.profile} profile's"
        print(f"{key}: {whose} {cfg[key]:,} is more than the {available:,} {split} images of "
              f"{data.name} in use: using {available:,}")
        out[key] = available
    return out
