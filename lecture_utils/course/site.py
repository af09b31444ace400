"""The course site: ``python -m lecture_utils site [--out docs/_build/html]``.

Sphinx builds the pages of ``docs/`` and the notebooks of ``notebooks/`` into HTML (myst-nb shows the
outputs the notebooks were committed with; nothing is executed). The build, step by step:

1. ``docs/`` is copied into a staging folder beside the output (``<out>.source``), with
   - the notebooks, each changed only for the web: the Colab badge (an image on another host) becomes a
     text link, the project's own output types (``record`` and verdicts) keep only their text form, and
     a line links the student edition when ``student/`` holds one;
   - the repository files that pages include (``data/README.md``, ``bench/README.md``) under ``_repo/``;
   - ``results.md``, written here from what the notebooks recorded (``record(...)`` and verdicts);
2. ``sphinx-build -W --keep-going`` builds it: every warning (a broken link, a module autodoc cannot
   import, an output it cannot show) is listed and fails the build;
3. the command says where the HTML is.

Everything the pages load is served by the site itself (MathJax from the ``sphinx-mathjax-offline``
package): the site works offline, from a folder or any static host.
"""

import argparse
import copy
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from lecture_utils import record as record_module
from lecture_utils.course import nbclean
from lecture_utils.record import format_value

CHECKOUT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = Path("docs") / "_build" / "html"
INCLUDED_FILES = ("data/README.md", "bench/README.md")  # repository files that pages include
STUDENT_DIR = "student"  # the student edition: the same notebook names, exercises left to do
RECORD_MIME = record_module.MIME
VERDICT_MIME = getattr(record_module, "VERDICT_MIME", "application/vnd.lecture-utils.verdict+json")
OWN_MIME_PREFIX = "application/vnd.lecture-utils."
# What the build needs, by import name: (distribution, what it does).
NEEDED = {"sphinx": "Sphinx", "myst_nb": "myst-nb", "sphinx_book_theme": "sphinx-book-theme",
          "sphinx-mathjax-offline": "sphinx-mathjax-offline"}

# The papers' numbers beside a recorded value: (notebook stem, record name) -> reference. Only references
# live here; every measured number on the results page comes from the notebooks.
PAPERS = {
    ("02_elastic_distortions", "test_error_none"): "0.95% (LeCun et al. 1998, LeNet-5, no distortions; Simard et al. 2003's MLP: 1.6%)",
    ("02_elastic_distortions", "test_error_affine"): "0.6% (Simard et al. 2003, conv net; LeCun et al. 1998, LeNet-5: 0.8%)",
    ("02_elastic_distortions", "test_error_elastic"): "0.4% (Simard et al. 2003, conv net, 60,000 digits)",
    # Notebook 03 records per training-set size (test_error_full_8000): the size suffix is dropped to look up.
    **{("03_alexnet_ablations", f"{prefix}test_error_{v}"): f"{val}% val top-1 ({name}; Zeiler & Fergus 2013, "
       "Table 3, ImageNet)" for prefix in ("", "plain_")
       for v, name, val in (("full", "full net", 40.5), ("small", "-3,4,6,7", 71.3))},
    ("04_googlenet_inception", "inception3a_macs_reduced"): "128M (Szegedy et al. 2014, Table 1)",
    ("04_googlenet_inception", "inception3a_macs_naive"): "about 304M (the naive module at (3a)'s sizes)",
    ("04_googlenet_inception", "googlenet_imagenet_parameters"): "6,624,904 (torchvision's GoogLeNet)",
    ("04_googlenet_inception", "test_error_googlenet"):
        "10.3% on 45,000 training images (5,000 held out), up to 180 epochs (UvA Deep Learning Tutorial 5)",
    ("05_resnets", "test_error_ResNet-20"): "8.75% (He et al. 2016, Table 6; width 16, 50,000 images)",
    ("05_resnets", "test_error_plain-20"): "9.5% (plain-20, a public reproduction of He et al. 2016)",
    ("07_debugging_and_visualization", "gradcheck_net_correct_max_rel_error"):
        "about 1e-7 fine, 1e-4 suspicious, 1e-2 wrong (CS231n's reading of a gradient check)",
    ("07_debugging_and_visualization", "gradcheck_net_bug_max_rel_error"):
        "about 1e-7 fine, 1e-4 suspicious, 1e-2 wrong (CS231n's reading of a gradient check)",
}


class SiteError(RuntimeError):
    """The site cannot be built; the message says why and what to do."""


def repository_url():
    """The GitHub address of the course (``[project.urls] Repository`` of ``pyproject.toml``)."""
    return nbclean.repository_url(CHECKOUT / "pyproject.toml")


# ---------------------------------------------------------------- what the notebooks recorded

def recorded_outputs(notebook):
    """``(records, verdicts)`` of a notebook (a path or an nbformat dict), in the order the cells show them.

    A record is ``{"name", "value", "percent"}``; a verdict the dict ``record_verdict`` stores. A name
    recorded twice keeps its last value, in the place of its first.
    """
    if not isinstance(notebook, dict):
        notebook = json.loads(Path(notebook).read_text(encoding="utf-8"))
    records, verdicts = {}, {}
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            item = data.get(RECORD_MIME)
            if isinstance(item, dict) and "name" in item:
                records[item["name"]] = {"name": item["name"], "value": item.get("value"),
                                         "percent": bool(item.get("percent", False))}
            item = data.get(VERDICT_MIME)
            if isinstance(item, dict) and "name" in item:
                verdicts[item["name"]] = item
    return list(records.values()), list(verdicts.values())


def _cell(text):
    """Text for one markdown table cell (a ``$`` stays a dollar, not the start of a formula)."""
    return str(text).replace("|", "\\|").replace("$", "\\$").replace("\n", " ")


def _title(notebook):
    """The first level-1 heading of a notebook ("" if it has none)."""
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") == "markdown":
            found = re.search(r"^# (.+)$", "".join(cell.get("source", "")), re.M)
            if found:
                return found.group(1).strip()
    return ""


def results_page(notebook_paths):
    """The results page (MyST markdown): per notebook, its verdicts and recorded values, beside the papers."""
    lines = [
        "# Results",
        "",
        "What each notebook recorded in the run it was committed with (`record(...)` in its cells, and the "
        "verdicts of its comparisons), at the profile and on the data set named under its title. This page is "
        "generated by `python -m lecture_utils site` from `notebooks/*.ipynb`: re-run a notebook, commit it, "
        "rebuild the site, and these numbers follow. Rates recorded as fractions read as percentages. The "
        "papers' numbers are for their full data sets, which only the `full` profile uses. Whether each verdict "
        "holds on a second, disjoint set of seeds: [Replication](replication.md); and with the same seeds on other "
        "arithmetic (the CPU kernels limited to AVX2): [Same seeds](same-seeds/replication.md).",
        "",
    ]
    for path in notebook_paths:
        path = Path(path)
        notebook = json.loads(path.read_text(encoding="utf-8"))
        records, verdicts = recorded_outputs(notebook)
        values = {r["name"]: r["value"] for r in records}
        title = _title(notebook) or path.stem
        lines += [f"## {path.stem[:2]}: {title}", ""]
        ran = [f"[the notebook](notebooks/{path.name})"]
        if "profile" in values:
            ran.append(f"profile `{values['profile']}`")
        if "dataset" in values:
            used, asked = values["dataset"], values.get("dataset_requested", values["dataset"])
            fallback = not str(used).startswith(str(asked))
            ran.append(f"data: {used}" + (f" (**FALLBACK**: {asked} was requested)" if fallback else ""))
        lines += ["; ".join(ran) + ".", ""]
        if verdicts:
            lines += ["| comparison | outcome | verdict |", "| --- | --- | --- |"]
            for v in verdicts:
                outcome = v.get("outcome", "")
                if v.get("claim"):
                    outcome += " (the lecture's claim)"
                lines.append(f"| {_cell(v['name'])} | {_cell(outcome)} | {_cell(v.get('text', ''))} |")
            lines.append("")
        shown = [r for r in records if r["name"] not in ("profile", "dataset", "dataset_requested")]
        if shown:
            lines += ["| recorded | value | the papers |", "| --- | --- | --- |"]
            for r in shown:
                value = r["value"]
                if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10_000:
                    value = f"{value:,}"  # parameter and MAC counts: 6,624,904
                else:
                    value = format_value(value, r["percent"] and isinstance(value, (int, float)))
                unsized = re.sub(r"_\d+$", "", r["name"])  # test_error_full_8000 -> test_error_full
                paper = PAPERS.get((path.stem, r["name"])) or PAPERS.get((path.stem, unsized), "")
                lines.append(f"| `{_cell(r['name'])}` | {_cell(value)} | {_cell(paper)} |")
            lines.append("")
        if not verdicts and not shown:
            lines += ["Nothing recorded.", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- the notebooks, for the web

_LINKED_IMAGE = re.compile(r"\[!\[([^\]]*)\]\((https?://[^)\s]+)\)\]\(([^)\s]+)\)")
_IMAGE = re.compile(r"!\[([^\]]*)\]\((https?://[^)\s]+)\)")


def student_links(name, repo_url, checkout=CHECKOUT):
    """Markdown linking the student edition of ``name`` (download, Colab), or "" while there is none."""
    if not (checkout / STUDENT_DIR / name).is_file():
        return ""
    colab = nbclean.colab_url(repo_url, name).replace("/notebooks/", f"/{STUDENT_DIR}/")
    return (f"**Student edition** (the exercises left for you, with self-checks): "
            f"{{download}}`download {name} <../_repo/{STUDENT_DIR}/{name}>` or [open it in Colab]({colab}).")


def web_notebook(notebook, student_line=""):
    """A copy of ``notebook`` for the site.

    External images in markdown (the Colab badge) become text links, so a page loads nothing from other
    hosts; outputs of the project's own types keep only their text form (myst-nb shows that, and would
    warn about the unknown type); ``student_line`` (markdown) becomes a cell after the first one.
    """
    nb = copy.deepcopy(notebook)
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            source = "".join(cell.get("source", ""))
            source = _IMAGE.sub(r"[\1](\2)", _LINKED_IMAGE.sub(r"[\1](\3)", source))
            cell["source"] = source
        for output in cell.get("outputs", []):
            data = output.get("data")
            if not data:
                continue
            own = [mime for mime in data if mime.startswith(OWN_MIME_PREFIX)]
            for mime in own:
                item = data.pop(mime)
                if "text/plain" not in data:
                    data["text/plain"] = item.get("text", "") if isinstance(item, dict) else str(item)
    if student_line:
        cell = {"cell_type": "markdown", "metadata": {}, "source": student_line}
        if any("id" in c for c in nb["cells"]):  # nbformat 4.5 and later: every cell has an id
            cell["id"] = "student-edition"
        nb["cells"].insert(1, cell)
    return nb


# ---------------------------------------------------------------- the API page's docstrings

PLAIN_DOCSTRINGS = []  # names of the docstrings shown as written in this build


def rest_problems(text):
    """The docutils messages (warnings and errors) that ``text`` raises as reStructuredText, as strings."""
    import io

    from docutils import nodes
    from docutils.core import publish_doctree

    stream = io.StringIO()
    tree = publish_doctree(text, settings_overrides={"report_level": 2, "halt_level": 5, "warning_stream": stream,
                                                     "doctitle_xform": False})
    found = [m.astext() for m in tree.findall(nodes.system_message) if m["level"] >= 2]
    return found or stream.getvalue().splitlines()


def plain_text_docstrings(app, what, name, obj, options, lines):
    """autodoc hook: a docstring that is not valid reStructuredText is shown as written, in a text block.

    The package's docstrings are written for ``help()``: ``|a|`` is an absolute value and a list may
    follow its sentence without a blank line, which reStructuredText reads as errors. Valid ones render
    as usual; the names of the others are listed at the end of the build (see ``report_plain_docstrings``).
    """
    if lines and rest_problems("\n".join(lines)):
        PLAIN_DOCSTRINGS.append(name)
        lines[:] = [".. code-block:: text", ""] + ["   " + line if line else "" for line in lines] + [""]


def report_plain_docstrings(app, exception):
    """Say which docstrings the API page shows as plain text (they are not valid reStructuredText)."""
    if PLAIN_DOCSTRINGS and exception is None:
        print(f"api: {len(PLAIN_DOCSTRINGS)} docstrings are not valid reStructuredText and are shown as "
              f"written: {', '.join(PLAIN_DOCSTRINGS)}", flush=True)


# ---------------------------------------------------------------- staging and building

def _copy_if_changed(source, target):
    if not target.is_file() or target.read_bytes() != source.read_bytes():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)


def _write_if_changed(target, text):
    if not target.is_file() or target.read_text(encoding="utf-8") != text:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")


def prepare_source(staging, checkout=CHECKOUT):
    """Fill ``staging`` with the site's source: docs/, the web notebooks, included files, the results page.

    ``staging`` belongs to the build: files that are not part of the source any more are removed.
    """
    docs, staging = checkout / "docs", Path(staging)
    if not (docs / "conf.py").is_file():
        raise SiteError(f"{docs / 'conf.py'} is missing: the site is built from a checkout of the repository")
    notebooks = sorted((checkout / "notebooks").glob("[0-9]*.ipynb"))
    if not notebooks:
        raise SiteError(f"no notebooks in {checkout / 'notebooks'}")
    wanted = set()
    for source in docs.rglob("*"):
        relative = source.relative_to(docs)
        if source.is_file() and relative.parts[0] != "_build" and "__pycache__" not in relative.parts:
            _copy_if_changed(source, staging / relative)
            wanted.add(staging / relative)
    repo_url = repository_url() if checkout == CHECKOUT else nbclean.repository_url(checkout / "pyproject.toml")
    for path in notebooks:
        notebook = json.loads(path.read_text(encoding="utf-8"))
        line = student_links(path.name, repo_url, checkout)
        if line:
            _copy_if_changed(checkout / STUDENT_DIR / path.name, staging / "_repo" / STUDENT_DIR / path.name)
            wanted.add(staging / "_repo" / STUDENT_DIR / path.name)
        target = staging / "notebooks" / path.name
        _write_if_changed(target, json.dumps(web_notebook(notebook, line), indent=1, ensure_ascii=False) + "\n")
        wanted.add(target)
    for name in INCLUDED_FILES:
        _copy_if_changed(checkout / name, staging / "_repo" / name)
        wanted.add(staging / "_repo" / name)
    _write_if_changed(staging / "results.md", results_page(notebooks))
    wanted.add(staging / "results.md")
    for path in sorted(staging.rglob("*"), reverse=True):
        if path.is_file() and path not in wanted:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def missing_packages():
    """The distributions the build needs that are not installed."""
    return [dist for module, dist in NEEDED.items() if importlib.util.find_spec(module) is None]


def build(out=None, checkout=CHECKOUT, verbose=False):
    """Build the site into ``out`` (default ``docs/_build/html``); returns the path of its ``index.html``.

    Raises ``SiteError`` when a package is missing or sphinx-build fails (its warnings are printed).
    """
    missing = missing_packages()
    if missing:
        raise SiteError(f"the site needs {', '.join(missing)}: pip install -r requirements-docs.txt")
    out = Path(out) if out else checkout / DEFAULT_OUT
    out = out.resolve()
    if out == checkout.resolve() or checkout.resolve().is_relative_to(out) or out == (checkout / "docs").resolve():
        raise SiteError(f"--out {out} would write the HTML over the repository: choose a folder of its own "
                        f"(default: {DEFAULT_OUT})")
    staging, doctrees = out.with_name(out.name + ".source"), out.with_name(out.name + ".doctrees")
    prepare_source(staging, checkout)
    # -E: read every page afresh, so a warning is raised on every build, not only when its page changed.
    command = [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-E", "-d", str(doctrees),
               str(staging), str(out)]
    if not verbose:
        command.insert(3, "-q")
    result = subprocess.run(command, cwd=checkout)
    if result.returncode != 0:
        raise SiteError(f"sphinx-build failed (exit status {result.returncode}; the warnings are above). "
                        f"Pages are copied from docs/ into {staging}: a warning's path there is the same "
                        f"file under docs/ (notebooks/ from notebooks/, results.md is generated)")
    return out / "index.html"


def main(argv=None):
    """``python -m lecture_utils site``: build the course site; exit status 0 when it built, 1 when not."""
    parser = argparse.ArgumentParser(
        prog="python -m lecture_utils site",
        description="Build the course site (Sphinx + myst-nb) from docs/ and the committed notebooks, "
                    "offline; every warning fails the build.")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"folder for the HTML (default: {DEFAULT_OUT} in the repository)")
    parser.add_argument("--verbose", action="store_true", help="show sphinx-build's progress, not only warnings")
    args = parser.parse_args(argv)
    start = time.monotonic()
    try:
        index = build(args.out, verbose=args.verbose)
    except SiteError as err:
        print(f"site: {err}", file=sys.stderr)
        return 1
    print(f"site built in {time.monotonic() - start:.0f} s: open {index}")
    print(f"  or serve it: python -m http.server -d {index.parent} 8000  (then http://127.0.0.1:8000/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
