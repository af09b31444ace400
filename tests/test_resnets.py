"""The ResNets of notebook 05: CIFAR nets and plain twins (width, bad input, the shortcut), the notebook's sizes,
the ImageNet layouts (the paper's, torchvision's, option C)."""

from pathlib import Path

import pytest
import torch

from lecture_utils.course.parameters import notebook_parameters
from lecture_utils.inspect import count_parameters, layer_table
from lecture_utils.models import cifar_resnet
from lecture_utils.models.resnet import imagenet_resnet
from lecture_utils.profiles import PROFILES, settings

ROOT = Path(__file__).resolve().parents[1]


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


def test_the_notebooks_sizes_are_valid_nets_and_the_paper_at_full():
    sizes = notebook_parameters(ROOT / "notebooks" / "05_resnets.ipynb").sizes
    for profile in PROFILES:
        table = {name.lower(): entry[profile] for name, entry in sizes.items()}
        for depth in (table["depth_shallow"], table["depth_deep"]):
            assert (depth - 2) % 6 == 0 and depth >= 8
        assert table["depth_shallow"] < table["depth_deep"]
        assert table["n_monitor"] < table["n_test"]  # validation images first, then the scored test images
        assert settings(profile, sizes, dataset="cifar10", datasets=("cifar10", "digits"), schedule=None)
    full = {name.lower(): entry["full"] for name, entry in sizes.items()}
    assert (full["width"], full["depth_shallow"], full["depth_deep"], full["batch_size"]) == (16, 20, 56, 128)


def meta_table(depth, layout):
    with torch.device("meta"):
        return layer_table(imagenet_resnet(depth, layout), (3, 224, 224))


def test_imagenet_resnets_in_the_papers_layout_and_torchvisions():
    # torchvision's counts (DESIGN.md) and He et al. 2016 Table 1's FLOPs (multiply-adds, 10^9).
    params = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160, 152: 60_192_808}
    table1 = {18: 1.8, 34: 3.6, 50: 3.8, 101: 7.6, 152: 11.3}
    for depth in params:
        paper, tv = meta_table(depth, "paper"), meta_table(depth, "torchvision")
        assert paper.total_params == tv.total_params == params[depth]
        assert abs(paper.total_macs / 1e9 - table1[depth]) < 0.07  # the paper's layout gives Table 1's numbers
        if depth >= 50:  # v1.5: the stride in the 3x3 conv of a downsampling bottleneck costs more
            assert tv.total_macs > paper.total_macs + 0.2e9
        else:
            assert tv.total_macs == paper.total_macs


def test_option_c_projects_every_shortcut_of_resnet34():
    # Non-downsampling blocks: 3, 3, 5 and 2 at 64, 128, 256, 512 channels; each gets a 1x1 conv + BN.
    extra = sum(k * (c * c + 2 * c) for k, c in ((3, 64), (3, 128), (5, 256), (2, 512)))
    assert meta_table(34, "C").total_params - meta_table(34, "paper").total_params == extra == 919_168
    with pytest.raises(ValueError, match="layout must be one of"):
        imagenet_resnet(34, "B")
    with pytest.raises(ValueError, match="depth must be one of 18, 34"):
        imagenet_resnet(20)
