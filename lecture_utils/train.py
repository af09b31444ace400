"""Training and evaluation: ``fit`` returns a per-epoch history; a non-finite loss stops it loudly.

A step, as ``fit`` takes it: the learning rate from the schedule, the forward pass, the cross-entropy
loss, a check that it is finite, the backward pass and an SGD (Nesterov momentum) update.

Speed without changing what is computed:
- conv nets train in channels_last (NHWC), on CUDA and on the CPU (``channels_last(model, device)``,
  measured with ``bench/bench_models.py``); the model comes back in the default layout;
- on CUDA the forward pass autocasts to bfloat16 (compute capability 8.0 and up) or float16 with a
  gradient scaler (below, e.g. a T4), see ``device.precision_for``; the CPU and MPS train in float32,
  and a CPU run repeats bitwise for a seed.

``fit(..., checkpoint="run.pt")`` saves the run after every epoch and ``Checkpoint("run.pt", resume=True)``
continues it (``lecture_utils.checkpoint``); Ctrl-C stops at the end of a step.
"""

import contextlib
import functools
import math
import os
import signal
import sys
import threading
import time

import torch
import torch.nn.functional as F
from torch import nn

from lecture_utils.checkpoint import Checkpoint
from lecture_utils.data import DeviceBatches
from lecture_utils.device import get_device, precision_for, seed_everything
from lecture_utils.profiles import PROGRESS_ENV  # "1": a progress bar per epoch (off by default)

SCHEDULES = ("constant", "cosine", "linear", "step")
OPTIMIZERS = ("sgd", "adam", "adamw")
CHECK_EVERY = {"cpu": 1, "cuda": 25, "mps": 25}  # steps between loss checks: on a GPU a check waits for it


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; ``history`` holds the epochs finished before."""

    def __init__(self, message, history):
        super().__init__(message)
        self.history = history


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C or a kernel interrupt stopped ``fit`` at the end of a step; ``history`` holds the finished epochs.

    A KeyboardInterrupt, so a notebook's "run all" stops here too.
    """

    def __init__(self, message, history, epoch, step):
        super().__init__(message)
        self.history, self.epoch, self.step = history, epoch, step


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


def channels_last(model, device):
    """Whether ``fit`` and ``evaluate`` run ``model`` in channels_last (NHWC) on ``device``.

    A model can decide itself with an attribute ``model.channels_last = True / False``. Otherwise every
    model with a 2-D convolution, on CUDA (tensor cores want NHWC) and on the CPU (oneDNN's convolutions
    and pooling run on NHWC without reordering every tensor: training 1.1-1.8x faster for the notebooks'
    conv nets on 2 threads, measured with bench/bench_models.py, except the narrowest ResNet,
    ``cifar_resnet(8, width=8)``, 8% slower); never on MPS.
    """
    choice = getattr(model, "channels_last", None)
    if isinstance(choice, bool):
        return choice
    has_conv = any(isinstance(m, nn.Conv2d) for m in model.modules())
    return has_conv and torch.device(device).type in ("cuda", "cpu")


# On the CPU, PyTorch's NHWC batch norm works on 16 channels at a time (one AVX-512 register of float32):
# with a channel count that is not a multiple of 16 it is 2-5x slower than in NCHW (measured: 8 channels at
# 32x32, fwd + bwd, 8.2 ms against 1.5 ms). Such a layer gets its input in NCHW and gives NHWC back: the
# two copies cost far less than the difference.
def _batch_norm_in_nchw(model, device):
    """Hooks that run the CPU-slow batch norms of a channels_last ``model`` in NCHW; a list of handles."""
    if torch.device(device).type != "cpu":
        return []
    slow = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d) and m.num_features % 16]
    to_nchw = lambda module, args: (args[0].contiguous(),)  # noqa: E731
    to_nhwc = lambda module, args, out: out.contiguous(memory_format=torch.channels_last)  # noqa: E731
    return [h for m in slow for h in (m.register_forward_pre_hook(to_nchw), m.register_forward_hook(to_nhwc))]


@contextlib.contextmanager
def _memory_format(model, device):
    """Inside: ``model`` in the layout it runs fastest in, and that memory format for its inputs.

    The model is handed back in the default (contiguous) layout, so its weights ``.view`` as usual.
    """
    if not channels_last(model, device):
        yield torch.preserve_format
        return
    model.to(memory_format=torch.channels_last)
    hooks = _batch_norm_in_nchw(model, device)
    try:
        yield torch.channels_last
    finally:
        for hook in hooks:
            hook.remove()
        model.to(memory_format=torch.contiguous_format)


def _prepare(x, device, memory_format):
    """A batch of images on ``device``, in ``memory_format`` (4-D images only)."""
    return x.to(device, memory_format=memory_format if x.ndim == 4 else torch.preserve_format)


def _autocast(device, dtype):
    """Autocast to ``dtype`` on ``device`` (a no-op for None: float32)."""
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def _progress(batches, description):
    """``batches``, with a progress bar when ``$LECTURE_PROGRESS`` is 1."""
    if os.environ.get(PROGRESS_ENV) != "1":
        return batches
    from tqdm.auto import tqdm

    return tqdm(batches, desc=description, leave=False)


@torch.no_grad()
def evaluate(model, batches, device=None):
    """Mean cross-entropy loss and error rate of ``model`` over ``batches`` of (images, labels)."""
    device = get_device(device)
    with _memory_format(model, device) as memory_format:
        return _evaluate(model, batches, device, memory_format)


@torch.no_grad()
def _evaluate(model, batches, device, memory_format):
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device)
    wrong = torch.zeros((), device=device, dtype=torch.long)
    n, dtype = 0, precision_for(device)
    for x, y in batches:
        _check_batch(x, y, "the batches")
        x, y = _prepare(x, device, memory_format), y.to(device)
        with _autocast(device, dtype):
            logits = model(x)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
        wrong += (logits.argmax(1) != y).sum()
        n += len(y)
    model.train(was_training)
    if n == 0:
        raise ValueError("evaluate got no batches: the data set is empty")
    return {"loss": loss_sum.item() / n, "error": wrong.item() / n}


def _name_of(fn):
    """A name for a penalty that is the same in every process (no memory addresses): ``l1_penalty(1e-05)``."""
    if fn is None:
        return None
    if isinstance(fn, functools.partial):
        args = [repr(a) for a in fn.args] + [f"{k}={v!r}" for k, v in fn.keywords.items()]
        return f"{_name_of(fn.func)}({', '.join(args)})"
    return getattr(fn, "__qualname__", type(fn).__qualname__)


def fit(model, train_batches, val_batches=None, *, epochs, lr, momentum=0.9, weight_decay=5e-4, schedule="cosine",
        warmup_epochs=0.0, penalty=None, device=None, verbose=False, checkpoint=None):
    """Train ``model`` for ``epochs`` over ``train_batches`` with SGD; return a ``History``.

    SGD with Nesterov momentum (plain SGD at ``momentum=0``); ``weight_decay`` on the weights, not on
    biases and norm scales. ``lr`` is the peak learning rate of ``schedule`` (constant, cosine, linear
    or step), reached after a linear warm-up of ``warmup_epochs``. ``val_batches``: evaluated after every
    epoch. ``verbose``: print a line every epoch (True), every ``verbose``-th epoch (an int) or never.

    The loss is checked for NaN/Inf before each update (every step on the CPU; every 25 on a GPU,
    where a check waits for the device): a bad loss raises ``TrainingDiverged`` naming the step, the
    learning rate and whether that step's images held NaN.

    ``penalty``: a function ``model -> scalar tensor`` added to each step's loss before the backward
    pass (an L1 term on the weights, a sparsity term on hidden units the model kept from its forward
    pass); ``train_loss`` in the history stays the cross-entropy alone.

    ``checkpoint``: None, a file (saved after every epoch) or a ``Checkpoint(path, every=1,
    minutes=None, resume=False)``; with ``resume=True`` a rerun continues from the last saved epoch.
    Ctrl-C (a kernel interrupt) stops at the end of the current step and raises
    ``TrainingInterrupted``, which holds the finished epochs and says how to resume.
    """
    _check_arguments(epochs, lr, schedule, warmup_epochs, penalty)
    if checkpoint is not None and not isinstance(checkpoint, Checkpoint):
        checkpoint = Checkpoint(checkpoint)
    device = get_device(device)
    steps_per_epoch = len(train_batches)
    if steps_per_epoch == 0:
        raise ValueError("train_batches is empty: there is nothing to train on")
    total_steps, warmup_steps = epochs * steps_per_epoch, int(warmup_epochs * steps_per_epoch)
    check_every = CHECK_EVERY.get(device.type, 25)
    dtype = precision_for(device)
    run = None
    if checkpoint is not None:  # checks the files before any training
        settings = dict(epochs=epochs, lr=float(lr), momentum=float(momentum), weight_decay=float(weight_decay),
                        schedule=schedule, warmup_epochs=float(warmup_epochs), steps_per_epoch=steps_per_epoch,
                        device=device.type, penalty=_name_of(penalty))
        run = checkpoint.start(settings, _generators(train_batches=train_batches, val_batches=val_batches))
    model.to(device)
    with _StopAtStepEnd() as stop, _memory_format(model, device) as memory_format:
        opt = make_optimizer("sgd", model.parameters(), lr, momentum, weight_decay)
        scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)  # float16 needs loss scaling
        rows, step = ([], 0) if run is None else run.restore(model, opt, scaler)
        history = History(rows)
        epoch = len(history) + 1
        try:
            for epoch in range(len(history) + 1, epochs + 1):
                model.train()
                start, losses, unchecked, wrong, seen = time.perf_counter(), [], [], 0, 0
                for x, y in _progress(train_batches, f"epoch {epoch}/{epochs}"):
                    _check_batch(x, y, "train_batches")
                    x, y = _prepare(x, device, memory_format), y.to(device)
                    step_lr = learning_rate(schedule, lr, step, total_steps, warmup_steps)
                    for group in opt.param_groups:
                        group["lr"] = step_lr
                    with _autocast(device, dtype):
                        logits = model(x)
                    loss = F.cross_entropy(logits.float(), y)
                    losses.append(loss.detach())
                    unchecked.append((step, step_lr, losses[-1], torch.isfinite(x).all()))
                    if len(unchecked) == check_every:  # before the update: the weights stay the last good ones
                        _check_finite(unchecked, steps_per_epoch, history)
                        unchecked.clear()
                    if penalty is not None:
                        loss = loss + penalty(model)
                    opt.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    scaler.step(opt)
                    scaler.update()
                    wrong += (logits.detach().argmax(1) != y).sum()
                    seen += len(y)
                    step += 1
                    if stop.requested:
                        raise KeyboardInterrupt
                _check_finite(unchecked, steps_per_epoch, history)
                row = {"epoch": epoch, "train_loss": torch.stack(losses).mean().item(),
                       "train_error": int(wrong) / seen}
                if val_batches is not None:
                    val = _evaluate(model, val_batches, device, memory_format)
                    row.update(val_loss=val["loss"], val_error=val["error"])
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                seconds = time.perf_counter() - start
                row.update(lr=step_lr, seconds=seconds, images_per_second=seen / seconds)
                history.append(row)
                _report(row, epochs, verbose, val_batches is not None)
                if run is not None:
                    run.after_epoch(model, opt, scaler, history, step, last=epoch == epochs)
        except KeyboardInterrupt:
            raise _interrupted(history, epoch, step, steps_per_epoch, run) from None
    return history


def train_one_seed(make_model, images, labels, *, seed, batch_size, epochs, lr, val_batches=None, augment=None,
                   mean=None, std=None, device=None, **fit_options):
    """One seeded run: ``seed_everything(seed)``, ``make_model()``, batches shuffled with ``seed``, ``fit``.

    Runs of two conditions with the same seed start from the same random state and see the batches in
    the same order, so their results pair up seed by seed (``stats.compare``). ``augment``, ``mean`` and
    ``std`` go to ``DeviceBatches`` (which draws the augmentation from the same seeded generator);
    ``fit_options`` (momentum, weight_decay, schedule, warmup_epochs, penalty, verbose, checkpoint) to
    ``fit``. Returns ``(model, history)``.
    """
    if isinstance(make_model, nn.Module) or not callable(make_model):
        raise TypeError(f"make_model must be a function that builds a model (e.g. lenet, or lambda: "
                        f"cifar_resnet(20)), got {type(make_model).__name__}: a new model is built for each seed")
    device = get_device(device)
    seed_everything(seed)
    model = make_model()
    if not isinstance(model, nn.Module):
        raise TypeError(f"make_model() must return a torch.nn.Module, got {type(model).__name__}")
    batches = DeviceBatches(images, labels, batch_size, shuffle=True, augment=augment, mean=mean, std=std,
                            device=device, seed=seed)
    history = fit(model, batches, val_batches, epochs=epochs, lr=lr, device=device, **fit_options)
    return model, history


def _check_arguments(epochs, lr, schedule, warmup_epochs, penalty):
    """ValueError/TypeError naming the first bad argument, before any work."""
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    if not (isinstance(lr, (int, float)) and not isinstance(lr, bool) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    learning_rate(schedule, lr, 0, 1)  # validates the schedule's name
    if not (isinstance(warmup_epochs, (int, float)) and not isinstance(warmup_epochs, bool)
            and math.isfinite(warmup_epochs) and warmup_epochs >= 0):
        raise ValueError(f"warmup_epochs must be a number >= 0, got {warmup_epochs!r}")
    if penalty is not None and not callable(penalty):
        raise TypeError(f"penalty must be a function model -> scalar tensor or None, got {type(penalty).__name__}")


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


def _check_finite(unchecked, steps_per_epoch, history):
    """Raise TrainingDiverged at the first non-finite loss of ``unchecked`` (step, lr, loss, inputs finite) steps.

    One transfer from the device for all of them: on a GPU this is the sync that ``CHECK_EVERY`` spaces out.
    """
    if not unchecked:
        return
    finite = torch.isfinite(torch.stack([loss for _, _, loss, _ in unchecked]).float()).cpu()
    if bool(finite.all()):
        return
    step, lr, loss, inputs_finite = unchecked[int((~finite).nonzero()[0])]
    epoch, in_epoch = step // steps_per_epoch + 1, step % steps_per_epoch + 1
    where = (f"the loss became {loss.item()} at epoch {epoch}, step {in_epoch} of {steps_per_epoch} "
             f"(global step {step + 1})")
    if not bool(inputs_finite):
        advice = ("that step's input images hold NaN or infinite values: check the data and the augmentation "
                  "(the learning rate is not the cause)")
    else:
        advice = (f"with learning rate {lr:.4g}. Lower the learning rate (halve it until the loss stops "
                  "diverging) or add warm-up; if the data or the augmentation can make NaN, check them first")
    raise TrainingDiverged(f"training diverged: {where}; {advice}; the {len(history)} finished epochs are in "
                           "this error's .history.", history)


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


def _interrupted(history, epoch, step, steps_per_epoch, run):
    """The TrainingInterrupted to raise: where it stopped (``step`` steps done), what is kept, how to resume."""
    history.interrupted = True
    stopped = (f"training interrupted at epoch {epoch}, step {step - (epoch - 1) * steps_per_epoch} of "
               f"{steps_per_epoch} (global step {step}): the model keeps the weights of that step, and this "
               f"error's .history holds the {len(history)} finished epoch(s) "
               "(in a notebook: history = sys.last_value.history).")
    if run is None:
        how = " Checkpointing was off, so a rerun starts at epoch 1: pass checkpoint='run.pt' to make a run resumable."
    else:
        how = " " + run.how_to_resume()
    return TrainingInterrupted(stopped + how, history, epoch, step)


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
