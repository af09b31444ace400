"""Self-checks of notebook 06: optimization tricks (06_optimization_tricks) and generalization and search
(06b_generalization_and_search).

Exercises: ``check_momentum_step`` (6.1), ``check_halving_rule`` (6.2), ``check_kaiming_std`` (6.3);
``check_weight_sharing`` (6.4), ``check_random_search_trials`` (6.5), ``check_expected_improvement`` (6.6).
"""

import math

import torch
from torch import nn

from ._core import ExerciseError, _close, _correct, _function, _int_answer, _keeps_rng, _number, _tensor, _which, _wrong


def _quadratic_run(lr, a=1.5, steps=10):
    """Gradient descent on 0.5 a w^2 from w = 1: w <- (1 - lr a) w; it diverges for lr > 2 / a."""
    w, losses = 1.0, []
    for _ in range(steps):
        losses.append(0.5 * a * w * w)
        w -= lr * a * w
    return losses


def _halving_cases():
    """(name, train_fn, start_lr): synthetic short runs whose verdicts are clear-cut (no borderline curves)."""
    return [
        ("a quadratic, stable below lr 4/3", _quadratic_run, 16.0),
        ("a run that gives NaN above lr 0.3", lambda lr: [2.3, math.nan, math.nan] if lr > 0.3 else [2.3, 1.9, 1.2],
         10.0),
        ("a run that gives inf above lr 0.05", lambda lr: [2.3, math.inf] if lr > 0.05 else [2.3, 1.5], 0.4),
        ("a run whose loss rises before it falls",
         lambda lr: [1.0, 1.5, 2.0] if lr > 1 else [1.0, 1.5, 0.5] if lr > 0.1 else [1.0, 0.9, 0.7], 4.0),
        ("a run stuck at chance (dead ReLUs) above lr 0.2",
         lambda lr: [2.30, 2.30, 2.29] if lr > 0.2 else [2.30, 1.7, 1.1], 1.6),
        ("a run that learns at once", _quadratic_run, 0.5),
    ]


@_keeps_rng
def check_halving_rule(student_fn):
    """Exercise 6.2: the lecture's halving rule, ``student_fn(train_fn, start_lr)`` -> the learning rate.

    Try start_lr, then half of it, and so on, and return the first learning rate whose short run learned:
    ``train_fn(lr)`` returns the run's loss curve (the loss before training first), and a run learned when every
    loss is finite and the last one is at least 20% below the first (a run that blew up diverged; one that
    stayed flat, as a net whose ReLUs died, did not learn). Reference: ``lecture_utils.lr.find_lr_by_halving``
    (whose ``judge_run`` says the same of these short curves) on six synthetic runs.
    """
    from lecture_utils.lr import find_lr_by_halving

    fn = _function(student_fn, "your halving function")
    for name, train_fn, start in _halving_cases():
        ref = find_lr_by_halving(train_fn, start).lr
        calls = []

        def counted(lr, train_fn=train_fn):
            calls.append(lr)
            if len(calls) > 60:
                _wrong(f"lr = {ref:g} for {name} after a few halvings", "more than 60 runs",
                       "stop at the first run that learned")
            return train_fn(lr)

        got = fn(counted, start)
        if hasattr(got, "lr"):
            got = got.lr
        got = _number(got, f"the learning rate for {name}")
        if abs(got / ref - 1) > 1e-9:
            hint = _which(got, [(2 * ref, "return the first learning rate whose run learned (one more halving)"),
                                (start, "a NaN compares False with everything: test math.isfinite on each loss"
                                 if "NaN" in name else "a run that stays flat did not learn: require the last loss "
                                                       "at least 20% below the first"),
                                (ref / 2, "try start_lr itself first, and stop at the first run that learned")],
                          tol=1e-9)
            if hint is None and "rises" in name:
                hint = "a curve that rises and then falls 20% below its first loss learned: compare the last loss " \
                       "with the first only"
            _wrong(f"lr = {ref:g} for {name} (from {start:g})", f"{got:g}",
                   hint or "halve while the run did not learn (a non-finite loss, or a last loss not 20% below "
                           "the first)")
    _correct("your halving rule picks find_lr_by_halving's learning rate on all six runs")


@_keeps_rng
def check_kaiming_std(answer, layer=None):
    """Exercise 6.3: the standard deviation of Kaiming's (He's) normal initialization for ``layer``.

    std = gain / sqrt(fan_in), gain = sqrt(2) for ReLU, fan_in = in_channels / groups x kernel height x width
    (a Linear layer: in_features). Default layer: ``nn.Conv2d(64, 96, 3)``. Reference: the formula with
    ``torch.nn.init.calculate_gain("relu")``, shown beside the std of the weights ``kaiming_normal_`` draws.
    """
    if layer is None:
        with torch.device("meta"):
            layer = nn.Conv2d(64, 96, 3)
    got = _number(answer, "the standard deviation")
    weight = layer.weight
    fan_in = weight[0].numel()
    fan_out = weight.shape[0] * weight[0][0].numel()
    gain = nn.init.calculate_gain("relu")
    ref = gain / math.sqrt(fan_in)
    if abs(got / ref - 1) <= 1e-3:
        drawn = nn.init.kaiming_normal_(torch.empty(weight.shape), mode="fan_in", nonlinearity="relu",
                                        generator=torch.Generator().manual_seed(0)).std().item()
        return _correct(f"std = sqrt(2 / {fan_in}) = {ref:.5f} (the weights kaiming_normal_ draws: {drawn:.5f})")
    hint = _which(got, [(gain / math.sqrt(fan_out), "use fan_in (inputs per output unit), not fan_out"),
                        (1 / math.sqrt(fan_in), "the gain for ReLU is sqrt(2): ReLU zeroes half of the signal"),
                        (ref ** 2, "that is the variance; give its square root"),
                        (gain / math.sqrt(weight.shape[1]), "fan_in counts the kernel's positions too: "
                                                            "in_channels x k x k"),
                        (math.sqrt(2 / (fan_in + fan_out)), "that is Glorot's (Xavier's) std; Kaiming's is "
                                                             "sqrt(2 / fan_in)")], tol=1e-3)
    _wrong(f"{ref:.5f}", f"{got:.5f}", hint or "std = sqrt(2) / sqrt(fan_in), fan_in = in_channels x k x k")


@_keeps_rng
def check_momentum_step(student_fn):
    """Exercise 6.1: one SGD step with momentum, ``student_fn(w, grad, velocity, lr, momentum, nesterov)``.

    Returns (new w, new velocity), PyTorch's convention (dampening 0, no weight decay):
        v <- momentum v + grad;   w <- w - lr v          (heavy ball)
        w <- w - lr (grad + momentum v)                  (nesterov=True, with the new v)
    Reference: ``torch.optim.SGD`` over three steps with changing gradients, from velocity 0; your function is
    chained with its own velocities, and the weights are compared after every step.
    """
    fn = _function(student_fn, "your momentum step")
    g = torch.Generator().manual_seed(0)
    start = torch.randn(5, generator=g, dtype=torch.float64)
    grads = [torch.randn(5, generator=g, dtype=torch.float64) for _ in range(3)]
    lr, momentum = 0.1, 0.9
    for nesterov in (False, True):
        w = start.clone().requires_grad_()
        opt = torch.optim.SGD([w], lr=lr, momentum=momentum, nesterov=nesterov)
        mine, v = start.clone(), torch.zeros_like(start)
        for step, grad in enumerate(grads, 1):
            w.grad = grad.clone()
            opt.step()
            result = fn(mine.clone(), grad.clone(), v.clone(), lr, momentum, nesterov)
            if not isinstance(result, (tuple, list)) or len(result) != 2:
                _wrong("a pair (new w, new velocity)", type(result).__name__, "return w, velocity")
            mine = _tensor(result[0], "the new w", start.shape)
            v = _tensor(result[1], "the new velocity", start.shape)
            if not _close(mine, w.detach(), 1e-9):
                plain = (start - lr * sum(grads[:step])) if step > 1 else None
                hint = "with nesterov=True, step by grad + momentum v (v after its update)" if nesterov else \
                    "v = momentum v + grad, then w = w - lr v"
                if plain is not None and _close(mine, plain, 1e-9):
                    hint = "the velocity must carry over: v = momentum v + grad, with the v you were given"
                _wrong(f"w = {[round(x, 6) for x in w.detach().tolist()]} after step {step} "
                       f"(nesterov={nesterov})", [round(x, 6) for x in mine.tolist()], hint)
    _correct("your momentum steps match torch.optim.SGD, with and without Nesterov")


# ---------------------------------------------------------------- 06b: generalization and search

@_keeps_rng
def check_weight_sharing(student_fn):
    """Exercise 6.4: ``student_fn(channels, kernel, size)`` -> (parameters of a conv layer, parameters of a fully
    connected layer with the same outputs).

    A ``kernel`` x ``kernel`` conv layer with ``channels`` output channels on a one-channel ``size`` x ``size``
    image (padding keeps the size) has channels x (kernel^2 + 1) parameters: one filter and one bias per
    channel, shared by every position. A fully connected layer from the size^2 pixels to the same
    channels x size^2 outputs has size^2 x channels x size^2 weights and channels x size^2 biases.
    Reference: ``nn.Conv2d`` and ``nn.Linear`` built on the meta device, their parameters counted, for three
    layers (the conv net's first layer, 8 channels of 5x5 on 28x28, first).
    """
    fn = _function(student_fn, "your parameter count")
    for channels, kernel, size in ((8, 5, 28), (16, 3, 8), (4, 7, 12)):
        with torch.device("meta"):
            conv = nn.Conv2d(1, channels, kernel, padding=kernel // 2)
            dense = nn.Linear(size * size, channels * size * size)
        ref_conv = sum(p.numel() for p in conv.parameters())
        ref_dense = sum(p.numel() for p in dense.parameters())
        layer = f"{channels} channels of {kernel}x{kernel} on {size}x{size}"
        got = fn(channels, kernel, size)
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            _wrong("a pair (conv parameters, fully connected parameters)", type(got).__name__,
                   "return conv_params, dense_params")
        got_conv = _int_answer(got[0], "the conv layer's parameters")
        got_dense = _int_answer(got[1], "the fully connected layer's parameters")
        if got_conv != ref_conv:
            hint = _which(got_conv, [(channels * kernel * kernel, "add one bias per output channel"),
                                     (ref_conv * size * size, "that is a layer without weight sharing (one filter "
                                      "per position, 'locally connected'); a conv layer shares one filter over all "
                                      "positions"),
                                     (kernel * kernel + 1, "one filter per output channel: multiply by the channels")])
            _wrong(f"{ref_conv:,} parameters in the conv layer ({layer})", f"{got_conv:,}",
                   hint or "channels x (kernel x kernel x input channels + 1)")
        if got_dense != ref_dense:
            outputs = channels * size * size
            hint = _which(got_dense, [(size * size * outputs, "add one bias per output"),
                                      (size * size * channels + channels, f"the layer must produce all {outputs:,} "
                                       "outputs (channels x size x size), not one per channel"),
                                      (ref_dense - outputs + channels, "one bias per output, not per channel")])
            _wrong(f"{ref_dense:,} parameters in the fully connected layer ({layer})", f"{got_dense:,}",
                   hint or "inputs x outputs weights + outputs biases, outputs = channels x size x size")
        if (channels, kernel, size) == (8, 5, 28):
            first = (ref_conv, ref_dense)
    _correct(f"{first[0]:,} against {first[1]:,} for the conv net's first layer: weight sharing uses "
             f"{first[1] / first[0]:,.0f} times fewer parameters for the same outputs")


@_keeps_rng
def check_random_search_trials(student_fn):
    """Exercise 6.5: ``student_fn(fraction, confidence)`` -> how many random trials it takes to land at least one
    in the best ``fraction`` of the range with probability ``confidence`` (Bergstra & Bengio's argument).

    n independent uniform trials all miss the best fraction f with probability (1 - f)^n, so the smallest n
    with 1 - (1 - f)^n >= confidence is ceil(log(1 - confidence) / log(1 - f)): 59 for the best 5% at 95%.
    Reference: that count checked by direct search over n, on five cases.
    """
    fn = _function(student_fn, "your trial count")
    for fraction, confidence in ((0.05, 0.95), (0.1, 0.9), (0.01, 0.99), (0.2, 0.5), (0.05, 0.5)):
        ref = 1
        while 1 - (1 - fraction) ** ref < confidence:
            ref += 1
        got = fn(fraction, confidence)
        got = _int_answer(got, f"the number of trials for the best {fraction:.0%} at {confidence:.0%}")
        if got != ref:
            hint = _which(got, [(ref - 1, "the smallest n with 1 - (1 - f)^n >= confidence: round up, not down"),
                                (math.ceil(confidence / fraction), "trials do not add up linearly: they all miss "
                                 "with probability (1 - f)^n"),
                                (math.ceil(math.log(confidence) / math.log(1 - fraction)),
                                 "(1 - f)^n is the chance that all miss: set it to 1 - confidence")], tol=1e-9)
            _wrong(f"{ref} trials for the best {fraction:.0%} at {confidence:.0%}", f"{got}",
                   hint or "all n trials miss with probability (1 - f)^n; solve 1 - (1 - f)^n >= confidence")
    _correct("60 random trials (59, precisely) land one in the best 5% with 95% probability, whatever the number "
             "of dimensions: the grid's count of distinct values per dimension does not grow like that")


@_keeps_rng
def check_expected_improvement(student_fn):
    """Exercise 6.6: expected improvement for minimization, ``student_fn(mu, sd, best)`` on tensors.

    With the posterior f(x) ~ N(mu, sd^2) and the best value so far ``best``, EI = E[max(best - f(x), 0)]
        = (best - mu) Phi(z) + sd phi(z),   z = (best - mu) / sd,
    Phi and phi the standard normal's CDF and density. Reference: ``scipy.stats.norm`` in float64, and a
    Monte Carlo estimate of E[max(best - f, 0)] for one point (they must agree).
    """
    from scipy.stats import norm

    fn = _function(student_fn, "your expected improvement")
    mu = torch.tensor([0.2, 0.5, 0.5, 0.9, 0.3], dtype=torch.float64)
    sd = torch.tensor([0.1, 0.05, 0.3, 0.2, 0.01], dtype=torch.float64)
    best = 0.4
    z = ((best - mu) / sd).numpy()
    ref = torch.as_tensor((best - mu).numpy() * norm.cdf(z) + sd.numpy() * norm.pdf(z))
    draws = torch.randn(200_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * sd[2] + mu[2]
    monte_carlo = (best - draws).clamp_min(0).mean().item()
    if abs(monte_carlo - ref[2].item()) > 0.01 * ref[2].item():
        raise ExerciseError(f"the two references disagree ({monte_carlo} vs {ref[2].item()}): report this")
    got = _tensor(fn(mu.clone(), sd.clone(), best), "EI at the five points", mu.shape)
    if _close(got, ref, 1e-6):
        return _correct(f"EI = {', '.join(f'{v:.4f}' for v in ref.tolist())}: largest where the mean is low "
                        "or the uncertainty high (Monte Carlo agrees)")
    zm = ((mu - best) / sd).numpy()
    maximize = torch.as_tensor((mu - best).numpy() * norm.cdf(zm) + sd.numpy() * norm.pdf(zm))
    hint = _which(got, [(maximize, "that is EI for maximization; here lower is better: improvement = best - f(x)"),
                        ((best - mu) * torch.as_tensor(norm.cdf(z)), "add the uncertainty term sd * phi(z)"),
                        (sd * torch.as_tensor(norm.pdf(z)), "add the term (best - mu) * Phi(z)"),
                        ((best - mu).clamp_min(0), "that ignores the uncertainty: take the expectation over "
                                                   "f(x) ~ N(mu, sd^2)")], tol=1e-6)
    _wrong(f"EI = {[round(v, 5) for v in ref.tolist()]}", [round(v, 5) for v in got.tolist()],
           hint or "EI = (best - mu) * Phi(z) + sd * phi(z) with z = (best - mu) / sd")
