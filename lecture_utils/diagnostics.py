"""Debugging a network that does not work: numbers to look at before believing a training curve.

- ``gradient_check``: centered finite differences against autograd, entry by entry: an entry passes when
  |analytic - numeric| <= atol + tol |numeric| (torch.allclose's rule), and CS231n's relative error is read
  out; ``model_gradient_check`` does it for a few sampled entries of every parameter.
- ``gradient_norms``: the gradient's norm per layer (or per parameter).
- ``unit_statistics``: dead units, sparsity and correlation of one layer's activations (samples x units).
- ``filter_statistics``: how correlated and how smooth a conv layer's filters are, and how much of their random
  start is left.
- ``relu_inputs``: what every ReLU of a model saw on a batch (how close to the kink at 0).
- ``overfit_subset``: train on a few images and check that the training error reaches 0.
- ``constant_output_loss``: the loss a constant output gets, to catch a loss with a degenerate minimum.

The functions are short on purpose: each formula can be read off the code (CS231n's
``gradient_check.py`` is the model).
"""

import copy
import math
import warnings
from dataclasses import dataclass, field

import torch

__all__ = [
    "READING", "reading", "GradientCheck", "gradient_check", "model_gradient_check", "gradient_norms",
    "unit_statistics", "filter_statistics", "relu_inputs", "OverfitCheck", "overfit_subset", "constant_output_loss",
]

# CS231n's reading of the relative error (https://cs231n.github.io/neural-networks-3/#gradcheck).
READING = (
    (1e-7, "fine: the gradient is right"),
    (1e-4, "probably right; close to 1e-4 it is acceptable only where the function has kinks (ReLU, max)"),
    (1e-2, "suspicious: look for a bug"),
    (math.inf, "wrong: the gradient has a bug"),
)


def reading(relative_error):
    """CS231n's verdict on a relative error: about 1e-7 fine, 1e-4 suspicious, 1e-2 and above wrong."""
    for limit, words in READING:
        if relative_error <= limit:
            return words
    return READING[-1][1]  # NaN


def _positive(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


FLOAT64_EPS = torch.finfo(torch.float64).eps  # 2.2e-16: the relative rounding of one float64 operation


@dataclass
class GradientCheck:
    """What ``gradient_check`` found: the verdict, the entries that failed, the worst relative errors."""

    max_relative_error: float
    passed: bool
    tol: float  # rtol: the relative part of the tolerance
    eps: float
    n_checked: int
    worst: list = field(default_factory=list)  # dicts: input, index, analytic, numeric, error, allowed, relative_error
    converted: list = field(default_factory=list)  # indices of inputs checked as float64 copies
    names: tuple = ()
    by_input: dict = field(default_factory=dict)  # name -> the largest relative error among its checked entries
    atol: float = 0.0  # the absolute part of the tolerance
    failed: list = field(default_factory=list)  # the entries with |analytic - numeric| > atol + tol * |numeric|
    n_failed: int = 0

    @property
    def reading(self):
        return reading(self.max_relative_error)

    def __str__(self):
        verdict = "passed" if self.passed else f"FAILED at {self.n_failed:,} of"
        lines = [f"gradient check {verdict} {self.n_checked:,} entries: |analytic - numeric| <= atol + rtol |numeric| "
                 f"with atol {self.atol:.1e}, rtol {self.tol:.0e} (eps {self.eps:.0e}); max relative error "
                 f"{self.max_relative_error:.2e}: {self.reading}"]
        shown = self.failed if self.failed else self.worst
        if shown:
            lines.append("  failed entries:" if self.failed else "  worst entries:")
        for w in shown:
            lines.append(f"  {w['input']}{list(w['index'])}: analytic {w['analytic']:+.6e}, numeric "
                         f"{w['numeric']:+.6e}, |difference| {w['error']:.2e} (allowed {w['allowed']:.2e}), "
                         f"relative error {w['relative_error']:.2e}")
        if self.n_failed > len(self.failed):
            lines.append(f"  ... and {self.n_failed - len(self.failed):,} more failed entries")
        return "\n".join(lines)

    __repr__ = __str__


def _as_inputs(inputs):
    """``inputs`` as a tuple of tensors (one tensor is allowed), or a TypeError that says what is allowed."""
    if isinstance(inputs, torch.Tensor):
        inputs = (inputs,)
    if not isinstance(inputs, (tuple, list)) or not inputs:
        raise TypeError(f"inputs must be a tensor or a non-empty tuple of tensors, got {type(inputs).__name__}")
    for i, x in enumerate(inputs):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"inputs[{i}] must be a tensor, got {type(x).__name__}")
        if x.is_complex():
            raise TypeError(f"inputs[{i}] is complex ({str(x.dtype).replace('torch.', '')}): gradient_check compares "
                            "real gradients; check the real and imaginary parts as two real inputs "
                            "(torch.view_as_real)")
    return tuple(inputs)


def _scalar(out, where):
    """The float value of ``f``'s output, which must be a one-element floating point tensor."""
    if not isinstance(out, torch.Tensor) or out.numel() != 1 or not out.is_floating_point():
        what = f"a tensor of shape {tuple(out.shape)} and dtype {out.dtype}" if isinstance(out, torch.Tensor) \
            else type(out).__name__
        raise ValueError(f"f(*inputs) must return a scalar floating point tensor (e.g. a loss), got {what} {where}")
    return out


def _names(names, inputs):
    if names is None:
        return tuple(f"input {i}" for i in range(len(inputs)))
    if isinstance(names, str) or not hasattr(names, "__len__") or len(names) != len(inputs):
        raise ValueError(f"names must give one name per input ({len(inputs)} inputs), got {names!r}")
    return tuple(map(str, names))


def gradient_check(f, inputs, eps=1e-6, tol=1e-5, *, atol=None, num_checks=None, seed=0, n_worst=3, names=None):
    """Compare autograd's gradient of ``f(*inputs)`` with centered finite differences, entry by entry.

    ``inputs`` is a tuple of tensors and ``f(*inputs)`` returns a scalar tensor, as with
    ``torch.autograd.gradcheck``; the inputs with ``requires_grad=True`` are checked. Everything runs in
    float64: a float32 input is checked as a float64 copy, with a warning (in float32 the differences
    would be mostly rounding error). For each checked entry x_i (CS231n's gradient_check.py, with
    the tolerance of torch.allclose and gradcheck):

        numeric_i  = (f(x + eps e_i) - f(x - eps e_i)) / (2 eps)
        ok_i       = |analytic_i - numeric_i| <= atol + tol * |numeric_i|
        relative_i = |analytic_i - numeric_i| / max(|analytic_i|, |numeric_i|, atol / tol)

    ``atol`` covers what the difference quotient cannot resolve: f is known to about FLOAT64_EPS * |f|, so
    numeric_i carries rounding noise of about FLOAT64_EPS * |f| / eps (1e-9 for a loss of 2.3, 1e-6 for a
    summed loss of 2,000 at eps = 1e-6). By default (``atol=None``) it is 10 times that, with |f| the largest
    |f| the check evaluated: entries whose gradient is about 0 then pass on noise alone, and a gradient off
    by 1e-3 (or by 1e-5 of its size, ``tol``) is still caught. ``relative_i`` is CS231n's relative error
    (read with ``reading``) with that floor, so it is at most ``tol`` where an entry passes on ``atol``.
    ``num_checks``: check that many entries per input, sampled with ``seed`` (CS231n's
    ``grad_check_sparse``), instead of all of them. The check passes when every entry is ok; ``failed``
    lists the first ``n_worst`` failed entries (input, index, analytic, numeric), worst first.
    """
    inputs = _as_inputs(inputs)
    eps, tol = _positive("eps", eps), _positive("tol", tol)
    if atol is not None:
        atol = _positive("atol", atol)
    if num_checks is not None and (isinstance(num_checks, bool) or not isinstance(num_checks, int) or num_checks < 1):
        raise ValueError(f"num_checks must be a positive int or None (all entries), got {num_checks!r}")
    names = _names(names, inputs)
    checked = [i for i, x in enumerate(inputs) if x.requires_grad]
    if not checked:
        raise ValueError("no input has requires_grad=True: mark the tensors to check, as for torch.autograd.gradcheck")
    converted = [i for i in checked if inputs[i].dtype != torch.float64]
    xs = []  # float64 copies: the caller's tensors are never touched
    for x in inputs:
        xs.append(x.detach().double().requires_grad_(x.requires_grad) if x.is_floating_point() else x)
    if converted:
        which = ", ".join(f"{names[i]} ({str(inputs[i].dtype).replace('torch.', '')})" for i in converted)
        warnings.warn(f"gradient_check: {which} not float64; checking float64 copies instead "
                      "(finite differences in float32 are mostly rounding error)", stacklevel=2)

    # Analytic gradient.
    out = _scalar(f(*xs), "")
    if not out.requires_grad:
        raise ValueError("f(*inputs) does not depend differentiably on the inputs (its output has no grad_fn): "
                         "it may detach, round or argmax them, or run under torch.no_grad()")
    if out.dtype != torch.float64:
        warnings.warn(f"gradient_check: f returns {out.dtype}, so it computes in lower precision than the float64 "
                      "inputs (a module with float32 parameters?): expect relative errors of 1e-4 or more",
                      stacklevel=2)
    grads = torch.autograd.grad(out, [xs[i] for i in checked], allow_unused=True)

    # Numeric gradient, one entry at a time.
    generator = torch.Generator().manual_seed(seed)
    rows, largest_f = [], abs(out.item()) if math.isfinite(out.item()) else 0.0
    with torch.no_grad():
        for i, grad in zip(checked, grads):
            x = xs[i]
            grad = torch.zeros_like(x) if grad is None else grad
            flat, gflat = x.view(-1), grad.reshape(-1)
            if num_checks is None or num_checks >= flat.numel():
                picks = range(flat.numel())
            else:
                picks = torch.randint(flat.numel(), (num_checks,), generator=generator).tolist()
            for k in picks:
                old = flat[k].item()
                flat[k] = old + eps
                fp = _scalar(f(*xs), "at x + eps").item()
                flat[k] = old - eps
                fm = _scalar(f(*xs), "at x - eps").item()
                flat[k] = old
                largest_f = max([largest_f] + [abs(v) for v in (fp, fm) if math.isfinite(v)])
                rows.append({"input": names[i], "index": tuple(int(j) for j in _unravel(k, x.shape)),
                             "analytic": gflat[k].item(), "numeric": (fp - fm) / (2 * eps)})

    # The verdict: |a - n| <= atol + tol |n| for every entry.
    if atol is None:
        atol = 10 * FLOAT64_EPS * largest_f / eps or 10 * FLOAT64_EPS  # (f == 0 everywhere: no scale to go by)
    for r in rows:
        a, n = r["analytic"], r["numeric"]
        r["error"] = abs(a - n)
        r["allowed"] = atol + tol * abs(n)
        r["relative_error"] = r["error"] / max(abs(a), abs(n), atol / tol)
        r["ok"] = math.isfinite(r["error"]) and r["error"] <= r["allowed"]
    worst = sorted(rows, key=lambda r: -r["relative_error"] if math.isfinite(r["relative_error"]) else -math.inf)
    failed = [r for r in worst if not r["ok"]]
    max_err = max((r["relative_error"] for r in rows), default=0.0)
    if any(not math.isfinite(r["relative_error"]) for r in rows):
        max_err = math.nan
    by_input = {}
    for r in rows:
        by_input[r["input"]] = max(by_input.get(r["input"], 0.0), r["relative_error"])
    return GradientCheck(max_err, not failed, tol, eps, len(rows), worst[:n_worst], converted, names, by_input,
                         atol, failed[:n_worst], len(failed))


def _unravel(k, shape):
    index = []
    for size in reversed(shape):
        index.append(k % size)
        k //= size
    return tuple(reversed(index))


def model_gradient_check(model, loss_fn, inputs, targets, *, num_checks=5, eps=1e-6, tol=1e-5, atol=None, seed=0,
                         before_forward=None):
    """``gradient_check`` of ``loss_fn(model(inputs), targets)`` for ``num_checks`` sampled entries per parameter.

    The model is checked as a float64 copy in its current mode (train or eval; the original is not touched).
    ``before_forward()``, if given, runs before every forward pass (e.g. ``lambda: torch.manual_seed(0)``
    to give dropout the same mask in every evaluation).
    """
    from torch.func import functional_call

    net = copy.deepcopy(model).double()
    names = tuple(n for n, p in net.named_parameters() if p.requires_grad)
    params = tuple(p.detach().clone().requires_grad_() for n, p in net.named_parameters() if p.requires_grad)
    buffers = dict(net.named_buffers())
    x = inputs.double() if inputs.is_floating_point() else inputs

    def f(*ps):
        if before_forward is not None:
            before_forward()
        return loss_fn(functional_call(net, ({**dict(zip(names, ps)), **buffers}), (x,)), targets)

    return gradient_check(f, params, eps=eps, tol=tol, atol=atol, num_checks=num_checks, seed=seed, names=names)


def gradient_norms(model, loss=None, by="layer"):
    """The L2 norm of the gradient of each layer (``by="layer"``: weight and bias together) or each parameter.

    With ``loss`` the gradient is computed here (``torch.autograd.grad``; the parameters' ``.grad`` are left as
    they are); without it, the ``.grad`` of the last ``backward()`` is read. Returns ``{name: norm}`` in the
    model's order; a parameter without a gradient counts as 0.
    """
    if by not in ("layer", "parameter"):
        raise ValueError(f"by must be 'layer' or 'parameter', got {by!r}")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("the model has no trainable parameters")
    if loss is not None:
        _scalar(loss, "(the loss)")
        grads = torch.autograd.grad(loss, [p for _, p in named], retain_graph=True, allow_unused=True)
    else:
        grads = [p.grad for _, p in named]
        if all(g is None for g in grads):
            raise ValueError("no parameter has a .grad: call loss.backward() first, or pass the loss")
    squares = {}
    for (name, _), g in zip(named, grads):
        key = name.rpartition(".")[0] or name if by == "layer" else name
        squares[key] = squares.get(key, 0.0) + (0.0 if g is None else g.detach().double().pow(2).sum().item())
    return {k: math.sqrt(v) for k, v in squares.items()}


def _pairwise_abs_correlation(rows):
    """Mean |Pearson correlation| over all pairs of the rows of ``rows`` (float64, each row varies)."""
    z = rows - rows.mean(1, keepdim=True)
    z = z / z.norm(dim=1, keepdim=True)
    c = z @ z.T
    n = len(rows)
    return ((c.abs().sum() - c.diagonal().abs().sum()) / (n * (n - 1))).item()


def unit_statistics(activations, tol=0.0):
    """Dead units, sparsity and correlation of one layer's ``activations`` (samples x units).

    - ``dead_fraction``: units with |a| <= tol for every sample (a dead ReLU);
    - ``constant_fraction``: units whose value does not change across samples (dead or saturated: they ignore
      the input);
    - ``sparsity``: the fraction of entries with |a| <= tol;
    - ``live_sparsity``: the same among the units that are not dead: how selectively the working units respond
      (NaN when every unit is dead);
    - ``mean_abs_correlation``: mean |Pearson correlation| over pairs of units that vary (NaN if fewer than 2);
    - ``rank``: the numerical rank of the activations (singular values above 1e-6 of the largest): how many
      different units the layer really has; 1 when every unit copies one, 0 when all are dead.
    A conv layer's maps (N, C, H, W) become samples x units with ``a.flatten(1)`` (every position a unit)
    or ``a.mean((2, 3))`` (one unit per channel).
    """
    if not isinstance(activations, torch.Tensor):
        raise TypeError(f"activations must be a tensor (samples x units), got {type(activations).__name__}")
    if activations.ndim != 2:
        raise ValueError(f"activations must be 2-D (samples x units), got shape {tuple(activations.shape)}: "
                         "flatten conv maps first, e.g. a.flatten(1) or a.mean((2, 3))")
    n, units = activations.shape
    if n < 2 or units < 1:
        raise ValueError(f"activations of shape {tuple(activations.shape)}: need at least 2 samples and 1 unit "
                         "(a unit's statistics are over samples)")
    a = activations.detach().double()
    if not torch.isfinite(a).all():
        raise ValueError("activations hold NaN or infinite values")
    zero = a.abs() <= tol
    dead = zero.all(0)
    varies = (a.max(0).values - a.min(0).values) > tol
    live = a[:, varies].T
    corr = _pairwise_abs_correlation(live) if len(live) >= 2 else math.nan
    rank = int(torch.linalg.matrix_rank(a, rtol=1e-6)) if a.abs().max() > 0 else 0
    return {"units": units, "samples": n, "dead_fraction": dead.double().mean().item(),
            "constant_fraction": (~varies).double().mean().item(), "sparsity": zero.double().mean().item(),
            "live_sparsity": zero[:, ~dead].double().mean().item() if (~dead).any() else math.nan,
            "mean_abs_correlation": corr, "rank": rank}


def filter_statistics(weight, initial=None):
    """How correlated and how smooth the filters of a conv layer are; ``weight`` is (out, in, kh, kw).

    - ``mean_abs_correlation``: mean |Pearson correlation| between pairs of filters (flattened): near 0 for
      filters that each look for something else (random filters too), near 1 for filters that copy each other;
    - ``smoothness``: 1 - mean (w[p] - w[q])^2 / (2 var(w)) over horizontally and vertically neighbouring
      taps p, q of each filter slice, averaged over filters: about 0 for white noise, towards 1 for smooth
      filters, negative for a checkerboard;
    - ``initial_correlation`` (only with ``initial``, the same layer's weight before training): the mean over
      filters of the Pearson correlation between each filter and its own initial value: 1 for a filter that is
      still its random start (only scaled), about 0 for one that training replaced.
    """
    if not isinstance(weight, torch.Tensor) or weight.ndim != 4 or min(weight.shape[2:]) < 2 or len(weight) < 2:
        shape = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise ValueError(f"weight must be a conv weight (out >= 2, in, kh >= 2, kw >= 2), got {shape}")
    if initial is not None and (not isinstance(initial, torch.Tensor) or initial.shape != weight.shape):
        shape = tuple(initial.shape) if isinstance(initial, torch.Tensor) else type(initial).__name__
        raise ValueError(f"initial must be the layer's weight before training, of shape {tuple(weight.shape)}, "
                         f"got {shape}")
    w = weight.detach().double()
    flat = w.flatten(1)
    varies = flat.std(1) > 0
    corr = _pairwise_abs_correlation(flat[varies]) if varies.sum() >= 2 else math.nan
    centered = w - w.mean((2, 3), keepdim=True)
    var = centered.pow(2).mean((2, 3))  # per filter slice
    dy = (w[:, :, 1:, :] - w[:, :, :-1, :]).pow(2).mean((2, 3))
    dx = (w[:, :, :, 1:] - w[:, :, :, :-1]).pow(2).mean((2, 3))
    ok = var > 0
    smooth = (1 - (dy + dx) / 2 / (2 * var))[ok]
    out = {"filters": len(w), "mean_abs_correlation": corr,
           "smoothness": smooth.mean().item() if len(smooth) else math.nan}
    if initial is not None:
        a = flat - flat.mean(1, keepdim=True)
        b = initial.detach().double().flatten(1)
        b = b - b.mean(1, keepdim=True)
        norms = a.norm(dim=1) * b.norm(dim=1)
        both = norms > 0
        out["initial_correlation"] = ((a * b).sum(1)[both] / norms[both]).mean().item() if both.any() else math.nan
    return out


def relu_inputs(model, inputs):
    """Everything the ``nn.ReLU`` modules of ``model`` received on ``inputs``, as one flat tensor.

    With ``.abs()``: how close each ReLU input came to the kink at 0, where a finite difference of width eps
    straddles it when |input| < eps. Forward hooks, removed afterwards; runs under ``torch.no_grad``.
    """
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append(i[0].detach().flatten()))
             for m in model.modules() if isinstance(m, torch.nn.ReLU)]
    if not hooks:
        raise ValueError("the model has no nn.ReLU module (a functional F.relu cannot be hooked)")
    try:
        with torch.no_grad():
            model(inputs)
    finally:
        for h in hooks:
            h.remove()
    return torch.cat(seen)


@dataclass
class OverfitCheck:
    """The result of ``overfit_subset``: the training error at the end (eval mode) and whether it reached 0."""

    train_error: float
    train_loss: float
    reached_zero: bool
    n: int
    epochs: int
    history: list

    def __str__(self):
        verdict = "reached 0 training error" if self.reached_zero else "did NOT reach 0 training error"
        return (f"overfit check on {self.n} images, {self.epochs} epochs: {verdict} "
                f"(training error {100 * self.train_error:.1f}%, loss {self.train_loss:.4f})")

    __repr__ = __str__


def overfit_subset(model, images, labels, *, epochs=100, lr=0.05, batch_size=None, batches=None, device=None,
                   **fit_kwargs):
    """Train ``model`` on a small subset (e.g. 100 images) and check that the training error reaches 0.

    The first sanity check of a pipeline: a net that cannot memorize 100 images has a bug (labels that do
    not belong to the images, a wrong normalization, a learning rate far off). ``images`` are uint8 or float
    (N, C, H, W); ``batches`` replaces the training batches built from them (to plant a broken pipeline);
    the error is measured afterwards on the (images, labels) pairs as given, in eval mode. Runs ``fit``
    without weight decay unless ``fit_kwargs`` say otherwise.
    """
    from lecture_utils.data import DeviceBatches
    from lecture_utils.train import evaluate, fit

    if not isinstance(images, torch.Tensor) or images.ndim != 4 or len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"images must be (N, C, H, W) with as many labels, N >= 1; got "
                         f"{tuple(getattr(images, 'shape', ()))} and {len(labels)} labels")
    batch_size = batch_size or len(images)
    train = batches if batches is not None else DeviceBatches(images, labels, batch_size, shuffle=True, device=device)
    fit_kwargs.setdefault("weight_decay", 0.0)
    fit_kwargs.setdefault("verbose", False)
    history = fit(model, train, epochs=epochs, lr=lr, device=device, **fit_kwargs)
    result = evaluate(model, DeviceBatches(images, labels, 1000, device=device), device)
    return OverfitCheck(result["error"], result["loss"], result["error"] == 0.0, len(images), epochs, history)


def constant_output_loss(loss_fn, outputs, targets):
    """The loss of ``outputs`` against the loss of a constant output (every row replaced by the mean row).

    A loss that a constant output minimizes as well as the real one (``constant <= loss``) has a degenerate
    solution: the net can reach the minimum by ignoring its input, and the parameters collapse to it.
    Returns ``{"loss", "constant_loss", "degenerate"}``.
    """
    if not isinstance(outputs, torch.Tensor) or outputs.ndim < 1 or len(outputs) < 2:
        raise ValueError("outputs must be a tensor with a batch of at least 2 rows")
    with torch.no_grad():
        loss = _scalar(loss_fn(outputs, targets), "(the loss)").item()
        constant = outputs.mean(0, keepdim=True).expand_as(outputs)
        constant_loss = _scalar(loss_fn(constant, targets), "(the loss)").item()
    return {"loss": loss, "constant_loss": constant_loss, "degenerate": constant_loss <= loss + 1e-12}
