"""Self-checks of notebook 07: debugging and visualization (07_debugging_and_visualization) and when it does not
work (07b_when_it_does_not_work).

Exercises: ``check_gradient_check`` (7.1), ``check_smoothness`` (7.2), ``check_dead_fraction`` (7.3);
``check_chance_loss`` (7.4), ``check_silu_backward`` (7.5), ``check_contrastive_loss`` (7.6).
"""

import math

import torch
import torch.nn.functional as F

from ._core import ExerciseError, rel_error, _keeps_rng, _correct, _wrong, _number, _tensor, _function, _which


def _smooth_function(x):
    return (x ** 3).sum() + (x.sin() * x).sum()


@_keeps_rng
def check_gradient_check(student_fn):
    """Exercise 7.1: a centred finite-difference gradient, ``student_fn(f, x, h=1e-5)`` (CS231n's
    ``eval_numerical_gradient``).

    For every entry i: (f(x + h e_i) - f(x - h e_i)) / (2 h), with x put back afterwards; f returns a scalar.
    Reference: torch.autograd on a smooth function (relative error below 1e-6), then on SiLU with a planted bug
    in its backward (``lecture_utils.models.tiny.SiLUFunction``, bug "missing_factor"): your gradient must agree
    with the correct SiLU's autograd and so flag the buggy backward (relative error above 1e-2).
    """
    from lecture_utils.models.tiny import SiLUFunction

    fn = _function(student_fn, "your numerical gradient")
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 4, generator=g, dtype=torch.float64) + 0.5  # gradients well away from 0: relative errors mean
    c = torch.rand(3, 4, generator=g, dtype=torch.float64) + 0.5  # something
    z = torch.rand(3, 4, generator=g, dtype=torch.float64) * 2 - 1  # SiLU's slope: 0.07 at -1 to 0.93 at 1

    def silu(bug):
        return lambda x: (c * SiLUFunction.apply(x, bug)).sum()

    results = {}
    for name, f, point in (("x^3 + x sin x", _smooth_function, x), ("SiLU", silu(None), z)):
        before = point.clone()
        got = _tensor(fn(f, point), f"your gradient of {name}", point.shape)
        if not torch.equal(point, before):
            _wrong("x unchanged after the call", "a changed x", "put each entry back (x[i] = old) after f(x - h e_i)")
        xr = point.clone().requires_grad_()
        ref = torch.autograd.grad(f(xr), xr)[0].double()
        results[name] = err = rel_error(got, ref)
        if err > 1e-6:
            hint = _which(got, [(2 * ref, "divide by 2 h: the two points are 2 h apart")], tol=1e-3)
            if hint is None and err < 1e-3:
                hint = "use the centred difference (f(x + h) - f(x - h)) / (2 h): a one-sided one is off by O(h)"
            _wrong(f"autograd's gradient of {name} (relative error below 1e-6)", f"relative error {err:.1e}",
                   hint or "for each entry: f at x + h and at x - h, their difference over 2 h")
    zr = z.clone().requires_grad_()
    buggy = torch.autograd.grad(silu("missing_factor")(zr), zr)[0]
    flagged = rel_error(_tensor(fn(silu("missing_factor"), z), "your gradient of the buggy SiLU", z.shape), buggy)
    if flagged <= 1e-2:
        _wrong("a relative error above 1e-2 against the buggy backward", f"{flagged:.1e}",
               "compute the numeric gradient from f's values only, never from its .backward()")
    _correct(f"relative error {results['x^3 + x sin x']:.1e} on a smooth function, {results['SiLU']:.1e} on SiLU; "
             f"the planted bug in SiLU's backward shows as {flagged:.1e}")


def _smoothness_reference(w):
    """1 - mean (w[p] - w[q])^2 / (2 var w) over all horizontally and vertically neighbouring taps of one 2-D filter."""
    w = w.double()
    var = (w - w.mean()).pow(2).mean()
    pairs = torch.cat([(w[1:, :] - w[:-1, :]).flatten(), (w[:, 1:] - w[:, :-1]).flatten()])
    return (1 - pairs.pow(2).mean() / (2 * var)).item()


def _smoothness_filters():
    """(name, 7x7 filter): white noise (about 0), a smooth stroke (near 1), a checkerboard (negative)."""
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(7, 7, generator=g, dtype=torch.float64)
    r = torch.arange(7, dtype=torch.float64)
    stroke = torch.exp(-((r[None, :] - 3 - 0.5 * (r[:, None] - 3)) ** 2) / 4) + 0.05 * r[:, None]
    checker = (-1.0) ** (r[:, None] + r[None, :]) + 0.3 * torch.randn(7, 7, generator=g, dtype=torch.float64)
    return [("white noise", noise), ("a smooth stroke", stroke), ("a checkerboard", checker)]


@_keeps_rng
def check_smoothness(student_fn):
    """Exercise 7.2: the smoothness of one filter, ``student_fn(w)`` for a 2-D filter ``w`` (kh, kw) -> a number.

        smoothness = 1 - mean (w[p] - w[q])^2 / (2 var w)

    the mean over all horizontally and vertically neighbouring taps p, q, var the population variance of the taps
    (for white noise E (w_p - w_q)^2 = 2 var, so it scores about 0; a smooth filter scores near 1). Reference: the
    formula on three 7x7 filters (white noise, a smooth stroke, a checkerboard), cross-checked against
    ``lecture_utils.diagnostics.filter_statistics``.
    """
    from lecture_utils.diagnostics import filter_statistics

    fn = _function(student_fn, "your smoothness function")
    shown = []
    for name, w in _smoothness_filters():
        ref = _smoothness_reference(w)
        package = filter_statistics(torch.stack([w, w])[:, None])["smoothness"]
        if abs(package - ref) > 1e-9:
            raise ExerciseError(f"the two references disagree on {name} ({ref} vs {package}): report this")
        got = _number(fn(w.clone()), f"your smoothness of {name}")
        if abs(got - ref) <= 1e-6 * max(1.0, abs(ref)):
            shown.append(f"{name} {ref:.2f}")
            continue
        var, n = (w - w.mean()).pow(2).mean(), w.numel()
        dx, dy = (w[:, 1:] - w[:, :-1]).pow(2).mean(), (w[1:, :] - w[:-1, :]).pow(2).mean()
        both = (dx + dy) / 2
        hint = _which(got, [(1 - dx / (2 * var), "use the vertical neighbours too (w[1:, :] - w[:-1, :])"),
                            (1 - dy / (2 * var), "use the horizontal neighbours too (w[:, 1:] - w[:, :-1])"),
                            (1 - both / (2 * var * n / (n - 1)), "use the population variance (divide by the "
                                                                  "number of taps: unbiased=False)"),
                            (1 - both / var, "divide by 2 var: for white noise E (w_p - w_q)^2 = 2 var"),
                            (both / (2 * var), "smoothness is 1 minus that ratio"),
                            (1 - both.sqrt() / (2 * var.sqrt()), "square the differences and use the variance, not "
                                                                 "the standard deviation")], tol=1e-6)
        _wrong(f"{ref:.4f} for {name}", f"{got:.4f}",
               hint or "1 - (mean squared difference of neighbouring taps) / (2 * population variance of the taps)")
    _correct(f"smoothness of {', '.join(shown)}: noise scores about 0, structure near 1")


def _dead_layer():
    """ReLU activations of 64 samples x 40 units: 10 units dead (0 for every sample), others often 0."""
    g = torch.Generator().manual_seed(0)
    shift = torch.cat([torch.full((10,), -20.0), torch.linspace(-1.5, 1.0, 30)])
    return torch.relu(torch.randn(64, 40, generator=g) + shift)


@_keeps_rng
def check_dead_fraction(answer, activations=None):
    """Exercise 7.3: the fraction of dead units in ``activations`` (samples x units, after a ReLU).

    A unit is dead when it is 0 for every sample of the batch. Reference: ``(activations == 0).all(0).mean()``
    and ``lecture_utils.diagnostics.unit_statistics(activations)["dead_fraction"]`` (they must agree).
    """
    from lecture_utils.diagnostics import unit_statistics

    a = _dead_layer() if activations is None else activations
    if not isinstance(a, torch.Tensor) or a.ndim != 2:
        raise ExerciseError("activations must be a (samples x units) tensor: flatten conv maps with a.flatten(1)")
    a = a.detach().cpu()
    got = _number(answer, "the dead fraction")
    ref = unit_statistics(a)["dead_fraction"]
    direct = (a == 0).all(0).double().mean().item()
    if abs(direct - ref) > 1e-12:
        raise ExerciseError(f"the two references disagree ({direct} vs {ref}): report this")
    if abs(got - ref) <= 1e-6:
        return _correct(f"{100 * ref:.1f}% of the {a.shape[1]} units are dead (0 for all {a.shape[0]} samples)")
    hint = _which(got, [((a == 0).double().mean().item(), "that is the sparsity (zero entries); a dead unit is zero "
                                                          "for every sample: .all(dim=0)"),
                        ((a == 0).any(0).double().mean().item(), "a unit that is 0 for some samples is alive; dead "
                                                                 "means 0 for all: .all(dim=0), not .any"),
                        ((a == 0).all(1).double().mean().item(), "reduce over the samples (dim 0), per unit"),
                        (ref * a.shape[1], "give a fraction of the units, not a count"),
                        (100 * ref, "give a fraction between 0 and 1, not a percentage")], tol=1e-6)
    _wrong(f"{ref:.4f}", f"{got:.4f}", hint or "(activations == 0).all(dim=0) marks the dead units; take the mean")


@_keeps_rng
def check_chance_loss(answer, num_classes=10):
    """Exercise 7.4: the cross-entropy loss a classifier should start at (CS231n's first sanity check).

    A fresh net with small weights gives every class about the same probability 1/C, so its loss is
    -log(1/C) = log(C) (natural log). Reference: ``F.cross_entropy`` of equal logits.
    """
    got = _number(answer, "the loss at chance")
    ref = F.cross_entropy(torch.zeros(1, num_classes, dtype=torch.float64), torch.tensor([0])).item()
    if abs(got - ref) <= 1e-3 * ref:
        return _correct(f"log({num_classes}) = {ref:.4f}: a first loss far from it means a bug or a bad initialization")
    hint = _which(got, [(math.log10(num_classes), "cross-entropy uses the natural logarithm"),
                        (1 / num_classes, "that is the probability; the loss is -log of it"),
                        (-ref, "the loss is -log(1/C), a positive number")], tol=1e-3)
    _wrong(f"{ref:.4f}", f"{got:.4f}", hint or "loss = -log(probability of the right class), here 1/C")


def _silu_points():
    return torch.linspace(-6, 6, 1001, dtype=torch.float64)


@_keeps_rng
def check_silu_backward(student_fn):
    """Exercise 7.5: SiLU's derivative by hand, ``student_fn(x)`` -> dy/dx for y = x * sigmoid(x), elementwise.

        dy/dx = s + x * s * (1 - s),   s = sigmoid(x)   (the product rule, with sigmoid' = s (1 - s))

    Reference: torch.autograd's gradient of ``torch.nn.functional.silu`` at 1,001 points in [-6, 6]; then
    ``lecture_utils.diagnostics.gradient_check`` of a SiLU whose backward uses your derivative must pass.
    """
    from lecture_utils.diagnostics import gradient_check

    fn = _function(student_fn, "your SiLU derivative")
    x = _silu_points()
    xr = x.clone().requires_grad_()
    ref = torch.autograd.grad(F.silu(xr).sum(), xr)[0]
    got = _tensor(fn(x.clone()), "your dy/dx", x.shape)
    err = rel_error(got, ref)
    if err > 1e-7:
        s = torch.sigmoid(x)
        hint = _which(got, [(s + s * (1 - s), "the x of the product rule is missing: d/dx [x s] = s + x s'"),
                            (-ref, "the sign is flipped: the derivative is positive for x > 0"),
                            (s, "the product rule has two terms: d/dx [x s(x)] = s + x s'(x)"),
                            (s * (1 - s), "that is sigmoid's derivative alone; SiLU is x times sigmoid"),
                            (x * s, "that is the forward pass y, not its derivative"),
                            (s + x * s, "sigmoid's derivative is s (1 - s), not s")], tol=1e-6)
        _wrong("autograd's dy/dx of x * sigmoid(x) (relative error below 1e-7)", f"relative error {err:.1e}",
               hint or "s = torch.sigmoid(x); dy/dx = s + x * s * (1 - s)")

    class Yours(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * torch.sigmoid(x)

        @staticmethod
        def backward(ctx, grad_output):
            (x,) = ctx.saved_tensors
            return grad_output * torch.as_tensor(fn(x.detach().clone()), dtype=x.dtype)

    point = torch.randn(4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).requires_grad_()
    check = gradient_check(lambda x: (Yours.apply(x) ** 2).sum(), (point,))
    if not check.passed:
        _wrong("a passing gradient check", f"max relative error {check.max_relative_error:.1e}",
               "return dy/dx as a float64 tensor of x's shape, computed from x alone")
    _correct(f"relative error {err:.1e} against autograd; a SiLU with your backward passes gradient_check "
             f"(max relative error {check.max_relative_error:.1e})")


def _contrastive_reference(z, y, margin):
    z = z.detach().double()
    same = (y[:, None] == y[None, :]).double()
    d = (z[:, None, :] - z[None, :, :]).pow(2).sum(-1).sqrt()
    return (same * d.pow(2) + (1 - same) * torch.relu(margin - d).pow(2)).mean().item()


def _contrastive_cases():
    g = torch.Generator().manual_seed(0)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 3])
    close = 0.3 * torch.randn(12, 4, generator=g, dtype=torch.float64)  # most pairs within the margin
    spread = 1.5 * torch.randn(12, 4, generator=g, dtype=torch.float64)  # many pairs beyond it
    centres = 2.0 * torch.eye(4, dtype=torch.float64)  # classes 2 apart (sqrt 8 > margin), then a little noise
    clustered = centres[y] + 0.1 * torch.randn(12, 4, generator=g, dtype=torch.float64)
    return [("embeddings closer than the margin", close, y, 1.0), ("spread-out embeddings", spread, y, 1.0),
            ("spread-out embeddings, margin 2", spread, y, 2.0), ("embeddings clustered by class", clustered, y, 1.0)]


@_keeps_rng
def check_contrastive_loss(student_fn):
    """Exercise 7.6: a loss without a degenerate minimum, ``student_fn(z, y, margin=1.0)`` -> a scalar tensor.

        L = mean over all n x n pairs (i, j) of  [y_i = y_j] d_ij^2 + [y_i != y_j] max(0, margin - d_ij)^2

    with d_ij = ||z_i - z_j|| (Hadsell, Chopra and LeCun 2006; i = j included, it adds 0). Reference: the formula
    on three batches of embeddings; the loss must be differentiable (a tensor with a grad_fn) and a constant output
    must score worse than the embeddings (``lecture_utils.diagnostics.constant_output_loss``: not degenerate).
    """
    from lecture_utils.diagnostics import constant_output_loss

    fn = _function(student_fn, "your contrastive loss")
    for name, z, y, margin in _contrastive_cases():
        zr = z.clone().requires_grad_()
        out = fn(zr, y, margin)
        if not isinstance(out, torch.Tensor) or out.numel() != 1:
            _wrong("a scalar tensor (one number, differentiable)", type(out).__name__,
                   "return the loss as a torch tensor, e.g. (...).mean(), not a float")
        if out.grad_fn is None:
            _wrong("a loss with a grad_fn (training backpropagates through it)", "no grad_fn",
                   "compute it with torch operations on z; .item(), .detach() or numpy cut the gradient")
        got, ref = out.item(), _contrastive_reference(z, y, margin)
        if abs(got - ref) <= 1e-6 * max(1.0, abs(ref)):
            continue
        zz = z.detach()
        same = (y[:, None] == y[None, :]).double()
        d = (zz[:, None, :] - zz[None, :, :]).pow(2).sum(-1).sqrt()
        n = len(y)
        hint = _which(got, [((same * d.pow(2)).mean().item(), "nothing pushes different classes apart: a constant "
                                                               "output minimizes that; add the margin term"),
                            ((same * d.pow(2)).sum().item() / same.sum().item(),
                             "nothing pushes different classes apart; add the margin term"),
                            ((same * d.pow(2) + (1 - same) * (margin - d).pow(2)).mean().item(),
                             "pairs farther apart than the margin must cost nothing: max(0, margin - d), "
                             "torch.relu(margin - d)"),
                            ((same * d + (1 - same) * torch.relu(margin - d)).mean().item(),
                             "square both terms: d^2 and max(0, margin - d)^2"),
                            (ref * n / (n - 1), "average over all n * n pairs, i = j included"),
                            ((same * d.pow(2) + (1 - same) * torch.relu(margin - d.pow(2))).mean().item(),
                             "the margin is on the distance d, not on d^2")], tol=1e-6)
        _wrong(f"{ref:.5f} for {name} (margin {margin:g})", f"{got:.5f}",
               hint or "same-class pairs: d^2; other pairs: relu(margin - d)^2; the mean over all n * n pairs")
    name, z, y, margin = _contrastive_cases()[-1]
    check = constant_output_loss(lambda out, t: fn(out, t, margin), z.clone(), y)
    if check["degenerate"]:
        _wrong("a constant output to score worse than embeddings clustered by class",
               f"constant {check['constant_loss']:.4f} vs {check['loss']:.4f}",
               "the margin term must punish different classes at distance 0")
    _correct(f"the formula on {len(_contrastive_cases())} batches; a constant output scores "
             f"{check['constant_loss']:.3f} against {check['loss']:.3f} for embeddings clustered by class: "
             "no degenerate minimum")
