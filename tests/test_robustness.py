"""lecture_utils.robustness: test sets moved along an axis, drops from each network's own clean accuracy."""

import numpy as np
import pytest
import torch
from torch import nn

from lecture_utils import robustness as R
from lecture_utils.augment import affine


def blobs(n=40, size=16, seed=0):
    """Images with one bright 3x3 square near the center; label 1 when it sits in the left half, else 0."""
    g = torch.Generator().manual_seed(seed)
    images = torch.zeros(n, 1, size, size)
    labels = torch.zeros(n, dtype=torch.long)
    for i in range(n):
        y = int(torch.randint(5, size - 8, (1,), generator=g))
        x = int(torch.randint(3, size - 6, (1,), generator=g))
        images[i, 0, y:y + 3, x:x + 3] = 1.0
        labels[i] = int(x + 1 < size // 2)
    return images, labels


class LeftInk(nn.Module):
    """Class 1 when more ink is in the left half: depends on where the ink is."""

    def forward(self, x):
        half = x.shape[-1] // 2
        left, right = x[..., :half].sum(dim=(1, 2, 3)), x[..., half:].sum(dim=(1, 2, 3))
        return torch.stack([right - left, left - right], dim=1)


class Counting(nn.Module):
    """Predicts class 0 always, and counts the images it saw."""

    def __init__(self):
        super().__init__()
        self.seen = 0
        self.weight = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        self.seen += len(x)
        return torch.zeros(len(x), 2) + self.weight


def test_transforms_of_each_axis():
    x = torch.rand(3, 1, 12, 12)
    for axis in R.AXES:
        (identity,) = R.transforms(axis, R.IDENTITY[axis])
        assert torch.equal(identity(x), x)
    shifts = R.transforms("translation", 2)
    assert len(shifts) == 4
    assert torch.equal(shifts[0](x), affine(x, translate=(2, 0)))
    assert [torch.equal(t(x), affine(x, angle=a)) for t, a in zip(R.transforms("rotation", 30), (30, -30))] == [True] * 2
    assert len(R.transforms("scale", 0.6)) == len(R.transforms("contrast", 0.5)) == 1
    with pytest.raises(ValueError, match="axis must be one of"):
        R.transforms("shear", 10)


def test_point_labels_read_as_people_write_them():
    assert R.point_label("translation", 3) == "shift 3 px"
    assert R.point_label("rotation", 45.0) == "rotation 45°"
    assert R.point_label("scale", 0.6000000000000001) == "scale 0.6x"
    assert R.point_label("brightness", 0.6000000001) == "brightness +0.6"
    assert R.point_label("brightness", -0.4) == "brightness -0.4"
    assert R.point_label("contrast", 0.1) == "contrast 0.1x"
    assert "e-" not in R.point_label("brightness", 1.5e-08)


def test_accuracy_is_the_mean_over_the_directions_of_a_point():
    images, labels = blobs()
    model = LeftInk()
    clean = R.accuracy(model, images, labels, "translation", 0)
    assert clean == 1.0
    by_hand = []
    for t in ((4, 0), (-4, 0), (0, 4), (0, -4)):
        moved = affine(images, translate=t)
        by_hand.append((model(moved).argmax(1) == labels).float().mean().item())
    assert R.accuracy(model, images, labels, "translation", 4) == pytest.approx(sum(by_hand) / 4)
    assert R.accuracy(model, images, labels, "translation", 4) < 1.0  # sideways shifts move ink across the middle


def test_drops_are_from_each_networks_own_clean_accuracy():
    images, labels = blobs()
    study = R.Robustness(images, labels)
    assert study.add("reads position", [LeftInk(), LeftInk()]) is None
    study.add("constant", [Counting(), Counting()])
    # The constant network is right on the digits of class 0 only, moved or not: its drop is exactly 0.
    assert study.drop("constant", "translation", 4) == [0.0, 0.0]
    drops = study.drop("reads position", "translation", 4)
    assert all(d > 0 for d in drops)
    assert drops[0] == pytest.approx(100 - study.accuracy("reads position", "translation", 4)[0])
    c = study.compare_drops("reads position", "constant", "translation", 4)
    assert c.names == ("reads position", "constant") and c.lower_is_better and c.difference == pytest.approx(drops[0])
    u = study.compare_to_clean("reads position", "translation", 4)
    assert u.names == ("unmoved", "shift 4 px") and u.mean_a == 100.0
    curves = study.curve("reads position", "translation", [0, 4])
    assert len(curves) == 2 and curves[0][0] == 1.0


def test_each_point_is_measured_once_and_every_identity_is_the_same_clean_test_set():
    images, labels = blobs(n=10)
    model = Counting()
    study = R.Robustness(images, labels)
    study.add("net", [model])
    study.accuracy("net", "rotation", 30)
    study.accuracy("net", "rotation", 30)
    assert model.seen == 2 * 10  # +30 and -30, once
    for axis in R.AXES:
        study.accuracy("net", axis, R.IDENTITY[axis])
    assert model.seen == 3 * 10  # one clean evaluation for all five identities
    assert "unmoved" in study.table([("translation", 0), ("rotation", 30)], ["net", "absent"])


def test_networks_need_one_model_per_seed_and_known_names():
    images, labels = blobs(n=4)
    study = R.Robustness(images, labels)
    study.add("a", [LeftInk(), LeftInk()])
    with pytest.raises(ValueError, match="one per seed"):
        study.add("b", [LeftInk()])
    with pytest.raises(ValueError, match="unknown network 'c'"):
        study.drop("c", "translation", 1)
    with pytest.raises(ValueError, match="at least one model"):
        study.add("d", [])
    with pytest.raises(ValueError, match="same non-zero length"):
        R.Robustness(images, labels[:2])


def test_ink_displacement_is_the_scale_change_times_the_distance_from_the_center():
    image = torch.zeros(1, 1, 11, 11)
    image[0, 0, 5, 9] = 1.0  # 4 pixels right of the center (5, 5)
    assert R.ink_displacement(image, 0.5) == pytest.approx(2.0)
    assert R.ink_displacement(image, 1.25) == pytest.approx(1.0)
    assert R.ink_displacement((image * 255).to(torch.uint8), 1.0) == 0.0


def test_train_seeds_keeps_the_batch_order_of_the_unexpanded_network():
    # An expansion that draws random numbers but changes no pixel: the models come out identical, because the
    # expansion draws from its own stream and the shuffle from the seed's.
    images = (torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 255).to(torch.uint8)
    labels = torch.arange(64) % 3

    def make():
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 3))

    def draws(x, g):
        return x + 0 * torch.rand(x.shape, generator=g)

    options = dict(batch_size=16, epochs=2, lr=0.1, verbose=False)
    plain = R.train_seeds(make, images, labels, [3, 4], **options)
    expanded = R.train_seeds(make, images, labels, [3, 4], augment=draws, **options)
    for a, b in zip(plain, expanded):
        assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(plain[0][1].weight, plain[1][1].weight)  # the seeds differ


def test_the_generator_goes_by_keyword_to_augment_ops_and_by_position_to_lambdas():
    from functools import partial

    from lecture_utils.augment import random_affine

    images, labels = blobs(n=8)
    model = LeftInk()
    op = partial(random_affine, degrees=30.0)  # positionally, the generator would be taken for ``degrees``
    by_keyword = R.expanded_accuracy(model, images, labels, op, seed=5)
    by_position = R.expanded_accuracy(model, images, labels, lambda x, g: random_affine(x, degrees=30.0, generator=g),
                                      seed=5)
    by_hand = random_affine(images, degrees=30.0, generator=torch.Generator().manual_seed(5))
    assert by_keyword == by_position == (model(by_hand).argmax(1) == labels).float().mean().item()


def test_equivalent_shift_interpolates_the_translation_curve():
    images, labels = blobs()
    study = R.Robustness(images, labels)
    study.add("net", [LeftInk()])
    shifts = [0, 2, 4, 6]
    accs = [study.accuracy("net", "translation", d)[0] for d in shifts]
    assert accs[0] > accs[1] > accs[2]  # 100.0, 78.125, 75.0, ...
    study._cache[("net", "scale", 0.5)] = [(accs[1] + accs[2]) / 2]  # a point that costs as much as a 3-px shift
    assert study.equivalent_shift("net", "scale", 0.5, shifts) == pytest.approx(3.0)
    study._cache[("net", "scale", 0.25)] = [accs[-1] - 1]  # costs more than the largest shift
    assert study.equivalent_shift("net", "scale", 0.25, shifts) is None
    study._cache[("net", "scale", 0.9)] = [100.0]  # costs nothing
    assert study.equivalent_shift("net", "scale", 0.9, shifts) == 0.0


def test_paired_figure_joins_each_seeds_conditions():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lecture_utils.plots import paired_figure

    results = {"none": [5.0, 6.0], "affine": [2.5, 2.0, 2.4], "elastic": [2.2, 2.1, 2.6]}
    fig = paired_figure(results, panels=[("none", "affine", "elastic"), ("affine", "elastic")])
    left, right = fig.axes
    seed_lines = [line for line in left.lines if line.get_marker() == "o"]
    assert len(seed_lines) == 2  # the seeds every condition of the panel ran
    assert list(seed_lines[1].get_ydata()) == [6.0, 2.0, 2.1]
    labels = right.get_legend_handles_labels()[1]  # lower is better: affine is lower in seeds 1 and 2
    assert "affine better: 2 seed(s)" in labels and "elastic better or tied: 1 seed(s)" in labels
    means = [line for line in right.lines if line.get_color() == "black"][0]
    assert np.allclose(means.get_ydata(), [np.mean([2.5, 2.0, 2.4]), np.mean([2.2, 2.1, 2.6])])
    with pytest.raises(ValueError, match="at least 2 conditions"):
        paired_figure(results, panels=[("none",)])
    plt.close("all")
