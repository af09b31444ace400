"""The worker process of ``python -m lecture_utils run``: one notebook, run by papermill, never outliving the runner.

The runner starts ``python -m lecture_utils.course.worker JOB`` in a session of its
own. The worker runs the notebook in a kernel of the current environment
(``sys.executable``'s ipykernel, whatever the notebook's metadata names),
started as ``python -m lecture_utils.course.worker --kernel -f CONNECTION_FILE``.

Neither may outlive the runner, even one killed with SIGKILL:

- the worker asks Linux for SIGTERM when its parent dies (``prctl(PR_SET_PDEATHSIG)``)
  and, everywhere, a watchdog thread polls ``os.getppid()``;
- on SIGTERM (from the runner's stop, or its death) the worker kills its kernel's
  process group, removes the runner's temporary folder if the runner is gone, and exits;
- the kernel asks Linux for SIGKILL when the worker dies, and ipykernel's own
  parent poller ends it elsewhere.

Nothing here imports torch: the worker stays light.
"""

import ast
import ctypes
import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

POLL_SECONDS = 0.5  # the watchdog's look at its parent
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
KERNEL_NAME = "python3"
INJECTED_TAG = "injected-parameters"
ERROR_TAG = "papermill-error-cell-tag"  # the banners papermill adds to a failed notebook

_kernel_managers = []  # the kernels this worker started, to kill their process groups


def die_with_parent(signum):
    """Have Linux send ``signum`` to this process when its parent dies; False where that is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _kill_kernels():
    """SIGKILL the process group of every kernel started here (a kernel runs in a session of its own)."""
    for km in _kernel_managers:
        provisioner = getattr(km, "provisioner", None)
        process = getattr(provisioner, "process", None)
        if process is None or process.poll() is not None:  # never started, or already gone (its ids may be reused)
            continue
        pgid = getattr(provisioner, "pgid", None) or process.pid
        if hasattr(os, "killpg"):
            try:
                os.killpg(pgid, signal.SIGKILL)
            except OSError:
                pass


def _exit_now(code, parent, tmp):
    """Kill the kernel and remove its connection file; if the runner is gone, its temporary folder too; exit."""
    _kill_kernels()
    for km in _kernel_managers:
        try:
            os.remove(km.connection_file)
        except (OSError, TypeError, AttributeError):
            pass
    if tmp and os.getppid() != parent:
        shutil.rmtree(tmp, ignore_errors=True)
    os._exit(code)


def _guard(parent, tmp):
    """Exit with the kernel whenever the runner (``parent``) stops this worker or dies."""
    signal.signal(signal.SIGTERM, lambda signum, frame: _exit_now(128 + signum, parent, tmp))
    die_with_parent(signal.SIGTERM)
    if os.getppid() != parent:  # died before the line above took effect
        _exit_now(1, parent, tmp)

    def watch():
        while os.getppid() == parent:
            time.sleep(POLL_SECONDS)
        _exit_now(1, parent, tmp)

    threading.Thread(target=watch, name="lecture-utils-parent-watchdog", daemon=True).start()


def kernel_manager_class():
    """An ``AsyncKernelManager`` starting this environment's ipykernel (``--kernel``), whatever the notebook names."""
    from jupyter_client.kernelspec import KernelSpec
    from jupyter_client.manager import AsyncKernelManager

    class CurrentEnvKernelManager(AsyncKernelManager):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            _kernel_managers.append(self)

        @property
        def kernel_spec(self):
            argv = [sys.executable, "-m", "lecture_utils.course.worker", "--kernel", "-f", "{connection_file}"]
            return KernelSpec(argv=argv, display_name="Python 3 (ipykernel)", language="python", resource_dir="")

    return CurrentEnvKernelManager


def executed_cells(nb):
    """The cells papermill executed: the executed copy's cells without the error banners it adds after a failure."""
    return [c for c in nb.get("cells", []) if ERROR_TAG not in c.get("metadata", {}).get("tags", [])]


def user_cell_index(nb, index):
    """Cell ``index`` of ``executed_cells(nb)`` as its index in the user's notebook (the injected cell not counted)."""
    cells = executed_cells(nb)[:index]
    return index - sum(INJECTED_TAG in c.get("metadata", {}).get("tags", []) for c in cells)


def run_job(job):
    """Execute one notebook with papermill; write ``{"error": ...}`` (empty: it ran) to ``job["result"]``."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    error = ""
    try:
        papermill.execute_notebook(job["input"], job["output"], parameters=ast.literal_eval(job["parameters"]),
                                   cwd=str(Path(job["input"]).parent), kernel_name=KERNEL_NAME, language="python",
                                   progress_bar=False, log_output=False,
                                   kernel_manager_class=kernel_manager_class())
    except PapermillExecutionError as err:
        last = (err.evalue or "").strip().splitlines()
        try:
            index = user_cell_index(json.loads(Path(job["output"]).read_text(encoding="utf-8")), err.cell_index)
        except (OSError, ValueError):
            index = err.cell_index
        error = f"cell {index} (In [{err.exec_count}]): {err.ename}: {last[-1] if last else ''}"
    except Exception as err:  # a broken notebook file, a kernel that died: still a result, not a crash
        last = (str(err).strip().splitlines() or [""])[-1]
        error = f"could not run: {type(err).__name__}: {last}"
    Path(job["result"]).write_text(json.dumps({"error": error}))


def kernel_main(argv):
    """The kernel: this environment's ipykernel, killed by Linux when the worker that started it dies."""
    if hasattr(signal, "SIGKILL"):
        die_with_parent(signal.SIGKILL)
    parent = int(os.environ.get("JPY_PARENT_PID") or 0)
    if parent and os.getppid() != parent:
        os._exit(1)
    if sys.path and sys.path[0] in ("", os.getcwd()):  # as ipykernel_launcher: the kernel puts the cwd back
        del sys.path[0]
    sys.argv = [sys.argv[0], *argv]
    from ipykernel import kernelapp

    kernelapp.launch_new_instance()


def main(argv):
    if argv[:1] == ["--kernel"]:
        kernel_main(argv[1:])
        return
    job = json.loads(argv[0])
    _guard(job["parent"], job.get("tmp"))
    run_job(job)


if __name__ == "__main__":
    main(sys.argv[1:])
