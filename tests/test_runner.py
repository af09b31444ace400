import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from lecture_utils.record import read_records, record

HERE = Path(__file__).parent
PLANTED = HERE / "notebooks" / "replicate" / "planted_verdicts.ipynb"


def write_no_kernelspec_notebook(path):
    """A notebook as nbformat, jupytext or a script writes it: no kernelspec, no language_info."""
    nb = new_notebook()
    nb.cells = [
        new_markdown_cell("# No kernel metadata\nAsks for mnist (its DATASET), records that digits ran, "
                          "and a rate with `percent=True`."),
        new_code_cell('import os\n\nPROFILE = os.environ.get("LECTURE_PROFILE", "default")\n'
                      'DATASET = "mnist"  # what the run asks for\n'
                      'ERROR: float = 0.0392  # the error rate to record, a fraction',
                      metadata={"tags": ["parameters"]}),
        new_code_cell('import sys\n\nfrom lecture_utils.record import record\n\n'
                      'record("dataset", "digits")\n'
                      'record("test_error", ERROR, percent=True)\nrecord("python", sys.executable)'),
    ]
    nb.metadata = {}
    nbformat.write(nb, str(path))
    assert "kernelspec" not in json.loads(path.read_text())["metadata"]


@pytest.fixture(scope="module")
def batch_run(tmp_path_factory):
    """One run of the runner over the demo notebook, a notebook that fails on purpose, a file that is not a
    notebook and a notebook without kernel metadata (the last two made here)."""
    out, extra = tmp_path_factory.mktemp("runs"), tmp_path_factory.mktemp("notebooks")
    (extra / "a_broken.ipynb").write_text('{"cells": [ this is not JSON\n')
    write_no_kernelspec_notebook(extra / "b_plain.ipynb")
    proc = subprocess.run(
        [sys.executable, "-m", "lecture_utils", "run", str(HERE / "notebooks"), str(extra / "a_broken.ipynb"),
         str(extra / "b_plain.ipynb"), str(PLANTED), "--profile", "smoke", "--out", str(out), "-p", "ERROR", "0.0125"],
        capture_output=True, text=True, timeout=600,
    )
    return proc, out


def test_failing_notebook_gives_nonzero_exit_naming_notebook_and_cell(batch_run):
    proc, out = batch_run
    assert proc.returncode == 1, proc.stdout + proc.stderr
    # cell 2 of the user's notebook (papermill's injected cell is not counted); In [4] as the executed copy shows
    assert "FAILED: failing: cell 2 (In [4]): ValueError: planted failure for the runner test" in proc.stderr
    assert (out / "failing.ipynb").is_file()  # the executed copy is kept for inspection


def test_summary_has_status_seconds_and_recorded_metrics(batch_run):
    proc, out = batch_run
    summary = {r["notebook"]: r for r in json.loads((out / "summary.json").read_text())}
    assert summary["demo"]["status"] == "ok" and summary["failing"]["status"] == "failed"
    assert summary["demo"]["seconds"] > 0
    metrics = summary["demo"]["metrics"]
    assert metrics["profile"] == "smoke"  # papermill injected PROFILE
    assert 0.0 <= metrics["test_error"] <= 1.0  # stored as a fraction, shown as a percentage
    assert summary["demo"]["recorded"]["test_error"] == f"{metrics['test_error'] * 100:.2f}%"
    assert metrics == read_records(out / "demo.ipynb")
    assert (summary["demo"]["dataset"], summary["demo"]["fallback"]) == ("digits", False)  # recorded by the notebook
    assert summary["demo"]["dataset_requested"] == "digits"  # its DATASET parameter
    assert "| demo | ok |" in (out / "summary.md").read_text() and "| demo | ok |" in proc.stdout


def test_summary_json_holds_each_notebooks_verdicts(batch_run):
    proc, out = batch_run
    row = {r["notebook"]: r for r in json.loads((out / "summary.json").read_text())}["planted_verdicts"]
    assert row["status"] == "ok", proc.stdout + proc.stderr
    verdicts = row["verdicts"]
    assert list(verdicts) == ["robust: plain vs planted", "pure noise: a vs b", "fragile: a vs b at the edge"]
    robust = verdicts["robust: plain vs planted"]
    assert robust["outcome"] == "plain better" and robust["claim"] is True and robust["high"] < 0 and robust["n"] == 5
    assert verdicts["fragile: a vs b at the edge"]["outcome"] == "not established"  # at seeds 0-4
    md = (out / "summary.md").read_text()  # the markdown keeps its columns
    assert row["cpu"] and "| notebook | status | profile | data set | finished (UTC) | seconds | recorded |" in md
    assert "plain better" not in md


def test_a_notebook_without_kernel_metadata_runs_in_this_environment(batch_run):
    proc, out = batch_run
    rows = {r["notebook"]: r for r in json.loads((out / "summary.json").read_text())}
    assert rows["b_plain"]["status"] == "ok", proc.stdout + proc.stderr
    assert rows["b_plain"]["metrics"]["python"] == sys.executable  # this environment's kernel


def test_a_notebook_that_cannot_be_read_is_marked_failed_and_the_others_go_on(batch_run):
    proc, out = batch_run
    assert proc.returncode == 1, proc.stdout + proc.stderr  # not 2: not a usage error
    rows = {r["notebook"]: r for r in json.loads((out / "summary.json").read_text())}
    assert rows["a_broken"]["status"] == "failed" and "is not a readable notebook" in rows["a_broken"]["error"]
    assert "FAILED: a_broken: could not run" in proc.stderr


def test_the_summary_names_the_data_set_that_ran_flags_the_fallback_and_shows_rates_as_percent(batch_run):
    proc, out = batch_run
    row = {r["notebook"]: r for r in json.loads((out / "summary.json").read_text())}["b_plain"]
    assert (row["dataset"], row["dataset_requested"], row["fallback"]) == ("digits", "mnist", True)
    assert row["metrics"]["test_error"] == 0.0125 and row["recorded"]["test_error"] == "1.25%"  # -p reached it
    assert row["profile"] == "smoke" and row["date"].endswith("Z")
    md = (out / "summary.md").read_text()
    line = next(t for t in md.splitlines() if t.startswith("| b_plain |"))
    assert "| digits (FALLBACK: mnist requested) |" in line and "test_error = 1.25%" in line
    assert "dataset =" not in line  # the data set has its own column
    assert "FALLBACK: mnist was requested" in proc.stdout  # the line after the notebook
    assert "FALLBACK: b_plain ran on digits, not mnist" in proc.stderr


def test_parameters_cell_gets_injected_values(batch_run):
    _, out = batch_run
    nb = json.loads((out / "demo.ipynb").read_text())
    injected = [c for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert injected and 'PROFILE = "smoke"' in "".join(injected[0]["source"])


def test_bad_command_lines():
    for args, message in ((["--profile", "fast"], "invalid choice: 'fast'"), (["nope.txt"], "nope.txt does not exist"),
                          ([str(HERE / "test_runner.py")], "is not a notebook (.ipynb) or a folder")):
        proc = subprocess.run([sys.executable, "-m", "lecture_utils", "run", *args], capture_output=True, text=True)
        assert proc.returncode == 2 and message in proc.stderr


def test_record_outside_a_kernel_prints_and_checks(capsys):
    record("error", 0.25)
    assert "error = 0.25" in capsys.readouterr().out
    with pytest.raises(ValueError, match="finite number"):
        record("error", float("nan"))
    with pytest.raises(ValueError, match="non-empty string"):
        record("", 1)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "lecture_utils", "run", *map(str, args)], capture_output=True,
                          text=True, timeout=300)


def summary_of(out):
    return {r["notebook"]: r for r in json.loads((out / "summary.json").read_text())}


def test_a_bad_value_the_runner_cannot_judge_stops_the_notebook_in_its_first_cells(tmp_path):
    """The runner checks -p against the parameters cell; what only the notebook's code knows (here its data sets,
    not a literal) is checked by settings(...) in the notebook's first cells."""
    nb = new_notebook()
    nb.cells = [new_code_cell('import os\n\nPROFILE = os.environ.get("LECTURE_PROFILE", "default")\n'
                              'SIZES = {"EPOCHS": {"smoke": 1, "default": 2, "full": 3}}  # epochs\n'
                              'DATASET = "mnist"  # mnist or digits', metadata={"tags": ["parameters"]}),
                new_code_cell('from lecture_utils.profiles import settings\n\nALLOWED = ("mnist", "digits")\n'
                              'cfg = settings(PROFILE, SIZES, dataset=DATASET, datasets=ALLOWED)')]
    nbformat.write(nb, str(tmp_path / "asks.ipynb"))
    proc = run_cli(tmp_path / "asks.ipynb", "--profile", "smoke", "--out", tmp_path / "out", "-p", "DATASET", "svhn",
                   "-p", "EPOCHS", "4")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    row = summary_of(tmp_path / "out")["asks"]
    assert row["status"] == "failed" and row["dataset_requested"] == "svhn"
    assert row["error"] == ("cell 1 (In [3]): ValueError: parameter DATASET='svhn' is not allowed here: "
                            "allowed are 'mnist', 'digits'")
    cells = json.loads((tmp_path / "out" / "asks.ipynb").read_text())["cells"]
    injected = next(c for c in cells if "injected-parameters" in c["metadata"].get("tags", []))
    assert "\"EPOCHS\": {\"smoke\": 4, \"default\": 4, \"full\": 4}" in "".join(injected["source"])


def test_a_notebook_past_its_time_limit_is_stopped_marked_and_kept(tmp_path):
    pid_file = tmp_path / "kernel.pid"
    out = tmp_path / "runs"
    proc = run_cli(HERE / "notebooks" / "faults" / "sleeper.ipynb", "--profile", "smoke", "--out", out,
                   "--timeout", "10", "-p", "SLEEP", "600", "-p", "PID_FILE", pid_file)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    sleeper = summary_of(out)["sleeper"]
    assert sleeper["status"] == "timed out" and sleeper["error"] == "after 10 s in cell 3"  # the user's cell 3
    assert 10 <= sleeper["seconds"] < 30
    assert "| sleeper | timed out: after 10 s in cell 3 |" in (out / "summary.md").read_text()
    assert "TIMED OUT: sleeper: after 10 s in cell 3" in proc.stderr
    kept = json.loads((out / "sleeper.ipynb").read_text())
    assert "**Timed out** after 10 s in cell 3" in "".join(kept["cells"][0]["source"])
    assert "started" in json.dumps(kept["cells"][4]["outputs"])  # what ran before the limit is kept
    pid = int(pid_file.read_text())
    for _ in range(50):  # the kernel notices its parent is gone within about a second
        if not _alive(pid):
            break
        time.sleep(0.2)
    assert not _alive(pid), f"kernel {pid} still running"


def test_the_runner_keeps_going_after_a_failure_unless_told_to_stop(tmp_path, monkeypatch):
    from lecture_utils.course import runner

    ran = []

    def fake_run(nb, profile, out_dir, parameters, timeout):
        ran.append(nb.stem)
        status = {"failing": "failed", "sleeper": "timed out"}.get(nb.stem, "ok")
        return runner.Result(nb.stem, status, 0.1, str(out_dir / nb.name), "" if status == "ok" else "planted")

    monkeypatch.setattr(runner, "run_notebook", fake_run)
    notebooks = [HERE / "notebooks" / "failing.ipynb", HERE / "notebooks" / "faults" / "sleeper.ipynb",
                 HERE / "notebooks" / "demo.ipynb"]
    results = runner.run_all(notebooks, "smoke", tmp_path)
    assert ran == ["failing", "sleeper", "demo"] and [r.status for r in results] == ["failed", "timed out", "ok"]
    assert list(summary_of(tmp_path)) == ["demo", "failing", "sleeper"]  # one row each, by name
    ran.clear()
    assert [r.notebook for r in runner.run_all(notebooks, "smoke", tmp_path, stop_on_error=True)] == ["failing"]


def _alive(pid):
    """Whether process ``pid`` runs (a zombie, dead but not yet reaped, does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.is_file() and "zombie" in status.read_text())


def test_progress_variable_matches_train():
    from lecture_utils import train
    from lecture_utils.course import runner

    assert runner.PROGRESS_ENV == train.PROGRESS_ENV
