"""The search space: checking it, the grid of a grid search, and asking an Optuna trial for one point.

A space maps a parameter's name to ``("log", low, high)``, ``("linear", low, high)``,
``("int", low, high)`` or ``("choice", [values])``.
"""

import math

KINDS = ("log", "linear", "int", "choice")


def _check_choices(where, values):
    """Choice values Optuna can tell apart: no NaN, no two that Python calls equal (1 == True == 1.0)."""
    if not all(v is None or isinstance(v, (bool, int, float, str)) for v in values):
        raise ValueError(f"{where}: choice values must be None, bool, int, float or str")
    if any(isinstance(v, float) and math.isnan(v) for v in values):
        raise ValueError(f"{where}: a choice value is NaN, which equals nothing (not even itself); leave it out")
    for i, a in enumerate(values):
        for b in values[i + 1:]:
            if a == b:
                same = "the same value twice" if repr(a) == repr(b) else f"{a!r} == {b!r} in Python"
                raise ValueError(f"{where}: choice values must be distinct, but {a!r} and {b!r} are {same} "
                                 "(Optuna would merge them); use values that differ, such as strings")


def check_space(space):
    """The search space as ``{name: (kind, ...)}`` with numbers normalised; ValueError naming what is wrong."""
    allowed = ('("log", low, high), ("linear", low, high), ("int", low, high) or ("choice", [values])')
    if not isinstance(space, dict) or not space:
        raise ValueError(f"space must be a non-empty dict {{name: spec}}, got {space!r}; a spec is {allowed}")
    out = {}
    for name, spec in space.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"space: parameter names must be non-empty strings, got {name!r}")
        where = f"space[{name!r}] = {spec!r}"
        if not isinstance(spec, (tuple, list)) or not spec or spec[0] not in KINDS:
            raise ValueError(f"{where}: unknown or missing kind; a spec is {allowed}")
        kind = spec[0]
        if kind == "choice":
            if len(spec) != 2 or not isinstance(spec[1], (list, tuple)) or not spec[1]:
                raise ValueError(f"{where}: a choice is (\"choice\", [values]) with at least one value")
            _check_choices(where, list(spec[1]))
            out[name] = ("choice", list(spec[1]))
            continue
        if len(spec) != 3:
            raise ValueError(f"{where}: a {kind} range is ({kind!r}, low, high)")
        low, high = spec[1], spec[2]
        number = (int,) if kind == "int" else (int, float)
        if not all(isinstance(v, number) and not isinstance(v, bool) and math.isfinite(v) for v in (low, high)):
            raise ValueError(f"{where}: low and high must be finite {'ints' if kind == 'int' else 'numbers'}")
        if not low < high:
            raise ValueError(f"{where}: low must be less than high")
        if kind == "log" and low <= 0:
            raise ValueError(f"{where}: a log range needs 0 < low")
        out[name] = (kind, low, high) if kind == "int" else (kind, float(low), float(high))
    return out

def _max_values(spec):
    """How many distinct grid values a dimension can take (None: as many as wanted)."""
    kind = spec[0]
    if kind == "choice":
        return len(spec[1])
    if kind == "int":
        return spec[2] - spec[1] + 1
    return None


def grid_shape(space, n_trials):
    """Values per dimension of the most even grid with at most ``n_trials`` points (3 x 3 for 9 in 2-D)."""
    space = check_space(space)
    counts = {name: 1 for name in space}
    while True:
        total = math.prod(counts.values())
        for name in sorted(counts, key=lambda n: counts[n]):  # grow the coarsest dimension that still fits
            limit = _max_values(space[name])
            if (limit is None or counts[name] < limit) and total // counts[name] * (counts[name] + 1) <= n_trials:
                counts[name] += 1
                break
        else:
            return counts


def grid_values(spec, m):
    """``m`` evenly spread values of one dimension: ends included, the middle for m = 1."""
    import numpy as np

    kind = spec[0]
    if kind == "choice":
        idx = [len(spec[1]) // 2] if m == 1 else np.linspace(0, len(spec[1]) - 1, m).round().astype(int)
        return [spec[1][i] for i in idx]
    low, high = spec[1], spec[2]
    if kind == "log":
        v = [math.sqrt(low * high)] if m == 1 else np.geomspace(low, high, m)
    else:
        v = [(low + high) / 2] if m == 1 else np.linspace(low, high, m)
    if kind == "int":
        return sorted({int(round(x)) for x in v})
    return [float(x) for x in v]

def suggest(trial, space):
    """Ask an Optuna trial for one value of every dimension, in the space's order."""
    params = {}
    for name, spec in space.items():
        kind = spec[0]
        if kind == "choice":
            params[name] = trial.suggest_categorical(name, spec[1])
        elif kind == "int":
            params[name] = trial.suggest_int(name, spec[1], spec[2])
        else:
            params[name] = trial.suggest_float(name, spec[1], spec[2], log=kind == "log")
    return params
