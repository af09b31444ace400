"""The CIFAR ResNets and plain nets of notebook 05: width, bad input, the shortcut, the profile table."""

import pytest
import torch

from lecture_utils.inspect import count_parameters, layer_table
from lecture_utils.models import cifar_resnet
from lecture_utils.profiles import PROFILES, SETTINGS, settings


def params_by_formula(depth, width, num_classes=10):
    """Conv weights (no biases), BN scale + shift, FC: the paper's layout at channels width, 2w, 4w."""
    n = (depth - 2) // 6
    w = (width, 2 * width, 4 * width)
    convs = 3 * 9 * w[0]  # first conv
    bns = 2 * w[0]
    for stage, c in enumerate(w):
        c_in = w[stage - 1] if stage else w[0]
        for block in range(n):
            first_in = c_in if block == 0 else c
            convs += 9 * first_in * c + 9 * c * c
            bns += 2 * 2 * c
    return convs + bns + 4 * width * num_classes + num_classes


def test_paper_nets_unchanged_by_width_default():
    assert count_parameters(cifar_resnet(20)) == 269_722
    assert count_parameters(cifar_resnet(56)) == 853_018
    assert count_parameters(cifar_resnet(20, width=16)) == 269_722


@pytest.mark.parametrize("depth,width", [(8, 4), (14, 8), (20, 8), (56, 8), (32, 12)])
def test_width_counts_match_formula_and_plain_twin(depth, width):
    res = cifar_resnet(depth, width=width)
    plain = cifar_resnet(depth, residual=False, width=width)
    assert count_parameters(res) == count_parameters(plain) == params_by_formula(depth, width)
    assert res.fc.in_features == 4 * width
    assert res(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_resnet20_macs_as_in_the_issue():
    # 40.6M multiply-accumulates per 32x32 image (convs and FC).
    assert round(layer_table(cifar_resnet(20), (3, 32, 32)).total_macs / 1e5) == 406
    # Halving the width quarters the conv MACs (up to the first conv and the FC layer).
    half = layer_table(cifar_resnet(20, width=8), (3, 32, 32)).total_macs
    assert 40.6e6 / 4 * 0.95 < half < 40.6e6 / 4 * 1.05


@pytest.mark.parametrize("depth", [21, 2, 7, 9, 0, -4, 20.0, "20", True, None])
def test_depth_not_6n_plus_2_is_refused(depth):
    with pytest.raises(ValueError, match=r"depth must be 6n\+2"):
        cifar_resnet(depth)


@pytest.mark.parametrize("residual", ["False", "yes", 1, 0, None, 1.0])
def test_residual_must_be_bool(residual):
    with pytest.raises(TypeError, match="residual must be a bool"):
        cifar_resnet(20, residual=residual)


@pytest.mark.parametrize("width", [0, 3, -16, 16.0, "16", True])
def test_bad_width_is_refused(width):
    with pytest.raises(ValueError, match="width must be an even int"):
        cifar_resnet(20, width=width)


def test_shortcut_carries_the_input_when_the_residual_branch_is_zero():
    """With every block's last BN scale and shift at 0, F(x) = 0: a ResNet passes its input on, a plain net outputs 0."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    outs = {}
    for residual in (True, False):
        model = cifar_resnet(8, residual=residual, width=4).eval()
        stem = model.relu(model.bn1(model.conv1(x)))
        for block in (model.layer1[0], model.layer2[0], model.layer3[0]):
            torch.nn.init.zeros_(block.bn2.weight)
            torch.nn.init.zeros_(block.bn2.bias)
        with torch.no_grad():
            outs[residual] = (stem, model.layer1(stem), model.layer3(model.layer2(model.layer1(stem))))
    stem, after1, after3 = outs[True]
    assert torch.equal(after1, stem)  # identity block: relu(0 + x) = x for x >= 0
    assert after3.shape == (2, 16, 8, 8) and after3.abs().sum() > 0  # subsampled, zero-padded input survives
    assert torch.equal(after3[:, :2], stem[:, :2, ::4, ::4] * 0)  # option A: the new channels are zero padding
    assert torch.equal(after3[:, 6:10], stem[:, :, ::4, ::4])  # the original 4 channels, in the middle
    assert outs[False][2].abs().sum() == 0  # the plain net has nothing to carry the input


def test_resnets_profile_table():
    for profile in PROFILES:
        table = SETTINGS["resnets"][profile]
        for depth in (table["depth_shallow"], table["depth_deep"]):
            assert (depth - 2) % 6 == 0 and depth >= 8
        assert table["depth_shallow"] < table["depth_deep"]
        assert table["n_monitor"] <= table["n_test"]
    full = SETTINGS["resnets"]["full"]
    assert (full["width"], full["depth_shallow"], full["depth_deep"], full["batch_size"]) == (16, 20, 56, 128)
    cfg = settings("resnets", "default", dataset="cifar10", schedule=None, width=16)
    assert cfg["width"] == 16 and cfg["schedule"] is None
    with pytest.raises(ValueError, match="SCHEDULE"):
        settings("resnets", "default", schedule="exponential")
    with pytest.raises(ValueError, match="N_TRAIN"):
        settings("resnets", "default", dataset="cifar10", n_train=50_001)
