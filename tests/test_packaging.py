"""The install files agree: what the notebooks need, what the tests add, the conda file, CI and the README."""

import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

# What only the tests and the notebook tools need: never in what a student installs to run the notebooks.
TEST_TOOLS = {"pytest", "nbval", "nbstripout", "playwright"}
CONDA_NAMES = {"torch": "pytorch", "matplotlib": "matplotlib-base"}  # conda-forge's names


def names(lines):
    """Distribution names of requirement lines (comments, options and '-e .' left out), lower-case."""
    found = []
    for line in lines:
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        found.append(re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0].lower())
    return found


def requirement_file(name):
    return names((REPO / name).read_text().splitlines())


@pytest.fixture(scope="module")
def project():
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_requirements_hold_the_notebooks_packages_and_no_test_tools(project):
    student = requirement_file("requirements.txt")
    assert not TEST_TOOLS & set(student), f"requirements.txt holds test tools: {TEST_TOOLS & set(student)}"
    assert set(names(project["dependencies"])) <= set(student), "requirements.txt lacks a package dependency"
    assert "-e ." in (REPO / "requirements.txt").read_text().splitlines(), "requirements.txt installs the package"


def test_requirements_test_holds_the_test_extra(project):
    tools = set(requirement_file("requirements-test.txt"))
    assert TEST_TOOLS <= tools
    extra = set(names(project["optional-dependencies"]["test"]))
    assert extra <= tools | set(requirement_file("requirements.txt")), "the test extra and the files disagree"


def test_cpu_only_torch_instruction_is_given():
    text = (REPO / "requirements.txt").read_text() + (REPO / "README.md").read_text()
    assert "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu" in text


def test_environment_yml_has_every_package_the_files_name():
    text = (REPO / "environment.yml").read_text()
    listed = {re.split(r"[<>=! ]", m, maxsplit=1)[0].lower() for m in re.findall(r"^\s*- ([A-Za-z][\w.-]*\S*)",
                                                                               text, re.M)}
    wanted = set(requirement_file("requirements.txt")) | set(requirement_file("requirements-test.txt"))
    missing = {CONDA_NAMES.get(n, n) for n in wanted} - listed
    assert not missing, f"environment.yml lacks {sorted(missing)}"
    assert re.search(r"^\s+- -e \.$", text, re.M), "environment.yml installs the package"


def readme_test_command():
    readme = (REPO / "README.md").read_text()
    commands = [ln.strip() for ln in readme.splitlines() if ln.strip().endswith("python -m pytest")
                and ln.strip().startswith("pip install")]
    assert len(commands) == 1, commands
    return commands[0]


def test_readme_test_command_installs_both_files_and_ci_runs_it():
    command = readme_test_command()
    assert command == "pip install -r requirements.txt -r requirements-test.txt && python -m pytest"
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci == "python3 -m pip install -q -r requirements.txt -r requirements-test.txt && python3 -m pytest"


def test_readme_says_how_to_make_a_venv():
    readme = (REPO / "README.md").read_text()
    quick = readme[readme.index("## Quick start"):readme.index("## The notebooks")]
    assert "python3 -m venv .venv" in quick and ". .venv/bin/activate" in quick


def test_license_matches_pyproject(project):
    assert project["license"] == {"text": "MIT"}
    assert (REPO / "LICENSE").read_text().startswith("MIT License")
