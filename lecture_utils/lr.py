"""Picking the learning rate: the lecture's halving rule, and an LR range test (Smith 2017, fastai's ``lr_find``).

The lecture's rule: "run on a subset of the data: start with a large learning
rate and divide by 2 until the loss does not diverge". ``find_lr_by_halving``
automates it around any ``train_fn(lr) -> loss curve``. ``lr_range_test``
instead raises the learning rate exponentially during one short run and
watches where the smoothed loss falls fastest and where it blows up; the
model's weights (and the random generators) are put back afterwards.
"""

import copy
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from lecture_utils.device import get_device
from lecture_utils.train import TrainingDiverged, make_optimizer


def _positive(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


# ---------------------------------------------------------------- the halving rule

@dataclass
class LRTrial:
    """One short run of the halving rule: its learning rate, loss curve, and whether (and why) it diverged."""

    lr: float
    losses: list
    diverged: bool
    reason: str = ""


@dataclass
class HalvingResult:
    """``lr``: the first learning rate that did not diverge; ``trials``: every run, largest learning rate first."""

    lr: float
    trials: list = field(default_factory=list)

    def __str__(self):
        lines = [f"{'lr':>10}  {'first loss':>10}  {'last loss':>10}  verdict"]
        for t in self.trials:
            first = f"{t.losses[0]:.4g}" if t.losses else "-"
            last = f"{t.losses[-1]:.4g}" if t.losses else "-"
            lines.append(f"{t.lr:>10.4g}  {first:>10}  {last:>10}  "
                         f"{'diverged: ' + t.reason if t.diverged else 'ok'}")
        lines.append(f"chosen: lr = {self.lr:.4g} (after {len(self.trials) - 1} halving(s))")
        return "\n".join(lines)


class NoStableLearningRate(RuntimeError):
    """Every learning rate down to ``min_lr`` diverged; ``trials`` holds the runs."""

    def __init__(self, message, trials):
        super().__init__(message)
        self.trials = trials


def diverged(losses):
    """Why a loss curve diverged ("" if it did not): a non-finite loss, or the last loss above the first."""
    bad = [i for i, v in enumerate(losses) if not math.isfinite(v)]
    if bad:
        return f"loss {losses[bad[0]]} at step {bad[0] + 1}"
    if losses[-1] > losses[0]:
        return f"last loss {losses[-1]:.4g} > first {losses[0]:.4g}"
    return ""


def _curve(value, lr):
    """``train_fn``'s return value as a list of floats; ValueError if it is not a non-empty sequence of numbers."""
    try:
        losses = [float(v) for v in value]
    except (TypeError, ValueError):
        raise ValueError(f"train_fn({lr:.4g}) must return a sequence of losses (floats), got "
                         f"{type(value).__name__}") from None
    if not losses:
        raise ValueError(f"train_fn({lr:.4g}) returned no losses: it must return the loss curve of its run")
    return losses


def find_lr_by_halving(train_fn, start_lr, min_lr=1e-6, factor=2.0, verbose=False):
    """Run ``train_fn(lr)`` from ``start_lr``, dividing by ``factor`` until a run does not diverge.

    ``train_fn(lr)`` trains briefly (on a subset) from the same initial weights
    and returns its loss curve; a run diverged when a loss is NaN/inf or the
    last loss exceeds the first (a ``TrainingDiverged`` from ``fit`` counts as
    diverged too). Returns a ``HalvingResult``; raises ``NoStableLearningRate``
    if every learning rate down to ``min_lr`` diverged.
    """
    if not callable(train_fn):
        raise TypeError(f"train_fn must be a function lr -> loss curve, got {type(train_fn).__name__}")
    lr, min_lr, factor = _positive("start_lr", start_lr), _positive("min_lr", min_lr), _positive("factor", factor)
    if min_lr > lr:
        raise ValueError(f"min_lr ({min_lr:.4g}) must not exceed start_lr ({lr:.4g})")
    if factor <= 1:
        raise ValueError(f"factor must be > 1 (the learning rate is divided by it), got {factor!r}")
    trials = []
    while lr >= min_lr * (1 - 1e-12):
        try:
            losses = _curve(train_fn(lr), lr)
            reason = diverged(losses)
        except TrainingDiverged as err:
            losses = [row["train_loss"] for row in err.history] + [math.nan]
            reason = str(err).split(";")[0]
        trials.append(LRTrial(lr, losses, bool(reason), reason))
        if verbose:
            print(f"lr {lr:.4g}: {'diverged (' + reason + ')' if reason else 'ok'}")
        if not reason:
            return HalvingResult(lr, trials)
        lr /= factor
    raise NoStableLearningRate(f"every learning rate from {start_lr:.4g} down to {trials[-1].lr:.4g} diverged "
                               f"(min_lr={min_lr:.4g}): lower min_lr, or check the data and the model", trials)


# ---------------------------------------------------------------- the range test

@dataclass
class RangeTestResult:
    """Learning rates tried (one per step), raw and smoothed losses, and two readings of the curve."""

    lrs: list
    losses: list
    smoothed: list
    stopped_early: bool
    best_lr: float  # where the smoothed loss was lowest
    steepest_lr: float  # where the smoothed loss fell fastest per decade of learning rate

    @property
    def suggestion(self):
        """The classic reading: a tenth of the learning rate at the lowest smoothed loss."""
        return self.best_lr / 10

    def __str__(self):
        end = "stopped: the smoothed loss blew up" if self.stopped_early else "ran to end_lr"
        return (f"LR range test, {len(self.lrs)} steps from {self.lrs[0]:.3g} to {self.lrs[-1]:.3g} ({end}); "
                f"lowest smoothed loss at {self.best_lr:.3g}, steepest descent at {self.steepest_lr:.3g}, "
                f"suggestion (lowest / 10) {self.suggestion:.3g}")


def _cycle(batches):
    while True:
        empty = True
        for batch in batches:
            empty = False
            yield batch
        if empty:
            raise ValueError("batches is empty: the range test needs at least one batch")


def lr_range_test(model, batches, *, start_lr=1e-6, end_lr=10.0, num_steps=100, loss_fn=None, smoothing=0.98,
                  diverge_factor=4.0, optimizer="sgd", momentum=0.9, weight_decay=0.0, nesterov=False, device=None):
    """Train ``model`` for up to ``num_steps`` steps while the learning rate grows from ``start_lr`` to ``end_lr``.

    The learning rate grows by the same factor every step; the loss is
    smoothed exponentially (``smoothing``, bias-corrected as in fastai) and the
    test stops when the smoothed loss exceeds ``diverge_factor`` times its best
    or a loss is not finite. ``batches`` (images, labels) are cycled as needed.
    Afterwards the model's parameters and buffers, its train/eval mode, the
    torch random generators and a ``DeviceBatches`` generator are as before.
    """
    start_lr, end_lr = _positive("start_lr", start_lr), _positive("end_lr", end_lr)
    if end_lr <= start_lr:
        raise ValueError(f"end_lr ({end_lr:.4g}) must be larger than start_lr ({start_lr:.4g})")
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 2:
        raise ValueError(f"num_steps must be an int >= 2, got {num_steps!r}")
    if not 0 <= smoothing < 1:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing!r}")
    if _positive("diverge_factor", diverge_factor) <= 1:
        raise ValueError(f"diverge_factor must be > 1, got {diverge_factor!r}")
    loss_fn = loss_fn or F.cross_entropy
    device = get_device(device)
    first = next(model.parameters(), None)
    home = first.device if first is not None else device
    saved = copy.deepcopy(model.state_dict())
    was_training = model.training
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    gen = getattr(batches, "generator", None)
    gen_state = gen.get_state() if isinstance(gen, torch.Generator) else None
    try:
        model.to(device).train()
        opt = make_optimizer(optimizer, model.parameters(), start_lr, momentum, weight_decay, nesterov)
        ratio = (end_lr / start_lr) ** (1 / (num_steps - 1))
        lrs, losses, smoothed, avg, best, stopped = [], [], [], 0.0, math.inf, False
        for step, (x, y) in zip(range(num_steps), _cycle(batches)):
            lr = start_lr * ratio ** step
            for group in opt.param_groups:
                group["lr"] = lr
            loss = loss_fn(model(x.to(device)), y.to(device))
            value = loss.item()
            lrs.append(lr)
            losses.append(value)
            if not math.isfinite(value):
                smoothed.append(math.nan)
                stopped = True
                break
            avg = smoothing * avg + (1 - smoothing) * value
            smoothed.append(avg / (1 - smoothing ** (step + 1)))
            best = min(best, smoothed[-1])
            if step > 0 and smoothed[-1] > diverge_factor * best:
                stopped = True
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    finally:
        model.load_state_dict(saved)
        model.to(home)
        model.train(was_training)
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
        if gen_state is not None:
            gen.set_state(gen_state)
    finite = [(s, lr) for s, lr in zip(smoothed, lrs) if math.isfinite(s)]
    if not finite:
        raise ValueError(f"the loss at the first step (lr {start_lr:.3g}) was {losses[0]}: check the data and "
                         "the model before choosing a learning rate")
    best_lr = min(finite)[1]
    slopes = [(smoothed[i + 1] - smoothed[i - 1]) / math.log10(lrs[i + 1] / lrs[i - 1])
              for i in range(1, len(finite) - 1)]
    steepest_lr = lrs[1 + min(range(len(slopes)), key=slopes.__getitem__)] if slopes else best_lr
    return RangeTestResult(lrs, losses, smoothed, stopped, best_lr, steepest_lr)
