"""models.small, initialization, fit's penalty hook and the shared plots: the pieces notebook 06 trains, measures
and draws with."""

import math

import pytest
import torch
from torch import nn

from lecture_utils.data import DeviceBatches, load_dataset
from lecture_utils.initialization import dead_fraction, initialize, layer_statistics, saturated_fraction
from lecture_utils.models.small import PlainNet, mlp, plain_net, small_convnet
from lecture_utils.train import fit


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def test_small_convnet_switches_and_parameter_counts():
    x = torch.rand(5, 1, 28, 28)
    assert n_params(small_convnet()) == 54_314  # 208 + 3,216 + 50,240 + 650
    assert n_params(mlp((256,))) == 203_530  # 784*256 + 256 + 2,570
    for act, cls in (("relu", nn.ReLU), ("tanh", nn.Tanh), ("sigmoid", nn.Sigmoid)):
        net = small_convnet(act, batch_norm=True, dropout=0.3)
        kinds = {type(m) for m in net.modules()}
        assert {cls, nn.BatchNorm2d, nn.BatchNorm1d, nn.Dropout} <= kinds
        assert net(x).shape == (5, 10)
    plain = {type(m) for m in small_convnet().modules()}
    assert nn.BatchNorm2d not in plain and nn.Dropout not in plain
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        small_convnet("gelu")
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
        small_convnet(dropout=1.0)


def test_keep_hidden_exposes_the_hidden_units():
    net = small_convnet(keep_hidden=True)
    net(torch.rand(3, 1, 28, 28))
    assert net.hidden.shape == (3, 64) and (net.hidden >= 0).all()
    quiet = small_convnet()
    quiet(torch.rand(3, 1, 28, 28))
    assert quiet.hidden is None
    m = mlp((32, 16), keep_hidden=True, activation="tanh")
    m(torch.rand(2, 1, 28, 28))
    assert m.hidden.shape == (2, 16)


def test_plain_net_depth():
    net = plain_net(20, 32, "relu")
    assert len(net.hidden_layers) == 20 and net(torch.rand(4, 1, 28, 28)).shape == (4, 10)
    with pytest.raises(ValueError, match="depth"):
        PlainNet(depth=0)


@pytest.mark.parametrize("scheme, std", [("small", lambda i, o: 0.01), ("large", lambda i, o: 1.0),
                                         ("xavier", lambda i, o: math.sqrt(2 / (i + o))),
                                         ("kaiming", lambda i, o: math.sqrt(2 / i))])
def test_initialize_draws_weights_of_the_scheme_variance(scheme, std):
    net = initialize(plain_net(3, 400, "tanh"), scheme, seed=0)
    layer = net.hidden_layers[1]
    assert layer.weight.std().item() == pytest.approx(std(400, 400), rel=0.02)
    assert (layer.bias == 0).all()
    conv = initialize(nn.Conv2d(8, 16, 5), scheme, seed=0)
    assert conv.weight.std().item() == pytest.approx(std(8 * 25, 16 * 25), rel=0.05)
    with pytest.raises(ValueError, match="unknown initialization 'orthogonal'"):
        initialize(net, "orthogonal")


def test_only_the_variance_preserving_init_keeps_the_signal_through_20_layers():
    x, y = torch.rand(256, 1, 28, 28), torch.randint(0, 10, (256,))
    kaiming = layer_statistics(initialize(plain_net(20, 256, "relu"), "kaiming", seed=0), x, y)
    small = layer_statistics(initialize(plain_net(20, 256, "relu"), "small", seed=0), x, y)
    ratio = kaiming[-1]["activation_std"] / kaiming[0]["activation_std"]
    assert 0.2 < ratio < 5  # about preserved
    assert small[-1]["activation_std"] / small[0]["activation_std"] < 1e-10  # vanished
    tanh_large = layer_statistics(initialize(plain_net(20, 256, "tanh"), "large", seed=0), x, y)
    assert tanh_large[-1]["saturated"] > 0.5  # most tanh units saturated
    tanh_xavier = layer_statistics(initialize(plain_net(20, 256, "tanh"), "xavier", seed=0), x, y)
    assert tanh_xavier[-1]["saturated"] < 0.05


def test_saturated_fraction():
    a = torch.tensor([0.0, 0.995, -0.999, 0.5])
    assert saturated_fraction(a, "tanh") == 0.5
    assert saturated_fraction(torch.tensor([0.001, 0.5, 0.999, 0.2]), "sigmoid") == 0.5
    assert saturated_fraction(torch.tensor([0.0, 0.0, 1.0, 2.0]), "relu") == 0.5
    with pytest.raises(ValueError):
        saturated_fraction(a, "elu")


def test_dead_fraction_counts_units_zero_for_every_input():
    a = torch.tensor([[0.0, 1.0, 0.0, 0.0],
                      [0.0, 0.0, 2.0, 0.0],
                      [0.0, 3.0, 0.0, 0.0]])
    assert dead_fraction(a) == 0.5  # units 0 and 3; units 1 and 2 are zero for some inputs only (sparse, alive)
    maps = torch.zeros(2, 3, 4, 4)
    maps[1, 1, 3, 3] = 0.5  # channel 1 fires at one position of one image: alive
    maps[0, 2] = 1.0
    assert dead_fraction(maps) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="inputs, units"):
        dead_fraction(torch.zeros(5))


def test_relu_dead_units_at_initialization_do_not_depend_on_the_scheme():
    """Zero biases and ReLU(c x) = c ReLU(x): every scheme draws the same normal numbers at another scale, so the
    same units are 0 under all four; the scheme changes the signal's size only (the std, 1e-20 apart)."""
    x, y = torch.rand(256, 1, 28, 28), torch.randint(0, 10, (256,))
    rows = {s: layer_statistics(initialize(plain_net(20, 128, "relu"), s, seed=0), x, y)
            for s in ("small", "xavier", "kaiming")}
    dead = {s: [r["dead"] for r in rs] for s, rs in rows.items()}
    assert dead["small"] == dead["xavier"] == dead["kaiming"] and max(dead["kaiming"]) > 0
    assert rows["small"][-1]["activation_std"] < 1e-15 < 1e-2 < rows["kaiming"][-1]["activation_std"]


@pytest.fixture(scope="module")
def digits():
    x, y = load_dataset("digits", verbose=False)
    return x[:256], y[:256]


def run_fit(digits, **kwargs):
    torch.manual_seed(0)
    model = small_convnet(keep_hidden=True)
    fit(model, DeviceBatches(*digits, 64, shuffle=True, seed=0), epochs=1, lr=0.05, device="cpu", verbose=False,
        **kwargs)
    return model


def test_fit_penalty_hook(digits):
    plain, none = run_fit(digits), run_fit(digits, penalty=None)
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), none.state_dict().values()))
    sparse = run_fit(digits, penalty=lambda m: 10.0 * m.hidden.abs().mean())
    assert not torch.equal(plain.classifier.fc3.weight, sparse.classifier.fc3.weight)
    x = digits[0][:128].float() / 255
    for m in (plain, sparse):
        m.eval()
        m(x)
    assert (sparse.hidden == 0).float().mean() > (plain.hidden == 0).float().mean()  # the penalty sparsifies
    with pytest.raises(TypeError, match="penalty must be a function"):
        run_fit(digits, penalty=0.1)


# ---------------------------------------------------------------- plots the notebooks draw runs with

def test_band_draws_the_mean_and_shades_the_range():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lecture_utils.plots import band, integer_ticks

    fig, ax = plt.subplots()
    line = band(ax, [1, 2, 3], [[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]], "elastic", marker=".")
    assert list(line.get_ydata()) == [2.0, 3.0, 4.0] and line.get_label() == "elastic (mean of 2)"
    assert line.get_marker() == "."
    shaded = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert shaded.min() == 1.0 and shaded.max() == 5.0  # from the lowest run to the highest
    one = band(ax, range(3), [0.5, 0.6, 0.7], "one seed")
    assert one.get_label() == "one seed" and len(ax.collections) == 1  # one run: a line, nothing shaded
    with pytest.raises(ValueError, match=r"one value per x \(3 x values\)"):
        band(ax, [1, 2, 3], [[1.0, 2.0]], "bad")
    ax.set_xlim(0.7, 3.3)
    integer_ticks(ax)
    fig.canvas.draw()
    ticks = [t for t in ax.get_xticks() if 0.7 <= t <= 3.3]
    assert ticks and all(float(t).is_integer() for t in ticks)
    with pytest.raises(ValueError, match="axis must be"):
        integer_ticks(ax, "z")
    plt.close(fig)


def test_history_figure_has_labels_a_legend_and_whole_epochs():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lecture_utils.plots import curves_figure, history_figure

    runs = [[{"epoch": e, "val_error": 0.1 / e + 0.01 * s} for e in range(1, 4)] for s in range(3)]
    fig = history_figure({"plain": runs, "bn": runs[0]})
    ax = fig.axes[0]
    fig.canvas.draw()
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "test error (%)"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["plain (mean of 3)", "bn"]
    assert all(float(t).is_integer() for t in ax.get_xticks())
    plt.close(fig)
    fig = curves_figure({"rotation": ("degrees", [0, 10], {"a": [0.9, 0.8], "b": [[0.9, 0.7], [0.8, 0.6]]}),
                         "shift": ("pixels", [0, 2], {"a": [0.9, 0.5], "b": [0.9, 0.4]}),
                         "scale": ("factor", [1, 2], {"a": [0.9, 0.5], "b": [0.9, 0.4]})}, ncols=2)
    used = fig.axes[:3]
    assert [a.get_xlabel() for a in used] == ["degrees", "pixels", "factor"]
    assert used[0].get_ylabel() and used[2].get_ylabel()  # the first panel of every row
    assert used[0].get_legend() is not None
    plt.close(fig)
