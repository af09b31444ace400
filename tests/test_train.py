import pytest
import torch
from torch import nn

from lecture_utils.data import DeviceBatches, load_dataset
from lecture_utils.train import TrainingDiverged, evaluate, fit, learning_rate


def tiny_net():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4), nn.Flatten(), nn.Linear(4 * 49, 10))


@pytest.fixture(scope="module")
def digits():
    x, y = load_dataset("digits", verbose=False)
    xt, yt = load_dataset("digits", train=False, verbose=False)
    return x[:512], y[:512], xt, yt


def run(digits, seed, epochs=2, lr=0.05, **kwargs):
    x, y, xt, yt = digits
    torch.manual_seed(seed)
    model = tiny_net()
    history = fit(model, DeviceBatches(x, y, 64, shuffle=True, seed=seed), DeviceBatches(xt, yt, 256),
                  epochs=epochs, lr=lr, device="cpu", progress=False, verbose=False, **kwargs)
    return model, history


def test_fit_learns_and_reports_every_epoch(digits):
    model, history = run(digits, 0, epochs=4, lr=0.1)
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    for key in ("train_loss", "train_error", "val_loss", "val_error", "lr", "seconds", "images_per_second"):
        assert key in history[-1]
    assert history[-1]["val_error"] < 0.5 < history[0]["train_error"] + 0.5  # far better than chance (0.9)
    assert history[-1]["lr"] < 0.01  # cosine decays to ~0
    assert evaluate(model, DeviceBatches(*digits[2:], 100), "cpu")["error"] == pytest.approx(history[-1]["val_error"])
    assert "val_error" in history.table()


def test_verbose_every_n_epochs(digits, capsys):
    x, y, _, _ = digits
    fit(tiny_net(), DeviceBatches(x[:64], y[:64], 32), epochs=5, lr=0.01, device="cpu", progress=False, verbose=2)
    printed = [line.split(":")[0] for line in capsys.readouterr().out.splitlines()]
    assert printed == ["epoch   2/5", "epoch   4/5", "epoch   5/5"]


def test_cpu_run_repeats_bitwise_for_a_seed(digits):
    a, ha = run(digits, 7)
    b, hb = run(digits, 7)
    c, _ = run(digits, 8)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert [h["train_loss"] for h in ha] == [h["train_loss"] for h in hb]
    assert not torch.equal(a[0].weight, c[0].weight)


def test_divergence_guard_names_step_and_learning_rate(digits):
    with pytest.raises(TrainingDiverged, match=r"step \d+ of 8 .*learning rate 1e\+06") as info:
        run(digits, 0, epochs=3, lr=1e6, schedule="constant", momentum=0.0)
    assert isinstance(info.value.history, list)


def test_divergence_guard_keeps_last_good_weights(digits):
    x, y, _, _ = digits
    torch.manual_seed(0)
    model = tiny_net()
    with pytest.raises(TrainingDiverged):
        fit(model, DeviceBatches(x, y, 64, shuffle=True), epochs=2, lr=1e6, schedule="constant",
            momentum=0.0, device="cpu", progress=False, verbose=False)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_bad_arguments():
    batches = DeviceBatches(torch.zeros(4, 1, 28, 28), torch.zeros(4, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="epochs must be a positive int"):
        fit(tiny_net(), batches, epochs=0, lr=0.1, device="cpu")
    with pytest.raises(ValueError, match="lr must be a positive finite"):
        fit(tiny_net(), batches, epochs=1, lr=float("nan"), device="cpu")
    with pytest.raises(ValueError, match="unknown schedule 'cos'"):
        fit(tiny_net(), batches, epochs=1, lr=0.1, schedule="cos", device="cpu")
    with pytest.raises(ValueError, match="unknown optimizer"):
        fit(tiny_net(), batches, epochs=1, lr=0.1, optimizer="lbfgs", device="cpu")


def test_schedules():
    assert learning_rate("step", 0.1, 0, 100) == 0.1
    assert learning_rate("step", 0.1, 50, 100) == pytest.approx(0.01)  # He et al.: /10 at 32k of 64k
    assert learning_rate("step", 0.1, 75, 100) == pytest.approx(0.001)
    assert learning_rate("cosine", 0.1, 50, 100) == pytest.approx(0.05)
    assert learning_rate("constant", 0.1, 0, 100, warmup_steps=10) == pytest.approx(0.01)
