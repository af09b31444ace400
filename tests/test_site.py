"""The course site: built offline from docs/ and the committed notebooks, then opened in a real browser.

The unit tests check the parts the site's command adds (the results page generated from what the notebooks
recorded, the notebooks' web copies, the API page's docstring fallback). The browser test runs
``python -m lecture_utils.course.site --out <tmp>`` (sphinx-build with -W: any warning fails), serves the
HTML on 127.0.0.1 and opens it in Debian's Chromium through playwright: the home page links all notebooks,
a notebook page shows its figures, a formula is typeset by MathJax, the search page finds "elastic", and no
request goes to any host but 127.0.0.1. Screenshots go to ``$ARTIFACTS_DIR/site`` when that is set.

It needs Sphinx, myst-nb, sphinx-book-theme and sphinx-mathjax-offline (``pip install -r
requirements-docs.txt``), ``/usr/bin/chromium`` and playwright (never ``playwright install``); without them
it is skipped, unless ``LECTURE_REQUIRE_BROWSER=1`` (set by CI) makes that a failure.
"""

import functools
import http.server
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from lecture_utils.course import site

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
NOTEBOOKS = sorted(p.name for p in (REPO / "notebooks").glob("[0-9]*.ipynb"))
LOCAL_HOSTS = {"127.0.0.1", "localhost"}


def _missing(reason):
    if os.environ.get("LECTURE_REQUIRE_BROWSER", "") == "1":
        pytest.fail(f"LECTURE_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


def _notebook(cells):
    return {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def _output(data):
    return {"output_type": "display_data", "metadata": {}, "data": data}


def _record(name, value, percent=False):
    item = {"name": name, "value": value, **({"percent": True} if percent else {})}
    return _output({site.RECORD_MIME: item, "text/plain": f"{name} = {value}"})


VERDICT = {"name": "affine_vs_elastic", "kind": "paired", "conditions": ["affine", "elastic"], "unit": "points",
           "outcome": "not established", "claim": True,
           "text": "not established: elastic is ahead of affine by 0.14 points on average (n = 5)"}


# ---------------------------------------------------------------- the generated and rewritten parts

def test_results_page_shows_what_the_notebook_recorded(tmp_path):
    cells = [{"cell_type": "markdown", "metadata": {}, "source": "# Elastic distortion fields\n\ntext"},
             {"cell_type": "code", "metadata": {}, "source": "", "execution_count": 1, "outputs": [
                 _record("dataset", "digits"), _record("dataset_requested", "mnist"), _record("profile", "smoke"),
                 _record("test_error_elastic", 0.0225, percent=True), _record("n_train", 60000),
                 _record("test_error_elastic", 0.0125, percent=True),  # recorded again: the last value wins
                 _output({site.VERDICT_MIME: VERDICT, "text/plain": VERDICT["text"]})]}]
    path = tmp_path / "02_elastic_distortions.ipynb"
    path.write_text(json.dumps(_notebook(cells)))
    page = site.results_page([path])
    assert "## 02: Elastic distortion fields" in page
    assert "profile `smoke`" in page and "**FALLBACK**: mnist was requested" in page
    assert "| `test_error_elastic` | 1.25% | 0.4% (Simard et al. 2003" in page  # value, and the paper beside it
    assert "2.25%" not in page
    assert "| `n_train` | 60,000 |" in page
    assert "| affine_vs_elastic | not established (the lecture's claim) | not established: elastic is ahead" in page
    assert "`dataset`" not in page and "`profile`" not in page  # said once, under the title


def test_results_page_follows_the_committed_notebooks():
    page = site.results_page([REPO / "notebooks" / name for name in NOTEBOOKS])
    for name in NOTEBOOKS:
        records, verdicts = site.recorded_outputs(REPO / "notebooks" / name)
        assert f"](notebooks/{name})" in page
        for r in records:
            if r["name"] not in ("profile", "dataset", "dataset_requested"):
                assert f"`{r['name']}`" in page, f"{name}: {r['name']} is missing from the results page"
        for v in verdicts:
            assert f"| {v['name']} |" in page


def test_web_notebook_loads_nothing_from_other_hosts_and_keeps_the_text_of_records():
    badge = ("[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
             "(https://colab.research.google.com/github/o/r/blob/main/notebooks/x.ipynb)")
    markdown = f"# T\n{badge}\n![a plot](https://x.org/p.png)"
    nb = _notebook([{"cell_type": "markdown", "metadata": {}, "source": markdown},
                    {"cell_type": "code", "metadata": {}, "source": "", "execution_count": 1,
                     "outputs": [_record("acc", 0.5), _output({site.VERDICT_MIME: VERDICT})]}])
    web = site.web_notebook(nb, student_line="**Student edition**: here")
    text = web["cells"][0]["source"]
    assert "![" not in text and "colab-badge.svg" not in text
    assert "[Open In Colab](https://colab.research.google.com/github/o/r/blob/main/notebooks/x.ipynb)" in text
    assert web["cells"][1]["source"] == "**Student edition**: here"
    outputs = web["cells"][2]["outputs"]
    assert [o["data"] for o in outputs] == [{"text/plain": "acc = 0.5"}, {"text/plain": VERDICT["text"]}]
    assert site.RECORD_MIME in nb["cells"][1]["outputs"][0]["data"], "the notebook itself is left as it was"


def test_student_edition_is_linked_only_when_it_exists(tmp_path):
    url = "https://github.com/o/r"
    assert site.student_links("02_x.ipynb", url, checkout=tmp_path) == ""
    (tmp_path / site.STUDENT_DIR).mkdir()
    (tmp_path / site.STUDENT_DIR / "02_x.ipynb").write_text("{}")
    line = site.student_links("02_x.ipynb", url, checkout=tmp_path)
    assert f"../_repo/{site.STUDENT_DIR}/02_x.ipynb" in line
    assert f"https://colab.research.google.com/github/o/r/blob/main/{site.STUDENT_DIR}/02_x.ipynb" in line


def test_a_docstring_that_is_not_valid_rest_is_shown_as_written():
    pytest.importorskip("docutils")
    valid = ["Train ``model``.", "", "- one", "- two"]
    lines = list(valid)
    site.plain_text_docstrings(None, "function", "m.f", None, {}, lines)
    assert lines == valid
    broken = ["The fraction of units with |tanh| > 0.99.", "Steps:", "- one", "  more"]
    lines = list(broken)
    site.plain_text_docstrings(None, "function", "m.g", None, {}, lines)
    assert lines[0] == ".. code-block:: text" and "   The fraction of units with |tanh| > 0.99." in lines
    assert "m.g" in site.PLAIN_DOCSTRINGS


def test_missing_packages_are_named_in_one_line(monkeypatch, capsys):
    monkeypatch.setattr(site, "missing_packages", lambda: ["myst-nb"])
    assert site.main(["--out", "unused"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "site: the site needs myst-nb: pip install -r requirements-docs.txt"


# ---------------------------------------------------------------- built, served, opened

@pytest.fixture(scope="module")
def built_site(tmp_path_factory):
    """``python -m lecture_utils.course.site --out <tmp>/html``; yields (html folder, seconds it took)."""
    missing = site.missing_packages()
    if missing:
        _missing(f"the site's packages are missing ({', '.join(missing)}): pip install -r requirements-docs.txt")
    out = tmp_path_factory.mktemp("site") / "html"
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "lecture_utils.course.site", "--out", str(out)], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    seconds = time.monotonic() - started
    assert result.returncode == 0, f"the site did not build:\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}"
    assert f"open {out / 'index.html'}" in result.stdout
    print(f"site built in {seconds:.1f} s")
    return out, seconds


@pytest.fixture
def server(built_site):
    """The built site on http://127.0.0.1:<port>/ (a thread of this process)."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(built_site[0])))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


@pytest.fixture
def artifacts(tmp_path):
    root = os.environ.get("ARTIFACTS_DIR")
    path = Path(root) / "site" if root else tmp_path / "artifacts"
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_the_built_site_serves_everything_itself(built_site):
    out, _ = built_site
    assert (out / "_static" / "mathjax" / "tex-chtml.js").is_file()
    page = (out / "notebooks" / "07_debugging_and_visualization.html").read_text(encoding="utf-8")
    assert 'src="../_static/mathjax/tex-chtml.js' in page
    for html in out.rglob("*.html"):
        text = html.read_text(encoding="utf-8")
        for attribute in ("src=\"http", "src='http", "href=\"//"):
            assert attribute not in text, f"{html.relative_to(out)} loads something from another host ({attribute})"


@pytest.mark.browser
def test_site_in_a_browser(built_site, server, artifacts):
    if not CHROMIUM.exists():
        _missing(f"{CHROMIUM} is missing (Debian: apt-get install chromium)")
    try:
        from playwright.sync_api import TimeoutError as PlaywrightTimeout
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package is missing (pip install playwright; never 'playwright install')")
    requests, outside, page_errors = [], [], []

    def route(request_route):
        url = request_route.request.url
        requests.append(url)
        if urlsplit(url).scheme in ("http", "https", "ws", "wss") and urlsplit(url).hostname not in LOCAL_HOSTS:
            outside.append(url)
            request_route.abort()
        else:
            request_route.continue_()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 1000})
            context.route("**/*", route)
            page = context.new_page()
            page.set_default_timeout(30_000)
            page.on("pageerror", lambda err: page_errors.append(str(err)))

            # The home page links every notebook's page, and each of those pages is there.
            page.goto(f"{server}/index.html")
            links = set(page.eval_on_selector_all("a[href]", "els => els.map(a => a.href)"))
            for name in NOTEBOOKS:
                target = f"{server}/notebooks/{Path(name).stem}.html"
                assert target in links, f"the home page does not link {target}"
                assert context.request.get(target).status == 200, target
            page.screenshot(path=str(artifacts / "home.png"), full_page=True)

            # A notebook page shows its figures: as many loaded images as the notebook has PNG outputs.
            name = "02_elastic_distortions.ipynb"
            pngs = sum("image/png" in o.get("data", {}) for c in json.loads((REPO / "notebooks" / name).read_text())
                       ["cells"] for o in c.get("outputs", []))
            page.goto(f"{server}/notebooks/{Path(name).stem}.html")
            page.wait_for_load_state("load")
            images = page.eval_on_selector_all(
                "article img", "els => els.map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])")
            loaded = [src for src, complete, width in images if complete and width > 0]
            assert pngs > 0 and len(loaded) >= pngs, f"{len(loaded)} of {pngs} figures loaded: {images}"
            page.screenshot(path=str(artifacts / "notebook-02.png"))

            # A formula is typeset by the site's own MathJax (notebook 07: the gradient check's formula).
            page.goto(f"{server}/notebooks/07_debugging_and_visualization.html")
            try:
                page.wait_for_selector("mjx-container", state="attached", timeout=20_000)
            except PlaywrightTimeout:
                raise AssertionError(f"no formula was typeset in 20 s (requests to other hosts: {outside})") from None
            assert page.locator("mjx-container").count() >= 2  # the displayed formula and an inline one
            assert page.locator("mjx-merror").count() == 0, "MathJax reports an error in a formula"
            page.locator("mjx-container").first.screenshot(path=str(artifacts / "formula.png"))

            # The search page finds "elastic", the elastic-distortion notebook among the results.
            page.goto(f"{server}/search.html?q=elastic")
            page.wait_for_selector("ul.search li a", timeout=30_000)
            found = page.eval_on_selector_all("ul.search li a", "els => els.map(a => a.href)")
            assert any("02_elastic_distortions.html" in href for href in found), found
            page.screenshot(path=str(artifacts / "search.png"))
        finally:
            browser.close()
    assert requests, "no request was recorded"
    assert not outside, f"requests left the machine: {outside}"
    assert not page_errors, f"errors in the pages: {page_errors}"
