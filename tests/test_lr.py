"""lecture_utils.lr: the halving rule stops at the right learning rate; the range test leaves the model as it was."""

import math

import pytest
import torch
from torch import nn

from lecture_utils.data import DeviceBatches, load_dataset
from lecture_utils.lr import NoStableLearningRate, diverged, find_lr_by_halving, lr_range_test
from lecture_utils.train import TrainingDiverged, fit


def quadratic_run(lr, curvature=4.0, steps=20):
    """Gradient descent on curvature/2 * w^2 from w = 1: diverges exactly when lr > 2 / curvature."""
    w, losses = 1.0, []
    for _ in range(steps):
        losses.append(curvature / 2 * w * w)
        w -= lr * curvature * w
    return losses


def test_halving_stops_at_the_first_stable_rate():
    calls = []

    def train_fn(lr):
        calls.append(lr)
        return quadratic_run(lr)  # stable for lr <= 0.5

    result = find_lr_by_halving(train_fn, start_lr=10.0)
    assert calls == [10.0, 5.0, 2.5, 1.25, 0.625, 0.3125]
    assert result.lr == 0.3125
    assert [t.diverged for t in result.trials] == [True] * 5 + [False]
    assert all("last loss" in t.reason for t in result.trials[:5])
    assert result.trials[-1].losses == quadratic_run(0.3125)
    assert "chosen: lr = 0.3125" in str(result)


def test_a_boundary_rate_that_does_not_grow_is_not_diverged():
    # lr = 0.5 is exactly 2 / curvature: w flips sign, the loss stays constant, last == first
    assert find_lr_by_halving(quadratic_run, start_lr=1.0).lr == 0.5


def test_non_finite_loss_is_divergence():
    def train_fn(lr):
        return [2.0, 1.0, math.nan] if lr > 0.1 else [2.0, 1.0, 0.5]

    result = find_lr_by_halving(train_fn, start_lr=0.8, factor=2)
    assert result.lr == 0.1 and "nan at step 3" in result.trials[0].reason
    assert diverged([1.0, math.inf]) and diverged([1.0, 1.1]) and not diverged([1.0, 1.0]) and not diverged([3.0])


def test_training_diverged_from_fit_counts_as_divergence():
    def train_fn(lr):
        if lr > 0.01:
            raise TrainingDiverged("training diverged: the loss became nan at epoch 1; lower it", history=[])
        return [1.0, 0.5]

    result = find_lr_by_halving(train_fn, start_lr=0.04)
    assert result.lr == 0.01 and result.trials[0].diverged and "loss became nan" in result.trials[0].reason


def test_every_rate_diverges():
    with pytest.raises(NoStableLearningRate, match="every learning rate from 1 down to 0.125 diverged") as err:
        find_lr_by_halving(lambda lr: [1.0, 2.0], start_lr=1.0, min_lr=0.1)
    assert len(err.value.trials) == 4


@pytest.mark.parametrize("kwargs, words", [
    (dict(start_lr=0), "start_lr must be a positive finite number"),
    (dict(start_lr=float("nan")), "start_lr must be a positive finite number"),
    (dict(min_lr=-1), "min_lr must be a positive finite number"),
    (dict(start_lr=1e-7), "min_lr (1e-06) must not exceed start_lr"),
    (dict(factor=1.0), "factor must be > 1"),
])
def test_halving_bad_arguments(kwargs, words):
    with pytest.raises(ValueError) as err:
        find_lr_by_halving(quadratic_run, **{"start_lr": 1.0, **kwargs})
    assert words in str(err.value)


@pytest.mark.parametrize("returned, words", [(3.0, "must return a sequence of losses"), ([], "returned no losses"),
                                            (["a"], "must return a sequence of losses")])
def test_train_fn_returning_no_curve(returned, words):
    with pytest.raises(ValueError, match=words):
        find_lr_by_halving(lambda lr: returned, start_lr=1.0)
    with pytest.raises(TypeError, match="train_fn must be a function"):
        find_lr_by_halving(None, start_lr=1.0)


# ---------------------------------------------------------------- range test

def small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.2),
                         nn.MaxPool2d(4), nn.Flatten(), nn.Linear(4 * 49, 10))


@pytest.fixture(scope="module")
def digits():
    x, y = load_dataset("digits", verbose=False)
    return x[:512], y[:512]


def test_range_test_restores_the_model_bitwise(digits):
    model = small_net().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batches = DeviceBatches(*digits, 32, shuffle=True, seed=3)
    gen_state, rng_state = batches.generator.get_state(), torch.get_rng_state()
    result = lr_range_test(model, batches, start_lr=1e-4, end_lr=10.0, num_steps=40, device="cpu")
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BN statistics, bitwise
    assert not model.training  # its mode too
    assert torch.equal(batches.generator.get_state(), gen_state) and torch.equal(torch.get_rng_state(), rng_state)
    assert len(result.lrs) == len(result.losses) == len(result.smoothed) <= 40
    ratios = [b / a for a, b in zip(result.lrs, result.lrs[1:])]
    assert ratios == pytest.approx([(10.0 / 1e-4) ** (1 / 39)] * len(ratios))  # an exponential sweep
    assert 1e-4 <= result.steepest_lr <= result.lrs[-1] and result.suggestion == result.best_lr / 10
    # and the model really trained during the test: the curve fell below its start before rising
    assert min(result.smoothed) < result.smoothed[0]


def test_range_test_stops_soon_after_the_divergence_point():
    # a single weight on curvature/2 * w^2 (no momentum) diverges beyond lr = 2 / curvature = 0.5
    model = nn.Linear(1, 1, bias=False)
    nn.init.ones_(model.weight)
    batches = [(torch.ones(8, 1), torch.zeros(8, 1))]
    result = lr_range_test(model, batches, start_lr=1e-3, end_lr=1e3, num_steps=200, momentum=0.0,
                           loss_fn=lambda out, y: 2.0 * (out ** 2).mean(), device="cpu")
    assert result.stopped_early and 0.5 < result.lrs[-1] < 5.0
    assert model.weight.item() == 1.0


def test_range_test_leaves_a_fit_run_unchanged(digits):
    """A range test before training does not change what training does afterwards (same RNG, same weights)."""
    def train(with_range_test):
        model = small_net()
        batches = DeviceBatches(*digits, 64, shuffle=True, seed=1)
        if with_range_test:
            lr_range_test(model, batches, num_steps=10, device="cpu")
        fit(model, batches, epochs=1, lr=0.05, device="cpu", progress=False, verbose=False)
        return model.state_dict()

    a, b = train(False), train(True)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("kwargs, words", [
    (dict(start_lr=1.0, end_lr=0.1), "end_lr (0.1) must be larger than start_lr"),
    (dict(num_steps=1), "num_steps must be an int >= 2"),
    (dict(smoothing=1.0), "smoothing must be in [0, 1)"),
    (dict(diverge_factor=0.5), "diverge_factor must be > 1"),
])
def test_range_test_bad_arguments(kwargs, words):
    with pytest.raises(ValueError) as err:
        lr_range_test(small_net(), [], **kwargs)
    assert words in str(err.value)


def test_range_test_empty_batches():
    with pytest.raises(ValueError, match="batches is empty"):
        lr_range_test(small_net(), [], device="cpu")
