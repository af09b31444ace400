"""``python -m lecture_utils replicate``: a planted robust verdict replicates on fresh seeds, a planted fragile one
does not, and both runs' outcomes, intervals and seeds are in the table.

tests/notebooks/replicate/planted_verdicts.ipynb records three verdicts from seeded noise
(``numpy.random.RandomState``, a stream numpy keeps fixed): a difference of 10 noise standard
deviations (robust), none (pure noise), and one at the edge of what 5 seeds resolve, which seeds
0-4 leave not established and seeds 100-104 call (fragile). Its committed outputs are its run at SEED 0.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lecture_utils.course.cli import main

HERE = Path(__file__).parent
PLANTED = HERE / "notebooks" / "replicate" / "planted_verdicts.ipynb"
ROBUST, NOISE, FRAGILE = "robust: plain vs planted", "pure noise: a vs b", "fragile: a vs b at the edge"


def cli(*args):
    return subprocess.run([sys.executable, "-m", "lecture_utils", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def replication(tmp_path_factory):
    """One replication of the committed planted notebook on seeds 100-104."""
    out = tmp_path_factory.mktemp("replicate")
    proc = cli("replicate", PLANTED, "--profile", "smoke", "--out", out, "--seed-offset", "100")
    return proc, out, json.loads((out / "replication.json").read_text()) if proc.returncode == 0 else None


def test_the_robust_verdict_replicates_and_the_fragile_one_does_not(replication):
    proc, out, report = replication
    assert proc.returncode == 0, proc.stdout + proc.stderr
    nb = report["notebooks"][0]
    rows = {r["name"]: r for r in nb["verdicts"]}
    assert list(rows) == [ROBUST, NOISE, FRAGILE]
    robust, fragile = rows[ROBUST], rows[FRAGILE]
    assert robust["agree"] and robust["claim"] and robust["first"]["outcome"] == robust["second"]["outcome"] == \
        "plain better"
    assert robust["first"]["high"] < 0 and robust["second"]["high"] < 0  # both intervals exclude 0
    assert (fragile["first"]["outcome"], fragile["second"]["outcome"], fragile["agree"]) == \
        ("not established", "a better", False)
    assert rows[NOISE]["first"]["outcome"] and rows[NOISE]["second"]["outcome"]  # reported per run
    assert nb["counts"] == report["overall"] == {"verdicts": 3, "agree": 2, "claims": 2, "claims_agree": 1}


def test_the_table_says_when_where_and_on_which_seeds(replication):
    proc, out, report = replication
    assert report["profile"] == "smoke" and report["seed_offset"] == 100 and report["cpu"] and report["date"]
    assert report["first_run"] == "the committed notebooks"
    nb = report["notebooks"][0]
    assert (nb["first"]["seeds"], nb["second"]["seeds"]) == ("0-4", "100-104")
    assert nb["first"]["source"] == str(PLANTED) and nb["second"]["status"] == "ok"
    executed = json.loads((out / "planted_verdicts.ipynb").read_text())  # the second run's copy, SEED moved
    injected = next(c for c in executed["cells"] if "injected-parameters" in c["metadata"].get("tags", []))
    assert "SEED = 100" in "".join(injected["source"])
    md = (out / "replication.md").read_text()
    assert "**2 of 3 verdicts agree; 1 of 2 claims agree.**" in md
    assert "| planted_verdicts | 2 of 3 | 1 of 2 | 0-4" in md and "| 100-104 |" in md
    line = next(t for t in md.splitlines() if t.startswith(f"| {FRAGILE} |"))
    assert line.startswith(f"| {FRAGILE} | yes | not established: ") and line.endswith(" | **no** |")
    assert "| a better: " in line and " to " in line  # outcome, difference and interval of each run
    assert "planted_verdicts: 2 of 3 verdicts agree, 1 of 2 claims" in proc.stdout
    assert f"not replicated: {FRAGILE}: not established" in proc.stdout
    assert "all: 2 of 3 verdicts agree, 1 of 2 claims agree" in proc.stdout
    assert (out / "summary.json").is_file()  # the second run's summary, as run writes it


def test_an_offset_that_would_reuse_seeds_is_refused_before_anything_runs(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["replicate", str(PLANTED), "--profile", "smoke", "--out", str(out), "--seed-offset", "3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--seed-offset 3 is less than the 5 seeds planted_verdicts.ipynb runs from SEED" \
                                   " at smoke: the seed sets would overlap; give --seed-offset 5 or more" in err
    assert not out.exists()


def test_against_needs_the_executed_copies(tmp_path, capsys):
    assert main(["replicate", str(PLANTED), "--against", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert f"{tmp_path / 'planted_verdicts.ipynb'} does not exist (run python -m lecture_utils run" in \
        capsys.readouterr().err
    assert main(["replicate", str(HERE / "notebooks" / "faults" / "sleeper.ipynb"), "--out", str(tmp_path / "o")]) == 2
    assert "has no SEED parameter" in capsys.readouterr().err


def test_against_an_earlier_run_compares_with_its_executed_copies(tmp_path):
    first = tmp_path / "first"
    proc = cli("run", PLANTED, "--profile", "smoke", "--out", first, "-p", "SEED", "100")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = cli("replicate", PLANTED, "--profile", "smoke", "--out", tmp_path / "second", "--against", first,
               "--seed-offset", "5")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "second" / "replication.json").read_text())
    nb = report["notebooks"][0]
    assert (nb["first"]["seeds"], nb["second"]["seeds"]) == ("100-104", "105-109")
    assert nb["first"]["cpu"] and nb["first"]["date"] and nb["first"]["profile"] == "smoke"
    rows = {r["name"]: r for r in nb["verdicts"]}
    assert rows[FRAGILE]["first"]["outcome"] == "a better"  # as seeds 100-104 call it
    assert rows[ROBUST]["agree"]


def test_a_course_notebook_replicates_at_smoke(tmp_path):
    """The command on a real notebook (07: gradient checks, whose verdicts hold at any budget), both runs at smoke."""
    notebook = HERE.parent / "notebooks" / "07_debugging_and_visualization.ipynb"
    proc = cli("run", notebook, "--profile", "smoke", "--out", tmp_path / "first")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = cli("replicate", notebook, "--profile", "smoke", "--out", tmp_path / "second", "--against",
               tmp_path / "first")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "second" / "replication.json").read_text())
    nb = report["notebooks"][0]
    assert nb["second"]["status"] == "ok" and nb["counts"]["verdicts"] >= 3
    assert all(r["first"] and r["second"] for r in nb["verdicts"]), "a verdict recorded in one run only"
    assert "07_debugging_and_visualization: " in proc.stdout and "verdicts agree" in proc.stdout


def test_merge_joins_reports_and_a_later_notebook_replaces_an_earlier_one(replication, tmp_path):
    """``--merge``: the published table from a run in parts, or after one notebook was re-run; nothing runs."""
    proc, out, report = replication
    assert proc.returncode == 0, proc.stdout + proc.stderr
    older = json.loads(json.dumps(report))
    older["notebooks"][0]["verdicts"] = [dict(r, agree=False) for r in older["notebooks"][0]["verdicts"]]
    older["notebooks"].append(dict(report["notebooks"][0], notebook="other"))
    (tmp_path / "older.json").write_text(json.dumps(older))
    code = main(["replicate", "--merge", str(tmp_path / "older.json"), str(out / "replication.json"),
                 "--out", str(tmp_path / "merged")])
    assert code == 0
    merged = json.loads((tmp_path / "merged" / "replication.json").read_text())
    assert [nb["notebook"] for nb in merged["notebooks"]] == ["other", "planted_verdicts"]
    planted = merged["notebooks"][1]
    assert planted["verdicts"] == report["notebooks"][0]["verdicts"]  # the later report's rows, not the older ones
    assert planted["counts"] == report["notebooks"][0]["counts"]
    one = report["overall"]
    assert merged["overall"] == {k: 2 * v for k, v in one.items()} and merged["merged"] == 2
    text = (tmp_path / "merged" / "replication.md").read_text()
    assert f"**{2 * one['agree']} of {2 * one['verdicts']} verdicts agree" in text and "merged from 2" in text


def test_merge_refuses_reports_of_two_profiles_and_files_that_are_not_reports(replication, tmp_path, capsys):
    proc, out, report = replication
    other = dict(report, profile="default")
    (tmp_path / "default.json").write_text(json.dumps(other))
    (tmp_path / "junk.json").write_text("[1, 2]")
    (tmp_path / "rows.json").write_text(json.dumps(dict(report, notebooks=[{"notebook": "x"}])))
    assert main(["replicate", "--merge", str(out / "replication.json"), str(tmp_path / "default.json"),
                 "--out", str(tmp_path / "m")]) == 2
    assert main(["replicate", "--merge", str(tmp_path / "junk.json"), "--out", str(tmp_path / "m")]) == 2
    assert main(["replicate", "--merge", str(tmp_path / "missing.json"), "--out", str(tmp_path / "m")]) == 2
    assert main(["replicate", "--merge", str(tmp_path / "rows.json"), "--out", str(tmp_path / "m")]) == 2
    assert main(["replicate", str(PLANTED), "--merge", str(out / "replication.json"), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("python -m lecture_utils replicate: error: --merge: the reports differ in profile")
    assert "not a replication.json" in err[1] and "not a readable replication.json" in err[2]
    assert "a notebook's entry lacks one of notebook, first, second, verdicts" in err[3]
    assert "--merge runs nothing: give it replication.json files, not notebooks" in err[4] and len(err) == 5
    assert not (tmp_path / "m").exists()


def test_offset_0_reruns_the_same_seeds_and_every_verdict_agrees(tmp_path):
    """``--seed-offset 0``: the committed run's own seeds again, as on another machine; here the arithmetic is the
    same, so every verdict, the fragile one included, comes out the same. A negative offset is refused."""
    proc = cli("replicate", PLANTED, "--profile", "smoke", "--out", tmp_path / "same", "--seed-offset", "0")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "same" / "replication.json").read_text())
    nb = report["notebooks"][0]
    assert report["seed_offset"] == 0 and nb["first"]["seeds"] == nb["second"]["seeds"] == "0-4"
    text = (tmp_path / "same" / "replication.md").read_text()
    assert text.startswith("# Replication: do the verdicts hold with the same seeds on other arithmetic?")
    assert "profile smoke, the same seeds; first run" in text
    assert all(r["agree"] for r in nb["verdicts"]) and len(nb["verdicts"]) == 3
    proc = cli("replicate", PLANTED, "--profile", "smoke", "--out", tmp_path / "neg", "--seed-offset", "-1")
    assert proc.returncode == 2 and "--seed-offset must be an int >= 0 (0: the same seeds" in proc.stderr


def test_the_committed_date_is_found_from_a_relative_path(monkeypatch):
    from lecture_utils.course.replicate import _committed_date

    monkeypatch.chdir(HERE.parent)
    relative = PLANTED.relative_to(HERE.parent)
    assert _committed_date(relative) == _committed_date(PLANTED) != ""
