"""lecture_utils.record: headline numbers and verdicts stored as data in a notebook's outputs and read back."""

import json

import nbformat
import pytest

from lecture_utils.record import (VERDICT_MIME, read_records, read_verdicts, record, record_verdict,
                                  verdict_item)
from lecture_utils.stats import compare, paired_comparison

KEYS = {"name", "kind", "conditions", "unit", "lower_is_better", "n", "confidence", "mean_a", "mean_b", "difference",
        "low", "high", "margin", "established", "better", "outcome", "claim", "text"}

CLEAR = ([2.0, 2.2, 2.1], [1.0, 1.1, 1.05])  # b lower in every seed by about 1


def as_notebook(*outputs_per_cell):
    """An nbformat v4 notebook whose code cells carry the given display data (MIME bundles) as outputs."""
    nb = nbformat.v4.new_notebook()
    for outputs in outputs_per_cell:
        cell = nbformat.v4.new_code_cell("...")
        cell.outputs = [nbformat.v4.new_output("display_data", data=data) for data in outputs]
        nb.cells.append(cell)
    nbformat.validate(nb)
    return json.loads(nbformat.writes(nb))


def test_a_paired_verdict_has_every_key_and_its_outcome():
    c = paired_comparison(*CLEAR, names=("plain", "bn"), lower_is_better=True, unit="%")
    item = verdict_item("bn: test error", c, claim=True)
    assert set(item) == KEYS
    assert item["kind"] == "paired" and item["conditions"] == ["plain", "bn"] and item["unit"] == "%"
    assert item["outcome"] == "bn better" and item["better"] == "bn" and item["established"] is True
    assert item["claim"] is True and item["text"] == c.verdict and item["n"] == 3
    assert (item["low"], item["high"], item["difference"]) == pytest.approx((c.low, c.high, c.difference))
    assert item["margin"] is None
    json.dumps(item)  # JSON-ready: plain floats, no numpy scalars


def test_a_negligible_verdict_records_its_margin():
    c = paired_comparison([12.0, 12.1, 12.2], [11.98, 12.09, 12.17], names=("fc", "+ L1"), lower_is_better=True,
                          unit="%", margin=0.1)
    item = verdict_item("L1", c, claim=True)
    assert item["outcome"] == "negligible" and item["margin"] == 0.1 and item["established"] is False
    assert item["better"] is None and item["text"].startswith("no difference that matters")


@pytest.mark.parametrize("a, b, lower, outcome", [
    (*CLEAR, True, "bn better"),
    (*CLEAR, False, "plain better"),
    (*CLEAR, None, "plain higher"),
    ([1.0, 2.0], [1.1, 1.8], True, "not established"),
    ([1.0], [2.0], True, "1 seed"),
])
def test_outcome_strings(a, b, lower, outcome):
    item = verdict_item("v", paired_comparison(a, b, names=("plain", "bn"), lower_is_better=lower))
    assert item["outcome"] == outcome
    if outcome == "1 seed":
        assert item["low"] is None and item["high"] is None and not item["established"]
        assert item["text"].startswith("1 seed: no interval")


def test_an_ordering():
    item = verdict_item("branch smoothness", ordering=["pool", "3x3", "1x1", "5x5"], text="smoothness, highest first")
    assert set(item) == KEYS and item["kind"] == "ordering"
    assert item["outcome"] == "pool > 3x3 > 1x1 > 5x5" and item["conditions"] == ["pool", "3x3", "1x1", "5x5"]
    assert item["difference"] is None and item["claim"] is False and item["text"] == "smoothness, highest first"
    assert verdict_item("o", ordering=("a", "b"))["text"] == "a > b"


def test_outside_ipython_the_line_is_printed(capsys):
    c = paired_comparison(*CLEAR, names=("plain", "bn"), lower_is_better=True)
    item = record_verdict("bn", c)
    assert capsys.readouterr().out == f"bn: {c.verdict}\n" and item["outcome"] == "bn better"
    record_verdict("order", ordering=["a", "b", "c"])
    assert capsys.readouterr().out == "order: a > b > c\n"


def test_comparison_and_table_record_and_chain(capsys):
    c = paired_comparison(*CLEAR, names=("plain", "bn"), lower_is_better=True)
    assert c.record("bn", claim=True) is c
    table = compare({"none": [3.8, 4.1, 3.9], "affine": [1.4, 1.5, 1.5], "elastic": [1.2, 1.4, 1.3]},
                    baseline="none", lower_is_better=True, unit="%")
    assert table.record("02: ") is table
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("bn: bn is better than plain")
    assert lines[1].startswith("02: none vs affine: affine is better than none")
    assert lines[2].startswith("02: none vs elastic: elastic is better than none")
    table.record(names=["aug", "elastic"])
    assert [line.split(":")[0] for line in capsys.readouterr().out.splitlines()] == ["aug", "elastic"]
    with pytest.raises(ValueError, match=r"names must give one name per row \(2 rows\)"):
        table.record(names=["only one"])


def test_verdicts_shown_in_ipython_are_read_back_from_the_notebook(monkeypatch):
    """Under IPython the item goes out with display(); an executed notebook holds it: read_verdicts gets it back."""
    shown = []
    import IPython
    import IPython.display

    monkeypatch.setattr(IPython, "get_ipython", lambda: object())
    monkeypatch.setattr(IPython.display, "display", lambda data, raw: shown.append(data))
    c = paired_comparison(*CLEAR, names=("plain", "bn"), lower_is_better=True)
    c.record("bn: first")
    record_verdict("order", ordering=["pool", "3x3"], claim=True)
    c2 = paired_comparison([1.0, 2.0], [1.1, 1.8], names=("plain", "bn"))
    c2.record("bn: first")  # the same name again: the last wins
    assert all(set(d) == {VERDICT_MIME, "text/plain"} for d in shown)
    assert shown[0]["text/plain"] == f"bn: first: {c.verdict}"
    nb = as_notebook(shown[:2], shown[2:])
    verdicts = read_verdicts(nb)
    assert list(verdicts) == ["bn: first", "order"]
    assert verdicts["bn: first"]["outcome"] == "not established" and verdicts["order"]["claim"] is True
    assert all(set(v) == KEYS for v in verdicts.values())
    assert read_records(nb) == {}  # verdicts are not headline numbers


def test_read_verdicts_from_a_file(tmp_path):
    item = verdict_item("x", paired_comparison(*CLEAR, names=("a", "b")))
    path = tmp_path / "run.ipynb"
    path.write_text(json.dumps(as_notebook([{VERDICT_MIME: item, "text/plain": item["text"]}])))
    assert read_verdicts(path) == {"x": item}
    (tmp_path / "bad.ipynb").write_text("{not json")
    with pytest.raises(ValueError, match="is not a readable notebook"):
        read_verdicts(tmp_path / "bad.ipynb")


@pytest.mark.parametrize("kwargs, words", [
    (dict(name=""), "verdict name must be a non-empty string"),
    (dict(name="x"), "give either a comparison"),
    (dict(name="x", comparison=3.0), "comparison must be a Comparison"),
    (dict(name="x", ordering=["a"]), "ordering must be a list of at least 2 different"),
    (dict(name="x", ordering="ab"), "ordering must be a list of at least 2 different"),
    (dict(name="x", ordering=["a", "a"]), "ordering must be a list of at least 2 different"),
    (dict(name="x", ordering=["a", "b"], claim="yes"), "claim must be True or False"),
    (dict(name="x", ordering=["a", "b"], text=3), "text must be a str or None"),
])
def test_bad_verdicts_are_one_line_errors(kwargs, words):
    with pytest.raises(ValueError, match=words) as err:
        record_verdict(**kwargs)
    assert "\n" not in str(err.value)


def test_a_summary_table_has_no_verdicts():
    from lecture_utils.stats import summarize

    with pytest.raises(ValueError, match="only a table of comparisons"):
        summarize({"a": [1.0, 2.0]}).record()


def test_record_still_prints_outside_ipython(capsys):
    record("error", 0.0392, percent=True)
    assert capsys.readouterr().out == "error = 3.92%\n"
