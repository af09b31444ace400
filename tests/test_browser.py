"""Where students meet the widgets: a real Chromium driving a real JupyterLab.

The test starts JupyterLab on 127.0.0.1 (random token and port, its own config,
runtime, settings and workspace folders) over a temporary copy of
``notebooks/``, opens ``02_elastic_distortions.ipynb`` in Debian's Chromium
through playwright, runs every cell at the ``smoke`` profile, then moves the
alpha and sigma sliders of the distortion-field explorer with the keyboard and
checks that the figure below them is redrawn (other PNG bytes), that the
readouts show the new values, that moving them back redraws the first figure
exactly, and that no cell shows an error. Screenshots go to
``$ARTIFACTS_DIR/browser`` (else the test's temporary folder; the path is printed).

It needs ``/usr/bin/chromium`` (``apt-get install chromium``) and ``pip install
playwright`` (never ``playwright install``: it downloads a browser); without
them it is skipped, unless ``LECTURE_REQUIRE_BROWSER=1`` (set by CI) makes that
a failure. Select it with ``-m browser``, leave it out with ``-m "not browser"``.
"""

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
NOTEBOOK = "02_elastic_distortions.ipynb"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
RUN_ALL_TIMEOUT_S = 240

pytestmark = pytest.mark.browser


def _missing(reason):
    if os.environ.get("LECTURE_REQUIRE_BROWSER", "") == "1":
        pytest.fail(f"LECTURE_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


def _requirements():
    if not CHROMIUM.exists():
        _missing(f"{CHROMIUM} is missing (Debian: apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _missing("the playwright package is missing (pip install playwright; never 'playwright install')")
    try:
        import jupyterlab  # noqa: F401
    except ImportError:
        _missing("jupyterlab is missing (pip install jupyterlab)")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_settings(settings_dir):
    """Lab settings for a quiet, deterministic page: no news toast, every cell kept in the DOM."""
    files = {
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                            "checkForUpdates": False},
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    }
    for name, value in files.items():
        path = settings_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))


def _processes_mentioning(text):
    """Pids of live processes whose command line contains ``text`` (Linux /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            pids.append(int(entry.name))
    return pids


@pytest.fixture
def artifacts(tmp_path):
    root = os.environ.get("ARTIFACTS_DIR")
    path = Path(root) / "browser" if root else tmp_path / "artifacts"
    path.mkdir(parents=True, exist_ok=True)
    print(f"browser test artifacts: {path}")
    return path


@pytest.fixture
def jupyterlab(tmp_path):
    """A JupyterLab server over a copy of notebooks/; yields (base URL, token); shut down with its kernels."""
    _requirements()
    work = tmp_path / "notebooks"
    shutil.copytree(REPO / "notebooks", work, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    jdir = tmp_path / "jupyter"
    dirs = {name: jdir / name for name in ("config", "data", "runtime", "settings", "workspaces", "ipython")}
    for d in dirs.values():
        d.mkdir(parents=True)
    _write_settings(dirs["settings"])
    env = dict(os.environ)
    env.update(
        JUPYTER_CONFIG_DIR=str(dirs["config"]), JUPYTER_DATA_DIR=str(dirs["data"]),
        JUPYTER_RUNTIME_DIR=str(dirs["runtime"]), JUPYTERLAB_SETTINGS_DIR=str(dirs["settings"]),
        JUPYTERLAB_WORKSPACES_DIR=str(dirs["workspaces"]), IPYTHONDIR=str(dirs["ipython"]),
        LECTURE_PROFILE="smoke", LECTURE_PROGRESS="0",  # the kernels inherit these
    )
    if "LECTURE_DATA_DIR" not in env and (REPO / "data").is_dir():
        env["LECTURE_DATA_DIR"] = str(REPO / "data")
    token, port = secrets.token_hex(24), _free_port()
    log_path = tmp_path / "jupyterlab.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--allow-root", "--no-browser", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
         "--LabApp.expose_app_in_browser=True", f"--ServerApp.root_dir={work}"],
        cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"

    def api(path, method="GET"):
        request = urllib.request.Request(f"{base}{path}", method=method,
                                         headers={"Authorization": f"token {token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status

    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            log.close()
            pytest.fail(f"JupyterLab exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}")
        try:
            if api("/api/status") == 200:
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"JupyterLab did not start in 60 s:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.5)
    try:
        yield base, token, work
    finally:
        try:
            api("/api/shutdown", method="POST")  # shuts down the kernels too
        except OSError:
            pass
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        log.close()
        leftover = _processes_mentioning(str(dirs["runtime"]))  # kernels: ipykernel_launcher -f <runtime>/kernel-*.json
        for pid in leftover:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        assert not leftover, f"kernel processes outlived JupyterLab: {leftover}"


# JavaScript run in the page. `panel()` is the open notebook; `explorer()` the cell that holds the sliders.
JS_HELPERS = """
const panel = () => window.jupyterapp.shell.currentWidget;
const cellNodes = () => Array.from(panel().content.node.querySelectorAll('.jp-Cell'));
const explorer = () => cellNodes().filter(c => c.querySelector('.widget-slider'));
const figureSrc = () => {
  const cells = explorer();
  if (cells.length !== 1) return null;
  const outputs = Array.from(cells[0].querySelectorAll('.jp-OutputArea-output'));
  const w = outputs.findIndex(o => o.querySelector('.widget-slider'));
  const img = w < 0 ? null : outputs.slice(w + 1).map(o => o.querySelector('img')).find(Boolean);
  return img ? img.getAttribute('src') : null;
};
const kernelStatus = () => { const k = panel().sessionContext.session?.kernel; return k ? k.status : 'none'; };
"""


def js(body):
    """A page function with the helpers in scope."""
    return f"(arg) => {{ {JS_HELPERS}\n{body} }}"


def wait_settled(page, differ_from, timeout_s=60, quiet_s=1.5):
    """The explorer's figure once it differs from ``differ_from``, has stopped changing and the kernel is idle."""
    deadline, last, since = time.monotonic() + timeout_s, None, time.monotonic()
    while time.monotonic() < deadline:
        src, status = page.evaluate(js("return [figureSrc(), kernelStatus()];"))
        if src != last:
            last, since = src, time.monotonic()
        elif src and src != differ_from and status == "idle" and time.monotonic() - since >= quiet_s:
            return src
        time.sleep(0.2)
    raise AssertionError(f"the explorer's figure did not settle on a new image in {timeout_s} s")


def slider(cell, label):
    found = cell.locator(".widget-slider").filter(has=cell.page.locator(".widget-label", has_text=label))
    assert found.count() == 1, f"no single slider labelled {label!r}"
    return found


def move(page, cell, label, key, presses):
    """Focus the slider's handle and press ``key`` ``presses`` times (each press is one step)."""
    handle = slider(cell, label).locator(".noUi-handle")
    handle.focus()
    for _ in range(presses):
        page.keyboard.press(key)
        page.wait_for_timeout(50)


def readout(cell, label):
    return slider(cell, label).locator(".widget-readout").inner_text().strip()


def cell_problems(page):
    """Error outputs, tracebacks on stderr and unexecuted code cells, from the notebook model and the page."""
    return page.evaluate(js("""
      const found = [];
      panel().content.widgets.forEach((cell, i) => {
        if (cell.model.type !== 'code') return;
        if (cell.model.sharedModel.getSource().trim() && cell.model.executionCount == null)
          found.push(`cell ${i}: not executed`);
        for (const o of cell.model.outputs.toJSON()) {
          const text = Array.isArray(o.text) ? o.text.join('') : (o.text || '');
          if (o.output_type === 'error') found.push(`cell ${i}: ${o.ename}: ${o.evalue}`);
          else if (o.name === 'stderr' && /Traceback|Error/.test(text)) found.push(`cell ${i}: stderr: ${text.slice(0, 300)}`);
        }
      });
      document.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]').forEach(n => {
        if (/Traceback|Error/.test(n.innerText)) found.push(`page: ${n.innerText.slice(0, 300)}`);
      });
      return found;
    """))


def test_explorer_sliders_redraw_the_figure(jupyterlab, artifacts):
    from playwright.sync_api import sync_playwright

    base, token, work = jupyterlab
    started = time.monotonic()
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(work.parent / "chromium-profile"), executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 1400},
        )
        page = context.pages[0] if context.pages else context.new_page()
        page.set_default_timeout(60_000)
        console_errors = []
        page.on("pageerror", lambda err: console_errors.append(str(err)))
        try:
            page.goto(f"{base}/lab/tree/{NOTEBOOK}?token={token}")
            page.wait_for_function(
                f"() => window.jupyterapp?.shell?.currentWidget?.context?.path === {json.dumps(NOTEBOOK)}",
                timeout=90_000)
            page.evaluate(js("return (async () => { await panel().context.ready; await panel().sessionContext.ready; })();"))
            page.wait_for_function(js("return kernelStatus() === 'idle';"), timeout=90_000)

            # Run every cell (smoke profile, from the server's environment), as a student's "Run All" does.
            page.evaluate(js("""
              window.__runAll = {done: false};
              return window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs').then(() => {
                window.jupyterapp.commands.execute('notebook:run-all-cells').then(
                  ok => { window.__runAll = {done: true, ok}; },
                  err => { window.__runAll = {done: true, ok: false, error: String(err)}; });
              });
            """))
            page.wait_for_function("() => window.__runAll && window.__runAll.done", timeout=RUN_ALL_TIMEOUT_S * 1000)
            page.wait_for_function(js("return kernelStatus() === 'idle';"))
            ran = time.monotonic() - started
            problems = cell_problems(page)
            assert not problems, "cells show errors:\n" + "\n".join(problems)
            assert page.evaluate("() => window.__runAll.ok") is True, page.evaluate("() => window.__runAll")

            # The explorer: four sliders above a PNG figure.
            assert page.evaluate(js("return explorer().length;")) == 1, "no single cell holds the explorer's sliders"
            cell = page.locator(".jp-Notebook .jp-Cell").filter(has=page.locator(".widget-slider"))
            assert cell.locator(".widget-slider").count() == 4
            cell.scroll_into_view_if_needed()
            first = wait_settled(page, differ_from=None)
            assert first.startswith("data:image/png"), first[:60]
            assert (readout(cell, "alpha (px)"), readout(cell, "sigma (px)")) == ("34.00", "4.00")
            cell.screenshot(path=str(artifacts / "explorer-0-before.png"))

            # alpha: 34 -> 40 px (three steps of 2).
            move(page, cell, "alpha (px)", "ArrowRight", 3)
            page.wait_for_function(js("return figureSrc() !== arg;"), arg=first)
            after_alpha = wait_settled(page, differ_from=first)
            assert readout(cell, "alpha (px)") == "40.00"
            cell.screenshot(path=str(artifacts / "explorer-1-alpha-40.png"))

            # sigma: 4 -> 5 px (two steps of 0.5).
            move(page, cell, "sigma (px)", "ArrowRight", 2)
            page.wait_for_function(js("return figureSrc() !== arg;"), arg=after_alpha)
            after_sigma = wait_settled(page, differ_from=after_alpha)
            assert readout(cell, "sigma (px)") == "5.00"
            assert after_sigma != first
            cell.screenshot(path=str(artifacts / "explorer-2-sigma-5.png"))

            # Back to 34 and 4: the figure is a function of the sliders, so the first image comes back.
            move(page, cell, "alpha (px)", "ArrowLeft", 3)
            move(page, cell, "sigma (px)", "ArrowLeft", 2)
            page.wait_for_function(js("return figureSrc() === arg;"), arg=first, timeout=60_000)
            assert (readout(cell, "alpha (px)"), readout(cell, "sigma (px)")) == ("34.00", "4.00")
            cell.screenshot(path=str(artifacts / "explorer-3-back.png"))

            problems = cell_problems(page)
            assert not problems, "cells show errors after moving the sliders:\n" + "\n".join(problems)
            assert not console_errors, f"errors in the page: {console_errors}"
            page.screenshot(path=str(artifacts / "notebook.png"), full_page=True)
            print(f"run all: {ran:.0f} s; whole browser test: {time.monotonic() - started:.0f} s")
        except Exception:
            try:
                page.screenshot(path=str(artifacts / "failure.png"), full_page=True)
            except Exception:
                pass
            raise
        finally:
            context.close()
