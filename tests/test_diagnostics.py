"""lecture_utils.diagnostics: a planted gradient bug is caught, unit/filter statistics are right on constructed
inputs, the overfit check reaches 0 on a small subset and fails on labels shuffled every step, bad input fails
clearly."""

import math

import pytest
import torch
import torch.nn.functional as F

from lecture_utils.data import DeviceBatches, load_dataset
from lecture_utils.diagnostics import (constant_output_loss, filter_statistics, gradient_check, gradient_norms,
                                       model_gradient_check, overfit_subset, reading, relu_inputs, unit_statistics)
from lecture_utils.failures import ShuffledLabels
from lecture_utils.models.tiny import HandSiLU, SiLUFunction, tiny_convnet


def x64(*shape, seed=0):
    return torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)).requires_grad_()


# ---------------------------------------------------------------- gradient check

@pytest.mark.parametrize("bug", [None, "missing_factor", "sign"])
def test_planted_bug_caught_correct_backward_passes_like_gradcheck(bug):
    x = x64(4, 5)
    result = gradient_check(lambda x: (SiLUFunction.apply(x, bug) ** 2).sum(), (x,))
    torch_verdict = torch.autograd.gradcheck(lambda x: SiLUFunction.apply(x, bug), (x,), raise_exception=False)
    assert result.passed == (bug is None) == torch_verdict
    if bug is None:
        assert result.max_relative_error < 1e-7
        assert result.reading.startswith("fine")
    else:
        assert result.max_relative_error > 1e-2
        assert result.reading.startswith("wrong")
    assert result.n_checked == 20 and len(result.worst) == 3
    w = result.worst[0]
    assert w["relative_error"] == result.max_relative_error
    assert math.isclose(abs(w["analytic"] - w["numeric"]) / max(abs(w["analytic"]), abs(w["numeric"])),
                        w["relative_error"], rel_tol=1e-9)


def test_numeric_gradient_of_a_known_function():
    a = x64(3)
    b = x64(3, seed=1)
    r = gradient_check(lambda a, b: (a * b).sum(), (a, b))
    assert r.passed and r.n_checked == 6
    # only inputs with requires_grad are checked
    r = gradient_check(lambda a, b: (a * b).sum(), (a, b.detach()))
    assert r.n_checked == 3


def test_sampled_check_of_a_whole_net_and_its_planted_bug():
    torch.manual_seed(0)
    x, y = torch.rand(6, 1, 28, 28), torch.randint(10, (6,))
    good = tiny_convnet((3, 4), 8, activation="silu")
    r = model_gradient_check(good, F.cross_entropy, x, y, num_checks=3)
    assert r.passed and r.n_checked == 3 * len(list(good.parameters()))
    assert next(good.parameters()).dtype == torch.float32  # the model itself is untouched
    bad = tiny_convnet((3, 4), 8, activation="silu:missing_factor")
    bad.load_state_dict(good.state_dict())
    assert not model_gradient_check(bad, F.cross_entropy, x, y, num_checks=3).passed


def test_dropout_in_training_mode_breaks_the_check_unless_the_mask_is_fixed():
    torch.manual_seed(0)
    x, y = torch.rand(6, 1, 28, 28), torch.randint(10, (6,))
    net = tiny_convnet((3, 4), 8, activation="tanh", dropout=0.5).train()
    assert not model_gradient_check(net, F.cross_entropy, x, y, num_checks=2).passed
    fixed = model_gradient_check(net, F.cross_entropy, x, y, num_checks=2, before_forward=lambda: torch.manual_seed(1))
    assert fixed.passed
    assert model_gradient_check(net.float().eval(), F.cross_entropy, x, y, num_checks=2).passed


def test_relu_kink_inside_eps_disturbs_the_check():
    x = torch.tensor([1e-7, -3e-7, 0.5], dtype=torch.float64, requires_grad=True)
    r = gradient_check(lambda x: torch.relu(x).sum(), (x,))
    assert not r.passed and r.max_relative_error >= 0.5


def test_reading_follows_cs231n_thresholds():
    assert reading(1e-8).startswith("fine")
    assert reading(1e-5).startswith("probably right")
    assert reading(1e-3).startswith("suspicious")
    assert reading(0.5).startswith("wrong")


def test_float32_input_is_converted_with_a_warning():
    x = torch.randn(3, requires_grad=True)
    with pytest.warns(UserWarning, match=r"input 0 \(float32\) not float64; checking float64 copies"):
        r = gradient_check(lambda x: (x ** 3).sum(), (x,))
    assert r.passed and r.converted == [0]
    assert x.dtype == torch.float32


def test_bad_input_gives_clear_errors():
    x = x64(3)
    with pytest.raises(ValueError, match="does not depend differentiably"):
        gradient_check(lambda x: x.detach().sum(), (x,))
    with pytest.raises(ValueError, match="does not depend differentiably"):
        gradient_check(lambda x: x.argmax().double(), (x,))
    for eps in (0, -1e-6, math.nan, "1e-6"):
        with pytest.raises(ValueError, match="eps must be a finite number > 0"):
            gradient_check(lambda x: x.sum(), (x,), eps=eps)
    with pytest.raises(ValueError, match="scalar"):
        gradient_check(lambda x: x * 2, (x,))
    with pytest.raises(ValueError, match="requires_grad"):
        gradient_check(lambda x: x.sum(), (x.detach(),))
    with pytest.raises(TypeError, match="tuple of tensors"):
        gradient_check(lambda x: x.sum(), [])
    with pytest.raises(ValueError, match="num_checks"):
        gradient_check(lambda x: x.sum(), (x,), num_checks=0)


def cross_entropy_case():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(200, 10, dtype=torch.float64, generator=g)
    return logits, torch.randint(10, (200,), generator=g)


class PlantedBug(torch.autograd.Function):
    """The identity whose backward changes one entry of the gradient: by ``shift`` and by a factor ``1 + scale``."""

    @staticmethod
    def forward(ctx, x, index, shift, scale):
        ctx.index, ctx.shift, ctx.scale = index, shift, scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        grad[ctx.index] = grad[ctx.index] * (1 + ctx.scale) + ctx.shift
        return grad, None, None, None


@pytest.mark.parametrize("scale, reduction", [(1.0, "mean"), (5.0, "sum"), (20.0, "sum"), (1.0, "none")])
def test_correct_cross_entropy_gradients_pass_as_with_gradcheck(scale, reduction):
    """The issue's false alarms: 200x10 float64 logits (max relative error 1.78e-5 > tol) and x5 with reduction='sum'
    (near-zero entries read as 'wrong'). gradcheck passes both, and so must we."""
    logits, y = cross_entropy_case()
    x = (scale * logits).requires_grad_()
    if reduction == "none":  # a loss far from 0: f = 1e4 + mean loss, the rounding noise of f grows with it
        f = lambda z: 1e4 + F.cross_entropy(z, y)  # noqa: E731
    else:
        f = lambda z: F.cross_entropy(z, y, reduction=reduction)  # noqa: E731
    result = gradient_check(f, (x,))
    assert torch.autograd.gradcheck(f, (x,))
    assert result.passed and result.n_failed == 0 and result.failed == [], str(result)
    assert result.n_checked == 2000 and "passed" in str(result)
    assert result.max_relative_error <= result.tol


@pytest.mark.parametrize("shift, scale", [(1e-3, 0.0), (0.0, 1e-3), (1e-6, 0.0)])
def test_a_small_planted_error_in_one_entry_is_caught_and_named(shift, scale):
    logits, y = cross_entropy_case()
    x = logits.clone().requires_grad_()
    index = (17, int(y[17]))  # the label's logit: a gradient of about -4e-3
    result = gradient_check(lambda z: F.cross_entropy(PlantedBug.apply(z, index, shift, scale), y), (x,))
    assert not result.passed and result.n_failed == 1
    bad = result.failed[0]
    assert bad["index"] == index and bad["input"] == "input 0"
    assert bad["analytic"] - bad["numeric"] == pytest.approx(shift + scale * bad["numeric"], rel=1e-3)
    text = str(result)
    assert text.startswith("gradient check FAILED at 1 of 2,000 entries")
    assert f"failed entries:\n  input 0[17, {index[1]}]: analytic {bad['analytic']:+.6e}, numeric" in text
    for mean_or_sum, factor in (("sum", 5.0),):  # and in the summed loss of the x5 logits
        big = (factor * logits).requires_grad_()
        r = gradient_check(lambda z: F.cross_entropy(PlantedBug.apply(z, index, 1e-3, 0.0), y, reduction=mean_or_sum),
                           (big,))
        assert not r.passed and [f["index"] for f in r.failed] == [index]


def test_the_tolerance_is_allclose_with_an_atol_from_the_rounding_of_f():
    x = x64(10)
    r = gradient_check(lambda x: (x ** 3).sum(), (x,))
    largest_f = r_max_abs_f(lambda x: (x ** 3).sum(), x, r.eps)
    assert r.atol == pytest.approx(10 * torch.finfo(torch.float64).eps * largest_f / r.eps, rel=1e-9)
    r = gradient_check(lambda x: (x ** 3).sum(), (x,), atol=1e-3, tol=1e-2)
    assert r.atol == 1e-3 and r.tol == 1e-2
    # an explicit atol too small to cover rounding turns the near-zero entries of the summed loss into failures
    logits, y = cross_entropy_case()
    big = (5 * logits).requires_grad_()
    strict = gradient_check(lambda z: F.cross_entropy(z, y, reduction="sum"), (big,), atol=1e-12)
    assert not strict.passed and all(abs(f["numeric"]) < 1e-3 for f in strict.failed)


def r_max_abs_f(f, x, eps):
    """The largest |f| over x and every x +- eps e_i, as gradient_check sees it."""
    values = [abs(f(x).item())]
    with torch.no_grad():
        for k in range(x.numel()):
            for s in (eps, -eps):
                y = x.detach().clone()
                y[k] += s
                values.append(abs(f(y).item()))
    return max(values)


def test_complex_inputs_and_short_names_are_one_line_errors():
    z = torch.randn(3, dtype=torch.complex128, requires_grad=True)
    with pytest.raises(TypeError, match=r"inputs\[0\] is complex \(complex128\)") as err:
        gradient_check(lambda z: z.abs().sum(), (z,))
    assert "\n" not in str(err.value)
    a, b = x64(3), x64(3, seed=1)
    for names in (["a"], ["a", "b", "c"], "ab"):
        with pytest.raises(ValueError, match=r"names must give one name per input \(2 inputs\)") as err:
            gradient_check(lambda a, b: (a * b).sum(), (a, b), names=names)
        assert "\n" not in str(err.value)
    r = gradient_check(lambda a, b: (a * b).sum(), (a, b), names=("left", "right"))
    assert set(r.by_input) == {"left", "right"}
    with pytest.raises(ValueError, match="atol must be a finite number > 0"):
        gradient_check(lambda a, b: (a * b).sum(), (a, b), atol=-1.0)


def test_gradient_norms_per_layer_and_parameter():
    torch.manual_seed(0)
    net = tiny_convnet((3, 4), 8)
    loss = F.cross_entropy(net(torch.rand(4, 1, 28, 28)), torch.randint(10, (4,)))
    by_layer = gradient_norms(net, loss)
    assert list(by_layer) == ["features.conv1", "features.conv2", "classifier.fc3", "classifier.fc4"]
    by_param = gradient_norms(net, loss, by="parameter")
    w, b = by_param["features.conv1.weight"], by_param["features.conv1.bias"]
    assert math.isclose(by_layer["features.conv1"], math.hypot(w, b), rel_tol=1e-12)
    assert all(p.grad is None for p in net.parameters())  # computed with autograd.grad
    loss.backward()
    assert math.isclose(gradient_norms(net)["classifier.fc4"], by_layer["classifier.fc4"], rel_tol=1e-6)
    with pytest.raises(ValueError, match="by must be"):
        gradient_norms(net, by="module")
    with pytest.raises(ValueError, match="call loss.backward"):
        gradient_norms(tiny_convnet((3, 4), 8))


# ---------------------------------------------------------------- units and filters

def test_unit_statistics_on_constructed_activations():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(500, 1, generator=g)
    a = torch.cat([
        torch.zeros(500, 3),  # 3 dead units
        torch.full((500, 1), 2.0),  # 1 saturated unit: constant, not zero
        torch.relu(base), torch.relu(base) * 3,  # 2 perfectly correlated units
        torch.relu(torch.randn(500, 4, generator=g)),  # 4 independent units
    ], 1)
    s = unit_statistics(a)
    assert s["dead_fraction"] == 0.3 and s["constant_fraction"] == 0.4
    assert math.isclose(s["sparsity"], (3 * 500 + (a[:, 4:] == 0).sum().item()) / a.numel())
    # 6 live units: 15 pairs, one with |r| = 1, the others near 0
    live = a[:, 4:].double()
    c = torch.corrcoef(live.T).abs()
    expected = ((c.sum() - 6) / 30).item()
    assert math.isclose(s["mean_abs_correlation"], expected, rel_tol=1e-9)
    assert 1 / 15 < s["mean_abs_correlation"] < 1 / 15 + 0.1
    copies = unit_statistics(base.repeat(1, 5) * torch.arange(1.0, 6.0))
    assert math.isclose(copies["mean_abs_correlation"], 1.0, rel_tol=1e-9) and copies["dead_fraction"] == 0
    # rank: how many different units there really are (a constant unit is one direction too)
    assert s["rank"] == 1 + 1 + 4 and copies["rank"] == 1
    assert math.isclose(s["live_sparsity"], (a[:, 3:] == 0).double().mean().item(), rel_tol=1e-12)
    assert math.isnan(unit_statistics(torch.zeros(10, 4))["live_sparsity"])
    assert unit_statistics(torch.zeros(10, 4))["rank"] == 0


def test_unit_statistics_bad_input():
    with pytest.raises(ValueError, match="at least 2 samples"):
        unit_statistics(torch.zeros(0, 10))
    with pytest.raises(ValueError, match="2-D .samples x units.*flatten"):
        unit_statistics(torch.zeros(4, 3, 2, 2))
    with pytest.raises(ValueError, match="2-D"):
        unit_statistics(torch.zeros(5))
    with pytest.raises(TypeError, match="must be a tensor"):
        unit_statistics([[1.0, 2.0]])
    with pytest.raises(ValueError, match="NaN"):
        unit_statistics(torch.tensor([[1.0, math.nan], [0.0, 1.0]]))
    assert math.isnan(unit_statistics(torch.zeros(4, 3))["mean_abs_correlation"])


def test_filter_statistics_noise_smooth_and_copies():
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(64, 1, 7, 7, generator=g)
    s = filter_statistics(noise)
    assert abs(s["smoothness"]) < 0.05 and s["mean_abs_correlation"] < 0.15
    yy, xx = torch.meshgrid(torch.arange(7.0), torch.arange(7.0), indexing="ij")
    angles = torch.rand(64, generator=g) * 6.283
    ramps = (torch.cos(angles)[:, None, None] * xx + torch.sin(angles)[:, None, None] * yy)[:, None]
    assert filter_statistics(ramps)["smoothness"] > 0.9
    checker = ((xx + yy) % 2 * 2 - 1).expand(8, 1, 7, 7) * torch.arange(1.0, 9.0)[:, None, None, None]
    assert math.isclose(filter_statistics(checker)["smoothness"], -1.0, abs_tol=0.05)
    copies = noise[:1].repeat(16, 1, 1, 1) + 1e-3 * torch.randn(16, 1, 7, 7, generator=g)
    assert filter_statistics(copies)["mean_abs_correlation"] > 0.99
    assert "initial_correlation" not in s
    with pytest.raises(ValueError, match="conv weight"):
        filter_statistics(torch.zeros(16, 49))
    with pytest.raises(ValueError, match="conv weight"):
        filter_statistics(torch.zeros(16, 1, 1, 1))


def test_filter_statistics_correlation_with_the_initial_filters():
    g = torch.Generator().manual_seed(1)
    start = torch.randn(16, 1, 7, 7, generator=g)
    same = filter_statistics(0.3 * start + 0.05, initial=start)  # only scaled and shifted: still the random start
    assert math.isclose(same["initial_correlation"], 1.0, rel_tol=1e-9)
    replaced = filter_statistics(torch.randn(16, 1, 7, 7, generator=g), initial=start)
    assert abs(replaced["initial_correlation"]) < 0.1
    half = filter_statistics(start + torch.randn(16, 1, 7, 7, generator=g), initial=start)  # equal parts
    assert 0.6 < half["initial_correlation"] < 0.8
    with pytest.raises(ValueError, match="initial must be the layer's weight before training"):
        filter_statistics(start, initial=start[:8])


def test_relu_inputs_are_what_the_relus_saw():
    torch.manual_seed(0)
    net = tiny_convnet((3, 4), 8)
    x = torch.rand(5, 1, 28, 28)
    seen = relu_inputs(net, x)
    pre = net.features.conv1(x)
    assert seen.numel() == 5 * (3 * 28 * 28 + 4 * 14 * 14 + 8)
    assert torch.equal(seen[: pre.numel()], pre.detach().flatten())
    assert not any(m._forward_hooks for m in net.modules())  # the hooks are gone
    with pytest.raises(ValueError, match="no nn.ReLU"):
        relu_inputs(tiny_convnet((3, 4), 8, activation="silu"), x)


# ---------------------------------------------------------------- overfit check and degenerate loss

@pytest.fixture(scope="module")
def digits100():
    x, y = load_dataset("digits", True, verbose=False)
    return x[:100], y[:100]


def test_overfit_check_reaches_zero_and_fails_on_shuffled_labels(digits100):
    x, y = digits100
    torch.manual_seed(0)
    ok = overfit_subset(tiny_convnet((8, 16), 32), x, y, epochs=30, lr=0.05, batch_size=10)
    assert ok.reached_zero and ok.train_error == 0.0 and ok.n == 100 and len(ok.history) == 30
    torch.manual_seed(0)
    broken = overfit_subset(tiny_convnet((8, 16), 32), x, y, epochs=30, lr=0.05,
                            batches=ShuffledLabels(DeviceBatches(x, y, 10, shuffle=True)))
    assert not broken.reached_zero and broken.train_error > 0.3
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        overfit_subset(tiny_convnet(), x[:, 0], y)


def test_constant_output_loss_finds_a_degenerate_loss():
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(32, 4, generator=g)
    labels = torch.arange(32) % 4

    def pull_only(z, y):  # pulls same-class pairs together, nothing pushes others apart
        same = (y[:, None] == y[None]).float()
        return (torch.cdist(z, z) ** 2 * same).sum() / same.sum()

    def contrastive(z, y, margin=1.0):
        same = (y[:, None] == y[None]).float()
        d = torch.cdist(z, z)
        return ((d ** 2 * same) + (1 - same) * torch.relu(margin - d) ** 2).mean()

    pull = constant_output_loss(pull_only, emb, labels)
    assert pull["degenerate"] and pull["constant_loss"] == 0.0 < pull["loss"]
    ce = constant_output_loss(F.cross_entropy, torch.eye(4)[labels] * 10, labels)
    assert not ce["degenerate"] and ce["constant_loss"] > ce["loss"]
    # a margin loss at a well-separated embedding beats the constant
    sep = torch.eye(4)[labels] * 3
    assert not constant_output_loss(contrastive, sep, labels)["degenerate"]
    with pytest.raises(ValueError, match="at least 2 rows"):
        constant_output_loss(F.cross_entropy, torch.zeros(1, 3), torch.zeros(1, dtype=torch.long))


def test_hand_silu_module_and_tiny_net():
    with pytest.raises(ValueError, match="bug must be one of"):
        HandSiLU("typo")
    net = tiny_convnet()
    assert sum(p.numel() for p in net.parameters()) == 106_506
    assert net(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    assert net.hidden(torch.rand(2, 1, 28, 28)).shape == (2, 64)
    with pytest.raises(ValueError, match="unknown activation"):
        tiny_convnet(activation="gelu")
    with pytest.raises(ValueError, match="pool must be"):
        tiny_convnet(pool="min")


def test_batch_norm_in_training_mode_the_bias_before_it_has_zero_gradient():
    """The check's known disturbance: the conv bias in front of BN (training mode) has a true gradient of 0, so its
    relative error can only be rounding noise over the floor `tiny`; in eval mode it has a gradient."""
    torch.manual_seed(0)
    x, y = torch.rand(8, 1, 28, 28), torch.randint(10, (8,))
    net = tiny_convnet((3, 4), 8, activation="silu", pool="avg", batch_norm=True)
    for mode, expected in ((True, lambda g: g < 1e-9), (False, lambda g: g > 1e-6)):
        net.train(mode)
        norms = gradient_norms(net, F.cross_entropy(net.double()(x.double()), y), by="parameter")
        assert expected(norms["features.conv1.bias"]), (mode, norms["features.conv1.bias"])
    assert model_gradient_check(net.float().eval(), F.cross_entropy, x, y, num_checks=4, eps=1e-5).passed
