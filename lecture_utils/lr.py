"""Picking the learning rate: the lecture's halving rule, and an LR range test (Smith 2017, fastai's ``lr_find``).

The lecture's rule: "run on a subset of the data: start with a large learning
rate and divide by 2 until the loss does not diverge". ``find_lr_by_halving``
automates it around any ``train_fn(lr) -> loss curve``, and reads "does not
diverge" as "trains": a short run passes only when its loss fell by a margin
that matters (``judge_run``), so a run that stalled at chance (a net whose
ReLUs died, flat at ln 10 = 2.30 for 10 classes) is not taken for a good rate.
``lr_range_test`` instead raises the learning rate exponentially during one
short run and watches where the smoothed loss falls fastest and where it blows
up; the model's weights (and the random generators) are put back afterwards.
"""

import copy
import math
from collections.abc import Iterator
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

LEARNED, DIVERGED, DID_NOT_LEARN = "learned", "diverged", "did not learn"


def judge_run(losses, *, min_drop=0.2, diverge_factor=2.0, window=None):
    """``(verdict, reason)`` for one short run's loss curve: ``"learned"``, ``"diverged"`` or ``"did not learn"``.

        start = losses[0]                # the loss before training (about ln 10 = 2.30 for 10 classes)
        end   = mean(losses[-window:])   # where the run ended (window: the last fifth of the curve by default)
        diverged:      a loss is NaN or infinite, a loss exceeds diverge_factor * start (it blew up),
                       or end >= (1 + min_drop) * start (it ended clearly higher than it started)
        learned:       end <= (1 - min_drop) * start (the loss fell by at least min_drop: 20% by default)
        did not learn: otherwise (flat at chance as a dead net, or barely lower or higher than at the start)

    ``reason`` says it with the numbers.
    """
    if not losses:
        raise ValueError("judge_run needs a non-empty loss curve")
    bad = [i for i, v in enumerate(losses) if not math.isfinite(v)]
    if bad:
        return DIVERGED, f"loss {losses[bad[0]]} at point {bad[0] + 1}"
    start = losses[0]
    if start <= 0:
        raise ValueError(f"the first loss is {start:.4g}: the halving rule compares losses by ratio and needs a "
                         "positive loss before training (a cross-entropy, a squared error)")
    peak = max(losses)
    if peak > diverge_factor * start:
        return DIVERGED, f"loss rose to {peak:.4g} > {diverge_factor:g} x first {start:.4g}"
    w = window or max(1, len(losses) // 5)
    end = sum(losses[-w:]) / len(losses[-w:])
    change = f"{start:.4g} to {end:.4g} ({abs(1 - end / start):.0%} {'lower' if end < start else 'higher'})"
    if end >= (1 + min_drop) * start:
        return DIVERGED, f"loss rose from {change}"
    if end <= (1 - min_drop) * start:
        return LEARNED, f"loss fell from {change}"
    return DID_NOT_LEARN, f"loss went from {change}; a run that learns ends at least {min_drop:.0%} lower"


@dataclass
class LRTrial:
    """One short run of the halving rule: its learning rate, loss curve and verdict (and why)."""

    lr: float
    losses: list
    verdict: str  # "learned", "diverged" or "did not learn"
    reason: str = ""

    @property
    def passed(self):
        return self.verdict == LEARNED

    @property
    def diverged(self):
        return self.verdict == DIVERGED


@dataclass
class HalvingResult:
    """``lr``: the largest learning rate tried whose short run learned; ``trials``: every run, largest rate first
    (the ones above ``lr`` were rejected, each as "diverged" or "did not learn")."""

    lr: float
    trials: list = field(default_factory=list)

    def __str__(self):
        lines = [f"{'lr':>10}  {'first loss':>10}  {'last loss':>10}  verdict"]
        for t in self.trials:
            first = f"{t.losses[0]:.4g}" if t.losses else "-"
            last = f"{t.losses[-1]:.4g}" if t.losses else "-"
            lines.append(f"{t.lr:>10.4g}  {first:>10}  {last:>10}  {t.verdict}: {t.reason}")
        lines.append(f"chosen: lr = {self.lr:.4g} (after {len(self.trials) - 1} halving(s))")
        return "\n".join(lines)


class NoStableLearningRate(RuntimeError):
    """No learning rate down to ``min_lr`` learned; ``trials`` holds the runs."""

    def __init__(self, message, trials):
        super().__init__(message)
        self.trials = trials


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


def find_lr_by_halving(train_fn, start_lr, min_lr=1e-6, factor=2.0, verbose=False, *, min_drop=0.2,
                       diverge_factor=2.0, window=None):
    """Run ``train_fn(lr)`` from ``start_lr``, dividing by ``factor`` until a run learns.

    ``train_fn(lr)`` trains briefly (on a subset) from the same initial weights
    and returns its loss curve, starting with the loss before any update. Each
    run is judged by ``judge_run``: "learned" when the mean of the last fifth
    of the curve (``window`` points) is at least ``min_drop`` below the first
    loss, "diverged" when a loss is NaN/inf, exceeds ``diverge_factor`` times
    the first, or the run ended ``min_drop`` or more above it (a
    ``TrainingDiverged`` from ``fit`` too), else "did not learn".
    The first rate that learns is returned: the largest one tried that learns,
    never one above a rejected rung. Returns a ``HalvingResult``; raises
    ``NoStableLearningRate`` if no rate down to ``min_lr`` learned.
    """
    if not callable(train_fn):
        raise TypeError(f"train_fn must be a function lr -> loss curve, got {type(train_fn).__name__}")
    lr, min_lr, factor = _positive("start_lr", start_lr), _positive("min_lr", min_lr), _positive("factor", factor)
    if min_lr > lr:
        raise ValueError(f"min_lr ({min_lr:.4g}) must not exceed start_lr ({lr:.4g})")
    if factor <= 1:
        raise ValueError(f"factor must be > 1 (the learning rate is divided by it), got {factor!r}")
    if isinstance(min_drop, bool) or not isinstance(min_drop, (int, float)) or not 0 < min_drop < 1:
        raise ValueError(f"min_drop must be a fraction in (0, 1), e.g. 0.2 (the loss must fall by 20%), "
                         f"got {min_drop!r}")
    if _positive("diverge_factor", diverge_factor) <= 1:
        raise ValueError(f"diverge_factor must be > 1, got {diverge_factor!r}")
    if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 1):
        raise ValueError(f"window must be a positive int (points at the end of the curve) or None, got {window!r}")
    trials = []
    while lr >= min_lr * (1 - 1e-12):
        try:
            losses = _curve(train_fn(lr), lr)
            verdict, reason = judge_run(losses, min_drop=min_drop, diverge_factor=diverge_factor, window=window)
        except TrainingDiverged as err:
            losses = [row["train_loss"] for row in err.history] + [math.nan]
            verdict, reason = DIVERGED, str(err).split(";")[0]
        trials.append(LRTrial(lr, losses, verdict, reason))
        if verbose:
            print(f"lr {lr:.4g}: {verdict} ({reason})")
        if verdict == LEARNED:
            return HalvingResult(lr, trials)
        lr /= factor
    counts = {v: sum(t.verdict == v for t in trials) for v in (DIVERGED, DID_NOT_LEARN)}
    raise NoStableLearningRate(f"no learning rate from {start_lr:.4g} down to {trials[-1].lr:.4g} learned "
                               f"({counts[DIVERGED]} diverged, {counts[DID_NOT_LEARN]} did not learn; "
                               f"min_lr={min_lr:.4g}): lower min_lr, run longer, or check the data and the model",
                               trials)


# ---------------------------------------------------------------- the range test

@dataclass
class RangeTestResult:
    """Learning rates tried (one per step), raw and smoothed losses, and two readings of the curve."""

    lrs: list
    losses: list
    smoothed: list
    stopped_early: bool
    best_lr: float  # where the smoothed loss was lowest
    steepest_lr: float  # where the smoothed loss fell fastest per decade of learning rate, up to its lowest point

    @property
    def suggestion(self):
        """The classic reading: a tenth of the learning rate at the lowest smoothed loss."""
        return self.best_lr / 10

    def __str__(self):
        end = "stopped: the smoothed loss blew up" if self.stopped_early else "ran to end_lr"
        return (f"LR range test, {len(self.lrs)} steps from {self.lrs[0]:.3g} to {self.lrs[-1]:.3g} ({end}); "
                f"lowest smoothed loss at {self.best_lr:.3g}, steepest descent at {self.steepest_lr:.3g}, "
                f"suggestion (lowest / 10) {self.suggestion:.3g}")


def _cycle(batches, num_steps):
    """The batches again and again; a one-shot iterator (a generator) is read once and must hold enough."""
    one_shot = isinstance(batches, Iterator)  # a generator, iter(list): it has __next__, it is read only once
    seen = 0
    while True:
        for batch in batches:
            seen += 1
            yield batch
        if seen == 0:
            raise ValueError("batches is empty: the range test needs at least one batch")
        if one_shot:
            raise ValueError(f"batches ran out after {seen} batch(es): it is a one-shot iterator (a generator?), "
                             f"which cannot be read again; pass a re-iterable (a list, DeviceBatches, a DataLoader) "
                             f"or an iterator of at least num_steps={num_steps} batches")


def lr_range_test(model, batches, *, start_lr=1e-6, end_lr=10.0, num_steps=100, loss_fn=None, smoothing=0.98,
                  diverge_factor=4.0, optimizer="sgd", momentum=0.9, weight_decay=0.0, nesterov=False, device=None):
    """Train ``model`` for up to ``num_steps`` steps while the learning rate grows from ``start_lr`` to ``end_lr``.

    The learning rate grows by the same factor every step; the loss is
    smoothed exponentially (``smoothing``, bias-corrected as in fastai; 0 or
    None: no smoothing) and the test stops when the smoothed loss exceeds
    ``diverge_factor`` times its best or a loss is not finite. ``batches``
    (images, labels) are cycled as needed (a one-shot iterator such as a
    generator is read once, so it must hold ``num_steps`` batches).
    Two readings: ``best_lr``, where the smoothed loss is lowest, and
    ``steepest_lr``, where it falls fastest per decade of learning rate,
    looked for only up to the lowest point (as torch-lr-finder's suggestion):
    past it the loss rises and the slope there says nothing about training.
    Afterwards the model's parameters and buffers, its train/eval mode, the
    torch random generators and a ``DeviceBatches`` generator are as before.
    """
    start_lr, end_lr = _positive("start_lr", start_lr), _positive("end_lr", end_lr)
    if end_lr <= start_lr:
        raise ValueError(f"end_lr ({end_lr:.4g}) must be larger than start_lr ({start_lr:.4g})")
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 2:
        raise ValueError(f"num_steps must be an int >= 2, got {num_steps!r}")
    if smoothing is None:
        smoothing = 0.0
    if isinstance(smoothing, bool) or not isinstance(smoothing, (int, float)) or not 0 <= smoothing < 1:
        raise ValueError(f"smoothing must be a number in [0, 1) (0 or None: no smoothing), got {smoothing!r}")
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
        for step, (x, y) in zip(range(num_steps), _cycle(batches, num_steps)):
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
    lowest = min(range(len(finite)), key=lambda i: finite[i][0])  # the finite points come first, in order
    best_lr = lrs[lowest]
    # slope_i = (s[i+1] - s[i-1]) / log10(lr[i+1] / lr[i-1]): the loss change per decade, from the start to the lowest
    slopes = {i: (smoothed[i + 1] - smoothed[i - 1]) / math.log10(lrs[i + 1] / lrs[i - 1])
              for i in range(1, min(lowest + 1, len(finite) - 1))}
    steepest = min(slopes, key=slopes.get) if slopes else lowest
    steepest_lr = lrs[steepest] if slopes and slopes[steepest] < 0 else best_lr
    return RangeTestResult(lrs, losses, smoothed, stopped, best_lr, steepest_lr)
