"""lecture_utils.failures: the planted failures of notebook 07b do what they claim (a constant output minimizes the
pull-only loss and not the contrastive one; shuffled labels keep the images and permute the labels per batch; an
embedding that separates the classes classifies by the nearest mean)."""

import math

import pytest
import torch
from torch import nn

from lecture_utils.data import DeviceBatches
from lecture_utils.diagnostics import constant_output_loss
from lecture_utils.failures import (ShuffledLabels, contrastive_loss, embed, nearest_mean_accuracy, pull_only_loss,
                                    train_embedding)


def labels_and_embeddings(seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(40) % 4
    z = 3 * torch.eye(4)[y] + 0.1 * torch.randn(40, 4, generator=g)  # classes far apart, a little noise
    return y, z


def test_contrastive_loss_is_the_formula_and_not_degenerate():
    y, z = labels_and_embeddings()
    d = torch.cdist(z, z)
    same = (y[:, None] == y[None]).float()
    expected = sum((d[i, j] ** 2 if y[i] == y[j] else max(0.0, 1 - d[i, j].item()) ** 2)
                   for i in range(40) for j in range(40)) / 1600
    assert math.isclose(contrastive_loss(z, y).item(), float(expected), rel_tol=1e-5)
    assert math.isclose(pull_only_loss(z, y).item(), ((d ** 2 * same).sum() / same.sum()).item(), rel_tol=1e-6)
    assert constant_output_loss(pull_only_loss, z, y)["degenerate"]
    assert not constant_output_loss(contrastive_loss, z, y)["degenerate"]
    # pairs farther than the margin cost nothing: far-apart classes give only the within-class term
    assert math.isclose(contrastive_loss(z, y, margin=1.0).item(), (d ** 2 * same).mean().item(), rel_tol=1e-6)
    with pytest.raises(ValueError, match="one label per embedding"):
        contrastive_loss(z, y[:-1])
    with pytest.raises(ValueError, match="batch of embeddings"):
        pull_only_loss(z[0], y)


def test_shuffled_labels_permute_each_batch_afresh():
    x = torch.arange(20, dtype=torch.uint8).view(20, 1, 1, 1).expand(20, 1, 2, 2).contiguous()
    y = torch.arange(20) % 10
    batches = ShuffledLabels(DeviceBatches(x, y, 10), seed=0)
    assert len(batches) == 2
    first = [(xb.clone(), yb.clone()) for xb, yb in batches]
    second = [yb.clone() for _, yb in batches]
    plain = [(xb, yb) for xb, yb in DeviceBatches(x, y, 10)]
    for (xb, yb), (px, py), again in zip(first, plain, second):
        assert torch.equal(xb, px)  # the images as they were
        assert torch.equal(yb.sort().values, py.sort().values)  # the same labels, permuted
        assert not torch.equal(yb, py) and not torch.equal(yb, again)  # afresh each time
    with pytest.raises(TypeError, match="iterable batches"):
        ShuffledLabels(42)


class Lookup(nn.Module):
    """An 'embedding net' that reads the label off the image's first pixel: a perfect embedding."""

    def forward(self, x):
        return torch.eye(3)[(x[:, 0, 0, 0] * 255).round().long() % 3]


def test_nearest_mean_accuracy_of_a_perfect_and_a_constant_embedding():
    y = torch.arange(30) % 3
    x = y.to(torch.uint8).view(30, 1, 1, 1).expand(30, 1, 2, 2).contiguous()
    assert nearest_mean_accuracy(Lookup(), x, y, x, y) == 1.0
    assert embed(Lookup(), x).shape == (30, 3)

    class Constant(nn.Module):
        def forward(self, x):
            return torch.zeros(len(x), 3)

    assert math.isclose(nearest_mean_accuracy(Constant(), x, y, x, y), 1 / 3)  # every image gets the first class


def test_train_embedding_lowers_the_contrastive_loss():
    torch.manual_seed(0)
    y = torch.arange(64) % 4
    x = (torch.eye(4)[y][:, :, None, None].expand(64, 4, 2, 2) * 200).to(torch.uint8)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    losses = train_embedding(net, DeviceBatches(x, y, 16, shuffle=True, seed=0), contrastive_loss, epochs=15, lr=0.05)
    assert len(losses) == 15 and losses[-1] < 0.5 * losses[0]
    assert nearest_mean_accuracy(net, x, y, x, y) == 1.0
    with pytest.raises(ValueError, match="epochs must be a positive int"):
        train_embedding(net, DeviceBatches(x, y, 16), contrastive_loss, epochs=0, lr=0.05)
