"""Training and evaluation: ``fit`` returns a per-epoch history; a non-finite loss stops it loudly.

On CUDA it uses channels_last and bf16 autocast (the fast path on tensor
cores); on CPU it runs in float32 and, for a fixed seed, repeats bitwise.
``fit`` can checkpoint to a file and resume from it (``lecture_utils.checkpoint``),
and stops cleanly at the end of a step on Ctrl-C.
"""

import math
import os
import signal
import sys
import threading
import time

import torch
import torch.nn.functional as F

from lecture_utils.checkpoint import Checkpoints
from lecture_utils.device import get_device

SCHEDULES = ("constant", "cosine", "linear", "step")
OPTIMIZERS = ("sgd", "adam", "adamw")
PROGRESS_ENV = "LECTURE_PROGRESS"


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; ``history`` holds the epochs finished before."""

    def __init__(self, message, history):
        super().__init__(message)
        self.history = history


class History(list):
    """One dict per epoch: train/val loss and error, learning rate, seconds, images per second.

    ``interrupted`` is True on the history of a run that Ctrl-C stopped.
    """

    interrupted = False

    def table(self):
        """A plain-text table of the history, one row per epoch."""
        cols = ("epoch", "train_loss", "train_error", "val_loss", "val_error", "lr", "seconds")
        lines = ["  ".join(f"{c:>11}" for c in cols)]
        for row in self:
            cells = []
            for c in cols:
                v = row.get(c)
                cells.append(f"{'-':>11}" if v is None else f"{v:>11d}" if isinstance(v, int) else f"{v:>11.4g}")
            lines.append("  ".join(cells))
        return "\n".join(lines)


def learning_rate(schedule, base_lr, step, total_steps, warmup_steps=0):
    """The learning rate at ``step`` of ``total_steps``: linear warm-up, then the schedule.

    ``step`` divides it by 10 at 50% and 75% of training, as He et al. 2016 do
    (32k and 48k of 64k iterations); ``cosine`` and ``linear`` decay it to 0.
    """
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    if schedule == "constant":
        return base_lr
    if schedule == "cosine":
        return base_lr * 0.5 * (1 + math.cos(math.pi * t))
    if schedule == "linear":
        return base_lr * (1 - t)
    if schedule == "step":
        return base_lr * (0.1 ** ((t >= 0.5) + (t >= 0.75)))
    raise ValueError(f"unknown schedule {schedule!r}: choose one of {', '.join(SCHEDULES)}")


def make_optimizer(name, params, lr, momentum=0.9, weight_decay=5e-4, nesterov=True):
    """SGD with (Nesterov) momentum, Adam or AdamW; weight decay skips biases and norm scales."""
    params = [p for p in params if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}: choose one of {', '.join(OPTIMIZERS)}")


def _progress(iterable, enabled, **kwargs):
    if enabled is None:
        enabled = os.environ.get(PROGRESS_ENV, "1") != "0"
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, leave=False, **kwargs)


def _autocast(device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def _prepare(x, device):
    return x.contiguous(memory_format=torch.channels_last) if device.type == "cuda" else x


@torch.no_grad()
def evaluate(model, batches, device=None):
    """Mean cross-entropy loss and error rate of ``model`` over ``batches`` of (images, labels)."""
    device = get_device(device)
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device)
    wrong = torch.zeros((), device=device, dtype=torch.long)
    n = 0
    for x, y in batches:
        _check_batch(x, y, "the batches")
        x, y = _prepare(x.to(device), device), y.to(device)
        with _autocast(device):
            logits = model(x)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
        wrong += (logits.argmax(1) != y).sum()
        n += len(y)
    model.train(was_training)
    if n == 0:
        raise ValueError("evaluate got no batches: the data set is empty")
    return {"loss": loss_sum.item() / n, "error": wrong.item() / n}


def fit(model, train_batches, val_batches=None, *, epochs, lr, optimizer="sgd", momentum=0.9,
        weight_decay=5e-4, nesterov=True, schedule="cosine", warmup_epochs=0.0, label_smoothing=0.0,
        device=None, progress=None, verbose=True, check_every=None, checkpoint=None, checkpoint_every=1,
        checkpoint_minutes=None, resume=False, penalty=None):
    """Train ``model`` for ``epochs`` over ``train_batches``; return a ``History``.

    ``verbose``: print a line every epoch (True), every ``verbose``-th epoch (an int) or never.
    ``check_every`` steps the loss is checked for NaN/Inf (default: every step
    on CPU, every 25 on CUDA, where a check costs a device sync); a bad loss
    raises ``TrainingDiverged`` naming the step and the learning rate.

    ``checkpoint``: a file to save the run to at the end of every
    ``checkpoint_every``-th epoch, and of an epoch that ends ``checkpoint_minutes``
    after the last save (an existing file is never overwritten unless resumed).
    ``resume=True`` continues from that file if it exists (else starts at epoch 1);
    ``resume=PATH`` continues from ``PATH``. A run resumes at the end of the last
    saved epoch (an interrupt mid-epoch loses that epoch's steps) and, on CPU,
    ends bitwise as the uninterrupted run would; a checkpoint of other settings
    (epochs, lr, schedule, batches per epoch, device...) is refused.
    Ctrl-C (a kernel interrupt) stops at the end of the current step and raises
    ``TrainingInterrupted``, which holds the finished epochs and says how to resume.

    ``penalty``: a function ``model -> scalar tensor`` added to each step's loss
    before the backward pass (an L1 term on the weights, a sparsity term on
    hidden units the model kept from its forward pass); ``train_loss`` in the
    history stays the cross-entropy alone.
    """
    _check_arguments(epochs, lr, schedule, checkpoint_every, checkpoint_minutes)
    if penalty is not None and not callable(penalty):
        raise TypeError(f"penalty must be a function model -> scalar tensor or None, got {type(penalty).__name__}")
    device = get_device(device)
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    opt = make_optimizer(optimizer, model.parameters(), lr, momentum, weight_decay, nesterov)
    steps_per_epoch = len(train_batches)
    if steps_per_epoch == 0:
        raise ValueError("train_batches is empty: there is nothing to train on")
    plan = dict(epochs=epochs, lr=float(lr), optimizer=optimizer, momentum=float(momentum),
                weight_decay=float(weight_decay), nesterov=bool(nesterov), schedule=schedule,
                warmup_epochs=float(warmup_epochs), label_smoothing=float(label_smoothing),
                steps_per_epoch=steps_per_epoch, device=device.type)
    saver = Checkpoints(checkpoint, resume, checkpoint_every, checkpoint_minutes, plan,
                        _generators(train_batches=train_batches, val_batches=val_batches))
    rows, step = saver.restore(model, opt)
    history = History(rows)
    total, warmup = epochs * steps_per_epoch, int(warmup_epochs * steps_per_epoch)
    run = dict(model=model, opt=opt, device=device, label_smoothing=label_smoothing, steps_per_epoch=steps_per_epoch,
               lr_at=lambda step: learning_rate(schedule, lr, step, total, warmup),
               check_every=check_every or (25 if device.type == "cuda" else 1), penalty=penalty)
    where = {"epoch": len(history) + 1, "in_epoch": 0, "step": step}  # the last finished step, for an interrupt
    with _StopAtStepEnd() as stop:
        try:
            for epoch in range(len(history) + 1, epochs + 1):
                where.update(epoch=epoch, in_epoch=0)
                start = time.perf_counter()
                batches = _progress(train_batches, progress, desc=f"epoch {epoch}/{epochs}")
                row, last_lr, seen = _train_epoch(run, batches, where, stop, history)
                if val_batches is not None:
                    val = evaluate(model, val_batches, device)
                    row.update(val_loss=val["loss"], val_error=val["error"])
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                seconds = time.perf_counter() - start
                row.update(lr=last_lr, seconds=seconds, images_per_second=seen / seconds)
                history.append(row)
                _report(row, epochs, verbose, val_batches is not None)
                saver.after_epoch(model, opt, history, where["step"], last=epoch == epochs)
        except KeyboardInterrupt:
            raise _interrupted(history, where, steps_per_epoch, saver) from None
    return history


def _train_epoch(run, batches, where, stop, history):
    """One epoch of steps: the epoch's history row so far, its last learning rate and the images seen.

    ``where`` counts finished steps; ``stop.requested`` (Ctrl-C) ends the epoch after the current step.
    """
    model, opt, device = run["model"], run["opt"], run["device"]
    model.train()
    losses, lrs, checked, x = [], [], 0, None
    wrong, seen = torch.zeros((), device=device, dtype=torch.long), 0
    for x, y in batches:
        _check_batch(x, y, "train_batches")
        x, y = _prepare(x.to(device), device), y.to(device)
        lrs.append(run["lr_at"](where["step"]))
        for group in opt.param_groups:
            group["lr"] = lrs[-1]
        with _autocast(device):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=run["label_smoothing"])
        losses.append(loss.detach())
        if len(losses) - checked >= run["check_every"]:  # before the update: the weights stay the last good ones
            _check_finite(losses, lrs, checked, where["epoch"], run["steps_per_epoch"], history, x)
            checked = len(losses)
        if run.get("penalty") is not None:
            loss = loss + run["penalty"](model)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        wrong += (logits.detach().argmax(1) != y).sum()
        seen += len(y)
        where["step"] += 1
        where["in_epoch"] += 1
        if stop.requested:
            raise KeyboardInterrupt
    _check_finite(losses, lrs, checked, where["epoch"], run["steps_per_epoch"], history, x)
    row = {"epoch": where["epoch"], "train_loss": torch.stack(losses).mean().item(), "train_error": wrong.item() / seen}
    return row, lrs[-1], seen


def _check_arguments(epochs, lr, schedule, checkpoint_every, checkpoint_minutes):
    """ValueError naming the first bad argument, before any work."""
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    if not (isinstance(lr, (int, float)) and not isinstance(lr, bool) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    learning_rate(schedule, lr, 0, 1)  # validates the schedule's name
    if checkpoint_every is not None and (not isinstance(checkpoint_every, int) or isinstance(checkpoint_every, bool)
                                         or checkpoint_every < 1):
        raise ValueError(f"checkpoint_every must be a positive int (epochs) or None, got {checkpoint_every!r}")
    if checkpoint_minutes is not None and not (isinstance(checkpoint_minutes, (int, float))
                                               and math.isfinite(checkpoint_minutes) and checkpoint_minutes > 0):
        raise ValueError(f"checkpoint_minutes must be a positive number or None, got {checkpoint_minutes!r}")


def _check_batch(x, y, what):
    """TypeError/ValueError for a batch ``fit`` or ``evaluate`` cannot use, naming what is wrong (no device sync)."""
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(f"{what} must yield (images, labels) tensor pairs, got "
                        f"({type(x).__name__}, {type(y).__name__})")
    if not x.is_floating_point():
        raise TypeError(f"{what} yielded images of dtype {x.dtype}: the model needs floating point images "
                        "(DeviceBatches turns uint8 into floats in [0, 1])")
    if y.dtype != torch.long or y.ndim != 1:
        raise TypeError(f"{what} yielded labels of dtype {y.dtype} and shape {tuple(y.shape)}: "
                        "class indices must be int64 of shape (N,)")
    if len(y) == 0 or x.ndim < 2 or len(x) != len(y):
        raise ValueError(f"{what} yielded a batch of images {tuple(x.shape)} with {len(y)} labels: "
                         "a batch needs N >= 1 images and as many labels")


def _generators(**batches):
    """The ``torch.Generator`` of each batch iterator that has one (``DeviceBatches`` does), by name."""
    return {name: b.generator for name, b in batches.items() if isinstance(getattr(b, "generator", None),
                                                                             torch.Generator)}


def _report(row, epochs, verbose, has_val):
    """Print an epoch's line if ``verbose`` asks for it."""
    epoch = row["epoch"]
    if verbose and (epoch % int(verbose) == 0 or epoch == epochs):
        val_text = f", val loss {row['val_loss']:.4f}, val error {100 * row['val_error']:.2f}%" if has_val else ""
        print(f"epoch {epoch:>3}/{epochs}: train loss {row['train_loss']:.4f}, "
              f"train error {100 * row['train_error']:.2f}%{val_text}, lr {row['lr']:.3g}, {row['seconds']:.1f}s")


def _check_finite(losses, lrs, checked, epoch, steps_per_epoch, history, last_inputs):
    """Raise TrainingDiverged at the first non-finite loss among ``losses[checked:]``.

    ``last_inputs`` are the images of the last step: if that step is the bad one
    (always, when every step is checked), the message says whether they hold NaN/Inf.
    """
    if len(losses) <= checked:
        return
    values = torch.stack(losses[checked:]).float().cpu()
    bad = (~torch.isfinite(values)).nonzero()
    if len(bad):
        i = checked + int(bad[0])
        where = (f"the loss became {losses[i].item()} at epoch {epoch}, step {i + 1} of {steps_per_epoch} "
                 f"(global step {(epoch - 1) * steps_per_epoch + i + 1})")
        if i == len(losses) - 1 and not torch.isfinite(last_inputs).all():
            advice = ("that step's input images hold NaN or infinite values: check the data and the augmentation "
                      "(the learning rate is not the cause)")
        else:
            advice = (f"with learning rate {lrs[i]:.4g}. Lower the learning rate (halve it until the loss stops "
                      "diverging) or add warm-up; if the data or the augmentation can make NaN, check them first")
        raise TrainingDiverged(f"training diverged: {where}; {advice}; the {len(history)} finished epochs are in "
                               "this error's .history.", history)


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C or a kernel interrupt stopped ``fit`` at the end of a step; ``history`` holds the finished epochs.

    A KeyboardInterrupt, so a notebook's "run all" stops here too.
    """

    def __init__(self, message, history, epoch, step):
        super().__init__(message)
        self.history, self.epoch, self.step = history, epoch, step


def _interrupted(history, where, steps_per_epoch, saver):
    """The TrainingInterrupted to raise: where it stopped, what is kept, how to resume."""
    history.interrupted = True
    stopped = (f"training interrupted at epoch {where['epoch']}, step {where['in_epoch']} of {steps_per_epoch} "
               f"(global step {where['step']}): the model keeps the weights of that step, and this error's "
               f".history holds the {len(history)} finished epoch(s) "
               "(in a notebook: history = sys.last_value.history).")
    if saver.path is None:
        how = " Checkpointing was off, so a rerun starts at epoch 1: pass checkpoint='run.pt' to make a run resumable."
    elif saver.saved_epoch:
        how = (f" Resume with the same fit(...) call and resume=True: it continues from {saver.path}, "
               f"saved at the end of epoch {saver.saved_epoch}.")
    else:
        how = f" No epoch was saved to {saver.path} yet, so fit(..., resume=True) starts at epoch 1."
    return TrainingInterrupted(stopped + how, history, where["epoch"], where["step"])


class _StopAtStepEnd:
    """While active (main thread only), a first SIGINT asks to stop at the end of the step; a second stops at once."""

    def __init__(self):
        self.requested, self.installed, self.previous = False, False, None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            try:
                self.previous = signal.signal(signal.SIGINT, self._handle)
                self.installed = True
            except (ValueError, OSError):  # e.g. an embedded interpreter: a plain KeyboardInterrupt still works
                pass
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\ninterrupt: stopping at the end of this step (interrupt again to stop at once)",
              file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        if self.installed:
            signal.signal(signal.SIGINT, self.previous if self.previous is not None else signal.default_int_handler)
        return False
