"""Notebook 04's numbers: inception (3a) naive against reduced, branch by branch, and GoogLeNet whole."""

import pytest
import torch

from lecture_utils.inspect import count_parameters, layer_table
from lecture_utils.models import Inception, alexnet, googlenet

# Szegedy et al. 2014, Table 1, inception (3a): input 28x28x192.
IN, SIZE = 192, 28
C1, C3R, C3, C5R, C5, PP = 64, 96, 128, 16, 32, 32


def conv_weights(table):
    return sum(r["params"] for r in table.rows if r["type"] == "Conv2d")


def branch_macs(table, branch):
    return sum(r["macs"] for r in table.rows if r["name"].startswith(branch))


@pytest.fixture(scope="module")
def tables():
    naive = Inception(IN, C1, C3R, C3, C5R, C5, PP, branch5x5_kernel=5, reduce=False)
    reduced = Inception(IN, C1, C3R, C3, C5R, C5, PP, branch5x5_kernel=5)
    return layer_table(naive, (IN, SIZE, SIZE)), layer_table(reduced, (IN, SIZE, SIZE))


def test_naive_module_weights_and_macs(tables):
    naive, _ = tables
    weights = IN * C1 + IN * C3 * 9 + IN * C5 * 25
    assert conv_weights(naive) == weights == 387_072  # "about 387K"
    assert naive.total_macs == weights * SIZE * SIZE == 303_464_448  # "about 304M"
    assert branch_macs(naive, "branch3") == IN * C5 * 25 * SIZE * SIZE == 120_422_400  # the 5x5 branch: 120M
    # No pool projection: the pool branch passes all 192 input maps on.
    assert naive.rows[-1]["output_shape"] == f"(1, {IN}, {SIZE}, {SIZE})"


def test_reduced_module_matches_the_paper(tables):
    _, reduced = tables
    weights = IN * C1 + IN * C3R + C3R * C3 * 9 + IN * C5R + C5R * C5 * 25 + IN * PP
    assert conv_weights(reduced) == weights == 163_328  # the paper: 159K
    assert reduced.total_macs == weights * SIZE * SIZE == 128_049_152  # the paper: 128M
    assert branch_macs(reduced, "branch3") == (IN * C5R + C5R * C5 * 25) * SIZE * SIZE == 12_443_648  # 12M
    # BatchNorm adds a scale and a shift per output channel of every conv.
    assert reduced.total_params == weights + 2 * (C1 + C3R + C3 + C5R + C5 + PP)


def test_outputs_and_branches():
    x = torch.randn(1, IN, SIZE, SIZE)
    for reduce, channels in ((True, C1 + C3 + C5 + PP), (False, C1 + C3 + C5 + IN)):
        block = Inception(IN, C1, C3R, C3, C5R, C5, PP, branch5x5_kernel=5, reduce=reduce).eval()
        assert block.out_channels == channels
        with torch.no_grad():
            parts, whole = block.branches(x), block(x)
        assert [p.shape[1] for p in parts] == [C1, C3, C5, channels - C1 - C3 - C5]
        torch.testing.assert_close(torch.cat(parts, 1), whole)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(branch5x5_kernel=7), r"branch5x5_kernel must be 3 \(torchvision's\) or 5"),
        (dict(branch5x5_kernel=5.0), r"branch5x5_kernel must be 3"),
        (dict(reduce="no"), r"reduce must be True"),
    ],
)
def test_bad_inception_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Inception(IN, C1, C3R, C3, C5R, C5, PP, **kwargs)


def test_googlenet_against_alexnet():
    g = count_parameters(googlenet())
    assert g == 6_624_904
    assert count_parameters(alexnet()) / g == pytest.approx(9.22, abs=0.01)
    # The paper's 5x5 kernels in the "5x5" branch: 380,928 more weights than torchvision's 3x3.
    assert count_parameters(googlenet(branch5x5_kernel=5)) - g == 380_928
