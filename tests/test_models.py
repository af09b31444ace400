"""Parameter counts, shapes and ablation wiring of the lecture's models."""

import pytest
import torch
import torchvision

from lecture_utils.inspect import count_parameters
from lecture_utils.models import (
    BasicBlock,
    Inception,
    PadShortcut,
    alexnet,
    cifar_alexnet,
    cifar_googlenet,
    cifar_resnet,
    googlenet,
    lenet,
)
from lecture_utils.models.googlenet import INCEPTION_CONFIG
from lecture_utils.models.lenet import LeNet


def conv_params(c_in, c_out, k, bias=True):
    return c_in * c_out * k * k + (c_out if bias else 0)


def fc_params(n_in, n_out):
    return n_in * n_out + n_out


def copy_weights_in_order(source, target):
    """Load ``source``'s state dict into ``target`` by position (names differ, shapes must not)."""
    src, dst = source.state_dict(), target.state_dict()
    assert [v.shape for v in src.values()] == [v.shape for v in dst.values()]
    target.load_state_dict(dict(zip(dst.keys(), src.values())))


# --- LeNet ---------------------------------------------------------------------------


def test_lenet_shapes_and_parameter_count():
    model = lenet()
    assert model(torch.zeros(4, 1, 28, 28)).shape == (4, 10)
    # conv 1->32 (5x5), conv 32->64 (5x5), fc 64*4*4 -> 128, fc 128 -> 10
    expected = (
        conv_params(1, 32, 5) + conv_params(32, 64, 5) + fc_params(64 * 4 * 4, 128) + fc_params(128, 10)
    )
    assert count_parameters(model) == expected == 184_586
    assert lenet(num_classes=5, in_channels=3)(torch.zeros(2, 3, 28, 28)).shape == (2, 5)


def test_lenet_batch_norm_and_dropout_variants():
    model = lenet(batch_norm=True, dropout=0.5)
    kinds = {type(m).__name__ for m in model.modules()}
    assert {"BatchNorm2d", "BatchNorm1d", "Dropout"} <= kinds
    model.train()
    assert model(torch.randn(8, 1, 28, 28)).shape == (8, 10)
    assert not {"BatchNorm2d", "Dropout"} & {type(m).__name__ for m in lenet().modules()}
    with pytest.raises(ValueError, match="dropout"):
        lenet(dropout=1.0)


def test_lenet_without_pooling_has_the_same_weights_and_computes_strided_convolutions():
    pooled, strided = lenet(), lenet(pooling=False)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in strided.modules())
    assert [p.shape for p in pooled.parameters()] == [p.shape for p in strided.parameters()]
    assert count_parameters(strided) == 184_586
    # With the same weights, the stride-2 conv is the stride-1 conv's output at every other position.
    strided.load_state_dict(pooled.state_dict())
    x = torch.randn(3, 1, 28, 28)
    full = torch.relu(pooled.features.conv1(x))
    assert torch.allclose(torch.relu(strided.features.conv1(x)), full[:, :, ::2, ::2], atol=1e-6)
    assert strided.features(x).shape == pooled.features(x).shape == (3, 64, 4, 4)
    assert strided(x).shape == (3, 10)
    with pytest.raises(TypeError, match="pooling"):
        lenet(pooling="max")
    with pytest.raises(ValueError, match="image_size"):
        LeNet(image_size=12, pooling=False)


# --- AlexNet -------------------------------------------------------------------------


def test_alexnet_matches_torchvision():
    ours, theirs = alexnet(), torchvision.models.alexnet(weights=None)
    assert count_parameters(ours) == count_parameters(theirs) == 61_100_840
    # Same weights in the same order give the same function.
    copy_weights_in_order(theirs, ours)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), theirs.eval()(x))


def test_alexnet_remove_fc7_drops_its_4096x4096_layer():
    dropped = count_parameters(alexnet()) - count_parameters(alexnet(remove=(7,)))
    assert dropped == fc_params(4096, 4096) == 16_781_312


def test_alexnet_remove_3_4_6_7_rewires_and_runs():
    model = alexnet(remove=(3, 4, 6, 7))
    assert model(torch.zeros(1, 3, 224, 224)).shape == (1, 1000)
    # What is left: conv1, conv2, conv5 now reading conv2's 192 maps,
    # and the classifier reading the 256*6*6 flattened features directly.
    expected = (
        conv_params(3, 64, 11)
        + conv_params(64, 192, 5)
        + conv_params(192, 256, 3)
        + fc_params(256 * 6 * 6, 1000)
    )
    assert count_parameters(model) == expected == 9_990_312
    assert 61_100_840 - expected == 51_110_528
    names = list(dict(model.features.named_children()))
    assert names == ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "conv5", "relu5", "pool5"]
    assert list(dict(model.classifier.named_children())) == ["fc8"]


def test_alexnet_remove_fc6_feeds_fc7_the_flattened_features():
    model = alexnet(remove=(6,))
    assert model.classifier.fc7.in_features == 256 * 6 * 6
    assert model.classifier.fc8.in_features == 4096


@pytest.mark.parametrize("remove", [(0,), (8,), (3, 9), ("3",), (True,), (1, 2, 3, 4, 5), 3])
def test_alexnet_invalid_remove_raises(remove):
    with pytest.raises(ValueError, match=r"1-5"):
        alexnet(remove=remove)
    with pytest.raises(ValueError, match=r"1-5"):
        cifar_alexnet(remove=remove)


@pytest.mark.parametrize("remove", [(), (7,), (6, 7), (3, 4), (3, 4, 6, 7), (1,), (5,), (1, 2, 3, 4)])
def test_cifar_alexnet_forward_with_any_removal(remove):
    model = cifar_alexnet(remove=remove)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_cifar_alexnet_size():
    # width 0.5: 32-96-192-128-128 maps of 3x3 convs, pools to 4x4, FC 512.
    expected = (
        conv_params(3, 32, 3) + conv_params(32, 96, 3) + conv_params(96, 192, 3)
        + conv_params(192, 128, 3) + conv_params(128, 128, 3)
        + fc_params(128 * 4 * 4, 512) + fc_params(512, 512) + fc_params(512, 10)
    )
    assert count_parameters(cifar_alexnet()) == expected == 1_880_490
    assert count_parameters(cifar_alexnet(width=1.0, hidden=1024)) == 7_506_762


# --- GoogLeNet -----------------------------------------------------------------------


def test_googlenet_matches_torchvision():
    ours = googlenet()
    theirs = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False)
    assert count_parameters(ours) == count_parameters(theirs) == 6_624_904
    copy_weights_in_order(theirs, ours)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        out = ours.eval()(x)
        torch.testing.assert_close(out, theirs.eval()(x))
    assert out.shape == (1, 1000)


def test_googlenet_true_5x5_branch_adds_the_missing_weights():
    # A 5x5 kernel has 25 - 9 = 16 more weights per (in, out) pair than torchvision's 3x3.
    extra = sum(red * out * (25 - 9) for (_, _, _, red, out, _) in INCEPTION_CONFIG.values())
    assert count_parameters(googlenet(branch5x5_kernel=5)) - 6_624_904 == extra == 380_928


def test_inception_block_concatenates_branches():
    block = Inception(192, 64, 96, 128, 16, 32, 32)  # inception3a
    assert block(torch.zeros(1, 192, 28, 28)).shape == (1, 64 + 128 + 32 + 32, 28, 28)


def test_cifar_googlenet_forward():
    model = cifar_googlenet()
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert count_parameters(model) == 354_850


# --- ResNet --------------------------------------------------------------------------


def resnet_params(depth):
    """He et al. 2016 section 4.2, counted by hand: bias-free 3x3 convs, BN (2 per channel), FC."""
    n = (depth - 2) // 6

    def block(c_in, c_out):
        convs = conv_params(c_in, c_out, 3, bias=False) + conv_params(c_out, c_out, 3, bias=False)
        return convs + 2 * 2 * c_out  # + two BatchNorms (weight and bias per channel)

    stem = conv_params(3, 16, 3, bias=False) + 2 * 16
    stages = sum(block(c_in, c) + (n - 1) * block(c, c) for c_in, c in ((16, 16), (16, 32), (32, 64)))
    return stem + stages + fc_params(64, 10)


def test_resnet_parameter_counts_match_table_6():
    # Table 6: ResNet-20 "0.27M", ResNet-56 "0.85M".
    assert count_parameters(cifar_resnet(20)) == resnet_params(20) == 269_722
    assert count_parameters(cifar_resnet(56)) == resnet_params(56) == 853_018
    assert count_parameters(cifar_resnet(110)) == resnet_params(110) == 1_727_962


@pytest.mark.parametrize("depth", [8, 14, 20, 56])
def test_plain_net_has_the_same_parameters(depth):
    assert count_parameters(cifar_resnet(depth, residual=False)) == count_parameters(cifar_resnet(depth))


@pytest.mark.parametrize("depth", [8, 20])
@pytest.mark.parametrize("residual", [True, False])
def test_resnet_forward_shape(depth, residual):
    model = cifar_resnet(depth, residual=residual, num_classes=7)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 7)
    n_shortcuts = sum(isinstance(m, PadShortcut) for m in model.modules())
    assert n_shortcuts == (3 * (depth - 2) // 6 if residual else 0)


@pytest.mark.parametrize("depth", [21, 2, 0, 7, 9, 20.0, "20", True])
def test_resnet_invalid_depth_raises(depth):
    with pytest.raises(ValueError, match=r"6n\+2.*20, 32, 44, 56, 110"):
        cifar_resnet(depth)


def test_option_a_shortcut_subsamples_and_zero_pads():
    x = torch.randn(1, 16, 32, 32)
    y = PadShortcut(16, 32, stride=2)(x)
    assert y.shape == (1, 32, 16, 16)
    torch.testing.assert_close(y[:, 8:24], x[:, :, ::2, ::2])
    assert y[:, :8].abs().sum() == 0 and y[:, 24:].abs().sum() == 0


def test_residual_block_with_zero_residual_is_identity():
    # If F(x) = 0 (last BN scaled to 0), the block passes x through: identity is easy to learn.
    block = BasicBlock(16, 16).eval()
    torch.nn.init.zeros_(block.bn2.weight)
    x = torch.rand(1, 16, 8, 8)  # non-negative, like the output of a previous ReLU
    torch.testing.assert_close(block(x), x)


def test_resnet_uses_kaiming_init():
    torch.manual_seed(0)
    conv = cifar_resnet(20).layer3[1].conv1  # 64 -> 64, 3x3
    expected_std = (2.0 / (64 * 3 * 3)) ** 0.5  # fan_out mode, ReLU gain
    assert abs(conv.weight.std().item() / expected_std - 1) < 0.05
