"""Committed notebooks are clean: outputs kept, noise gone, badge, Colab setup cell and parameters cell present.

Clean them with ``python -m lecture_utils.course.nbclean`` (``--check`` only reports).
"""

import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from lecture_utils.course import nbclean

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
REPO_URL = nbclean.repository_url(REPO / "pyproject.toml")
ids = [p.stem for p in NOTEBOOKS]


def read(path):
    return nbformat.read(path, as_version=4)


def report(path, found):
    return f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path} is not clean " \
           "(python -m lecture_utils.course.nbclean fixes what it can):\n  - " + "\n  - ".join(found)


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks in notebooks/"


def test_repository_url_is_configured():
    """pyproject's [project.urls] Repository, the one place the address is set, is a GitHub repository."""
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", REPO_URL), REPO_URL


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_valid_notebook(path):
    nbformat.validate(read(path))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_badge_setup_cell_and_parameters(path):
    found = nbclean.structure_problems(read(path), path.name, REPO_URL)
    assert not found, report(path, found)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_no_volatile_metadata_or_noisy_outputs(path):
    found = nbclean.noise_problems(read(path))
    if nbclean.needs_cleaning(path):
        found.insert(0, "cleaning would change it")
    assert not found, report(path, found)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_committed_with_outputs_of_a_complete_run(path):
    found = nbclean.execution_problems(read(path))
    assert not found, report(path, found)


# ---------------------------------------------------------------- the checks themselves

def test_setup_cell_check():
    ok = ('import sys\n\nif "google.colab" in sys.modules:\n'
          f'    %pip install -q "lecture-utils @ git+{REPO_URL}"\n')
    assert nbclean.setup_cell_problems(ok, REPO_URL) == []
    assert nbclean.setup_cell_problems(ok.replace(REPO_URL, REPO_URL + "@v1"), REPO_URL) == []
    bad = {
        "editable": ok.replace("-q ", "-q -e "),
        "unguarded": ok.replace('if "google.colab" in sys.modules:\n    ', ""),
        "torch": ok.replace('"\n', '" torch\n'),
        "force": ok.replace("-q ", "--force-reinstall "),
        "other repo": ok.replace(REPO_URL, "https://github.com/someone/else"),
    }
    for what, source in bad.items():
        assert nbclean.setup_cell_problems(source, REPO_URL), what


def test_colab_url():
    assert nbclean.colab_url("https://github.com/o/r", "x.ipynb") == \
        "https://colab.research.google.com/github/o/r/blob/main/notebooks/x.ipynb"
    with pytest.raises(ValueError):
        nbclean.colab_url("https://gitlab.com/o/r", "x.ipynb")


def clean_notebook(name):
    """A small notebook with everything a committed notebook needs, executed, without noise."""
    badge = f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({nbclean.colab_url(REPO_URL, name)})"
    cells = [
        new_markdown_cell(f"# A notebook\n\n{badge}\n"),
        new_code_cell('import sys\n\nif "google.colab" in sys.modules:\n'
                      f'    %pip install -q "lecture-utils @ git+{REPO_URL}"', execution_count=1),
        new_code_cell(f"import os\n\n{nbclean.PROFILE_LINE}\nN = 3  # items", execution_count=2,
                      metadata={"tags": ["parameters"]}),
        new_code_cell("print(PROFILE)\nfig", execution_count=3, outputs=[
            new_output("stream", name="stdout", text="smoke\n"),
            new_output("execute_result", execution_count=3,
                       data={"image/png": "iVBORw0KGgo=", "text/plain": "<Figure size 640x480 with 1 Axes>"}),
        ]),
    ]
    nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                            "language": "python"},
                                             "language_info": {"name": "python"}})
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i}"
    return nb


def make_dirty(nb):
    """What a papermill run and a widget leave in a notebook."""
    nb = nbformat.reads(nbformat.writes(nb), as_version=4)
    nb.metadata["papermill"] = {"start_time": "2026-01-01T00:00:00", "parameters": {"PROFILE": "default"}}
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}, "version_major": 2}}
    nb.metadata["language_info"]["version"] = "3.11.7"
    for cell in nb.cells:
        cell.metadata["papermill"] = {"duration": 0.1, "start_time": "2026-01-01T00:00:00", "status": "completed"}
        cell.metadata.setdefault("tags", [])
        if cell.cell_type == "code":
            cell.metadata["execution"] = {"iopub.status.busy": "2026-01-01T00:00:00Z"}
    old_owner = "https://github.com/old-owner/old-name"  # the repository moved: pyproject has the new address
    nb.cells[0].source = nb.cells[0].source.replace(REPO_URL.replace("https://github.com", ""), "/old-owner/old-name")
    nb.cells[1].source = nb.cells[1].source.replace(REPO_URL, old_owner)
    injected = new_code_cell('# Parameters\nPROFILE = "default"\n', execution_count=3,
                             metadata={"tags": ["injected-parameters"]})
    injected.id = "injected"
    nb.cells.insert(3, injected)
    last = nb.cells[-1]
    last.outputs[0:1] = [new_output("stream", name="stdout", text="smo"), new_output("stream", name="stdout", text="ke\n")]
    last.outputs.append(new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": {"model_id": "0123456789abcdef", "version_major": 2,
                                                     "version_minor": 0},
        "text/plain": "VBox(children=(FloatSlider(value=34.0),))"}))
    last.outputs.append(new_output("display_data", data={"image/png": "iVBORw0KGgo=", "image/svg+xml": "<svg/>",
                                                         "text/plain": "<Figure size 640x480 with 1 Axes>"}))
    return nb


def run_cleaner(*args):
    return subprocess.run([sys.executable, "-m", "lecture_utils.course.nbclean", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_cleaner_turns_a_dirty_notebook_clean(tmp_path):
    name = "dirty.ipynb"
    path = tmp_path / name
    nbformat.write(make_dirty(clean_notebook(name)), path)
    found = nbclean.problems(path, REPO_URL)
    for expected in ("papermill", "widgets", "injected-parameters", "model id", "SVG", "execution",
                     "cleaner's form", "language_info", "badge", "setup cell must install"):
        assert any(expected in p for p in found), (expected, found)

    check = run_cleaner("--check", path)
    assert check.returncode == 1, check.stdout + check.stderr
    assert "NOT CLEAN" in check.stdout
    assert "papermill" in path.read_text(), "--check must not change the notebook"

    cleaned = run_cleaner(path)
    assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
    assert f"cleaned {path}" in cleaned.stdout
    assert nbclean.problems(path, REPO_URL) == []
    check = run_cleaner("--check", path)
    assert check.returncode == 0, check.stdout + check.stderr

    nb = read(path)
    assert [c.id for c in nb.cells] == [f"cell-{i}" for i in range(4)], "cell ids are kept, the injected cell is gone"
    assert nb.cells[2].metadata == {"tags": ["parameters"]}
    assert nb.cells[0].metadata == {}
    outputs = nb.cells[-1].outputs
    assert outputs[0].text == "smoke\n", "consecutive prints are one output"
    assert [list(o.get("data", {})) for o in outputs] == [[], ["image/png", "text/plain"], ["image/png", "text/plain"]]
    assert nb.cells[-1].execution_count == 3
    assert "widgets" not in nb.metadata and "papermill" not in nb.metadata
    assert nbclean.colab_url(REPO_URL, name) in nb.cells[0].source and "old-owner" not in nb.cells[0].source
    assert f"git+{REPO_URL}" in nb.cells[1].source and "old-owner" not in nb.cells[1].source

    again = run_cleaner(path)
    assert again.returncode == 0 and "cleaned" not in again.stdout, "cleaning is idempotent"


def test_cleaner_reports_what_it_cannot_fix(tmp_path):
    name = "unfixable.ipynb"
    nb = clean_notebook(name)
    nb.cells[-1].outputs.append(new_output("execute_result", execution_count=3,
                                           data={"text/plain": "<function f at 0x7f3a2c1b9d30>"}))
    nb.cells[-1].outputs.append(new_output("display_data", data={"image/svg+xml": "<svg/>", "text/plain": "<Figure>"}))
    nb.cells[-1].outputs.append(new_output("error", ename="ValueError", evalue="boom", traceback=["ValueError: boom"]))
    nb.cells.append(new_code_cell("x = 1"))
    nb.cells[0].source = "# no badge"
    path = tmp_path / name
    nbformat.write(nb, path)
    result = run_cleaner(path)
    assert result.returncode == 1
    for expected in ("memory address", "SVG figure", "error output", "not executed", "Open in Colab badge"):
        assert expected in result.stdout, (expected, result.stdout)


def test_structure_check_catches_a_missing_parameters_cell():
    nb = clean_notebook("x.ipynb")
    assert nbclean.structure_problems(nb, "x.ipynb", REPO_URL) == []
    nb.cells[2].metadata = {}
    assert any("parameters" in p for p in nbclean.structure_problems(nb, "x.ipynb", REPO_URL))
    nb = clean_notebook("x.ipynb")
    nb.cells[2].source = "import os\nN = 3\n" + nbclean.PROFILE_LINE
    assert any("first line" in p for p in nbclean.structure_problems(nb, "x.ipynb", REPO_URL))
    nb = clean_notebook("x.ipynb")
    del nb.cells[1]
    assert any("setup cell" in p for p in nbclean.structure_problems(nb, "x.ipynb", REPO_URL))
    assert any("badge" in p for p in nbclean.structure_problems(clean_notebook("x.ipynb"), "y.ipynb", REPO_URL))


@pytest.mark.parametrize("text, paths", [
    ("mnist train: 60,000 images from torchvision mnist files in /work/main/data\n", ["/work"]),
    ("loaded /home/alice/convnets-ii/data/MNIST\n", ["/home/alice"]),
    ("/root/.pyenv/versions/3.11.7/lib/python3.11/site-packages/torch/x.py:3: UserWarning: w\n", ["/root"]),
    ("wrote /tmp/tmpab12cd/run.pt\n", ["/tmp"]),
    ("cache in /var/folders/xy/T/lecture\n", ["/var/folders"]),
    ("C:\\Users\\bob\\data\\MNIST\n", ["C:\\Users\\bob"]),
])
def test_check_flags_absolute_machine_paths_in_outputs(tmp_path, text, paths):
    nb = clean_notebook("paths.ipynb")
    nb.cells[-1].outputs.insert(1, new_output("stream", name="stderr", text=text))
    path = tmp_path / "paths.ipynb"
    nbformat.write(nb, path)
    found = [p for p in nbclean.noise_problems(read(path)) if "absolute path" in p]
    assert len(found) == 1 and all(p in found[0] for p in paths), found
    check = run_cleaner("--check", path)
    assert check.returncode == 1 and "absolute path of the machine" in check.stdout, check.stdout


@pytest.mark.parametrize("text", [
    "from torchvision mnist files in data/ (the repository's data/)\n",
    "data root ~/.cache/lecture_utils\n", "data root $LECTURE_DATA_DIR/MNIST\n",
    "see https://github.com/cmu-10707/convnets-ii/tree/main/work/tmp and runs/tmp/x\n",
    "/homework and /workspace are other folders\n",
])
def test_check_passes_relative_and_portable_paths(tmp_path, text):
    nb = clean_notebook("portable.ipynb")
    nb.cells[-1].outputs.insert(1, new_output("stream", name="stderr", text=text))
    assert not [p for p in nbclean.noise_problems(nb) if "absolute path" in p]


def test_check_flags_the_checkout_and_home_wherever_they_are(monkeypatch):
    monkeypatch.setattr(nbclean, "CHECKOUT", Path("/srv/courses/convnets-ii"))
    monkeypatch.setenv("HOME", "/data/users/carol")
    assert nbclean.machine_paths("in /srv/courses/convnets-ii/data and /data/users/carol/x\n") == \
        ["/data/users/carol", "/srv/courses/convnets-ii"]
    assert nbclean.machine_paths("in /srv/courses/convnets-iii\n") == []
