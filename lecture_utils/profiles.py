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
        "smoke": dict(n_train=500, n_test=300, epochs=1, batch_size=128, n_curve=3, repeats=2),
        "default": dict(n_train=4000, n_test=1500, epochs=5, batch_size=128, n_curve=7, repeats=3),
        "full": dict(n_train=60000, n_test=10000, epochs=15, batch_size=256, n_curve=13, repeats=3),
    },
    # 02_elastic_distortions
    "elastic": {
        "smoke": dict(n_train=500, n_test=500, n_monitor=200, epochs=2, batch_size=128, repeats=2),
        "default": dict(n_train=1000, n_test=10000, n_monitor=500, epochs=40, batch_size=128, repeats=5),
        "full": dict(n_train=60000, n_test=10000, n_monitor=2000, epochs=40, batch_size=256, repeats=3),
    },
    # 07_debugging_and_visualization (n_test: held-out images watched as the validation set)
    "debugging": {
        "smoke": dict(n_train=500, n_test=300, n_small=100, epochs=1, long_epochs=2, overfit_epochs=2, repeats=1,
                      batch_size=128),
        "default": dict(n_train=4000, n_test=2000, n_small=500, epochs=6, long_epochs=40, overfit_epochs=30,
                        repeats=3, batch_size=128),
        "full": dict(n_train=20000, n_test=10000, n_small=1000, epochs=10, long_epochs=60, overfit_epochs=30,
                     repeats=3, batch_size=128),
    },
    # 05_resnets: plain vs residual nets of two depths (6n+2) and width (first stage's channels; the paper's 16).
    "resnets": {
        "smoke": dict(n_train=256, n_test=500, n_monitor=250, epochs=1, batch_size=64, repeats=2, width=4,
                      depth_shallow=8, depth_deep=14),
        "default": dict(n_train=6400, n_test=5000, n_monitor=500, epochs=4, batch_size=128, repeats=4, width=8,
                        depth_shallow=8, depth_deep=20),
        "full": dict(n_train=50000, n_test=10000, n_monitor=10000, epochs=30, batch_size=128, repeats=1, width=16,
                     depth_shallow=20, depth_deep=56),
    },
    # 03_alexnet_ablations: five cifar_alexnet variants on a small budget (n_train x epochs) and in long runs
    # (n_capacity x capacity_epochs); width: cifar_alexnet's channel multiplier.
    "alexnet_ablations": {
        "smoke": dict(n_train=256, epochs=1, n_capacity=128, capacity_epochs=2, n_test=500, repeats=2,
                      batch_size=128, width=0.25),
        "default": dict(n_train=2000, epochs=4, n_capacity=1000, capacity_epochs=30, n_test=2000, repeats=3,
                        batch_size=64, width=0.25),
        "full": dict(n_train=50000, epochs=30, n_capacity=10000, capacity_epochs=60, n_test=10000, repeats=3,
                     batch_size=128, width=0.5),
    },
    # 04_googlenet_inception: cifar_googlenet against cifar_alexnet on one budget; widths: their multipliers.
    "googlenet": {
        "smoke": dict(n_train=256, epochs=1, n_test=500, repeats=2, batch_size=128, googlenet_width=0.125,
                      alexnet_width=0.25),
        "default": dict(n_train=2000, epochs=5, n_test=2000, repeats=3, batch_size=128, googlenet_width=0.25,
                        alexnet_width=0.5),
        "full": dict(n_train=50000, epochs=30, n_test=10000, repeats=3, batch_size=128, googlenet_width=0.25,
                     alexnet_width=0.5),
    },
    # 06_optimization_tricks: n_val held out of the training split; n_small, small_epochs: section 5 (generalization);
    # n_trials x search_seeds per search strategy; lr_steps, range_steps: the halving rule's runs, the range test;
    # bo_steps: steps of the 1-D Bayesian-optimization picture.
    "optimization": {
        "smoke": dict(n_train=300, n_val=300, n_small=300, epochs=1, repeats=2, batch_size=64, small_epochs=2,
                      n_trials=4, search_seeds=2, lr_steps=10, range_steps=30, bo_steps=2),
        "default": dict(n_train=2000, n_val=2000, n_small=1000, epochs=5, repeats=4, batch_size=64, small_epochs=15,
                        n_trials=16, search_seeds=3, lr_steps=40, range_steps=100, bo_steps=6),
        "full": dict(n_train=10000, n_val=10000, n_small=5000, epochs=8, repeats=3, batch_size=128, small_epochs=20,
                     n_trials=24, search_seeds=3, lr_steps=100, range_steps=200, bo_steps=8),
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
    "debugging": {"dataset": ("mnist", "digits"), "seed": "int>=0", "lr": "number>0"},
    "resnets": {"dataset": ("cifar10", "digits"), "seed": "int>=0", "lr": "number>0",
                "schedule": (None, "step", "cosine", "linear", "constant")},
    "alexnet_ablations": {"dataset": ("cifar10", "digits"), "seed": "int>=0", "lr": "number>0"},
    "googlenet": {"dataset": ("cifar10", "digits"), "seed": "int>=0", "lr": "number>0"},
    "optimization": {"dataset": ("mnist", "digits"), "seed": "int>=0", "lr": "number>0"},
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
