"""``record(name, value)``: a notebook's headline numbers, kept in its outputs for the batch runner."""

import json
import math
import sys

MIME = "application/vnd.lecture-utils.record+json"


def record(name, value):
    """Show ``name = value`` and store it in the cell's output, where ``python -m lecture_utils run`` finds it."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"record name must be a non-empty string, got {name!r}")
    if hasattr(value, "item"):  # a 0-d tensor or numpy scalar
        value = value.item()
    if not isinstance(value, (int, float, str, bool)) or (isinstance(value, float) and not math.isfinite(value)):
        raise ValueError(f"record {name!r}: value must be a finite number, a string or a bool, got {value!r}")
    text = f"{name} = {value:.6g}" if isinstance(value, float) else f"{name} = {value}"
    if "IPython" in sys.modules:
        from IPython import get_ipython
        from IPython.display import display

        if get_ipython() is not None:
            display({MIME: {"name": name, "value": value}, "text/plain": text}, raw=True)
            return
    print(text)


def read_records(notebook):
    """The ``{name: value}`` recorded in an executed notebook (a path or a parsed nbformat dict)."""
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
            if item is not None:
                found[item["name"]] = item["value"]
    return found
