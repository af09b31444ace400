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


@pytest.mark.parametrize("typed, meant", [
    ("02_elastic.ipynb", "02_elastic_distortions.ipynb"),  # a beginning: that notebook only
    ("02_elastc_distortions.ipynb", "02_elastic_distortions.ipynb"),  # its number
    ("elastic_distortions.ipynb", "02_elastic_distortions.ipynb"),  # close in spelling
])
def test_a_mistyped_notebook_suggests_only_the_one_it_resembles(tmp_path, typed, meant):
    for name in ("01_invariance_and_augmentation", "02_elastic_distortions", "03_alexnet_ablations", "05_resnets"):
        (tmp_path / f"{name}.ipynb").write_text("{}")
    message = runner._missing_path_message(tmp_path / typed, tmp_path)
    assert message == f"{tmp_path / typed} does not exist; did you mean {tmp_path / meant}?"
    assert "did you mean" not in runner._missing_path_message(tmp_path / "resnet_budget.ipynb", tmp_path)


def test_an_unknown_parameter_suggests_the_nearest_and_does_not_offer_profile(capsys, tmp_path):
    with pytest.raises(SystemExit) as info:
        main(["run", str(HERE / "notebooks" / "demo.ipynb"), "-p", "EPOCH", "3", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "unknown parameter EPOCH (did you mean EPOCHS?): the notebooks' parameters " \
                                     "are DATASET, EPOCHS, LR, N_TRAIN, SEED" in err
    assert "PROFILE" not in err and "SIZES" not in err and not (tmp_path / "o").exists()
    with pytest.raises(SystemExit):
        main(["run", str(HERE / "notebooks" / "demo.ipynb"), "-p", "epochs", "3", "--out", str(tmp_path / "o")])
    assert "unknown parameter epochs (did you mean EPOCHS?)" in capsys.readouterr().err


def test_list_parameters_shows_sizes_at_every_profile_and_the_other_parameters(capsys):
    assert main(["run", str(HERE / "notebooks" / "demo.ipynb"), "--list-parameters"]) == 0
    out = capsys.readouterr().out
    assert "sizes (smoke / default / full; -p NAME VALUE sets one at every profile):" in out
    assert "-p N_TRAIN (int) = 256 / 2_048 / 60_000  # training examples" in out
    assert "-p EPOCHS  (int) = 1 / 2 / 5  # training epochs" in out
    assert "-p SEED (int) = 0  # random seed" in out and "-p LR (float) = 0.05  # learning rate" in out
    assert "PROFILE: set with --profile (smoke, default, full)" in out


def test_top_level_help_is_plain_text_and_lists_the_commands():
    proc = cli("--help")
    assert proc.returncode == 0 and "``" not in proc.stdout
    for command in ("run", "replicate", "student", "site", "clean"):
        assert f"    {command}" in proc.stdout


def test_other_commands_get_their_options_or_say_in_one_line_that_they_are_missing(capsys, monkeypatch):
    import importlib

    with pytest.raises(SystemExit) as info:
        main(["clean", "--help"])  # nbclean's own parser answers
    assert info.value.code == 0 and "--check" in capsys.readouterr().out
    real = importlib.import_module

    def missing(name, *args):
        if name == "lecture_utils.course.student":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", missing)
    assert main(["student", "--out", "x"]) == 2
    assert capsys.readouterr().err == ("python -m lecture_utils student: not available in this version "
                                       "(lecture_utils.course.student is missing)\n")


def test_timeout_help_reads_as_a_sentence():
    text = " ".join(cli("run", "--help").stdout.split())
    assert "seconds per notebook (default: by profile: smoke 300 s, default 1800 s, full 2700 s; 0: no limit)" in text


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


# --- the parameters cell, read without running it ----------------------------------------------------------


def notebook_with(tmp_path, source, *more):
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook()
    nb.cells = [new_code_cell(source, metadata={"tags": ["parameters"]}), *map(new_code_cell, more)]
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, str(path))
    return path


def test_the_parameters_cell_is_read_with_its_sizes_defaults_types_and_meanings(tmp_path):
    from lecture_utils.course.parameters import notebook_parameters

    path = notebook_with(tmp_path, 'import os\n\nPROFILE = os.environ.get("LECTURE_PROFILE", "default")  # the run\n'
                                   'SIZES = {  # what each profile runs\n'
                                   '    "N_TRAIN": {"smoke": 500, "default": 1_000, "full": 60_000},  # digits\n'
                                   '    "WIDTH": {\n        "smoke": 0.25, "default": 0.5, "full": 1,\n'
                                   '    },  # channel multiplier\n}\n'
                                   'SEED: int = 0  # first seed\nLR = 0.1\nLR = 0.05  # peak learning rate\n'
                                   'a, b = 1, 2\nprint("not a parameter")',
                         'cfg = settings(PROFILE, SIZES, dataset=DATASET, datasets=("mnist", "digits"))')
    params = notebook_parameters(path)
    assert params.sizes == {"N_TRAIN": {"smoke": 500, "default": 1000, "full": 60000},
                            "WIDTH": {"smoke": 0.25, "default": 0.5, "full": 1}}
    assert params.size_help == {"N_TRAIN": "digits", "WIDTH": "channel multiplier"}
    assert list(params.plain) == ["PROFILE", "SEED", "LR"]  # a later assignment wins; a, b and print are not
    assert params.plain["PROFILE"].literal is False and "os.environ" in params.plain["PROFILE"].default
    assert (params.plain["SEED"].annotation, params.plain["SEED"].help) == ("int", "first seed")
    assert (params.plain["LR"].default, params.plain["LR"].help) == (0.05, "peak learning rate")
    assert params.names == ["N_TRAIN", "WIDTH", "SEED", "LR"] and params.datasets == ("mnist", "digits")


@pytest.mark.parametrize("source, message", [
    ("SIZES = dict(N_TRAIN=1)", "SIZES in the parameters cell of .* must be a dict literal"),
    ('SIZES = {"N_TRAIN": {"smoke": 5, "default": n, "full": 5}}', "every key and value must be a literal"),
    ('SIZES = {"N_TRAIN": {"smoke": 5, "default": -5, "full": 5}}', "N_TRAIN=-5 at profile default is out of range"),
    ("SEED = = 0", "the parameters cell of .* is not valid Python: invalid syntax"),
])
def test_a_broken_parameters_cell_is_a_one_line_error(tmp_path, source, message):
    from lecture_utils.course.parameters import notebook_parameters

    with pytest.raises(ValueError, match=message) as info:
        notebook_parameters(notebook_with(tmp_path, source))
    assert "\n" not in str(info.value)


def test_p_for_a_size_injects_the_whole_table_and_a_plain_parameter_itself():
    demo = HERE / "notebooks" / "demo.ipynb"
    given, unreadable = runner.check_parameters([demo], {"EPOCHS": "3", "SEED": "7", "DATASET": "mnist"}, "smoke")
    assert not unreadable
    assert given[demo] == {"PROFILE": "smoke", "SIZES": {"N_TRAIN": {"smoke": 256, "default": 2048, "full": 60000},
                                                         "EPOCHS": {"smoke": 3, "default": 3, "full": 3}},
                           "SEED": 7, "DATASET": "mnist"}
    assert runner.check_parameters([demo], {"LR": "1"}, "smoke")[0][demo]["LR"] == 1.0  # an int for a float


def test_p_values_are_checked_for_each_notebook_that_has_the_name(tmp_path):
    demo, sleeper = HERE / "notebooks" / "demo.ipynb", HERE / "notebooks" / "faults" / "sleeper.ipynb"
    with pytest.raises(ValueError) as info:
        runner.check_parameters([demo, sleeper], {"SLEEP": "soon", "EPOCHS": "0", "LR": "1e400"}, "smoke")
    assert str(info.value).splitlines() == [
        "parameter SLEEP='soon' has type str: allowed is an int",
        "parameter EPOCHS=0 is out of range: allowed is an int > 0",
        "parameter LR=1e400 is not a finite number: allowed is a finite number > 0"]
    with pytest.raises(ValueError, match="^set the profile with --profile .* not -p LECTURE_PROFILE$"):
        runner.check_parameters([demo], {"LECTURE_PROFILE": "full"}, "smoke")
    # a string parameter takes the text as it is: a path that looks like a number stays a string
    assert runner.check_parameters([sleeper], {"PID_FILE": "123"}, "smoke")[0][sleeper]["PID_FILE"] == "123"


def test_bad_p_values_are_refused_before_any_kernel_starts(tmp_path):
    proc = cli("run", HERE / "notebooks" / "demo.ipynb", "--out", tmp_path / "o", "-p", "LR", "1e400",
               "-p", "EPOCHS", "-1")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [
        "python -m lecture_utils run: error: parameter LR=1e400 is not a finite number: allowed is a finite number > 0",
        "python -m lecture_utils run: error: parameter EPOCHS=-1 is out of range: allowed is an int > 0"]
    assert not (tmp_path / "o").exists()


def test_the_requested_data_set_is_the_dataset_parameter(tmp_path):
    from lecture_utils.course.parameters import requested_dataset

    demo = HERE / "notebooks" / "demo.ipynb"
    assert requested_dataset(demo, {}) == "digits" and requested_dataset(demo, {"DATASET": "mnist"}) == "mnist"
    assert requested_dataset(HERE / "notebooks" / "faults" / "sleeper.ipynb", {}) == ""


def test_summary_json_keeps_each_notebooks_verdicts(tmp_path):
    verdict = {"name": "a vs b", "kind": "paired", "outcome": "a better", "claim": True, "low": 0.1, "high": 0.3}
    mime = "application/vnd.lecture-utils.verdict+json"
    out = tmp_path / "nb.ipynb"
    out.write_text(json.dumps({"cells": [{"outputs": [{"data": {mime: verdict}}]}]}))
    result = runner._result("nb", "ok", 1.0, out, "", "smoke", since=out.stat().st_mtime)
    assert result.verdicts == {"a vs b": verdict} and result.cpu
    from lecture_utils.course.summary import write_summary

    write_summary(tmp_path, [result])
    assert json.loads((tmp_path / "summary.json").read_text())[0]["verdicts"] == {"a vs b": verdict}
