"""The student edition (lecture_utils.course.student), on a synthetic notebook and on the real ones.

CI's checks of the exercises, here:
(1) the solution notebooks run with every check passing: the synthetic one is run here; for the real ones, the
    committed outputs of every check cell say "Correct:" (the notebooks' own smoke run is the nbval job);
(2) regenerating the student edition gives exactly the committed student/ (skipped while there is none);
(3) no student copy contains a solution marker or a solution line;
(4) the student copies run with nbclient allowing only NotImplementedError, and every check cell fails there:
    the synthetic one here (~5 s), the real ones at smoke in ``test_real_student_copy_runs`` (marked
    ``student_run``; about 20-40 s per notebook with exercises, skipped for a notebook without any).
"""

import os
import time
from pathlib import Path

import nbformat
import pytest

from lecture_utils.course import student

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "tests" / "notebooks" / "exercises" / "exercises_demo.ipynb"
REAL = sorted((ROOT / student.NOTEBOOK_DIR).glob("*.ipynb"))
STUDENT = ROOT / student.STUDENT_DIR


def cell(source, kind="code", tags=None, outputs=None):
    c = nbformat.v4.new_code_cell(source) if kind == "code" else nbformat.v4.new_markdown_cell(source)
    if tags:
        c.metadata["tags"] = tags
    if outputs is not None:
        c.outputs = outputs
    return c


def notebook(*cells):
    nb = nbformat.v4.new_notebook(cells=list(cells))
    for i, c in enumerate(nb.cells):
        c.id = f"c{i}"
    return nb


def stream(text):
    return nbformat.v4.new_output("stream", name="stdout", text=text)


def run(nb, allow=()):
    """Execute ``nb`` in place as the notebooks run (a kernel of this environment, in notebooks/ at smoke)."""
    from nbclient import NotebookClient

    os.environ.setdefault("LECTURE_PROFILE", "smoke")
    client = NotebookClient(nb, timeout=600, kernel_name="python3", allow_error_names=list(allow),
                            resources={"metadata": {"path": str(ROOT / student.NOTEBOOK_DIR)}})
    client.execute()
    return nb


def errors(c):
    return [o for o in c.get("outputs", []) if o.get("output_type") == "error"]


def text_of(c):
    return "".join(o.get("text", "") for o in c.get("outputs", []) if o.get("output_type") == "stream")


# ---------------------------------------------------------------- the pieces

def test_a_solution_block_becomes_one_stub_line_at_its_indentation():
    source = ("def f(x):\n    y = 2\n    ### BEGIN SOLUTION\n    return x * y\n    ### END SOLUTION\n\n"
              "### BEGIN SOLUTION\nz = f(1)\n### END SOLUTION\nprint('after')\n")
    out = student.stub_source(source, "Exercise 2.1: twice")
    assert out == ('def f(x):\n    y = 2\n    raise NotImplementedError("Exercise 2.1: twice")\n\n'
                   'raise NotImplementedError("Exercise 2.1: twice")\nprint(\'after\')\n')
    quoted = student.stub_source("### BEGIN SOLUTION\nx\n### END SOLUTION", 'Exercise 1.1: "a" \\ b')
    assert quoted == 'raise NotImplementedError("Exercise 1.1: \\"a\\" \\\\ b")'
    compile(quoted, "stub", "exec")


@pytest.mark.parametrize("source, words", [
    ("### BEGIN SOLUTION\nx = 1\n", "without an ### END SOLUTION"),
    ("x = 1\n### END SOLUTION\n", "without a ### BEGIN SOLUTION"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n", "inside a solution"),
    ("### BEGIN SOLUTON\nx = 1\n### END SOLUTION\n", "write the marker alone"),
    ("x = 1  ### END SOLUTION\n", "write the marker alone"),
    ("## begin solution\nx = 1\n### END SOLUTION\n", "write the marker alone"),
])
def test_a_broken_marker_is_an_error_naming_its_line(source, words):
    with pytest.raises(ValueError, match=words):
        student.solution_blocks(source, "nb.ipynb, cell 3")


def test_the_title_comes_from_the_cell_or_the_heading_above():
    cells = [cell("### Exercise 3.2: fc6 by hand (about 5 minutes)\nCount.", "markdown"), cell("x = 1"),
             cell("### BEGIN SOLUTION\n### END SOLUTION"),
             cell("# Exercise 3.3: conv1's MACs\n### BEGIN SOLUTION\n### END SOLUTION")]
    assert student.exercise_title(cells, 2) == "Exercise 3.2: fc6 by hand"
    assert student.exercise_title(cells, 3) == "Exercise 3.3: conv1's MACs"
    with pytest.raises(ValueError, match="no exercise title"):
        student.exercise_title([cell("### BEGIN SOLUTION\n### END SOLUTION")], 0, "nb.ipynb, cell 0")


def test_prose_about_solving_is_not_a_marker():
    prose = cell("## Begin solving\nWhen you begin solving, end solutions with a check.", "markdown")
    assert student.solution_blocks(prose.source) == []
    nb = notebook(prose)
    assert student.student_notebook(nb, "n.ipynb").cells[0].source.startswith(prose.source.splitlines()[0])


def test_check_cells_are_tagged_or_call_a_check_right_after_an_exercise():
    cells = [cell("### Exercise 1.1: a", "markdown"), cell("### BEGIN SOLUTION\n### END SOLUTION"),
             cell("check_a(a)"), cell("check_b(b)"), cell("### BEGIN SOLUTION\n### END SOLUTION"),
             cell("note", "markdown"), cell("print(1)"), cell("anything", tags=["check"])]
    assert student.check_cells(cells) == [2, 7]


def test_an_exercise_tag_without_markers_is_an_error():
    nb = notebook(cell("### Exercise 1.1: a", "markdown"), cell("x = 1", tags=["exercise"]))
    with pytest.raises(ValueError, match="tagged 'exercise' but has no"):
        student.student_notebook(nb, "n.ipynb")


# ---------------------------------------------------------------- the synthetic notebook

@pytest.fixture(scope="module")
def demo():
    solution = nbformat.read(DEMO, as_version=4)
    return solution, nbformat.reads(student.generate(DEMO)[0], as_version=4)


def test_the_student_copy_of_the_synthetic_notebook(demo):
    solution, copy = demo
    assert [c.id for c in copy.cells] == [c.id for c in solution.cells]
    sources = [c.source for c in copy.cells]
    assert 'raise NotImplementedError("Exercise 1.1: the loss at chance")' in sources[3]
    assert sources[3].startswith('def chance_loss(num_classes):\n    """The cross-entropy')  # lines kept around
    assert 'raise NotImplementedError("Exercise 1.2: one momentum step")' in sources[6]
    assert "*Exercise 1.3: predict, then count: write your answer here.*" in sources[9]
    assert 'raise NotImplementedError("Exercise 1.4: the receptive field by the formula")' in sources[10]
    # exercise and check cells (tagged, or by position: cell 7) cleared; the others keep their outputs
    for i in (3, 4, 6, 7, 10, 11):
        assert copy.cells[i].outputs == [] and copy.cells[i].execution_count is None, i
    for i in (1, 2, 5, 8, 12):  # code and markdown cells that are neither exercises nor checks: unchanged
        assert copy.cells[i] == solution.cells[i], i
    assert text_of(copy.cells[8]) == "the lecture goes on: 4\n"
    assert copy.cells[12].outputs == solution.cells[12].outputs
    # links point at the student edition, with a note under the badge
    first = copy.cells[0].source
    assert "/blob/main/student/exercises_demo.ipynb)" in first and "/notebooks/" not in first.split("Student")[0]
    assert "blob/main/student/02_elastic_distortions.ipynb" in first
    assert "> **Student edition.**" in first and "](../notebooks/exercises_demo.ipynb)" in first
    assert first.index("colab-badge") < first.index("Student edition") < first.index("Another notebook")
    assert student.leaks(copy, solution) == []


def test_solution_lines_and_markers_in_a_student_copy_are_found(demo):
    solution, copy = demo
    secret = student.solution_lines(solution)
    assert "velocity = momentum * velocity + grad" in secret
    assert "return w - lr * step, velocity" in secret
    assert "import math" not in secret and "### BEGIN SOLUTION" not in secret
    leaked = nbformat.from_dict(copy)
    leaked.cells[8].source += "\nvelocity = momentum * velocity + grad"
    leaked.cells[12].outputs = [stream("    return w - lr * step, velocity\n")]
    leaked.cells[1].source += "\n### BEGIN SOLUTION"
    found = student.leaks(leaked, solution)
    assert any("cell 8 source: a solution line" in f for f in found)
    assert any("cell 12 output: a solution line" in f for f in found)
    assert any("cell 1 source: a solution marker" in f for f in found)


def test_a_line_shown_outside_the_solutions_is_no_secret():
    nb = notebook(cell("### Exercise 1.1: a", "markdown"),
                  cell("def f(x):\n    ### BEGIN SOLUTION\n    out = x.relu()\n    return out\n    ### END SOLUTION"),
                  cell("out = x.relu()"), cell("return out"))
    assert student.solution_lines(nb) == set()  # "return out" also appears outside, "out = x.relu()" too
    nb.cells[2].source = "y = 1"
    assert student.solution_lines(nb) == {"out = x.relu()"}


def test_generation_is_byte_identical_and_check_mode_finds_every_difference(tmp_path, capsys):
    out = tmp_path / "student"
    assert student.main([str(DEMO.parent), "--out", str(out)]) == 0
    first = (out / DEMO.name).read_bytes()
    assert student.generate(DEMO)[0].encode() == first
    assert student.main([str(DEMO), "--out", str(out)]) == 0
    assert "unchanged" in capsys.readouterr().out
    assert (out / DEMO.name).read_bytes() == first
    assert student.main([str(DEMO), "--out", str(out), "--check"]) == 0
    assert "up to date" in capsys.readouterr().out

    (out / DEMO.name).write_bytes(first.replace(b"the lecture goes on", b"the lecture goes off"))
    assert student.main([str(DEMO), "--out", str(out), "--check"]) == 1
    assert "differs from what" in capsys.readouterr().out
    (out / DEMO.name).write_bytes(first.replace(b'raise NotImplementedError(\\"Exercise 1.2: one momentum step\\")',
                                                b"velocity = momentum * velocity + grad"))
    assert student.main([str(DEMO), "--out", str(out), "--check"]) == 1
    assert "a solution line, 'velocity = momentum * velocity + grad'" in capsys.readouterr().out
    (out / DEMO.name).unlink()
    assert student.main([str(DEMO), "--out", str(out), "--check"]) == 1
    assert "is missing" in capsys.readouterr().out


def test_a_student_copy_without_a_notebook_is_reported(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / DEMO.name).write_bytes(DEMO.read_bytes())
    assert student.main([]) == 0  # the defaults: notebooks/ -> student/
    (tmp_path / "student" / "old.ipynb").write_text("{}")
    assert student.main(["--check"]) == 1
    assert "old.ipynb has no notebook in notebooks/" in capsys.readouterr().out


def test_a_notebook_with_broken_markers_fails_with_its_name(tmp_path, capsys):
    nb = notebook(cell("### Exercise 1.1: a", "markdown"), cell("### BEGIN SOLUTION\nx = 1\n"))
    path = tmp_path / "broken.ipynb"
    nbformat.write(nb, path)
    assert student.main([str(path), "--out", str(tmp_path / "out")]) == 1
    assert "broken.ipynb, cell 1, line 1: ### BEGIN SOLUTION without an ### END SOLUTION" in capsys.readouterr().err
    assert not (tmp_path / "out" / "broken.ipynb").exists()


def test_cells_without_ids_get_the_same_ids_every_time(tmp_path):
    path = tmp_path / "noids.ipynb"
    text = DEMO.read_text().replace('"id": "demo-03",', "")
    path.write_text(text)
    with pytest.warns(Warning):  # nbformat itself would invent a random id
        nbformat.reads(text, as_version=4)
    assert student.generate(path)[0] == student.generate(path)[0]
    assert '"id": "cell-3"' in student.generate(path)[0]


def test_the_module_runs_as_a_script(tmp_path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "lecture_utils.course.student", str(DEMO), "--out",
                           str(tmp_path), "--check"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 1 and "is missing" in done.stdout


def test_the_synthetic_solution_runs_and_every_check_passes():
    nb = run(nbformat.read(DEMO, as_version=4))
    copy = nbformat.reads(student.generate(DEMO)[0], as_version=4)
    checks = student.check_cells(nb.cells)
    assert checks == [4, 7, 11]
    for i in checks:
        assert text_of(nb.cells[i]).startswith("Correct:"), (i, nb.cells[i].outputs)
    assert len(copy.cells) == len(nb.cells)


def test_the_synthetic_student_copy_runs_and_every_check_fails_there():
    started = time.perf_counter()
    copy = nbformat.reads(student.generate(DEMO)[0], as_version=4)
    run(copy, allow=["NotImplementedError"])
    checks = student.check_cells(nbformat.read(DEMO, as_version=4).cells)
    for i, c in enumerate(copy.cells):
        if c.cell_type != "code":
            continue
        if i in checks:
            assert [e.ename for e in errors(c)] == ["NotImplementedError"], (i, c.outputs)
            assert "Exercise 1." in errors(c)[0].evalue
        else:
            assert errors(c) == [], (i, c.outputs)  # exercise cells define functions; the rest runs
    assert text_of(copy.cells[8]) == "the lecture goes on: 4\n"
    assert time.perf_counter() - started < 60


# ---------------------------------------------------------------- the real notebooks

@pytest.mark.parametrize("path", REAL, ids=[p.stem for p in REAL])
def test_real_student_copies_show_no_solution(path):
    text, solution = student.generate(path)
    copy = nbformat.reads(text, as_version=4)
    assert student.leaks(copy, solution) == []
    assert student.BEGIN not in text and student.END not in text
    assert "/blob/main/student/" + path.name in copy.cells[0].source


@pytest.mark.parametrize("path", REAL, ids=[p.stem for p in REAL])
def test_real_check_cells_passed_in_the_committed_run(path):
    nb = nbformat.read(path, as_version=4)
    if not student.exercises(nb):
        pytest.skip(f"{path.name} has no exercises yet")
    for i in student.check_cells(nb.cells):
        assert "Correct:" in text_of(nb.cells[i]), f"{path.name}, check cell {i}: no 'Correct:' in its outputs"


def test_the_committed_student_edition_is_what_the_notebooks_generate():
    if not STUDENT.is_dir():
        pytest.skip("student/ is not committed yet: python -m lecture_utils student --out student writes it")
    problems = student.check(REAL, STUDENT) + [f"{p}: no notebook" for p in student.stale(REAL, STUDENT)]
    assert problems == []


@pytest.mark.student_run
@pytest.mark.parametrize("path", REAL, ids=[p.stem for p in REAL])
def test_real_student_copy_runs(path):
    """The student copy at smoke: only stubs fail, and every check cell fails (20-40 s per notebook)."""
    solution = nbformat.read(path, as_version=4)
    if not student.exercises(solution):
        pytest.skip(f"{path.name} has no exercises yet")
    copy = nbformat.reads(student.generate(path)[0], as_version=4)
    try:
        run(copy, allow=["NotImplementedError"])
    except Exception as err:  # nbclient's CellExecutionError: another error than a stub's
        raise AssertionError(
            f"{path.name}'s student copy failed with another error than NotImplementedError: {err}. A check "
            "cell must get the stub's NotImplementedError (write the exercise as a function the check cell "
            "calls), and no later cell may use an exercise's result") from None
    checks = student.check_cells(solution.cells)
    for i, c in enumerate(copy.cells):
        found = [(e.ename, e.evalue) for e in errors(c)]
        if i in checks:
            assert [name for name, _ in found] == ["NotImplementedError"], \
                f"{path.name}, check cell {i} did not fail on the stub: {found}"
        # elsewhere only an exercise's stub may fail: in its own cell, or in a cell that uses the exercise
        assert all(value.startswith("Exercise ") for _, value in found), f"{path.name}, cell {i}: {found}"
