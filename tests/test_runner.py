import json
import subprocess
import sys
from pathlib import Path

import pytest

from lecture_utils.record import read_records, record

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def batch_run(tmp_path_factory):
    """One run of the runner over the demo notebook and a notebook that fails on purpose."""
    out = tmp_path_factory.mktemp("runs")
    proc = subprocess.run(
        [sys.executable, "-m", "lecture_utils", "run", str(HERE / "notebooks"), "--profile", "smoke", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    return proc, out


def test_failing_notebook_gives_nonzero_exit_naming_notebook_and_cell(batch_run):
    proc, out = batch_run
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAILED: failing: cell 3 (In [4]): ValueError: planted failure for the runner test" in proc.stderr
    assert (out / "failing.ipynb").is_file()  # the executed copy is kept for inspection


def test_summary_has_status_seconds_and_recorded_metrics(batch_run):
    proc, out = batch_run
    summary = {r["notebook"]: r for r in json.loads((out / "summary.json").read_text())}
    assert summary["demo"]["status"] == "ok" and summary["failing"]["status"] == "failed"
    assert summary["demo"]["seconds"] > 0
    metrics = summary["demo"]["metrics"]
    assert metrics["profile"] == "smoke"  # papermill injected PROFILE
    assert 0.0 <= metrics["test_error"] <= 1.0
    assert metrics == read_records(out / "demo.ipynb")
    assert "| demo | ok |" in (out / "summary.md").read_text() and "| demo | ok |" in proc.stdout


def test_parameters_cell_gets_injected_values(batch_run):
    _, out = batch_run
    nb = json.loads((out / "demo.ipynb").read_text())
    injected = [c for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert injected and 'PROFILE = "smoke"' in "".join(injected[0]["source"])


def test_bad_command_lines():
    for args, message in ((["--profile", "fast"], "invalid choice: 'fast'"), (["nope.txt"], "is not a notebook")):
        proc = subprocess.run([sys.executable, "-m", "lecture_utils", "run", *args], capture_output=True, text=True)
        assert proc.returncode == 2 and message in proc.stderr


def test_record_outside_a_kernel_prints_and_checks(capsys):
    record("error", 0.25)
    assert "error = 0.25" in capsys.readouterr().out
    with pytest.raises(ValueError, match="finite number"):
        record("error", float("nan"))
    with pytest.raises(ValueError, match="non-empty string"):
        record("", 1)
