"""The three run sizes of every notebook, in one place.

``smoke`` proves every cell runs (CI, under a minute), ``default`` shows the
lecture's effect on a laptop CPU (at most 10 minutes), ``full`` reproduces the
papers' numbers on one GPU (at most 15 minutes). A notebook asks for its sizes
with ``settings("elastic", PROFILE, epochs=EPOCHS, ...)``: a parameter left at
``None`` takes the profile's value, anything else overrides it.
"""

import os

PROFILES = ("smoke", "default", "full")
ENV_VAR = "LECTURE_PROFILE"

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
        "smoke": dict(n_train=1000, n_test=500, epochs=1, batch_size=128, n_curve=5),
        "default": dict(n_train=10000, n_test=5000, epochs=6, batch_size=128, n_curve=9),
        "full": dict(n_train=60000, n_test=10000, epochs=15, batch_size=256, n_curve=13),
    },
    # 02_elastic_distortions
    "elastic": {
        "smoke": dict(n_train=500, n_test=500, n_monitor=200, epochs=2, batch_size=128, repeats=1),
        "default": dict(n_train=2000, n_test=10000, n_monitor=2000, epochs=30, batch_size=128, repeats=2),
        "full": dict(n_train=60000, n_test=10000, n_monitor=2000, epochs=40, batch_size=256, repeats=1),
    },
}


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


def settings(notebook, profile=None, **overrides):
    """Sizes for ``notebook`` at ``profile``; overrides that are not ``None`` win.

    Every value is checked: an override must have the profile value's type
    (an int may stand for a float) and be positive, else ``ValueError`` names
    the parameter, the value and what is allowed.
    """
    if notebook not in SETTINGS:
        raise ValueError(f"no settings for notebook {notebook!r}: known are {', '.join(SETTINGS)}")
    profile = get_profile(profile)
    table = dict(SETTINGS[notebook][profile])
    for key, value in overrides.items():
        if key not in table:
            raise ValueError(
                f"unknown setting {key!r} for notebook {notebook!r}: known are {', '.join(table)}"
            )
        if value is None:
            continue
        expected = type(table[key])
        ok_type = isinstance(value, expected) and not isinstance(value, bool)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok_type = float(value), True
        if not ok_type:
            raise ValueError(
                f"parameter {key}={value!r} has type {type(value).__name__}: "
                f"expected {expected.__name__} (or None for the {profile} profile's {table[key]!r})"
            )
        if value <= 0:
            raise ValueError(f"parameter {key}={value!r} must be positive (the {profile} profile uses {table[key]!r})")
        table[key] = value
    return table
