"""A notebook's results kept in its outputs as data, for the batch runner and the replication table.

- ``record(name, value)``: a headline number (``name = value``).
- ``record_verdict(name, comparison)``: a verdict of ``lecture_utils.stats`` (a paired comparison), or
  ``record_verdict(name, ordering=[...])``: an ordering the notebook computed. Each is stored as a dict
  (see ``verdict_item``) under its own MIME type beside the line a reader sees; ``read_verdicts(notebook)``
  gets them back by name. Two runs agree on a verdict when its ``outcome`` is the same in both.

Outside IPython (a script, a test) the line is printed and nothing is stored.
"""

import json
import math
import sys

MIME = "application/vnd.lecture-utils.record+json"
VERDICT_MIME = "application/vnd.lecture-utils.verdict+json"


def format_value(value, percent=False):
    """How a recorded value reads: a fraction recorded with ``percent=True`` as ``3.92%``, a float to 6 digits."""
    if percent:
        return f"{value * 100:.2f}%"
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def record(name, value, percent=False):
    """Show ``name = value`` and store it in the cell's output, where ``python -m lecture_utils run`` finds it.

    ``percent=True``: ``value`` is a fraction (an error rate of 0.0392), shown
    here and in the runner's summary as ``3.92%``; the fraction is what is stored.
    """
    _check_name(name, "record")
    if hasattr(value, "item"):  # a 0-d tensor or numpy scalar
        value = value.item()
    if not isinstance(value, (int, float, str, bool)) or (isinstance(value, float) and not math.isfinite(value)):
        raise ValueError(f"record {name!r}: value must be a finite number, a string or a bool, got {value!r}")
    if not isinstance(percent, bool):
        raise ValueError(f"record {name!r}: percent must be True or False, got {percent!r}")
    if percent and isinstance(value, (str, bool)):
        raise ValueError(f"record {name!r}: percent=True needs a number (a fraction such as 0.0392), got {value!r}")
    text = f"{name} = {format_value(value, percent)}"
    item = {"name": name, "value": value, **({"percent": True} if percent else {})}
    _show(MIME, item, text)


def _show(mime, item, text):
    """In IPython: display ``text`` with ``item`` stored under ``mime`` beside it; elsewhere print ``text``."""
    if "IPython" in sys.modules:
        from IPython import get_ipython
        from IPython.display import display

        if get_ipython() is not None:
            display({mime: item, "text/plain": text}, raw=True)
            return
    print(text)


def _check_name(name, what):
    if not isinstance(name, str) or not name:
        raise ValueError(f"{what} name must be a non-empty string, got {name!r}")


def verdict_item(name, comparison=None, *, ordering=None, claim=False, text=None):
    """The dict ``record_verdict`` stores (JSON-ready), without showing anything.

    A paired comparison (kind ``"paired"``): ``name, kind, conditions [a, b], unit, lower_is_better, n,
    confidence, mean_a, mean_b, difference, low, high, margin, established, better, outcome, claim, text``;
    ``outcome`` is ``"<name> better"``, ``"<name> higher"`` (direction unknown), ``"negligible"`` (the interval
    lies within the comparison's margin), ``"not established"`` or ``"1 seed"``
    (then ``low`` and ``high`` are None). An ordering (kind ``"ordering"``): the same keys, ``conditions`` the
    ordering, ``outcome`` ``" > ".join(ordering)`` and the numbers None. ``claim``: the notebook teaches this
    verdict as a claim of the lecture. ``text``: the line shown (default: the comparison's verdict).
    """
    _check_name(name, "verdict")
    if not isinstance(claim, bool):
        raise ValueError(f"verdict {name!r}: claim must be True or False, got {claim!r}")
    if text is not None and not isinstance(text, str):
        raise ValueError(f"verdict {name!r}: text must be a str or None, got {type(text).__name__}")
    if (comparison is None) == (ordering is None):
        raise ValueError(f"verdict {name!r}: give either a comparison (from lecture_utils.stats) or ordering=[...], "
                         "exactly one of them")
    if ordering is not None:
        if isinstance(ordering, str) or not all(isinstance(c, str) and c for c in ordering) or len(ordering) < 2 \
                or len(set(ordering)) != len(ordering):
            raise ValueError(f"verdict {name!r}: ordering must be a list of at least 2 different condition names, "
                             f"best (or highest) first, got {ordering!r}")
        outcome = " > ".join(ordering)
        numbers = dict.fromkeys(["unit", "lower_is_better", "n", "confidence", "mean_a", "mean_b", "difference",
                                 "low", "high", "margin", "established", "better"])
        return {"name": name, "kind": "ordering", "conditions": list(ordering), **numbers, "outcome": outcome,
                "claim": claim, "text": text if text is not None else outcome}
    needed = ("names", "n", "confidence", "mean_a", "mean_b", "difference", "low", "high", "established",
              "better", "outcome", "verdict", "unit", "lower_is_better")
    missing = [k for k in needed if not hasattr(comparison, k)]
    if missing:
        raise ValueError(f"verdict {name!r}: comparison must be a Comparison from lecture_utils.stats "
                         f"(paired_comparison or a row of compare), got {type(comparison).__name__}")

    def number(x):
        return None if x is None else float(x)

    c = comparison
    return {"name": name, "kind": "paired", "conditions": list(c.names), "unit": c.unit,
            "lower_is_better": c.lower_is_better, "n": int(c.n), "confidence": float(c.confidence),
            "mean_a": number(c.mean_a), "mean_b": number(c.mean_b), "difference": number(c.difference),
            "low": number(c.low), "high": number(c.high), "margin": number(getattr(c, "margin", None)),
            "established": bool(c.established), "better": c.better,
            "outcome": c.outcome, "claim": claim, "text": text if text is not None else c.verdict}


def record_verdict(name, comparison=None, *, ordering=None, claim=False, text=None):
    """Show a verdict line (``name: text``) and store the verdict as data in the cell's output.

    ``comparison``: a ``Comparison`` from ``lecture_utils.stats`` (``paired_comparison``, a row of
    ``compare``; ``comparison.record(name)`` does the same); or ``ordering=["pool", "3x3", ...]``, an ordering
    the notebook computed, best (or highest) first, with ``text`` saying what was ordered. ``claim=True``
    marks a verdict the notebook teaches as a claim of the lecture. Returns the stored dict
    (``verdict_item``); ``read_verdicts(notebook)`` reads them back.
    """
    item = verdict_item(name, comparison, ordering=ordering, claim=claim, text=text)
    _show(VERDICT_MIME, item, f"{name}: {item['text']}")
    return item


def _load(notebook):
    """A notebook as a parsed nbformat dict, from a dict or a path."""
    if isinstance(notebook, dict):
        return notebook
    with open(notebook, encoding="utf-8") as f:
        try:
            return json.load(f)
        except ValueError as err:
            raise ValueError(f"{notebook} is not a readable notebook (JSON): {err}") from None


def _items(notebook, mime):
    """Every dict stored under ``mime`` in the notebook's outputs, in order."""
    for cell in _load(notebook).get("cells", []):
        for output in cell.get("outputs", []):
            item = output.get("data", {}).get(mime)
            if isinstance(item, dict) and "name" in item:
                yield item


def read_record_items(notebook):
    """``{name: {"value": ..., "percent": bool}}`` recorded in an executed notebook (the last record of a name wins).

    Notebooks recorded before ``percent`` existed read with ``percent`` False.
    """
    return {item["name"]: {"value": item.get("value"), "percent": bool(item.get("percent", False))}
            for item in _items(notebook, MIME)}


def read_verdicts(notebook):
    """``{name: verdict dict}`` recorded with ``record_verdict`` in an executed notebook (a path or a parsed
    nbformat dict); the last verdict of a name wins."""
    return {item["name"]: item for item in _items(notebook, VERDICT_MIME)}


def read_records(notebook):
    """The ``{name: value}`` recorded in an executed notebook (a path or a parsed nbformat dict)."""
    return {name: item["value"] for name, item in read_record_items(notebook).items()}
