"""Clean committed notebooks: keep the outputs a reader wants on GitHub, drop the noise.

``python -m lecture_utils clean [NOTEBOOK ...]`` cleans in place (default:
every notebook in ``notebooks/``); ``--check`` changes nothing and exits 1 if
a notebook is not clean. Executed copies from ``python -m lecture_utils run``
(papermill) come out of it as a reader should see them:

* outputs and execution counts are kept;
* volatile metadata is removed (nbstripout, with papermill's keys added):
  execution timings, papermill's timestamps and paths, the saved widget state
  (``metadata.widgets``) and the widget views that point into it by model id;
* papermill's ``injected-parameters`` cell is removed: it would hard-code the
  profile of the run (``PROFILE = "default"``) over ``$LECTURE_PROFILE``, so
  that CI's nbval run would no longer be a ``smoke`` run;
* an SVG figure that also has a PNG keeps only the PNG;
* consecutive prints to the same stream become one output, as JupyterLab saves them;
* the Colab badge and the setup cell are pointed at ``[project.urls] Repository``
  of ``pyproject.toml``, the one place the repository's address is set: after
  changing it there, run this command.

What cannot be fixed here is reported (and makes ``--check`` fail): an SVG-only
figure, a memory address in a repr (``<... at 0x7f...>``), an absolute path of
the machine that ran it in an output (a home, work or temporary folder, or the
checkout itself: print paths relative to the repository, or as
``$LECTURE_DATA_DIR`` / ``~/...``), an error output, an unexecuted code cell,
and a missing Colab badge, Colab setup cell or ``parameters`` cell.
"""

import argparse
import copy
import os
import re
import sys
import tempfile
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = CHECKOUT / "notebooks"
BRANCH = "main"  # the branch the Colab badges open

# nbstripout's own defaults (its command line adds them; its Python API does not) plus papermill's keys.
VOLATILE_KEYS = [
    "metadata.signature",
    "metadata.widgets",
    "metadata.papermill",
    "metadata.language_info.version",
    "cell.metadata.collapsed",
    "cell.metadata.ExecuteTime",
    "cell.metadata.execution",
    "cell.metadata.heading_collapsed",
    "cell.metadata.hidden",
    "cell.metadata.scrolled",
    "cell.metadata.papermill",
]
INJECTED_TAG = "injected-parameters"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
SVG, PNG = "image/svg+xml", "image/png"
PROFILE_LINE = 'PROFILE = os.environ.get("LECTURE_PROFILE", "default")'
ADDRESS = re.compile(r"\bat 0x[0-9a-fA-F]{4,}")
# Absolute paths that name the machine a notebook ran on: homes, work and temporary folders (POSIX and
# Windows). Not preceded by a word character, '.', '~', '$' or '/', so URLs, relative and ~/ paths pass.
_MACHINE_PATH = re.compile(
    r"(?<![\w.~$/\\-])(?:"
    r"/(?:home|Users)/[^/\s\"']+|/root|/work|/tmp|/var/tmp|/var/folders|/private/var/folders|/private/tmp"
    r"|[A-Za-z]:\\(?:Users|Temp|Windows\\Temp)\\[^\\\s\"']*"
    r")(?=[/\\\s\"'`),:;]|$)")
COLAB_GUARD = 'if "google.colab" in sys.modules:'
PIP_LINE = re.compile(r"^\s+[%!]\s*pip\s+install\b(?P<args>.*)$")
# Options that would replace Colab's own packages (torch among them) or make the install editable.
FORBIDDEN_PIP_OPTIONS = ("-e", "--editable", "--force-reinstall", "-I", "--ignore-installed")


# ---------------------------------------------------------------- configuration

def repository_url(pyproject=None):
    """``[project.urls] Repository`` of ``pyproject.toml``, without a trailing slash or ``.git``."""
    pyproject = Path(pyproject) if pyproject else CHECKOUT / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8")
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            tomllib = None
    if tomllib is not None:
        url = tomllib.loads(text).get("project", {}).get("urls", {}).get("Repository")
    else:
        section = re.search(r"^\[project\.urls\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
        found = section and re.search(r'^\s*Repository\s*=\s*"([^"]+)"', section.group(1), re.M)
        url = found.group(1) if found else None
    if not url:
        raise ValueError(f"{pyproject} has no [project.urls] Repository")
    url = url.rstrip("/")
    return url[:-4] if url.endswith(".git") else url


def colab_url(repo_url, notebook_name, branch=BRANCH):
    """The "Open in Colab" address of ``notebooks/<notebook_name>`` in the GitHub repository ``repo_url``."""
    match = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+)", repo_url)
    if not match:
        raise ValueError(f"the repository URL {repo_url!r} is not https://github.com/<owner>/<repo>")
    owner, repo = match.groups()
    return f"https://colab.research.google.com/github/{owner}/{repo}/blob/{branch}/notebooks/{notebook_name}"


def setup_requirement(repo_url):
    """What the Colab setup cell installs: the package from the repository (a regular install)."""
    return f"lecture-utils @ git+{repo_url}"


# ---------------------------------------------------------------- cleaning

def _strip_output(nb, keys):
    try:
        from nbstripout import strip_output
    except ImportError:
        raise SystemExit("nbclean needs nbstripout: pip install nbstripout") from None
    return strip_output(nb, keep_output=True, keep_count=True, keep_id=True, extra_keys=keys,
                        drop_tagged_cells=[INJECTED_TAG])


COLAB_LINK = re.compile(r"https://colab\.research\.google\.com/github/[^)\s\"']+?/notebooks/[^)\s\"'/]+\.ipynb")
GIT_URL = re.compile(r"git\+https://github\.com/[\w.-]+/[\w.-]+?(?:\.git)?(?=[@\"'\s]|$)")


def point_at_repository(nb, name, repo_url):
    """Make the badge (first markdown cell) and the setup cell (first code cell) use ``repo_url``, in place."""
    markdown = [c for c in nb.cells if c.cell_type == "markdown"]
    code = [c for c in nb.cells if c.cell_type == "code"]
    if markdown:
        markdown[0].source = COLAB_LINK.sub(colab_url(repo_url, name), _source(markdown[0]))
    if code and COLAB_GUARD in _source(code[0]):
        code[0].source = GIT_URL.sub(f"git+{repo_url}", _source(code[0]))
    return nb


def clean(nb, name=None, repo_url=None):
    """Return a cleaned copy of the notebook ``nb`` (an ``nbformat`` node); ``nb`` is left as it is.

    With ``name`` (the notebook's file name) and ``repo_url``, its Colab badge
    and setup cell are also pointed at that repository.
    """
    nb = _strip_output(copy.deepcopy(nb), VOLATILE_KEYS)
    if name and repo_url:
        point_at_repository(nb, name, repo_url)
    for cell in nb.cells:
        if cell.get("metadata", {}).get("tags") == []:
            del cell.metadata["tags"]  # papermill adds an empty list to every cell
        if cell.cell_type != "code":
            continue
        kept = []
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET_VIEW in data:
                continue  # points at widget state that is not kept; re-running the cell draws the widget
            if SVG in data and PNG in data:
                del data[SVG]
                output.get("metadata", {}).pop(SVG, None)
            previous = kept[-1] if kept else None
            if (output.get("output_type") == "stream" and previous is not None
                    and previous.get("output_type") == "stream" and previous.get("name") == output.get("name")):
                # One stream output per run of prints, as JupyterLab saves it (nbclient keeps one per message).
                previous["text"] = _join(previous["text"]) + _join(output["text"])
                continue
            kept.append(output)
        cell.outputs = kept
    return nb


def _join(text):
    return "".join(text) if isinstance(text, list) else text


def _read(path):
    import nbformat

    return nbformat.reads(Path(path).read_text(encoding="utf-8"), as_version=4)


def _text(nb):
    import nbformat

    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def needs_cleaning(path, repo_url=None):
    """True if cleaning would change the file at ``path``."""
    path = Path(path)
    return _text(clean(_read(path), path.name, repo_url or repository_url())) != path.read_text(encoding="utf-8")


def clean_file(path, repo_url=None):
    """Clean the notebook at ``path`` in place (badge and setup cell included); True if it changed."""
    path = Path(path)
    text = _text(clean(_read(path), path.name, repo_url or repository_url()))
    if text == Path(path).read_text(encoding="utf-8"):
        return False
    Path(path).write_text(text, encoding="utf-8")
    return True


# ---------------------------------------------------------------- checks

def _source(cell):
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _texts(output):
    """The text of an output a reader sees (streams, tracebacks, text/* and JSON-free string data)."""
    if "text" in output:
        yield "".join(output["text"]) if isinstance(output["text"], list) else output["text"]
    for mime, value in output.get("data", {}).items():
        if mime.startswith("text/"):
            yield "".join(value) if isinstance(value, list) else value
    if output.get("output_type") == "error":
        yield "\n".join(output.get("traceback", []))


def machine_paths(text):
    """Absolute paths in ``text`` that name the machine that ran it: a home, work or temporary folder,
    this checkout, this user's home or this machine's temporary folder (wherever those are)."""
    found = [m.group(0) for m in _MACHINE_PATH.finditer(text)]
    for root in {str(CHECKOUT), os.path.expanduser("~"), tempfile.gettempdir()}:
        if len(root.strip("/\\")) > 1:  # "/" alone (a home of "/") would match everything
            bounded = _MACHINE_PATH.pattern.split("(?:", 1)[0] + re.escape(root) + r"(?=[/\\\s\"'`),:;]|$)"
            found += [m.group(0) for m in re.finditer(bounded, text)]
    return sorted(set(found))


def noise_problems(nb):
    """Volatile or unreadable content: what makes a committed notebook noisy in a diff."""
    found = []
    for key in ("papermill", "widgets", "signature"):
        if key in nb.metadata:
            found.append(f"notebook metadata has volatile '{key}'")
    if "version" in nb.metadata.get("language_info", {}):
        found.append("notebook metadata has the Python version (language_info.version)")
    for i, cell in enumerate(nb.cells):
        meta = cell.get("metadata", {})
        for key in ("papermill", "execution", "ExecuteTime", "collapsed", "scrolled"):
            if key in meta:
                found.append(f"cell {i}: volatile metadata '{key}'")
        if INJECTED_TAG in meta.get("tags", []):
            found.append(f"cell {i}: papermill's injected-parameters cell (it hard-codes the run's profile)")
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET_VIEW in data:
                found.append(f"cell {i}: a widget view (model id {data[WIDGET_VIEW].get('model_id')}) whose state is not kept")
            if SVG in data:
                found.append(f"cell {i}: an SVG figure (use PNG: %config InlineBackend.figure_formats = ['png'])")
            for text in _texts(output):
                m = ADDRESS.search(text)
                if m:
                    line = next(ln for ln in text.splitlines() if m.group(0) in ln)
                    found.append(f"cell {i}: a memory address in an output ({line.strip()[:100]!r}); "
                                 "end the cell with plt.show() or a ';', or print something stable")
                paths = machine_paths(text)
                if paths:
                    line = next((ln for ln in text.splitlines() if paths[0] in ln), paths[0])
                    found.append(f"cell {i}: an absolute path of the machine that ran it in an output "
                                 f"({', '.join(paths)}: {line.strip()[:100]!r}); print it relative to the repository "
                                 "(or as $LECTURE_DATA_DIR, ~/...)")
    return found


def execution_problems(nb):
    """Unexecuted code cells and error outputs: a committed notebook shows a complete, successful run."""
    found, unexecuted = [], []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if _source(cell).strip() and cell.get("execution_count") is None:
            unexecuted.append(str(i))
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                found.append(f"cell {i}: an error output ({output.get('ename')}: {output.get('evalue', '')[:80]})")
            elif output.get("name") == "stderr" and "Traceback (most recent call last)" in "".join(output.get("text", "")):
                found.append(f"cell {i}: a traceback on stderr")
    if unexecuted:
        found.insert(0, f"code cells {', '.join(unexecuted)} not executed (commit the executed copy: "
                        "python -m lecture_utils run --out runs/default, copy it over, then clean it)")
    return found


def setup_cell_problems(source, repo_url):
    """What is wrong with a Colab setup cell's ``source`` (empty list: nothing)."""
    lines = source.splitlines()
    found = []
    guard = [i for i, ln in enumerate(lines) if ln.strip() == COLAB_GUARD]
    pips = [(i, PIP_LINE.match(ln)) for i, ln in enumerate(lines) if re.search(r"[%!]\s*pip\s+install", ln)]
    if not guard:
        found.append(f"the setup cell lacks the guard {COLAB_GUARD!r} (it must do nothing outside Colab)")
    if len(pips) != 1:
        found.append(f"the setup cell must hold exactly one '%pip install' line, it has {len(pips)}")
        return found
    i, m = pips[0]
    if m is None or not guard or i <= guard[0]:
        found.append("the pip install must be indented under the Colab guard (only on Colab)")
        return found
    args = m.group("args").strip()
    words = args.split()
    bad = [w for w in words if w.split("=")[0] in FORBIDDEN_PIP_OPTIONS]
    bad += re.findall(r"--upgrade-strategy[= ]+eager", args)
    if bad:
        found.append(f"the setup cell's pip install uses {' '.join(bad)}: it must be a regular, non-editable install "
                     "that leaves Colab's own packages (torch) alone")
    reqs = re.findall(r"""["']([^"']+)["']""", args)
    wanted = setup_requirement(repo_url)
    if not any(r == wanted or r.startswith(wanted + "@") for r in reqs):
        found.append(f"the setup cell must install {wanted!r} (from pyproject's Repository URL), it installs {args!r}")
    if re.search(r"\btorch", args):
        found.append("the setup cell's pip install names torch: Colab's own torch must be left alone")
    return found


def structure_problems(nb, name, repo_url):
    """The badge, the Colab setup cell and the ``parameters`` cell every notebook has."""
    found = []
    markdown = [c for c in nb.cells if c.cell_type == "markdown"]
    code = [c for c in nb.cells if c.cell_type == "code"]
    badge = colab_url(repo_url, name)
    badge_links = re.findall(r"\(?(https://colab\.research\.google\.com/github/[^)\s]+)\)?",
                             _source(markdown[0]) if markdown else "")
    if not markdown or "colab-badge.svg" not in _source(markdown[0]) or badge not in badge_links:
        found.append(f"the first markdown cell lacks the Open in Colab badge linking to {badge}")
    elif any(link != badge for link in badge_links):
        found.append(f"the first markdown cell links to another Colab address than {badge}: {badge_links}")
    if not code:
        return found + ["no code cells"]
    if COLAB_GUARD not in _source(code[0]):
        found.append("the first code cell is not the Colab setup cell")
    else:
        found += setup_cell_problems(_source(code[0]), repo_url)
    params = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(params) != 1:
        found.append(f"there must be exactly one code cell tagged 'parameters', there are {len(params)}")
    else:
        lines = [ln.strip() for ln in _source(params[0]).splitlines()]
        lines = [ln for ln in lines if ln and not ln.startswith("#") and ln != "import os"]
        if not lines or lines[0].split("  #")[0].rstrip() != PROFILE_LINE:  # a trailing comment may say what each profile is
            found.append(f"the parameters cell's first line (after 'import os') must be {PROFILE_LINE!r}")
    return found


def problems(path, repo_url=None):
    """Everything that keeps the notebook at ``path`` from being clean (empty list: it is clean)."""
    import nbformat

    path = Path(path)
    repo_url = repo_url or repository_url()
    nb = _read(path)
    found = []
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as err:
        found.append(f"not a valid notebook: {err.message}")
    found += structure_problems(nb, path.name, repo_url) + noise_problems(nb) + execution_problems(nb)
    if needs_cleaning(path, repo_url):
        found.insert(0, "not in the cleaner's form (run: python -m lecture_utils clean)")
    return found


# ---------------------------------------------------------------- command line

def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lecture_utils clean", description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="notebooks or folders (default: every notebook in notebooks/)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a notebook is not clean")
    args = parser.parse_args(argv)

    notebooks = []
    for p in map(Path, args.notebooks or [NOTEBOOK_DIR]):
        if p.is_dir():
            notebooks += sorted(q for q in p.glob("*.ipynb") if not q.name.startswith("."))
        elif p.suffix == ".ipynb" and p.is_file():
            notebooks.append(p)
        else:
            parser.error(f"{p} is not a notebook (.ipynb) or a folder of notebooks")
    if not notebooks:
        parser.error("no notebooks found")
    repo_url = repository_url()
    failed = False
    for path in notebooks:
        if not args.check and clean_file(path, repo_url):
            print(f"cleaned {path}")
        found = problems(path, repo_url)
        failed |= bool(found)
        if found:
            print(f"NOT CLEAN {path}:", *(f"  - {p}" for p in found), sep="\n")
        elif args.check:
            print(f"clean {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
