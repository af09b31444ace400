"""``record(name, value)``: a notebook's headline numbers, kept in its outputs for the batch runner."""

import json
import math
import sys

MIME = "application/vnd.lecture-utils.record+json"


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
    if not isinstance(name, str) or not name:
        raise ValueError(f"record name must be a non-empty string, got {name!r}")
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
    if "IPython" in sys.modules:
        from IPython import get_ipython
        from IPython.display import display

        if get_ipython() is not None:
            display({MIME: item, "text/plain": text}, raw=True)
            return
    print(text)


def read_record_items(notebook):
    """``{name: {"value": ..., "percent": bool}}`` recorded in an executed notebook (the last record of a name wins).

    Notebooks recorded before ``percent`` existed read with ``percent`` False.
    """
    if not isinstance(notebook, dict):
        with open(notebook, encoding="utf-8") as f:
            try:
                notebook = json.load(f)
            except ValueError as err:
                raise ValueError(f"{notebook} is not a readable notebook (JSON): {err}") from None
    found = {}
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []):
            item = output.get("data", {}).get(MIME)
            if isinstance(item, dict) and "name" in item:
                found[item["name"]] = {"value": item.get("value"), "percent": bool(item.get("percent", False))}
    return found


def read_records(notebook):
    """The ``{name: value}`` recorded in an executed notebook (a path or a parsed nbformat dict)."""
    return {name: item["value"] for name, item in read_record_items(notebook).items()}
