"""The checks' shared parts: ``ExerciseError``, ``rel_error`` and the helpers every check uses.

Answer validation (``_given``, ``_number``, ``_int_answer``, ``_tensor``, ``_function``), the comparisons
(``_close``, ``_which``: which known mistake an answer matches), the one-line verdicts (``_correct`` prints
"Correct: ...", ``_wrong`` raises ``ExerciseError``) and ``_keeps_rng`` (``torch.random.fork_rng``).
"""

import functools
import math
from numbers import Real

import torch


class ExerciseError(ValueError):
    """A self-check found a wrong (or missing) answer; the message says what was expected, what came out, a hint."""


# ---------------------------------------------------------------- shared helpers

def rel_error(x, y):
    """CS231n's relative error: max over entries of |x - y| / max(1e-8, |x| + |y|)."""
    x = torch.as_tensor(x).detach().cpu().double()
    y = torch.as_tensor(y).detach().cpu().double()
    return ((x - y).abs() / (x.abs() + y.abs()).clamp_min(1e-8)).max().item()


def _keeps_rng(check):
    """Run ``check`` without changing torch's global CPU random state (checks build modules and draw numbers)."""

    @functools.wraps(check)
    def wrapper(*args, **kwargs):
        with torch.random.fork_rng(devices=[]):
            return check(*args, **kwargs)

    return wrapper


def _correct(text):
    print(f"Correct: {text}")


def _wrong(expected, got, hint):
    raise ExerciseError(f"expected {expected}, got {got}. Hint: {hint}")


def _given(value, what):
    """ExerciseError for an answer still at its placeholder (None or ...)."""
    if value is None or value is Ellipsis:
        raise ExerciseError(f"no answer yet: {what} is {value!r}. Hint: replace the placeholder with your answer "
                            "and run the exercise cell before this one")
    return value


def _number(value, what):
    """A finite float from an int, float, NumPy scalar or one-element tensor; ExerciseError otherwise."""
    _given(value, what)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    elif hasattr(value, "item") and getattr(value, "size", None) == 1:  # NumPy scalar or 1-element array
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        _wrong(f"{what} as a finite number", f"{value!r} ({type(value).__name__})",
               "return or assign a plain number (an int or a float), not a string, a list or a NaN")
    return float(value)


def _tensor(value, what, shape):
    """``value`` as a float64 CPU tensor of the given shape; ExerciseError for another type or shape."""
    _given(value, what)
    if not isinstance(value, torch.Tensor):
        try:
            value = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError):
            _wrong(f"{what} as a tensor of shape {tuple(shape)}", type(value).__name__,
                   "return a torch tensor (e.g. built with torch operations on the input)")
    if tuple(value.shape) != tuple(shape):
        _wrong(f"{what} of shape {tuple(shape)}", f"shape {tuple(value.shape)}",
               "compare your result's .shape with the expected one (keepdim=True keeps a reduced axis)")
    return value.detach().cpu().double()


def _function(fn, what):
    _given(fn, what)
    if not callable(fn):
        _wrong(f"{what} as a function", f"a {type(fn).__name__}", "pass the function itself, without calling it")
    return fn


def _which(got, candidates, tol=1e-4):
    """The hint of the first (value, hint) candidate that ``got`` matches to ``tol`` (relative to the candidate's
    largest entry: a number or a tensor), else None."""
    got = torch.as_tensor(got).detach().cpu().double()
    for value, hint in candidates:
        value = torch.as_tensor(value).detach().cpu().double()
        if value.shape == got.shape and _close(got, value, tol):
            return hint
    return None


def _close(got, ref, tol):
    """Whether two float64 tensors agree to ``tol`` relative to the reference's largest entry."""
    return (got - ref).abs().max().item() <= tol * max(ref.abs().max().item(), 1e-12)


def _int_answer(value, what):
    number = _number(value, what)
    if number != int(number):
        _wrong(f"{what} as a whole number", f"{number:g}", "count whole things: round only at the end, if at all")
    return int(number)

