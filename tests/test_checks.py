"""lecture_utils.checks: every check passes the right answer, and fails on its stub, its placeholder and wrong answers.

For each check: the right answer (written as a student would, independently of the package's code) prints one
line starting with "Correct:"; a stub's NotImplementedError goes through the check uncaught; None and ... raise
ExerciseError; plausible wrong answers raise ExerciseError whose message says what was expected, what came out,
and the specific hint for that mistake.
"""

import ast
import inspect
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lecture_utils import checks
from lecture_utils.augment import gaussian_smooth, random_displacement_field
from lecture_utils.checks import ExerciseError, rel_error
from lecture_utils.models.resnet import BasicBlock, PadShortcut


def stub(*args, **kwargs):
    raise NotImplementedError("Exercise: stub")


class StubBlock(nn.Module):
    def __init__(self, *args):
        super().__init__()
        raise NotImplementedError("Exercise 5.1: stub")


def passes(capsys, check, *args, **kwargs):
    """Run a check that must pass: it returns None and prints exactly one line, starting with 'Correct:'."""
    assert check(*args, **kwargs) is None
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Correct:"), lines
    return lines[0]


def fails(check, *args, hint=None, **kwargs):
    """Run a check that must fail with an ExerciseError that names the expectation, the result and a hint."""
    with pytest.raises(ExerciseError) as info:
        check(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    if "no answer yet" not in message:
        assert message.startswith("expected ") and ", got " in message and ". Hint: " in message, message
    if hint is not None:
        assert hint in message, message
    return message


# ---------------------------------------------------------------- the module's form

def test_every_check_is_tested_and_documented():
    names = [n for n in checks.__all__ if n.startswith("check_")]
    assert len(names) >= 21
    source = inspect.getsource(inspect.getmodule(test_every_check_is_tested_and_documented))
    for name in names:
        fn = getattr(checks, name)
        assert "Exercise " in fn.__doc__, f"{name} does not say which exercise it serves"
        assert source.count(f"checks.{name}") >= 3, f"{name} lacks right/stub/wrong tests here"
    by_notebook = {}
    for name in names:
        number = getattr(checks, name).__doc__.split("Exercise ")[1].split(".")[0]
        by_notebook[number] = by_notebook.get(number, 0) + 1
    assert sorted(by_notebook) == ["1", "2", "3", "4", "5", "6", "7"]
    assert min(by_notebook.values()) >= 3, by_notebook


def test_no_bare_assert_and_no_caught_not_implemented():
    files = sorted(Path(checks.__file__).parent.glob("*.py"))  # every module of the package lecture_utils.checks
    assert len(files) >= 9, files  # __init__, _core and one module per notebook
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.Assert)], f"bare assert in {path.name}"
        for handler in (n for n in ast.walk(tree) if isinstance(n, ast.ExceptHandler)):
            caught = ast.unparse(handler.type) if handler.type is not None else "everything"
            assert "NotImplementedError" not in caught and caught not in ("everything", "Exception",
                                                                          "BaseException"), f"{path.name}: {caught}"


def test_exercise_error_is_a_value_error():
    assert issubclass(ExerciseError, ValueError)


def test_rel_error_is_cs231ns():
    assert rel_error(1.0, 1.0) == 0
    assert rel_error(torch.tensor([1.0, 3.0]), torch.tensor([1.0, 1.0])) == pytest.approx(0.5)
    assert rel_error(0.0, 0.0) == 0


def test_checks_leave_the_global_random_state_alone(capsys):
    state = torch.get_rng_state()
    checks.check_basic_block(Block)
    checks.check_resnet20_parameters(269_722)
    checks.check_kaiming_std(math.sqrt(2 / 576))
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize("name", [n for n in checks.__all__ if n.startswith("check_")])
def test_placeholders_are_exercise_errors(name):
    check = getattr(checks, name)
    extra = {"check_rotated_accuracy": (nn.Linear(1, 1), torch.zeros(1, 1, 4, 4), torch.zeros(1), 10.0)}
    for placeholder in (None, ...):
        message = fails(check, placeholder, *extra.get(name, ()))
        assert "no answer yet" in message


# ---------------------------------------------------------------- 01

def lcn(x, sigma):
    v = x - gaussian_smooth(x.mean(1, keepdim=True), sigma)
    s = gaussian_smooth((v ** 2).mean(1, keepdim=True), sigma).sqrt()
    return v / torch.maximum(s, s.mean((2, 3), keepdim=True))


def test_local_contrast_normalization(capsys):
    passes(capsys, checks.check_local_contrast_normalization, lcn)
    rgb = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    passes(capsys, checks.check_local_contrast_normalization, lcn, images=rgb, sigma=1.5)
    with pytest.raises(NotImplementedError):
        checks.check_local_contrast_normalization(stub)
    fails(checks.check_local_contrast_normalization, lambda x, s: x - gaussian_smooth(x, s), hint="divide by the local")
    fails(checks.check_local_contrast_normalization,
          lambda x, s: (x - gaussian_smooth(x, s)) / gaussian_smooth((x - gaussian_smooth(x, s)) ** 2, s).sqrt(),
          hint="floor the divisor")
    fails(checks.check_local_contrast_normalization,
          lambda x, s: (x - x.mean((1, 2, 3), True)) / x.std((1, 2, 3), keepdim=True), hint="normalize locally")

    def zero_padded(x, s):  # a conv2d with zero padding instead of the reflection at the edges
        r = int(4 * s + 0.5)
        k = torch.exp(-0.5 * (torch.arange(-r, r + 1.0) / s) ** 2)
        k = (k / k.sum())
        blur = lambda t: F.conv2d(F.conv2d(t, k.view(1, 1, 1, -1), padding=(0, r)), k.view(1, 1, -1, 1), padding=(r, 0))
        v = x - blur(x)
        sd = blur(v * v).sqrt()
        return v / torch.maximum(sd, sd.mean((2, 3), keepdim=True))

    fails(checks.check_local_contrast_normalization, zero_padded, hint="reflects the image at its edges")
    fails(checks.check_local_contrast_normalization, lambda x, s: x[:, :, 1:], hint="of shape")
    fails(checks.check_local_contrast_normalization, lambda x, s: "normalized", hint="tensor")


def test_receptive_field(capsys):
    passes(capsys, checks.check_receptive_field, 16)  # LeNet: 1 + 4 + 1 * 1 + 4 * 2 + 1 * 2 ... = 16
    passes(capsys, checks.check_receptive_field, 7, layers=(("conv", 3, 1),) * 3)
    passes(capsys, checks.check_receptive_field, 19, layers=(("conv", 11, 4), ("pool", 3, 2)))
    fails(checks.check_receptive_field, 1 + 4 + 1 + 4 + 1, hint="product of the strides")
    fails(checks.check_receptive_field, 256, hint="side of the square")
    fails(checks.check_receptive_field, 15.5, hint="whole number")
    fails(checks.check_receptive_field, "16", hint="plain number")


def rotation_setup():
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(200, 1, 12, 12, generator=g) * 255).to(torch.uint8)
    model = nn.Sequential(nn.Flatten(), nn.Linear(144, 10))
    with torch.no_grad():  # a "model" that reads each pixel's deviation from 0.5: a rotation changes its answers
        model[1].weight.copy_(torch.randn(10, 144, generator=g))
        model[1].bias.copy_(-0.5 * model[1].weight.sum(1))
    labels = model(images.float() / 255).argmax(1)  # 100% on the unrotated images
    return model, images, labels


def test_rotated_accuracy(capsys):
    from lecture_utils.augment import affine

    model, images, labels = rotation_setup()
    acc = (model(affine(images.float() / 255, angle=45.0)).argmax(1) == labels).float().mean().item()
    assert acc < 0.8
    model.train()
    passes(capsys, checks.check_rotated_accuracy, acc, model, images, labels, 45.0)
    assert model.training  # the mode is restored
    fails(checks.check_rotated_accuracy, 1.0, model, images, labels, 45.0, hint="unrotated")
    fails(checks.check_rotated_accuracy, 1 - acc, model, images, labels, 45.0, hint="that is the error")
    fails(checks.check_rotated_accuracy, 100 * acc, model, images, labels, 45.0, hint="percentage")


# ---------------------------------------------------------------- 02

def simard_field(n, height, width, alpha, sigma, generator):
    noise = torch.rand(n, 2, height, width, generator=generator) * 2 - 1
    return alpha * gaussian_smooth(noise, sigma)


def test_displacement_field(capsys):
    line = passes(capsys, checks.check_displacement_field, simard_field)
    assert "random_displacement_field's" in line
    passes(capsys, checks.check_displacement_field, simard_field, alpha=8.0, sigma=2.0, size=(20, 24))
    with pytest.raises(NotImplementedError):
        checks.check_displacement_field(stub)
    fails(checks.check_displacement_field, lambda n, h, w, a, s, g: simard_field(n, h, w, 1.0, s, g),
          hint="scale the smoothed field by alpha")
    fails(checks.check_displacement_field, lambda n, h, w, a, s, g: a * (torch.rand(n, 2, h, w, generator=g) * 2 - 1),
          hint="smooth the noise")
    fails(checks.check_displacement_field,
          lambda n, h, w, a, s, g: a * gaussian_smooth(torch.rand(n, 2, h, w, generator=g), s), hint="(-1, 1)")

    def smooths_everything(n, h, w, a, s, g):
        from scipy.ndimage import gaussian_filter

        noise = (torch.rand(n, 2, h, w, generator=g) * 2 - 1).numpy()
        return a * torch.from_numpy(gaussian_filter(noise, s, mode="reflect"))

    fails(checks.check_displacement_field, smooths_everything, hint="each (H, W) plane alone")
    fails(checks.check_displacement_field, lambda n, h, w, a, s, g: simard_field(n, h, w, a, s, None),
          hint="generator you are given")
    fails(checks.check_displacement_field, lambda n, h, w, a, s, g: simard_field(n, h, w, a, s, g)[:, 0],
          hint="of shape")


def test_interior_rms_formula_matches_a_monte_carlo_measurement():
    """The formula of check_interior_rms against the package's fields, far from the border (96 x 96)."""
    for alpha, sigma in ((34.0, 4.0), (10.0, 2.0)):
        field = random_displacement_field(64, 96, 96, alpha, sigma, torch.Generator().manual_seed(0))
        margin = int(4 * sigma + 0.5)
        measured = field[..., margin:-margin, margin:-margin].double().pow(2).mean().sqrt().item()
        r = int(4 * sigma + 0.5)
        g = torch.exp(-0.5 * (torch.arange(-r, r + 1.0, dtype=torch.float64) / sigma) ** 2)
        g = g / g.sum()
        formula = alpha * g.pow(2).sum().item() / math.sqrt(3)
        assert measured == pytest.approx(formula, rel=0.03)
        assert formula == pytest.approx(alpha / (2 * math.sqrt(3 * math.pi) * sigma), rel=0.002)


def test_interior_rms(capsys):
    exact = 34.0 * 0.0705 / math.sqrt(3)  # sum g^2 ~ 1 / (2 sqrt(pi) 4) = 0.0705
    passes(capsys, checks.check_interior_rms, 34 / (2 * math.sqrt(3 * math.pi) * 4))
    passes(capsys, checks.check_interior_rms, exact)
    passes(capsys, checks.check_interior_rms, 10 / (2 * math.sqrt(3 * math.pi) * 2), alpha=10.0, sigma=2.0)
    fails(checks.check_interior_rms, exact * math.sqrt(2), hint="length of the vector")
    fails(checks.check_interior_rms, exact * math.sqrt(3), hint="variance 1/3")
    fails(checks.check_interior_rms, 34 * math.sqrt(0.0705 / 3), hint="without a square root")
    fails(checks.check_interior_rms, exact / 34, hint="multiply by alpha")
    fails(checks.check_interior_rms, 34 / math.sqrt(3), hint="before smoothing")
    fails(checks.check_interior_rms, math.nan, hint="finite number")


def grid_warp(images, field, align_corners=True, swap=False, norm=1):
    n, _, h, w = images.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=images.dtype), torch.arange(w, dtype=images.dtype), indexing="ij")
    dy, dx = (field[:, 1], field[:, 0]) if swap else (field[:, 0], field[:, 1])
    gx = 2 * (xs + dx) / (w - norm) - 1
    gy = 2 * (ys + dy) / (h - norm) - 1
    return F.grid_sample(images, torch.stack([gx, gy], -1), mode="bilinear", padding_mode="zeros",
                         align_corners=align_corners)


def test_warp(capsys):
    from lecture_utils.augment import warp

    passes(capsys, checks.check_warp, grid_warp)
    passes(capsys, checks.check_warp, warp)  # the package's warp follows the same convention
    with pytest.raises(NotImplementedError):
        checks.check_warp(stub)
    fails(checks.check_warp, lambda x, f: grid_warp(x, f, swap=True), hint="field[:, 0] is dy")
    fails(checks.check_warp, lambda x, f: grid_warp(x, -f), hint="add the displacement")
    fails(checks.check_warp, lambda x, f: grid_warp(x, f, align_corners=False), hint="align_corners=True")
    fails(checks.check_warp, lambda x, f: grid_warp(x, f, norm=0), hint="normalize by (n - 1)")


# ---------------------------------------------------------------- 03

def test_output_size(capsys):
    passes(capsys, checks.check_output_size, lambda n, k, s=1, p=0: (n + 2 * p - k) // s + 1)
    with pytest.raises(NotImplementedError):
        checks.check_output_size(stub)
    fails(checks.check_output_size, lambda n, k, s=1, p=0: (n + 2 * p - k) / s + 1, hint="round down")
    fails(checks.check_output_size, lambda n, k, s=1, p=0: (n + 2 * p - k) // s, hint="add 1")
    fails(checks.check_output_size, lambda n, k, s=1, p=0: (n + p - k) // s + 1, hint="both sides")
    fails(checks.check_output_size, lambda n, k, s=1, p=0: (n - k) // s + 1, hint="count the padding")


def test_layer_parameters(capsys):
    passes(capsys, checks.check_layer_parameters, 9216 * 4096 + 4096)
    passes(capsys, checks.check_layer_parameters, 64 * 3 * 11 * 11 + 64, layer="conv1")
    passes(capsys, checks.check_layer_parameters, 4096 * 1000 + 1000, layer="fc8")
    fails(checks.check_layer_parameters, 9216 * 4096, hint="add the biases")
    fails(checks.check_layer_parameters, 256 * 13 * 13 * 4096 + 4096, hint="6 x 6")
    fails(checks.check_layer_parameters, 64 * 3 * 11 * 11, layer="conv1", hint="add the biases")
    with pytest.raises(ExerciseError, match="layer must be one of"):
        checks.check_layer_parameters(1, layer="fc9")


def test_layer_macs(capsys):
    passes(capsys, checks.check_layer_macs, 55 * 55 * 64 * 3 * 11 * 11)
    passes(capsys, checks.check_layer_macs, 9216 * 4096, layer="fc6")
    fails(checks.check_layer_macs, 2 * 55 * 55 * 64 * 3 * 11 * 11, hint="FLOPs")
    fails(checks.check_layer_macs, 56 * 56 * 64 * 3 * 11 * 11, hint="55 x 55")
    fails(checks.check_layer_macs, 55 * 55 * 64 * 11 * 11, hint="3 input channels")
    fails(checks.check_layer_macs, 64 * 3 * 11 * 11 + 64, hint="parameter count")


def test_biggest_saving(capsys):
    line = passes(capsys, checks.check_biggest_saving, 2)  # conv2: conv3 then reads 64 maps instead of 192
    assert "1: -" in line  # removing conv1 costs compute: conv2 then runs on large maps
    passes(capsys, checks.check_biggest_saving, 6, quantity="params")  # a tie: fc7 then reads 9216 inputs
    passes(capsys, checks.check_biggest_saving, 7, quantity="params")
    fails(checks.check_biggest_saving, 6, hint="saved per layer")
    fails(checks.check_biggest_saving, 1, hint="saved per layer")
    fails(checks.check_biggest_saving, 8, hint="cannot be removed")
    fails(checks.check_biggest_saving, 3, quantity="params", hint="saved per layer")


# ---------------------------------------------------------------- 04

REDUCED = 28 * 28 * (192 * 16 + 16 * 32 * 25)
NAIVE = 28 * 28 * 192 * 32 * 25


def test_branch_macs(capsys):
    passes(capsys, checks.check_branch_macs, REDUCED)
    passes(capsys, checks.check_branch_macs, NAIVE, reduction=False)
    fails(checks.check_branch_macs, 28 * 28 * 16 * 32 * 25, hint="1x1 reduction too")
    fails(checks.check_branch_macs, 28 * 28 * (192 * 16 + 16 * 32 * 9), hint="5x5 kernel")
    fails(checks.check_branch_macs, 2 * REDUCED, hint="FLOPs")
    fails(checks.check_branch_macs, NAIVE, hint="without the reduction")
    fails(checks.check_branch_macs, REDUCED, reduction=False, hint="with the reduction")


class SmallInception(nn.Module):
    def __init__(self, reduce=16, out5=32):
        super().__init__()
        p = 1
        self.b1 = nn.Conv2d(192, 96, 1)
        self.b2 = nn.Sequential(nn.Conv2d(192, 48, 1), nn.ReLU(), nn.Conv2d(48, 96, 3, padding=p))
        self.b3 = nn.Sequential(nn.Conv2d(192, reduce, 1), nn.ReLU(), nn.Conv2d(reduce, out5, 3, padding=p))
        self.b4 = nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(192, 32, 1))

    def forward(self, x):
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1)


class StubInception(nn.Module):
    def forward(self, x):
        raise NotImplementedError("Exercise 4.2: stub")


def test_inception_budget(capsys):
    module = SmallInception().train()
    passes(capsys, checks.check_inception_budget, module)
    assert module.training
    with pytest.raises(NotImplementedError):
        checks.check_inception_budget(StubInception())
    fails(checks.check_inception_budget, SmallInception(reduce=192), hint="1x1 reduction")
    fails(checks.check_inception_budget, nn.Sequential(SmallInception(), nn.MaxPool2d(3, 1)), hint="padding")
    fails(checks.check_inception_budget, SmallInception(out5=16), hint="concatenate")
    fails(checks.check_inception_budget, nn.Conv2d(192, 256, 1), hint="several scales")
    fails(checks.check_inception_budget, SmallInception, hint="build it")


def test_head_parameters(capsys):
    passes(capsys, checks.check_head_parameters, 1024 * 1000 + 1000)
    passes(capsys, checks.check_head_parameters, 9216 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 1000 + 1000,
           net="alexnet")
    fails(checks.check_head_parameters, 1024 * 1000, hint="add the biases")
    fails(checks.check_head_parameters, 1024 * 7 * 7 * 1000 + 1000, hint="one number per map")


# ---------------------------------------------------------------- 05

class Block(nn.Module):
    """A student's BasicBlock, written without the package's PadShortcut."""

    def __init__(self, in_channels, out_channels, stride=1, shortcut=True, relu_last=True, pad="split"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.stride, self.extra = stride, out_channels - in_channels
        self.use_shortcut, self.relu_last, self.pad = shortcut, relu_last, pad

    def forward(self, x):
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        if not self.use_shortcut:
            return torch.relu(out)
        s = x[:, :, ::self.stride, ::self.stride]
        before = self.extra // 2 if self.pad == "split" else 0
        s = F.pad(s, (0, 0, 0, 0, before, self.extra - before))
        return torch.relu(out + s) if self.relu_last else torch.relu(out) + s


class OptionB(Block):
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__(in_channels, out_channels, stride)
        self.project = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False) if stride != 1 else None


class Renamed(nn.Module):
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.a = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.b = nn.BatchNorm2d(out_channels)
        self.c = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.d = nn.BatchNorm2d(out_channels)
        self.shortcut = PadShortcut(in_channels, out_channels, stride)

    def forward(self, x):
        return torch.relu(self.d(self.c(torch.relu(self.b(self.a(x))))) + self.shortcut(x))


def test_basic_block(capsys):
    passes(capsys, checks.check_basic_block, Block)
    passes(capsys, checks.check_basic_block, BasicBlock)
    passes(capsys, checks.check_basic_block, Renamed)  # other names: the weights are copied in order
    with pytest.raises(NotImplementedError):
        checks.check_basic_block(StubBlock)
    fails(checks.check_basic_block, lambda i, o, s: Block(i, o, s, shortcut=False), hint="add the shortcut")
    fails(checks.check_basic_block, lambda i, o, s: Block(i, o, s, relu_last=False), hint="after the sum")
    fails(checks.check_basic_block, lambda i, o, s: Block(i, o, s, pad="after"), hint="half before")
    fails(checks.check_basic_block, OptionB, hint="no parameters")
    fails(checks.check_basic_block, lambda i, o, s: nn.Conv2d(i, o, 3, s, 1), hint="two 3x3 convs")


def test_resnet20_parameters(capsys):
    convs = 3 * 16 * 9 + 6 * 16 * 16 * 9 + (16 * 32 + 5 * 32 * 32) * 9 + (32 * 64 + 5 * 64 * 64) * 9
    bn = 2 * (16 + 6 * 16 + 6 * 32 + 6 * 64)
    fc = 64 * 10 + 10
    passes(capsys, checks.check_resnet20_parameters, convs + bn + fc)
    fails(checks.check_resnet20_parameters, convs + fc, hint="BatchNorm")
    fails(checks.check_resnet20_parameters, convs + bn + fc + 16 * 32 + 32 * 64 + 2 * (32 + 64), hint="option A")
    fails(checks.check_resnet20_parameters, convs + bn + 64 * 10, hint="10 biases")
    fails(checks.check_resnet20_parameters, 270_000, hint="per 3x3 conv")


def test_ensemble(capsys):
    passes(capsys, checks.check_ensemble, lambda logits: torch.stack([l.softmax(1) for l in logits]).mean(0))
    with pytest.raises(NotImplementedError):
        checks.check_ensemble(stub)
    fails(checks.check_ensemble, lambda logits: torch.stack(logits).mean(0).softmax(1), hint="not the logits")
    fails(checks.check_ensemble, lambda logits: torch.stack(logits).mean(0), hint="apply softmax")
    fails(checks.check_ensemble, lambda logits: torch.stack([l.softmax(1) for l in logits]).sum(0), hint="divide")
    fails(checks.check_ensemble, lambda logits: torch.stack(logits).mean(0).argmax(1), hint="of shape")


def test_ensemble_default_members_tell_probability_and_logit_averaging_apart():
    members, labels = checks._member_logits()
    by_probs = torch.stack([m.softmax(1) for m in members]).mean(0).argmax(1)
    by_logits = torch.stack(members).mean(0).argmax(1)
    assert (by_probs != by_logits).any()


# ---------------------------------------------------------------- 06

def halve(train_fn, start_lr, min_lr=1e-6):
    lr = start_lr
    while lr >= min_lr:
        losses = train_fn(lr)
        if all(math.isfinite(v) for v in losses) and losses[-1] <= 0.8 * losses[0]:
            return lr
        lr /= 2
    raise RuntimeError("no learning rate learned")


def test_halving_rule(capsys):
    passes(capsys, checks.check_halving_rule, halve)
    with pytest.raises(NotImplementedError):
        checks.check_halving_rule(stub)

    def ignores_nan(train_fn, lr):
        while train_fn(lr)[-1] > 0.8 * train_fn(lr)[0]:
            lr /= 2
        return lr

    def did_not_diverge(train_fn, lr):  # the rule's old reading: the last loss not above the first
        while not all(math.isfinite(v) for v in train_fn(lr)) or train_fn(lr)[-1] > train_fn(lr)[0]:
            lr /= 2
        return lr

    def one_too_far(train_fn, lr):
        return halve(train_fn, lr) / 2

    def any_rise(train_fn, lr):
        while True:
            losses = train_fn(lr)
            if all(math.isfinite(v) for v in losses) and all(b < a for a, b in zip(losses, losses[1:])):
                return lr
            lr /= 2

    def forever(train_fn, lr):
        while True:
            train_fn(lr)
            lr /= 2

    fails(checks.check_halving_rule, ignores_nan, hint="math.isfinite")
    fails(checks.check_halving_rule, one_too_far, hint="try start_lr itself first")
    fails(checks.check_halving_rule, lambda f, lr: 2 * halve(f, lr), hint="one more halving")
    fails(checks.check_halving_rule, any_rise, hint="rises and then falls")
    fails(checks.check_halving_rule, forever, hint="stop at the first run")
    fails(checks.check_halving_rule, did_not_diverge, hint="stays flat did not learn")


def test_kaiming_std(capsys):
    line = passes(capsys, checks.check_kaiming_std, math.sqrt(2 / (64 * 9)))
    drawn = float(line.rsplit(": ", 1)[1].rstrip(")"))
    assert drawn == pytest.approx(math.sqrt(2 / 576), rel=0.01)  # torch's kaiming_normal_ agrees with the formula
    passes(capsys, checks.check_kaiming_std, math.sqrt(2 / 300), layer=nn.Linear(300, 10))
    passes(capsys, checks.check_kaiming_std, math.sqrt(2 / (16 * 25)), layer=nn.Conv2d(32, 64, 5, groups=2))
    fails(checks.check_kaiming_std, math.sqrt(2 / (96 * 9)), hint="fan_out")
    fails(checks.check_kaiming_std, math.sqrt(1 / 576), hint="sqrt(2)")
    fails(checks.check_kaiming_std, 2 / 576, hint="variance")
    fails(checks.check_kaiming_std, math.sqrt(2 / 64), hint="kernel's positions")
    fails(checks.check_kaiming_std, math.sqrt(2 / (576 + 864)), hint="Glorot")


def momentum_step(w, grad, velocity, lr, momentum, nesterov=False):
    velocity = momentum * velocity + grad
    step = grad + momentum * velocity if nesterov else velocity
    return w - lr * step, velocity


def test_momentum_step(capsys):
    passes(capsys, checks.check_momentum_step, momentum_step)
    with pytest.raises(NotImplementedError):
        checks.check_momentum_step(stub)
    fails(checks.check_momentum_step, lambda w, g, v, lr, m, n: (w - lr * g, v), hint="carry over")
    fails(checks.check_momentum_step, lambda w, g, v, lr, m, n: momentum_step(w, g, v, lr, m, False),
          hint="nesterov=True")
    fails(checks.check_momentum_step, lambda w, g, v, lr, m, n: momentum_step(w, g, v, lr, m, n)[0], hint="a pair")



def shared_and_dense(channels, kernel, size):
    outputs = channels * size * size
    return channels * (kernel * kernel + 1), size * size * outputs + outputs


def test_weight_sharing(capsys):
    assert shared_and_dense(8, 5, 28) == (208, 4_923_520)
    line = passes(capsys, checks.check_weight_sharing, shared_and_dense)
    assert "208 against 4,923,520" in line
    with pytest.raises(NotImplementedError):
        checks.check_weight_sharing(stub)
    fails(checks.check_weight_sharing, lambda c, k, s: (c * k * k, shared_and_dense(c, k, s)[1]),
          hint="one bias per output channel")
    fails(checks.check_weight_sharing, lambda c, k, s: (c * (k * k + 1) * s * s, shared_and_dense(c, k, s)[1]),
          hint="without weight sharing")
    fails(checks.check_weight_sharing, lambda c, k, s: (c * (k * k + 1), s ** 4 * c), hint="one bias per output")
    fails(checks.check_weight_sharing, lambda c, k, s: (c * (k * k + 1), s * s * c + c), hint="not one per channel")
    fails(checks.check_weight_sharing, lambda c, k, s: shared_and_dense(c, k, s)[0], hint="a pair")


def trials_needed(fraction, confidence):
    return math.ceil(math.log(1 - confidence) / math.log(1 - fraction))


def test_random_search_trials(capsys):
    assert trials_needed(0.05, 0.95) == 59  # Bergstra & Bengio's "60 trials"
    passes(capsys, checks.check_random_search_trials, trials_needed)
    with pytest.raises(NotImplementedError):
        checks.check_random_search_trials(stub)
    fails(checks.check_random_search_trials, lambda f, c: trials_needed(f, c) - 1, hint="round up")
    fails(checks.check_random_search_trials, lambda f, c: math.ceil(c / f), hint="do not add up linearly")
    fails(checks.check_random_search_trials, lambda f, c: math.ceil(math.log(c) / math.log(1 - f)),
          hint="1 - confidence")


def expected_improvement(mu, sd, best):
    normal = torch.distributions.Normal(0.0, 1.0)
    z = (best - mu) / sd
    return (best - mu) * normal.cdf(z) + sd * normal.log_prob(z).exp()


def test_expected_improvement(capsys):
    passes(capsys, checks.check_expected_improvement, expected_improvement)
    with pytest.raises(NotImplementedError):
        checks.check_expected_improvement(stub)
    fails(checks.check_expected_improvement, lambda m, s, b: expected_improvement(-m, s, -b), hint="maximization")
    fails(checks.check_expected_improvement,
          lambda m, s, b: (b - m) * torch.distributions.Normal(0.0, 1.0).cdf((b - m) / s), hint="sd * phi(z)")
    fails(checks.check_expected_improvement, lambda m, s, b: (b - m).clamp_min(0), hint="ignores the uncertainty")
    fails(checks.check_expected_improvement, lambda m, s, b: expected_improvement(m, s, b)[:3], hint=".shape")


# ---------------------------------------------------------------- 07

def numerical_gradient(f, x, h=1e-5):
    grad = torch.zeros_like(x)
    flat, gflat = x.view(-1), grad.view(-1)
    for i in range(flat.numel()):
        old = flat[i].item()
        flat[i] = old + h
        fp = float(f(x))
        flat[i] = old - h
        fm = float(f(x))
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * h)
    return grad


def test_gradient_check(capsys):
    line = passes(capsys, checks.check_gradient_check, numerical_gradient)
    assert "planted bug" in line
    with pytest.raises(NotImplementedError):
        checks.check_gradient_check(stub)

    def forward(f, x, h=1e-5):
        grad, f0 = torch.zeros_like(x), float(f(x))
        for i in range(x.numel()):
            old = x.view(-1)[i].item()
            x.view(-1)[i] = old + h
            grad.view(-1)[i] = (float(f(x)) - f0) / h
            x.view(-1)[i] = old
        return grad

    def not_restored(f, x, h=1e-5):
        grad = numerical_gradient(f, x, h)
        x.view(-1)[0] += h
        return grad

    def from_autograd(f, x, h=1e-5):
        x = x.clone().requires_grad_()
        return torch.autograd.grad(f(x), x)[0]

    fails(checks.check_gradient_check, forward, hint="centred difference")
    fails(checks.check_gradient_check, lambda f, x, h=1e-5: 2 * numerical_gradient(f, x, h), hint="2 h")
    fails(checks.check_gradient_check, not_restored, hint="put each entry back")
    fails(checks.check_gradient_check, from_autograd, hint="values only")


def smoothness(w):
    var = ((w - w.mean()) ** 2).mean()
    diffs = torch.cat([(w[1:, :] - w[:-1, :]).flatten(), (w[:, 1:] - w[:, :-1]).flatten()])
    return float(1 - (diffs ** 2).mean() / (2 * var))


def test_smoothness(capsys):
    line = passes(capsys, checks.check_smoothness, smoothness)
    assert "white noise" in line and "checkerboard" in line
    with pytest.raises(NotImplementedError):
        checks.check_smoothness(stub)
    fails(checks.check_smoothness, lambda w: float(1 - ((w[:, 1:] - w[:, :-1]) ** 2).mean() / (2 * w.var(False))),
          hint="vertical neighbours too")
    fails(checks.check_smoothness, lambda w: 1 - (1 - smoothness(w)) * 2 * w.var(False) / (2 * w.var()),
          hint="population variance")
    fails(checks.check_smoothness, lambda w: 1 - 2 * (1 - smoothness(w)), hint="divide by 2 var")
    fails(checks.check_smoothness, lambda w: 1 - smoothness(w), hint="1 minus that ratio")


def test_dead_fraction(capsys):
    a = checks._dead_layer()
    assert 0 < (a == 0).all(0).float().mean() < (a == 0).float().mean()  # dead units, and a sparsity apart
    passes(capsys, checks.check_dead_fraction, 10 / 40)
    custom = torch.relu(torch.randn(8, 5, generator=torch.Generator().manual_seed(3)) - torch.tensor([9.0, 0, 0, 9, 0]))
    passes(capsys, checks.check_dead_fraction, 0.4, activations=custom)
    fails(checks.check_dead_fraction, (a == 0).float().mean().item(), hint="sparsity")
    fails(checks.check_dead_fraction, (a == 0).any(0).float().mean().item(), hint="not .any")
    fails(checks.check_dead_fraction, 10, hint="not a count")
    fails(checks.check_dead_fraction, 25.0, hint="percentage")
    with pytest.raises(ExerciseError, match="samples x units"):
        checks.check_dead_fraction(0.5, activations=torch.zeros(2, 3, 4, 4))


def test_chance_loss(capsys):
    passes(capsys, checks.check_chance_loss, math.log(10))
    passes(capsys, checks.check_chance_loss, 2.3026)
    passes(capsys, checks.check_chance_loss, math.log(100), num_classes=100)
    fails(checks.check_chance_loss, 1.0, hint="natural logarithm")
    fails(checks.check_chance_loss, 0.1, hint="-log of it")
    fails(checks.check_chance_loss, -math.log(10), hint="positive")


def silu_grad(x):
    s = torch.sigmoid(x)
    return s + x * s * (1 - s)


def test_silu_backward(capsys):
    line = passes(capsys, checks.check_silu_backward, silu_grad)
    assert "gradient_check" in line
    with pytest.raises(NotImplementedError):
        checks.check_silu_backward(stub)
    s = torch.sigmoid
    fails(checks.check_silu_backward, lambda x: s(x) + s(x) * (1 - s(x)), hint="the x of the product rule")
    fails(checks.check_silu_backward, lambda x: -silu_grad(x), hint="sign is flipped")
    fails(checks.check_silu_backward, lambda x: s(x), hint="two terms")
    fails(checks.check_silu_backward, lambda x: s(x) * (1 - s(x)), hint="sigmoid's derivative alone")
    fails(checks.check_silu_backward, lambda x: x * s(x), hint="forward pass")
    fails(checks.check_silu_backward, lambda x: silu_grad(x)[:-1], hint="shape")


def contrastive(z, y, margin=1.0):
    same = (y[:, None] == y[None, :]).to(z.dtype)
    d = torch.cdist(z, z)
    return (same * d ** 2 + (1 - same) * torch.relu(margin - d) ** 2).mean()


def test_contrastive_loss(capsys):
    line = passes(capsys, checks.check_contrastive_loss, contrastive)
    assert "no degenerate minimum" in line
    with pytest.raises(NotImplementedError):
        checks.check_contrastive_loss(stub)

    def pull_only(z, y, margin=1.0):
        same = (y[:, None] == y[None, :]).to(z.dtype)
        return (same * torch.cdist(z, z) ** 2).mean()

    def no_relu(z, y, margin=1.0):
        same = (y[:, None] == y[None, :]).to(z.dtype)
        d = torch.cdist(z, z)
        return (same * d ** 2 + (1 - same) * (margin - d) ** 2).mean()

    def off_diagonal(z, y, margin=1.0):
        n = len(y)
        return contrastive(z, y, margin) * n / (n - 1)

    fails(checks.check_contrastive_loss, pull_only, hint="nothing pushes different classes apart")
    fails(checks.check_contrastive_loss, no_relu, hint="torch.relu(margin - d)")
    fails(checks.check_contrastive_loss, off_diagonal, hint="i = j included")
    fails(checks.check_contrastive_loss, lambda z, y, margin=1.0: contrastive(z, y, margin).item(), hint="not a float")
    fails(checks.check_contrastive_loss, lambda z, y, margin=1.0: contrastive(z.detach(), y, margin),
          hint="cut the gradient")
