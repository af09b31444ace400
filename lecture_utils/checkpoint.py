"""Checkpoints of a ``fit`` run: written atomically, read without unpickling arbitrary objects.

``Checkpoint(path, every=1, minutes=None, resume=False)`` is the option ``fit`` takes.

A checkpoint is a dict of tensors and plain Python: the model's, the
optimizer's and the gradient scaler's state dicts, every RNG state (torch, CUDA, Python, NumPy and the
batch iterators' generators), the history, the epoch and global step, and a
fingerprint of the run's settings. It is saved with ``torch.save`` to a
temporary file beside the target, then renamed over it, so a crash mid-write
leaves the previous checkpoint whole; it is read with
``torch.load(..., weights_only=True)``. A save killed outright (``kill -9``, a
power cut) cannot remove its own partial temporary file: the next save or
resume of the same checkpoint removes the ones whose writer is gone.
"""

import math
import os
import random
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

FORMAT = "lecture_utils.fit/1"


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used: damaged, not written by ``fit``, or from a different run."""


# A save's temporary file: ".<checkpoint name>.<writer's pid>-<8 random characters>.tmp" beside the
# checkpoint (mkstemp's random part); without "<pid>-" as written before the pid was part of the name.
_TEMP_MIDDLE = re.compile(r"(?:(\d+)-)?[a-z0-9_]{8}")


def _alive(pid):
    """Whether a process ``pid`` runs on this machine (a pid we may not signal still runs)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True
    return True


def stale_temporaries(path):
    """Partial temporary files of checkpoint ``path`` whose writer is gone (never those of another file)."""
    path = Path(path)
    prefix, stale = f".{path.name}.", []
    try:
        entries = list(path.parent.iterdir())
    except OSError:  # no folder yet, or not readable: nothing to clean
        return []
    for entry in entries:
        name = entry.name
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        match = _TEMP_MIDDLE.fullmatch(name[len(prefix):-len(".tmp")])
        if match is None or not entry.is_file() or entry.is_symlink():
            continue
        pid = match.group(1)
        if pid is None or int(pid) == os.getpid() or not _alive(int(pid)):
            stale.append(entry)  # this process saves one file at a time: its own leftovers are stale too
    return sorted(stale)


def remove_stale_temporaries(path, verbose=True):
    """Delete what ``stale_temporaries(path)`` finds; return the number of bytes freed."""
    freed, removed = 0, 0
    for entry in stale_temporaries(path):
        try:
            size = entry.stat().st_size
            entry.unlink()
        except OSError:  # gone meanwhile, or not ours to delete: leave it
            continue
        freed, removed = freed + size, removed + 1
    if removed and verbose:
        print(f"removed {removed} partial checkpoint file(s) ({freed / 1e6:.1f} MB) left by interrupted saves "
              f"of {path}")
    return freed


def save_atomic(state, path):
    """``torch.save(state)`` to ``path`` through a temporary file and a rename: never a half-written file.

    First removes partial temporary files that killed saves of ``path`` left behind.
    """
    path = Path(path)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path, map_location="cpu"):
    """The checkpoint dict at ``path``; ``CheckpointError`` (file left as it is) if it is not a ``fit`` checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises RuntimeError, UnpicklingError, EOFError... for a bad file
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise CheckpointError(
            f"{path} cannot be read as a checkpoint ({type(err).__name__}: {first}): it is damaged, or was not "
            "written by fit. It was left as it is; delete it or pass another checkpoint path to start over."
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a checkpoint written by fit (format {FORMAT!r}); it was left as it is.")
    return state


def check_same_run(state, fingerprint, path):
    """Refuse to resume a checkpoint written with other settings, naming every difference."""
    saved = state.get("fingerprint", {})
    diffs = [f"{key} {saved.get(key)!r} there, {value!r} here" for key, value in fingerprint.items()
             if saved.get(key) != value]
    if diffs:
        raise CheckpointError(
            f"{path} was written by a different run ({'; '.join(diffs)}): resume with the settings it was "
            "written with, or start over with another checkpoint path. The file was left as it is."
        )


def rng_state(generators):
    """Every random state a run draws from: torch (CPU and CUDA), Python, NumPy and ``generators`` by name."""
    keys, pos, has_gauss, gauss = np.random.get_state()[1:]
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                  "gauss": float(gauss)},
        "generators": {name: g.get_state() for name, g in generators.items()},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state, generators):
    """Restore what ``rng_state`` captured (the generators by name)."""
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy = state["numpy"]
    np.random.set_state(("MT19937", numpy["keys"].numpy().astype(np.uint32), numpy["pos"], numpy["has_gauss"],
                         numpy["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for name, g in generators.items():
        if name in state["generators"]:
            g.set_state(state["generators"][name])


class Checkpoint:
    """Where and how often ``fit`` saves its run, and whether it resumes from a saved one.

    ``fit(..., checkpoint="run.pt")`` means ``Checkpoint("run.pt")``: save at the end of every
    ``every``-th epoch (None: only by time and at the end), of an epoch that ends ``minutes`` after
    the last save, and of the last epoch. An existing file is never overwritten unless resumed.
    ``resume=True`` continues from ``path`` if it exists (else starts at epoch 1); ``resume=OTHER``
    continues from the file ``OTHER`` and saves to ``path``. A run resumes at the end of its last saved
    epoch and, on the CPU, ends bitwise as the uninterrupted run would; a checkpoint written with
    other settings (epochs, lr, schedule, batches per epoch, device...) is refused.
    """

    def __init__(self, path, every=1, minutes=None, resume=False):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"checkpoint path must be a str or a path, got {type(path).__name__}")
        if every is not None and (not isinstance(every, int) or isinstance(every, bool) or every < 1):
            raise ValueError(f"every must be a positive int (epochs) or None, got {every!r}")
        if minutes is not None and not (isinstance(minutes, (int, float)) and not isinstance(minutes, bool)
                                        and math.isfinite(minutes) and minutes > 0):
            raise ValueError(f"minutes must be a positive number or None, got {minutes!r}")
        if not isinstance(resume, (bool, str, os.PathLike)):
            raise ValueError(f"resume must be False, True or a checkpoint path, got {resume!r}")
        self.path, self.every, self.minutes, self.resume = Path(path), every, minutes, resume

    def __repr__(self):
        return (f"Checkpoint({str(self.path)!r}, every={self.every!r}, minutes={self.minutes!r}, "
                f"resume={self.resume!r})")

    def start(self, settings, generators):
        """The saves of one ``fit`` run with these ``settings`` (its fingerprint); checks the files first."""
        return CheckpointedRun(self, settings, generators)


class CheckpointedRun:
    """One ``fit`` run's resume and saves (made by ``Checkpoint.start``).

    Checks everything it can before training starts: a resume source that is
    missing, a checkpoint that would be overwritten, a folder that is not writable.
    """

    def __init__(self, options, settings, generators):
        self.options, self.path, self.settings, self.generators = options, options.path, settings, generators
        self.saved_epoch, self.last_save = 0, time.monotonic()
        self.source = self._source(options.resume)
        self._check_writable()
        remove_stale_temporaries(self.path)  # a resume (or a fresh start) cleans up after killed saves

    def _source(self, resume):
        """The file to resume from, or None; refuses to overwrite a checkpoint that is not resumed."""
        if resume is False:
            source = None
        elif resume is True:
            source = self.path if self.path.exists() else None
            if source is None:
                print(f"no checkpoint at {self.path} yet: starting at epoch 1")
        else:
            source = Path(resume)
            if not source.is_file():
                raise FileNotFoundError(f"resume={str(resume)!r}: no checkpoint file there")
        if self.path.exists() and (source is None or not self.path.samefile(source)):
            raise FileExistsError(
                f"checkpoint {self.path} already exists: pass Checkpoint({str(self.path)!r}, resume=True) to "
                "continue that run, or choose another path (or delete it) to start over. It was left as it is."
            )
        return source

    def _check_writable(self):
        """Fail now, not after an epoch of training, if the checkpoint cannot be written."""
        folder = self.path.parent
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK):
            raise PermissionError(f"cannot write checkpoint {self.path}: {folder} is not writable; pass a path "
                                  "in a writable folder")

    def restore(self, model, optimizer, scaler):
        """Load the resume source into ``model``, ``optimizer``, ``scaler`` and the RNGs; return (rows, step)."""
        if self.source is None:
            return [], 0
        state = load(self.source)
        check_same_run(state, self.settings, self.source)
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as err:
            raise CheckpointError(
                f"{self.source} holds a different model or optimizer: {str(err).splitlines()[0]}. "
                "The file was left as it is."
            ) from None
        if state.get("scaler"):  # saved by a float16 run on CUDA (a no-op for a disabled scaler)
            scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"], self.generators)
        history = [dict(row) for row in state["history"]]
        self.saved_epoch = len(history)
        print(f"resumed from {self.source}: {len(history)} of {self.settings['epochs']} epochs done")
        return history, state["step"]

    def after_epoch(self, model, optimizer, scaler, history, step, last):
        """Save if this epoch is due (every ``every`` epochs, ``minutes`` since the last save, or the last one)."""
        every, minutes = self.options.every, self.options.minutes
        due = last or (every is not None and len(history) % every == 0)
        due = due or (minutes is not None and time.monotonic() - self.last_save >= 60 * minutes)
        if not due:
            return
        state = {"format": FORMAT, "fingerprint": self.settings, "epoch": len(history), "step": step,
                 "history": [dict(row) for row in history], "model": model.state_dict(),
                 "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                 "rng": rng_state(self.generators)}
        save_atomic(state, self.path)
        self.saved_epoch, self.last_save = len(history), time.monotonic()

    def how_to_resume(self):
        """A sentence for an interrupted run: what a rerun continues from."""
        if self.saved_epoch:
            return (f"Resume with the same fit(...) call and checkpoint=Checkpoint({str(self.path)!r}, "
                    f"resume=True): it continues from {self.path}, saved at the end of epoch {self.saved_epoch}.")
        return f"No epoch was saved to {self.path} yet, so a resumed run starts at epoch 1."
