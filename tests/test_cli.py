"""The runner's command line and summary as a student meets them: help, typos, notebooks without metadata, the summary.

All in-process and fast; the real batch with a notebook without kernel metadata
beside a broken file is tests/test_runner.py's.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lecture_utils.course import runner
from lecture_utils.course.cli import main
from lecture_utils.record import read_record_items, read_records, record
from lecture_utils.course.summary import summary_markdown

HERE = Path(__file__).parent
REPO = HERE.parent


def cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "lecture_utils", *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=kwargs.pop("cwd", REPO), **kwargs)


def test_record_percent_stores_the_fraction_and_shows_a_percentage(capsys):
    record("test_error", 0.0392, percent=True)
    assert capsys.readouterr().out.strip() == "test_error = 3.92%"
    for bad in ("3.9", True):
        with pytest.raises(ValueError, match="percent=True needs a number"):
            record("test_error", bad, percent=True)
    with pytest.raises(ValueError, match="percent must be True or False"):
        record("test_error", 0.1, percent="yes")


def test_read_records_of_new_and_old_notebooks():
    mime = "application/vnd.lecture-utils.record+json"
    nb = {"cells": [{"outputs": [{"data": {mime: {"name": "old", "value": 0.5}}},
                                 {"data": {mime: {"name": "rate", "value": 0.0392, "percent": True}}}]}]}
    assert read_records(nb) == {"old": 0.5, "rate": 0.0392}
    assert read_record_items(nb) == {"old": {"value": 0.5, "percent": False},
                                     "rate": {"value": 0.0392, "percent": True}}


def fake_runs(monkeypatch, datasets):
    """``run_notebook`` replaced: writes an empty executed copy and returns an ok result with the data set given."""
    ran = []

    def fake(nb, profile, out_dir, parameters, timeout):
        ran.append(nb.stem)
        out = Path(out_dir).resolve() / nb.name
        out.write_text("{}")
        used, requested = datasets.get(nb.stem, ("mnist", "mnist"))
        return runner.Result(nb.stem, "ok", 1.0, str(out), metrics={"err": 0.1}, recorded={"err": "10.00%"},
                             profile=profile, date="2026-12-01T10:00:00Z", dataset=used, dataset_requested=requested,
                             fallback=used != requested)

    monkeypatch.setattr(runner, "run_notebook", fake)
    return ran


def test_the_summary_keeps_one_row_per_notebook_of_the_out_folder(tmp_path, monkeypatch):
    fake_runs(monkeypatch, {})
    a, b = HERE / "notebooks" / "demo.ipynb", HERE / "notebooks" / "failing.ipynb"
    runner.run_all([a, b], "smoke", tmp_path)
    runner.run_all([a], "default", tmp_path)  # one notebook again, at another profile
    rows = json.loads((tmp_path / "summary.json").read_text())
    assert [(r["notebook"], r["profile"]) for r in rows] == [("demo", "default"), ("failing", "smoke")]
    md = (tmp_path / "summary.md").read_text()
    assert "| demo | ok | default | mnist | 2026-12-01 10:00:00 |" in md and "| failing | ok | smoke |" in md
    (tmp_path / "failing.ipynb").unlink()  # an executed copy removed: its row goes with it
    runner.run_all([a], "smoke", tmp_path)
    assert [r["notebook"] for r in json.loads((tmp_path / "summary.json").read_text())] == ["demo"]


def test_an_old_or_damaged_summary_is_merged_or_replaced(tmp_path, monkeypatch, capsys):
    fake_runs(monkeypatch, {})
    (tmp_path / "old.ipynb").write_text("{}")
    old = [{"notebook": "old", "status": "ok", "seconds": 3.0, "output": "/elsewhere/old.ipynb", "error": "",
            "metrics": {"test_error": 0.25}}]  # a row as the runner wrote it before profiles and dates
    (tmp_path / "summary.json").write_text(json.dumps(old))
    runner.run_all([HERE / "notebooks" / "demo.ipynb"], "smoke", tmp_path)
    assert [r["notebook"] for r in json.loads((tmp_path / "summary.json").read_text())] == ["demo", "old"]
    assert "| old | ok |  |  |  | 3.0 | test_error = 0.25 |" in (tmp_path / "summary.md").read_text()
    (tmp_path / "summary.json").write_text("[{not json")
    runner.run_all([HERE / "notebooks" / "demo.ipynb"], "smoke", tmp_path)
    assert "could not be read" in capsys.readouterr().out
    assert [r["notebook"] for r in json.loads((tmp_path / "summary.json").read_text())] == ["demo"]


def test_summary_markdown_flags_a_fallback():
    row = runner.Result("02", "ok", 1.0, "02.ipynb", recorded={"test_error": "3.92%", "dataset": "digits"},
                        dataset="digits", dataset_requested="mnist", fallback=True, profile="default")
    line = summary_markdown([row]).splitlines()[-1]
    assert line == "| 02 | ok | default | digits (FALLBACK: mnist requested) |  | 1.0 | test_error = 3.92% |"


# --- typos and help ----------------------------------------------------------------------------------------


def test_a_mistyped_notebook_path_says_it_does_not_exist_and_suggests_the_nearest(capsys):
    with pytest.raises(SystemExit) as info:
        main(["run", str(HERE / "notebooks" / "dmeo.ipynb")])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1  # one line, no usage block
    folder = HERE / "notebooks"
    assert f"{folder / 'dmeo.ipynb'} does not exist; did you mean {folder / 'demo.ipynb'}?" in err


def test_a_mistyped_path_in_the_repository_suggests_the_lectures_notebook():
    proc = cli("run", "notebooks/02_elastic_distortion.ipynb", "--profile", "smoke")
    assert proc.returncode == 2
    assert ("notebooks/02_elastic_distortion.ipynb does not exist; "
            "did you mean notebooks/02_elastic_distortions.ipynb?") in proc.stderr


def test_an_unknown_parameter_suggests_the_nearest_and_does_not_offer_profile(capsys, tmp_path):
    with pytest.raises(SystemExit) as info:
        main(["run", str(HERE / "notebooks" / "demo.ipynb"), "-p", "EPOCH", "3", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "unknown parameter EPOCH (did you mean EPOCHS?): the notebooks' parameters " \
                                     "are DATASET, EPOCHS, N_TRAIN, SEED" in err
    assert "PROFILE" not in err and not (tmp_path / "o").exists()


def test_list_parameters_shows_names_types_defaults_and_meanings(capsys):
    assert main(["run", str(HERE / "notebooks" / "demo.ipynb"), "--list-parameters"]) == 0
    out = capsys.readouterr().out
    assert "-p SEED (int) = 0  # random seed" in out and "-p EPOCHS = None  # training epochs" in out
    assert "PROFILE: set with --profile (smoke, default, full)" in out


def test_top_level_help_is_plain_text():
    proc = cli("--help")
    assert proc.returncode == 0 and "``" not in proc.stdout and "run" in proc.stdout


def test_run_help_describes_profiles_parameters_and_the_fallback():
    proc = cli("run", "--help")
    text = proc.stdout
    assert proc.returncode == 0 and "``" not in text
    assert "Execute notebooks with papermill" in text
    for profile in ("smoke", "default", "full"):
        assert f"  {profile} " in text
    assert "under a minute per notebook" in text and "aims at the papers'" in text
    assert "--list-parameters" in text and "LECTURE_STRICT_DATA=1" in text and "FALLBACK" in text


def test_an_executed_copy_left_by_an_earlier_run_is_not_read_as_this_runs(tmp_path):
    mime = "application/vnd.lecture-utils.record+json"
    out = tmp_path / "nb.ipynb"
    out.write_text(json.dumps({"cells": [{"outputs": [{"data": {mime: {"name": "err", "value": 0.5}}}]}]}))
    now = out.stat().st_mtime
    assert runner._result("nb", "ok", 1.0, out, "", "smoke", since=now).metrics == {"err": 0.5}
    assert runner._result("nb", "failed", 1.0, out, "planted", "smoke", since=now + 60).metrics == {}


def test_a_qualified_data_set_is_not_a_fallback():
    assert not runner.is_fallback("cifar10 (JPEG copy)", "cifar10") and not runner.is_fallback("mnist", "mnist")
    assert runner.is_fallback("digits", "cifar10") and not runner.is_fallback("", "mnist")
