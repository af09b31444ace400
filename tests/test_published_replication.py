"""The published replication table (docs/replication.json and .md) is the table of the committed notebooks.

Its first run must be the verdicts the committed notebooks record (a notebook re-run without its row being
replicated again fails here), every recorded verdict must have its row, and a notebook with a verdict that did
not replicate must say so in its text, pointing to docs/replication.md, as issue 23 asks.
"""

import json
from pathlib import Path

import pytest

from lecture_utils.course.summary import read_verdicts

ROOT = Path(__file__).resolve().parent.parent
TABLE = json.loads((ROOT / "docs" / "replication.json").read_text(encoding="utf-8"))
NOTEBOOKS = {nb["notebook"]: nb for nb in TABLE["notebooks"]}


def test_every_course_notebook_has_a_row_and_the_counts_add_up():
    committed = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert sorted(NOTEBOOKS) == committed
    rows = [r for nb in TABLE["notebooks"] for r in nb["verdicts"]]
    overall = TABLE["overall"]
    assert overall["verdicts"] == len(rows) and overall["agree"] == sum(r["agree"] for r in rows)
    assert overall["claims"] == sum(r["claim"] for r in rows)
    text = (ROOT / "docs" / "replication.md").read_text(encoding="utf-8")
    assert f"**{overall['agree']} of {overall['verdicts']} verdicts agree; {overall['claims_agree']} of " \
           f"{overall['claims']} claims agree.**" in text
    assert "/work/" not in text and "/home/" not in text  # no machine paths in the published table


def test_the_same_seed_table_says_what_it_is():
    if "same seeds" not in TABLES:
        pytest.skip("no same-seed table published")
    report = TABLES["same seeds"]
    assert report["seed_offset"] == 0 and report["kernels"]
    text = (SAME_SEEDS.parent / "replication.md").read_text(encoding="utf-8")
    assert text.startswith("# Replication: do the verdicts hold with the same seeds on other arithmetic?")
    assert "/work/" not in text and "/home/" not in text


# The same-seed check on other arithmetic (replicate --seed-offset 0 with the CPU kernels limited), where published.
SAME_SEEDS = ROOT / "docs" / "same-seeds" / "replication.json"
TABLES = {"fresh seeds": TABLE}
if SAME_SEEDS.is_file():
    TABLES["same seeds"] = json.loads(SAME_SEEDS.read_text(encoding="utf-8"))
ROWS = [(table, nb["notebook"]) for table, report in TABLES.items() for nb in report["notebooks"]]


@pytest.mark.parametrize("table, name", ROWS)
def test_the_first_run_is_the_committed_notebook(table, name):
    recorded = read_verdicts(ROOT / "notebooks" / f"{name}.ipynb")
    entry = next(nb for nb in TABLES[table]["notebooks"] if nb["notebook"] == name)
    rows = {r["name"]: r for r in entry["verdicts"]}
    assert sorted(rows) == sorted(recorded), "the table's verdicts are not the committed notebook's"
    for verdict, row in rows.items():
        first, mine = row["first"], recorded[verdict]
        assert first["outcome"] == mine["outcome"], verdict
        for key in ("difference", "low", "high"):
            if mine.get(key) is None:
                assert first.get(key) is None, (verdict, key)
            else:
                assert first[key] == pytest.approx(mine[key], rel=1e-9, abs=1e-12), (verdict, key)
        assert row["claim"] == bool(mine["claim"]), verdict


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_a_notebook_whose_verdict_did_not_replicate_says_so(name):
    failed = [r["name"] for r in NOTEBOOKS[name]["verdicts"] if not r["agree"]]
    if not failed:
        return
    notebook = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text(encoding="utf-8"))
    notes = ["".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "markdown"
             and "replication.md" in "".join(c["source"])]
    assert notes, f"{name}: {failed} did not replicate, and no note beside its text points to docs/replication.md"
