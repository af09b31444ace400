"""Training and evaluation: ``fit`` returns a per-epoch history; a non-finite loss stops it loudly.

On CUDA it uses channels_last and bf16 autocast (the fast path on tensor
cores); on CPU it runs in float32 and, for a fixed seed, repeats bitwise.
"""

import math
import os
import time

import torch
import torch.nn.functional as F

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
    """One dict per epoch: train/val loss and error, learning rate, seconds, images per second."""

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
    device = get_device(device) if device is None or isinstance(device, str) else device
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device)
    wrong = torch.zeros((), device=device, dtype=torch.long)
    n = 0
    for x, y in batches:
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
        device=None, progress=None, verbose=True, check_every=None):
    """Train ``model`` for ``epochs`` over ``train_batches``; return a ``History``.

    ``verbose``: print a line every epoch (True), every ``verbose``-th epoch (an int) or never.
    ``check_every`` steps the loss is checked for NaN/Inf (default: every step
    on CPU, every 25 on CUDA, where a check costs a device sync); a bad loss
    raises ``TrainingDiverged`` naming the step and the learning rate.
    """
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    learning_rate(schedule, lr, 0, 1)  # validates the schedule's name before any work
    device = get_device(device) if device is None or isinstance(device, str) else device
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    opt = make_optimizer(optimizer, model.parameters(), lr, momentum, weight_decay, nesterov)
    steps_per_epoch = len(train_batches)
    total, warmup = epochs * steps_per_epoch, int(warmup_epochs * steps_per_epoch)
    check_every = check_every or (25 if device.type == "cuda" else 1)
    history, step = History(), 0
    for epoch in range(1, epochs + 1):
        model.train()
        start = time.perf_counter()
        losses, lrs, checked = [], [], 0
        wrong, seen = torch.zeros((), device=device, dtype=torch.long), 0
        for x, y in _progress(train_batches, progress, desc=f"epoch {epoch}/{epochs}"):
            x, y = _prepare(x.to(device), device), y.to(device)
            lrs.append(learning_rate(schedule, lr, step, total, warmup))
            for group in opt.param_groups:
                group["lr"] = lrs[-1]
            with _autocast(device):
                logits = model(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
            losses.append(loss.detach())
            if len(losses) - checked >= check_every:  # before the update: the weights stay the last good ones
                _check_finite(losses, lrs, checked, epoch, steps_per_epoch, history)
                checked = len(losses)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            wrong += (logits.detach().argmax(1) != y).sum()
            seen += len(y)
            step += 1
        _check_finite(losses, lrs, checked, epoch, steps_per_epoch, history)
        row = {"epoch": epoch, "train_loss": torch.stack(losses).mean().item(), "train_error": wrong.item() / seen}
        if val_batches is not None:
            val = evaluate(model, val_batches, device)
            row.update(val_loss=val["loss"], val_error=val["error"])
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
        row.update(lr=lrs[-1], seconds=seconds, images_per_second=seen / seconds)
        history.append(row)
        if verbose and (epoch % int(verbose) == 0 or epoch == epochs):
            val_text = f", val loss {row['val_loss']:.4f}, val error {100 * row['val_error']:.2f}%" if val_batches is not None else ""
            print(f"epoch {epoch:>3}/{epochs}: train loss {row['train_loss']:.4f}, "
                  f"train error {100 * row['train_error']:.2f}%{val_text}, lr {row['lr']:.3g}, {seconds:.1f}s")
    return history


def _check_finite(losses, lrs, checked, epoch, steps_per_epoch, history):
    """Raise TrainingDiverged at the first non-finite loss among ``losses[checked:]``."""
    if len(losses) <= checked:
        return
    values = torch.stack(losses[checked:]).float().cpu()
    bad = (~torch.isfinite(values)).nonzero()
    if len(bad):
        i = checked + int(bad[0])
        raise TrainingDiverged(
            f"training diverged: the loss became {losses[i].item()} at epoch {epoch}, step {i + 1} of "
            f"{steps_per_epoch} (global step {(epoch - 1) * steps_per_epoch + i + 1}), with learning rate "
            f"{lrs[i]:.4g}. Lower the learning rate (halve it until the loss stops diverging) or add "
            f"warm-up; the {len(history)} finished epochs are in this error's .history.",
            history,
        )
