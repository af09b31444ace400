import pytest
import torch
from torch import nn

from lecture_utils import train as train_mod
from lecture_utils.checkpoint import Checkpoint
from lecture_utils.data import DeviceBatches, load_dataset
from lecture_utils.device import seed_everything
from lecture_utils.train import (TrainingDiverged, TrainingInterrupted, channels_last, evaluate, fit, learning_rate,
                                 make_optimizer, train_one_seed)


def tiny_net():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4), nn.Flatten(), nn.Linear(4 * 49, 10))


def wide_net():
    """A conv net wide enough for channels_last on the CPU, with batch norm (its NHWC kernels too)."""
    return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(32, 10))


@pytest.fixture(scope="module")
def digits():
    x, y = load_dataset("digits", verbose=False)
    xt, yt = load_dataset("digits", train=False, verbose=False)
    return x[:512], y[:512], xt, yt


def run(digits, seed, epochs=2, lr=0.05, make=tiny_net, **kwargs):
    x, y, xt, yt = digits
    torch.manual_seed(seed)
    model = make()
    history = fit(model, DeviceBatches(x, y, 64, shuffle=True, seed=seed), DeviceBatches(xt, yt, 256),
                  epochs=epochs, lr=lr, device="cpu", **kwargs)
    return model, history


def test_fit_learns_and_reports_every_epoch(digits, capsys):
    model, history = run(digits, 0, epochs=4, lr=0.1)
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    for key in ("train_loss", "train_error", "val_loss", "val_error", "lr", "seconds", "images_per_second"):
        assert key in history[-1]
    assert history[-1]["val_error"] < 0.5 < history[0]["train_error"] + 0.5  # far better than chance (0.9)
    assert history[-1]["lr"] < 0.01  # cosine decays to ~0
    assert evaluate(model, DeviceBatches(*digits[2:], 100), "cpu")["error"] == pytest.approx(history[-1]["val_error"])
    assert "val_error" in history.table()
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""  # quiet by default: no lines, no progress bars


def test_progress_bars_only_when_asked(digits, capsys, monkeypatch):
    x, y, _, _ = digits
    monkeypatch.setenv(train_mod.PROGRESS_ENV, "1")
    fit(tiny_net(), DeviceBatches(x[:64], y[:64], 32), epochs=1, lr=0.01, device="cpu")
    assert "epoch 1/1" in capsys.readouterr().err
    monkeypatch.setenv(train_mod.PROGRESS_ENV, "0")
    fit(tiny_net(), DeviceBatches(x[:64], y[:64], 32), epochs=1, lr=0.01, device="cpu")
    assert capsys.readouterr().err == ""


def test_verbose_every_n_epochs(digits, capsys):
    x, y, _, _ = digits
    fit(tiny_net(), DeviceBatches(x[:64], y[:64], 32), epochs=5, lr=0.01, device="cpu", verbose=2)
    printed = [line.split(":")[0] for line in capsys.readouterr().out.splitlines()]
    assert printed == ["epoch   2/5", "epoch   4/5", "epoch   5/5"]


@pytest.mark.parametrize("layout", [False, True], ids=["contiguous", "channels_last"])
def test_cpu_run_repeats_bitwise_for_a_seed(digits, layout):
    def make():
        model = wide_net()
        model.channels_last = layout
        return model

    a, ha = run(digits, 7, make=make)
    b, hb = run(digits, 7, make=make)
    c, _ = run(digits, 8, make=make)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert [h["train_loss"] for h in ha] == [h["train_loss"] for h in hb]
    assert not torch.equal(a[0].weight, c[0].weight)


def conv_net():
    """wide_net without batch norm."""
    return nn.Sequential(*[m for m in wide_net() if not isinstance(m, nn.BatchNorm2d)])


def one_step(make, images, labels):
    """Loss and gradients of one step from the same weights: default layout, channels_last, float64."""
    torch.manual_seed(0)
    plain = make()
    results = []
    for layout, dtype in ((torch.contiguous_format, torch.float32), (torch.channels_last, torch.float32),
                          (torch.contiguous_format, torch.float64)):
        model = make().to(dtype=dtype, memory_format=layout)
        model.load_state_dict(plain.state_dict())
        loss = nn.functional.cross_entropy(model(images.to(dtype).contiguous(memory_format=layout)), labels)
        loss.backward()
        results.append((loss.item(), [p.grad.double() for p in model.parameters()]))
    return results


def test_channels_last_agrees_with_the_default_layout_to_float32_rounding(digits):
    x, y, _, _ = digits
    images, labels = x[:64].float() / 255, y[:64]
    # Without batch norm, both layouts are as close to float64 as float32 rounding allows.
    (loss, grads), (loss_cl, grads_cl), (loss64, grads64) = one_step(conv_net, images, labels)
    assert loss_cl == pytest.approx(loss, rel=1e-6) and loss == pytest.approx(loss64, rel=1e-6)
    for g, g_cl, g64 in zip(grads, grads_cl, grads64):
        scale = g64.abs().max()
        assert (g - g64).abs().max() <= 1e-4 * scale and (g_cl - g64).abs().max() <= 1e-4 * scale
    # With batch norm, the CPU's channels_last kernel sums each channel in float32 (the default layout's
    # kernel in float64): the loss agrees to about 1e-6 of its size (1.5e-6 on CI's CPU, hence 1e-5),
    # the gradients to about 1e-3 of their size.
    (loss, grads), (loss_cl, grads_cl), (loss64, grads64) = one_step(wide_net, images, labels)
    assert loss_cl == pytest.approx(loss64, rel=1e-5) and loss == pytest.approx(loss64, rel=1e-6)
    for g, g_cl, g64 in zip(grads, grads_cl, grads64):
        scale = g64.abs().max()
        if scale > 1e-9:  # the conv bias before batch norm has no gradient (up to rounding)
            assert (g - g64).abs().max() <= 1e-4 * scale and (g_cl - g64).abs().max() <= 2e-2 * scale
    # Two epochs through fit: the histories agree to float32 rounding.
    runs = {}
    for layout in (False, True):
        def make():
            model = wide_net()
            model.channels_last = layout
            return model

        runs[layout] = run(digits, 3, epochs=2, make=make, schedule="constant")
    (_, h_plain), (trained, h_nhwc) = runs[False], runs[True]
    for key in ("train_loss", "val_loss"):
        assert [h[key] for h in h_nhwc] == pytest.approx([h[key] for h in h_plain], rel=1e-5)
    # The model comes back in the default layout, so its weights view as usual.
    assert trained[0].weight.is_contiguous() and trained[0].weight.view(32, -1).shape == (32, 9)


def test_channels_last_rule():
    for device in ("cpu", "cuda"):  # every conv net (measured faster on the CPU: bench_models.py)
        assert channels_last(wide_net(), device) and channels_last(tiny_net(), device)
        assert not channels_last(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), device)  # nothing to gain
    assert not channels_last(wide_net(), "mps")
    model = wide_net()
    model.channels_last = False  # a model can say what it wants
    assert not channels_last(model, "cpu")


class WatchedBatchNorm(nn.BatchNorm2d):
    """A batch norm that records the layout of what its forward gets."""

    def forward(self, x):
        self.layouts.append("NHWC" if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
                            else "NCHW")
        return super().forward(x)


def test_narrow_batch_norm_runs_in_nchw_inside_a_channels_last_net(digits):
    """The CPU's NHWC batch norm is slow unless the channels are a multiple of 16: fit runs such a layer in NCHW
    (through hooks it removes afterwards); the numbers are those of the plain layout up to rounding."""
    x, y, _, _ = digits
    histories = {}
    for layout in (False, True):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), WatchedBatchNorm(8), nn.ReLU(), nn.Conv2d(8, 16, 3),
                              WatchedBatchNorm(16), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
        model[1].layouts, model[4].layouts = [], []
        model.channels_last = layout
        histories[layout] = fit(model, DeviceBatches(x, y, 64, shuffle=True, seed=0), epochs=1, lr=0.05,
                                device="cpu")
        assert not model[1]._forward_pre_hooks and not model[1]._forward_hooks  # fit's hooks are gone
        assert set(model[1].layouts) == {"NCHW"}  # 8 channels: NCHW in both cases
        assert set(model[4].layouts) == {"NHWC" if layout else "NCHW"}  # 16 channels: the model's layout
    assert histories[True][0]["train_loss"] == pytest.approx(histories[False][0]["train_loss"], rel=1e-5)


def test_nesterov_sgd_as_a_hand_written_loop(digits):
    """fit's update is SGD with Nesterov momentum and weight decay on the weights (plain SGD at momentum 0)."""
    x, y, _, _ = digits
    for momentum in (0.9, 0.0):
        torch.manual_seed(0)
        model = tiny_net()
        model.channels_last = False  # the hand-written loop's layout, so that the sums are the same
        fit(model, DeviceBatches(x, y, 64, shuffle=True, seed=1), epochs=2, lr=0.05, momentum=momentum,
            weight_decay=1e-3, schedule="constant", device="cpu")
        torch.manual_seed(0)
        hand = tiny_net()
        weights = [p for p in hand.parameters() if p.ndim > 1]
        others = [p for p in hand.parameters() if p.ndim <= 1]
        opt = torch.optim.SGD([{"params": weights, "weight_decay": 1e-3}, {"params": others, "weight_decay": 0.0}],
                              lr=0.05, momentum=momentum, nesterov=momentum > 0)
        batches = DeviceBatches(x, y, 64, shuffle=True, seed=1)
        for _ in range(2):
            for xb, yb in batches:
                loss = nn.functional.cross_entropy(hand(xb), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        for a, b in zip(model.parameters(), hand.parameters()):
            assert torch.equal(a, b), momentum


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
            momentum=0.0, device="cpu")
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_a_check_every_few_steps_still_names_the_bad_step_and_its_images(monkeypatch):
    """On a GPU the loss is read every 25 steps; the step it names, and whether its images held NaN, stay exact."""
    monkeypatch.setitem(train_mod.CHECK_EVERY, "cpu", 4)  # the GPU cadence, on the CPU
    x = torch.rand(16, 1, 28, 28)
    x[6] = float("nan")  # in the second of four batches; the check comes after the fourth
    with pytest.raises(TrainingDiverged, match=r"epoch 1, step 2 of 4 \(global step 2\); that step's input "
                                               r"images hold NaN"):
        fit(tiny_net(), DeviceBatches(x, torch.zeros(16, dtype=torch.long), 4), epochs=1, lr=0.05, device="cpu")


def test_bad_arguments():
    batches = DeviceBatches(torch.zeros(4, 1, 28, 28), torch.zeros(4, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="epochs must be a positive int"):
        fit(tiny_net(), batches, epochs=0, lr=0.1, device="cpu")
    with pytest.raises(ValueError, match="lr must be a positive finite"):
        fit(tiny_net(), batches, epochs=1, lr=float("nan"), device="cpu")
    with pytest.raises(ValueError, match="unknown schedule 'cos'"):
        fit(tiny_net(), batches, epochs=1, lr=0.1, schedule="cos", device="cpu")
    with pytest.raises(ValueError, match="warmup_epochs must be a number >= 0, got -1"):
        fit(tiny_net(), batches, epochs=1, lr=0.1, warmup_epochs=-1, device="cpu")
    with pytest.raises(ValueError, match="unknown optimizer 'lbfgs'"):
        make_optimizer("lbfgs", tiny_net().parameters(), 0.1)


def test_schedules():
    assert learning_rate("step", 0.1, 0, 100) == 0.1
    assert learning_rate("step", 0.1, 50, 100) == pytest.approx(0.01)  # He et al.: /10 at 32k of 64k
    assert learning_rate("step", 0.1, 75, 100) == pytest.approx(0.001)
    assert learning_rate("cosine", 0.1, 50, 100) == pytest.approx(0.05)
    assert learning_rate("constant", 0.1, 0, 100, warmup_steps=10) == pytest.approx(0.01)


def test_train_one_seed_is_seed_build_shuffle_fit(digits):
    x, y, xt, yt = digits
    val = DeviceBatches(xt, yt, 256)
    model, history = train_one_seed(tiny_net, x, y, seed=5, batch_size=64, epochs=2, lr=0.05, val_batches=val,
                                    mean=0.5, std=0.25, device="cpu", schedule="constant")
    seed_everything(5)
    by_hand = tiny_net()
    fit(by_hand, DeviceBatches(x, y, 64, shuffle=True, seed=5, mean=0.5, std=0.25), epochs=2, lr=0.05,
        schedule="constant", device="cpu")
    for a, b in zip(model.parameters(), by_hand.parameters()):
        assert torch.equal(a, b)
    assert len(history) == 2 and "val_error" in history[-1] and history[-1]["lr"] == 0.05
    other, _ = train_one_seed(tiny_net, x, y, seed=6, batch_size=64, epochs=2, lr=0.05, device="cpu")
    assert not torch.equal(other[0].weight, model[0].weight)
    # augment draws from the batches' generator, seeded with the seed: a seeded augmented run repeats
    flip = lambda images, g: torch.where(torch.rand(len(images), 1, 1, 1, generator=g) < 0.5,  # noqa: E731
                                         images.flip(-1), images)
    a, _ = train_one_seed(tiny_net, x, y, seed=5, batch_size=64, epochs=1, lr=0.05, augment=flip, device="cpu")
    b, _ = train_one_seed(tiny_net, x, y, seed=5, batch_size=64, epochs=1, lr=0.05, augment=flip, device="cpu")
    assert torch.equal(a[0].weight, b[0].weight)


def test_train_one_seed_bad_model_factory(digits):
    x, y, _, _ = digits
    with pytest.raises(TypeError, match="make_model must be a function"):
        train_one_seed(tiny_net(), x, y, seed=0, batch_size=64, epochs=1, lr=0.05, device="cpu")
    with pytest.raises(TypeError, match=r"make_model\(\) must return a torch.nn.Module, got int"):
        train_one_seed(lambda: 3, x, y, seed=0, batch_size=64, epochs=1, lr=0.05, device="cpu")


def test_the_float16_path_with_a_gradient_scaler_on_the_cpu(digits, monkeypatch, tmp_path):
    """The T4 path (float16 autocast and a GradScaler), run on the CPU: it learns, its checkpoint holds the
    scaler's state, and an interrupted run resumes bitwise."""
    x, y, xt, yt = digits

    def train(checkpoint, stop_at=None):
        calls = []

        def augment(images, generator):
            calls.append(1)
            if len(calls) == stop_at:
                raise KeyboardInterrupt
            return images

        torch.manual_seed(0)
        model = tiny_net()
        history = fit(model, DeviceBatches(x, y, 64, shuffle=True, seed=0, augment=augment), DeviceBatches(xt, yt, 256),
                      epochs=3, lr=0.1, device="cpu", checkpoint=checkpoint)
        return model, history

    monkeypatch.setattr(train_mod, "precision_for", lambda device: None)
    _, float32 = train(None)
    monkeypatch.setattr(train_mod, "precision_for", lambda device: torch.float16)
    whole, history = train(tmp_path / "whole.pt")
    assert history[-1]["train_loss"] < history[0]["train_loss"]  # it learns, as in float32:
    assert [h["train_loss"] for h in history] == pytest.approx([h["train_loss"] for h in float32], rel=1e-2)
    scaler = torch.load(tmp_path / "whole.pt", weights_only=True)["scaler"]
    assert scaler["scale"] > 1 and scaler["growth_interval"] == 2000  # a float16 run's scaler, saved
    with pytest.raises(TrainingInterrupted):
        train(tmp_path / "run.pt", stop_at=8 + 3)  # epoch 2, while making its third step
    resumed, again = train(Checkpoint(tmp_path / "run.pt", resume=True))
    for a, b in zip(whole.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
    assert [h["train_loss"] for h in again] == [h["train_loss"] for h in history]
