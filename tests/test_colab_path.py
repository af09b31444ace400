"""The Colab path, reproduced here: a regular install of the built package, a notebook run far from the repository.

On Colab the setup cell runs ``%pip install "lecture-utils @ git+<repository>"``:
pip builds a wheel and installs it into site-packages, beside no checkout and
no ``data/``. This test does the same offline: it builds the wheel from a copy
of the sources, installs it (not editable, ``--no-deps``) into a fresh virtual
environment that borrows the packages of the interpreter running pytest (torch,
papermill, ...) through a ``.pth`` file listing that interpreter's ``sys.path``
(``--system-site-packages`` would borrow the *base* interpreter's instead, which
inside a venv or a conda env is not the one holding the packages), registers a
kernel for that environment and runs a notebook with papermill from an empty
working directory, with ``HOME`` in a temporary folder, downloads off and no
``LECTURE_DATA_DIR``. The notebook must import the installed package, pick
``~/.cache/lecture_utils`` as its data root, fall back to the embedded digits
with its banner, and complete at the ``smoke`` profile.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "02_elastic_distortions.ipynb"
KERNEL = "lecture-colab-path"
PROBE = (
    "import lecture_utils, lecture_utils.data\n"
    "print('LECTURE_UTILS_FILE', lecture_utils.__file__)\n"
    "print('DATA_ROOT', lecture_utils.data.data_root())"
)


def run(cmd, **kw):
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    assert result.returncode == 0, f"{' '.join(map(str, cmd))} failed ({result.returncode}):\n" \
                                   f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def borrowed_paths(exclude):
    """Folders on this interpreter's ``sys.path`` that hold its packages (venv, conda env or system alike).

    Leaves out the checkout's own folders and anything under ``exclude`` (the package must
    come from the wheel, not from the sources), but not an environment's site-packages inside
    the checkout (the README's ``.venv``), and the standard library the new environment has itself.
    """
    import sysconfig

    own = {Path(sysconfig.get_paths()[key]).resolve() for key in ("stdlib", "platstdlib")}
    paths = []
    for entry in sys.path:
        path = Path(entry or os.getcwd()).resolve()
        if not path.is_dir() or path in own or path.parent in own and path.name == "lib-dynload":
            continue
        if any(path.is_relative_to(root) for root in exclude):
            continue
        if path.is_relative_to(REPO) and not {"site-packages", "dist-packages"} & set(path.parts):
            continue
        if path not in paths:
            paths.append(path)
    return paths


def colab_like_env(home, jupyter_path):
    """This environment minus everything that points at the checkout or at local data."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LECTURE_", "JUPYTER_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(HOME=str(home), LECTURE_OFFLINE="1", LECTURE_PROFILE="smoke", LECTURE_PROGRESS="0",
               JUPYTER_PATH=str(jupyter_path), JUPYTER_CONFIG_DIR=str(home / ".jupyter"),
               JUPYTER_DATA_DIR=str(home / ".local/share/jupyter"), PYTHONNOUSERSITE="1",
               MPLCONFIGDIR=str(home / ".config/matplotlib"))
    return env


@pytest.mark.colab
def test_regular_install_runs_a_notebook_away_from_the_repository(tmp_path):
    if not NOTEBOOK.is_file():
        pytest.skip(f"{NOTEBOOK} is missing")

    # 1. Build the wheel from a copy of the sources (nothing is written into the checkout).
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO / name).is_file():
            shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "lecture_utils", src / "lecture_utils",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", dist, src],
        cwd=tmp_path, timeout=300)
    wheels = list(dist.glob("lecture_utils-*.whl"))
    assert len(wheels) == 1, wheels

    # 2. A fresh virtual environment that sees this interpreter's packages (a .pth file of its sys.path,
    #    after the venv's own site-packages); the package installed regularly (not editable) from the wheel.
    #    --without-pip: this interpreter's pip (borrowed too) installs into the venv; no ensurepip needed.
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv], timeout=300)
    python = venv / "bin" / "python"
    home, work, jupyter_path = tmp_path / "home", tmp_path / "work", tmp_path / "jupyter"
    for d in (home, work, jupyter_path):
        d.mkdir()
    env = colab_like_env(home, jupyter_path)
    site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                    cwd=work, env=env).stdout.strip())
    borrowed = borrowed_paths(exclude=[tmp_path])
    (site / "borrowed-from-the-test-interpreter.pth").write_text("".join(f"{p}\n" for p in borrowed))
    run([python, "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", "--no-index", wheels[0]],
        cwd=work, env=env, timeout=300)
    assert (site / "lecture_utils" / "__init__.py").is_file()
    assert not list(site.glob("__editable__*lecture_utils*")), "the install must not be editable"
    found = run([python, "-c", "import lecture_utils; print(lecture_utils.__file__)"], cwd=work, env=env).stdout
    assert Path(found.strip()).resolve().is_relative_to(site.resolve()), \
        f"the venv imports lecture_utils from {found.strip()}, not from its own site-packages {site}"

    # 3. A kernel that runs the venv's interpreter, known to papermill through JUPYTER_PATH only.
    spec = jupyter_path / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Colab path (regular install)", "language": "python",
    }))

    # 4. Run a copy of the notebook (plus a probe cell) from an empty working directory: no data/ beside it.
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    source = work / NOTEBOOK.name
    nbformat.write(nb, source)
    out = tmp_path / "executed.ipynb"
    result = subprocess.run(
        [str(python), "-m", "papermill", str(source), str(out), "-k", KERNEL, "--cwd", str(work),
         "--no-progress-bar", "--execution-timeout", "600"],
        cwd=work, env=env, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, f"papermill failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"

    executed = nbformat.read(out, as_version=4)
    assert executed.metadata.papermill.get("exception") in (None, False)
    texts = []
    for cell in executed.cells:
        if cell.cell_type != "code":
            continue
        assert cell.execution_count is not None, f"cell not executed:\n{cell.source[:200]}"
        for output in cell.outputs:
            assert output.output_type != "error", f"{output.ename}: {output.evalue}"
            texts.append(output.get("text", ""))
            texts.extend(str(v) for k, v in output.get("data", {}).items() if k.startswith("text/"))
    text = "\n".join(texts)

    assert "DATA FALLBACK" in text, "the notebook must say, unmissably, that it runs on the embedded digits"
    lines = dict(line.split(" ", 1) for line in executed.cells[-1].outputs[0].text.splitlines())
    assert Path(lines["LECTURE_UTILS_FILE"]).resolve().is_relative_to(site.resolve()), lines
    data_root = home / ".cache" / "lecture_utils"
    assert Path(lines["DATA_ROOT"]) == data_root, lines
    assert str(data_root) in text, "the banner should name the data root it looked in"
    downloaded = [p for p in data_root.rglob("*") if p.is_file()] if data_root.exists() else []
    assert not downloaded, f"nothing may be downloaded offline, found {downloaded}"
    assert sorted(p.name for p in work.iterdir()) == [NOTEBOOK.name], "the run wrote into its working directory"
