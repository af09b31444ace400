"""Checkpoints, resume and interrupts of ``fit``: a resumed CPU run ends bitwise as an uninterrupted one."""

import os
import re
import signal
from pathlib import Path

import pytest
import torch
from torch import nn

from lecture_utils import checkpoint as ckpt_mod
from lecture_utils.checkpoint import FORMAT, Checkpoint, CheckpointError, save_atomic
from lecture_utils.data import DeviceBatches, load_dataset
from lecture_utils.train import TrainingInterrupted, fit

STEPS = 4  # steps per epoch: 128 images in batches of 32


def net(channels_last=False):
    """A tiny net with dropout, so the global torch RNG matters too (in channels_last if asked)."""
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4), nn.Flatten(), nn.Dropout(0.2),
                          nn.Linear(4 * 49, 10))
    model.channels_last = channels_last
    return model


@pytest.fixture(scope="module")
def digits():
    x, y = load_dataset("digits", verbose=False)
    xt, yt = load_dataset("digits", train=False, verbose=False)
    return x[:128], y[:128], xt[:64], yt[:64]


class Planted:
    """An augmentation that draws from the batches' generator, and at global step ``at`` does ``action``."""

    def __init__(self, at=None, action="raise"):
        self.at, self.action, self.step = at, action, 0

    def __call__(self, x, generator):
        self.step += 1
        if self.step == self.at:
            if self.action == "raise":
                raise KeyboardInterrupt  # as Ctrl-C lands while the batch is made
            os.kill(os.getpid(), signal.SIGINT)  # a real interrupt signal, mid-step
        return (x + 0.05 * torch.rand(x.shape, generator=generator, device=x.device)).clamp_(0, 1)


def train(digits, seed=0, epochs=3, augment=None, init_seed=None, channels_last=False, **kwargs):
    x, y, xt, yt = digits
    torch.manual_seed(seed if init_seed is None else init_seed)
    model = net(channels_last)
    batches = DeviceBatches(x, y, 32, shuffle=True, seed=seed, augment=augment or Planted())
    history = fit(model, batches, DeviceBatches(xt, yt, 64), epochs=epochs, lr=0.05, device="cpu", **kwargs)
    return model, history


def snapshot(path):
    path = Path(path)
    return path.read_bytes(), os.stat(path).st_mtime_ns


def same_numbers(ha, hb):
    keys = ("epoch", "train_loss", "train_error", "val_loss", "val_error", "lr")
    return [[h[k] for k in keys] for h in ha] == [[h[k] for k in keys] for h in hb]


@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
def test_interrupted_then_resumed_run_is_bitwise_the_uninterrupted_one(digits, tmp_path, channels_last):
    whole, whole_history = train(digits, checkpoint=tmp_path / "whole.pt", channels_last=channels_last)
    path = tmp_path / "run.pt"
    with pytest.raises(TrainingInterrupted) as info:  # epoch 2, while making step 3
        train(digits, checkpoint=path, augment=Planted(at=STEPS + 3), channels_last=channels_last)
    err = info.value
    assert len(err.history) == 1 and err.history.interrupted and err.epoch == 2 and err.step == STEPS + 2
    assert "epoch 2, step 2 of 4" in str(err) and "end of epoch 1" in str(err)
    assert f"checkpoint=Checkpoint({str(path)!r}, resume=True)" in str(err)
    torch.manual_seed(12345)  # whatever happened since must not matter: every RNG comes from the checkpoint
    resumed, history = train(digits, checkpoint=Checkpoint(path, resume=True), init_seed=99,
                             channels_last=channels_last)
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert same_numbers(history, whole_history) and len(history) == 3


def test_sigint_stops_at_the_end_of_the_step_and_keeps_the_weights(digits):
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(TrainingInterrupted, match=r"epoch 1, step 3 of 4 \(global step 3\).*Checkpointing was off"):
        train(digits, augment=Planted(at=3, action="signal"))
    assert signal.getsignal(signal.SIGINT) is before  # the handler is put back
    # The third step finished: the weights equal those of a run stopped by KeyboardInterrupt before step 4.
    x, y, _, _ = digits
    torch.manual_seed(0)
    stopped_early = net()
    with pytest.raises(TrainingInterrupted, match="step 3 of 4"):
        fit(stopped_early, DeviceBatches(x, y, 32, shuffle=True, seed=0, augment=Planted(at=4)), epochs=3, lr=0.05,
            device="cpu")
    torch.manual_seed(0)
    by_signal = net()
    with pytest.raises(TrainingInterrupted):
        fit(by_signal, DeviceBatches(x, y, 32, shuffle=True, seed=0, augment=Planted(at=3, action="signal")),
            epochs=3, lr=0.05, device="cpu")
    for a, b in zip(stopped_early.parameters(), by_signal.parameters()):
        assert torch.equal(a, b)


def test_a_crash_while_saving_leaves_the_last_checkpoint_whole(digits, tmp_path, monkeypatch):
    path = tmp_path / "run.pt"
    train(digits, epochs=1, checkpoint=path)
    good = snapshot(path)

    def crash(state, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full (planted)")

    monkeypatch.setattr(ckpt_mod.torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_atomic({"format": FORMAT}, path)
    assert snapshot(path) == good
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]  # no temporary file left behind


def test_an_existing_checkpoint_is_never_overwritten_without_resume(digits, tmp_path):
    path = tmp_path / "run.pt"
    path.write_bytes(b"the user's file")
    before = snapshot(path)
    with pytest.raises(FileExistsError, match=r"already exists: pass Checkpoint\('.*run.pt', resume=True\)"):
        train(digits, epochs=1, checkpoint=path)
    assert snapshot(path) == before


def test_resume_refuses_a_checkpoint_of_a_different_run(digits, tmp_path):
    path = tmp_path / "run.pt"
    train(digits, epochs=2, checkpoint=Checkpoint(path, every=None))
    before = snapshot(path)
    with pytest.raises(CheckpointError, match=r"different run \(epochs 2 there, 3 here\).*left as it is"):
        train(digits, epochs=3, checkpoint=Checkpoint(path, resume=True))
    assert snapshot(path) == before


def test_a_damaged_checkpoint_is_reported_and_left_alone(digits, tmp_path):
    path = tmp_path / "run.pt"
    train(digits, epochs=1, checkpoint=path)
    path.write_bytes(path.read_bytes()[:1000])  # truncated, as by a crash without the atomic write
    before = snapshot(path)
    with pytest.raises(CheckpointError, match=r"cannot be read as a checkpoint .*damaged.*left as it is"):
        train(digits, epochs=1, checkpoint=Checkpoint(path, resume=True))
    assert snapshot(path) == before


class Evil:
    """Unpickling this would create a file: weights_only loading must refuse it."""

    marker = None

    def __reduce__(self):
        return (open, (str(Evil.marker), "w"))


def test_loading_never_unpickles_arbitrary_objects(tmp_path):
    Evil.marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "payload": Evil()}, path)
    with pytest.raises(CheckpointError, match="cannot be read as a checkpoint"):
        ckpt_mod.load(path)
    assert not Evil.marker.exists()


# Unpickling that is vetted: CIFAR-10's python batches are pickles (torchvision reads them so too); they
# are unpickled only after each file's MD5 matched torchvision's, never a user's file as it comes.
VETTED_UNPICKLING = {("sources.py", "decode_cifar"): "_verify("}  # lecture_utils/data/sources.py


def test_no_unsafe_loading_anywhere_in_the_package():
    import ast

    package = Path(ckpt_mod.__file__).parent
    unsafe = re.compile(r"^\s*(import|from)\s+(c?pickle|dill|joblib)\b", re.M)
    for source in package.rglob("*.py"):
        text = source.read_text()
        vetted = []
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = ast.get_source_segment(text, node)
                must = VETTED_UNPICKLING.get((source.name, node.name))
                if must and unsafe.search(body):
                    assert must in body.split("pickle.loads")[0], f"{source.name}:{node.name} must check first"
                    vetted.append(body)
        rest = text
        for body in vetted:
            rest = rest.replace(body, "")
        assert not unsafe.search(rest), source
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, (source, call)


def test_resume_true_starts_fresh_without_a_file_and_a_finished_run_returns_at_once(digits, tmp_path, capsys):
    path = tmp_path / "sub" / "run.pt"  # the folder is made
    _, history = train(digits, epochs=2, checkpoint=Checkpoint(path, resume=True))
    assert "no checkpoint at" in capsys.readouterr().out and path.is_file()
    model, again = train(digits, epochs=2, checkpoint=Checkpoint(path, resume=True), init_seed=5)
    assert "2 of 2 epochs done" in capsys.readouterr().out and same_numbers(again, history)
    with pytest.raises(FileNotFoundError, match="no checkpoint file there"):
        train(digits, epochs=2, checkpoint=Checkpoint(tmp_path / "new.pt", resume=tmp_path / "missing.pt"))
    assert not (tmp_path / "new.pt").exists()


def test_resume_from_another_file_saves_to_the_path(digits, tmp_path):
    first = tmp_path / "first.pt"
    whole, whole_history = train(digits, epochs=2, checkpoint=tmp_path / "whole.pt")
    with pytest.raises(TrainingInterrupted):  # saved after epoch 1, stopped while making epoch 2's first step
        train(digits, epochs=2, checkpoint=first, augment=Planted(at=STEPS + 1))
    before = snapshot(first)
    second = tmp_path / "second.pt"
    resumed, history = train(digits, epochs=2, checkpoint=Checkpoint(second, resume=first), init_seed=7)
    assert snapshot(first) == before and second.is_file() and same_numbers(history, whole_history)
    for a, b in zip(whole.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


def test_checkpoint_options_are_checked_at_once():
    with pytest.raises(ValueError, match="every must be a positive int"):
        Checkpoint("run.pt", every=0)
    with pytest.raises(ValueError, match="minutes must be a positive number"):
        Checkpoint("run.pt", minutes=-1)
    with pytest.raises(ValueError, match="resume must be False, True or a checkpoint path, got 1"):
        Checkpoint("run.pt", resume=1)
    with pytest.raises(TypeError, match="checkpoint path must be a str or a path, got int"):
        Checkpoint(3)
    assert repr(Checkpoint("run.pt", resume=True)) == "Checkpoint('run.pt', every=1, minutes=None, resume=True)"


def test_checkpoint_every_and_minutes(digits, tmp_path, monkeypatch):
    saved = []
    monkeypatch.setattr(ckpt_mod, "save_atomic", lambda state, path: saved.append(state["epoch"]))
    train(digits, epochs=3, checkpoint=tmp_path / "a0.pt")
    assert saved == [1, 2, 3]  # a path: every epoch
    saved.clear()
    train(digits, epochs=3, checkpoint=Checkpoint(tmp_path / "a.pt", every=2))
    assert saved == [2, 3]  # every 2nd epoch, and the last
    saved.clear()
    train(digits, epochs=3, checkpoint=Checkpoint(tmp_path / "b.pt", every=None, minutes=1e-9))
    assert saved == [1, 2, 3]
    saved.clear()
    train(digits, epochs=3, checkpoint=Checkpoint(tmp_path / "c.pt", every=None, minutes=60))
    assert saved == [3]


def dead_pid():
    """The pid of a process that has exited (and been reaped)."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def plant_temporaries(folder):
    """Partial files as killed saves of run.pt leave them, and neighbours that are not stale ones of run.pt."""
    stale = [f".run.pt.{dead_pid()}-k3x_9q2a.tmp",  # a writer killed with kill -9
             ".run.pt.abcd1234.tmp"]  # the name saves used before the pid was part of it
    kept = [f".run.pt.{os.getppid()}-zz00zz00.tmp",  # a writer still running (our parent process)
            ".run.pt.x.abcd1234.tmp",  # a partial save of the checkpoint "run.pt.x"
            ".other.pt.abcd1234.tmp", "run.pt.tmp", ".run.pt.tmp", "notes.txt", "run.pt.bak"]
    for name in stale + kept:
        (folder / name).write_bytes(b"half a checkpoint" * 1000)
    return set(kept)


def test_a_save_removes_partial_files_that_killed_saves_left(digits, tmp_path, capsys):
    kept = plant_temporaries(tmp_path)
    path = tmp_path / "run.pt"
    save_atomic({"format": FORMAT}, path)
    assert {p.name for p in tmp_path.iterdir()} == kept | {"run.pt"}
    assert "removed 2 partial checkpoint file(s) (0.0 MB)" in capsys.readouterr().out
    for name in kept:  # untouched, contents and all
        assert (tmp_path / name).read_bytes() == b"half a checkpoint" * 1000


def test_a_resume_removes_them_before_training(digits, tmp_path, capsys):
    path = tmp_path / "run.pt"
    train(digits, epochs=1, checkpoint=path)
    kept = plant_temporaries(tmp_path)
    capsys.readouterr()
    before = snapshot(path)
    train(digits, epochs=1, checkpoint=Checkpoint(path, resume=True))  # the run is done: it returns at once
    assert snapshot(path) == before  # so the resume itself cleaned up
    assert "removed 2 partial checkpoint file(s)" in capsys.readouterr().out
    assert {p.name for p in tmp_path.iterdir()} == kept | {"run.pt"}


def test_a_sigkilled_save_leaves_a_temporary_file_the_next_save_removes(tmp_path):
    import subprocess
    import sys
    import time

    path = tmp_path / "big.pt"
    # A child writes a large checkpoint slowly (many small tensors) and is killed mid-write.
    code = ("import sys, torch; from lecture_utils.checkpoint import save_atomic;"
            "save_atomic({'format': 'x', 'w': [torch.zeros(2**14) for _ in range(2000)]}, sys.argv[1])")
    child = subprocess.Popen([sys.executable, "-c", code, str(path)], cwd=Path(__file__).resolve().parents[1])
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".big.pt.*.tmp")) and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.01)
    child.kill()
    child.wait()
    leftovers = list(tmp_path.glob(".big.pt.*.tmp"))
    if not leftovers:
        pytest.skip("the child finished its save before it could be killed")
    assert not path.exists()
    save_atomic({"format": FORMAT}, path)
    assert [p.name for p in tmp_path.iterdir()] == ["big.pt"]


def test_the_checkpoint_fingerprint_names_the_penalty_the_same_way_in_every_process():
    import functools

    from lecture_utils.train import _name_of

    def l1(model, strength):
        return strength * sum(p.abs().sum() for p in model.parameters())

    assert _name_of(None) is None
    assert _name_of(functools.partial(l1, strength=1e-5)).endswith("l1(strength=1e-05)")
    assert _name_of(functools.partial(l1, strength=1e-5)) != _name_of(functools.partial(l1, strength=1e-4))
    assert "0x" not in _name_of(functools.partial(l1, strength=1e-5))
