"""Notebook 03's models: the grouped AlexNet of 2012, Zeiler & Fergus' removals, and their bad input."""

import pytest
import torch

from lecture_utils.inspect import count_parameters, layer_table
from lecture_utils.models import alexnet, cifar_alexnet


def conv_params(c_in, c_out, k, groups=1):
    return c_in // groups * c_out * k * k + c_out


def fc_params(n_in, n_out):
    return n_in * n_out + n_out


def test_published_grouped_alexnet_has_60_965_224_parameters():
    # Krizhevsky et al. 2012: 96-256-384-384-256 maps; conv2, conv4, conv5 see only their GPU's half.
    expected = (
        conv_params(3, 96, 11) + conv_params(96, 256, 5, 2) + conv_params(256, 384, 3)
        + conv_params(384, 384, 3, 2) + conv_params(384, 256, 3, 2)
        + fc_params(256 * 6 * 6, 4096) + fc_params(4096, 4096) + fc_params(4096, 1000)
    )
    model = alexnet(widths="2012", grouped=True)
    assert count_parameters(model) == expected == 60_965_224
    assert [m.groups for m in model.features if isinstance(m, torch.nn.Conv2d)] == [1, 2, 1, 2, 2]
    assert count_parameters(alexnet(widths="2012")) == 62_378_344
    assert model(torch.zeros(1, 3, 224, 224)).shape == (1, 1000)


def test_grouping_halves_the_grouped_convs_weights_and_macs():
    full, grouped = (layer_table(alexnet(grouped=g), (3, 224, 224)) for g in (False, True))
    rows = lambda t: {r["name"]: r for r in t.rows}  # noqa: E731
    f, g = rows(full), rows(grouped)
    for name in ("features.conv2", "features.conv4", "features.conv5"):
        assert g[name]["macs"] * 2 == f[name]["macs"]
        weights = lambda r: r["params"] - int(r["output_shape"].split(",")[1])  # noqa: E731
        assert weights(g[name]) * 2 == weights(f[name])
    for name in ("features.conv1", "features.conv3", "classifier.fc6"):
        assert g[name]["macs"] == f[name]["macs"]
    assert full.total_macs == 714_188_480
    assert count_parameters(alexnet(grouped=True)) == 60_209_960


def test_zeiler_fergus_removals_as_parameter_arithmetic():
    n = count_parameters(alexnet())
    removed = {r: n - count_parameters(alexnet(remove=r)) for r in [(7,), (6, 7), (3, 4), (3, 4, 6, 7)]}
    assert removed[(7,)] == fc_params(4096, 4096) == 16_781_312
    # Without 6 and 7 the classifier reads the 9,216 pooled features directly.
    assert removed[(6, 7)] == (
        fc_params(9216, 4096) + fc_params(4096, 4096) + fc_params(4096, 1000) - fc_params(9216, 1000)
    ) == 49_414_144
    # Without 3 and 4, conv5 reads conv2's 192 maps instead of conv4's 256.
    assert removed[(3, 4)] == (
        conv_params(192, 384, 3) + conv_params(384, 256, 3) + conv_params(256, 256, 3) - conv_params(192, 256, 3)
    ) == 1_696_384
    assert removed[(3, 4, 6, 7)] == 51_110_528


@pytest.mark.parametrize(
    "remove, message",
    [
        ((0,), r"Invalid entries: \[0\]"),
        ((8,), r"layer 8\) cannot be removed.*Invalid entries: \[8\]"),
        (("fc7",), r"Invalid entries: \['fc7'\]"),
        ("fc7", r"collection of layer numbers.*got 'fc7'"),
        (7, r"collection of layer numbers.*got 7"),
        (None, r"collection of layer numbers.*got None"),
        ((1, 2, 3, 4, 5), r"cannot drop all five conv layers"),
        ((1, 2, 3, 4, 5, 6, 7), r"cannot drop all five conv layers"),
    ],
)
def test_bad_remove_names_what_is_allowed(remove, message):
    for build in (alexnet, cifar_alexnet):
        with pytest.raises(ValueError, match=message):
            build(remove=remove)


def test_remove_accepts_repeats_and_any_order():
    assert cifar_alexnet(remove=[7, 6, 7]).removed == (6, 7)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(widths="2013"), r"widths must be one of 'torchvision', '2012'"),
        (dict(grouped=2), r"grouped must be True or False"),
    ],
)
def test_bad_alexnet_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        alexnet(**kwargs)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(width=0), r"width must be a positive number"),
        (dict(width="0.5"), r"width must be a positive number"),
        (dict(hidden=0), r"hidden must be a positive int"),
        (dict(hidden=512.0), r"hidden must be a positive int"),
        (dict(dropout=1.0), r"dropout must be a number in \[0, 1\)"),
        (dict(batch_norm="yes"), r"batch_norm must be True or False"),
    ],
)
def test_bad_cifar_alexnet_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        cifar_alexnet(**kwargs)


def test_cifar_variants_shrink_as_in_the_paper():
    sizes = {r: count_parameters(cifar_alexnet(remove=r)) for r in [(), (7,), (6, 7), (3, 4), (3, 4, 6, 7)]}
    assert sizes[()] == 1_880_490
    assert sizes[()] > sizes[(7,)] > sizes[(6, 7)] > sizes[(3, 4, 6, 7)]
    assert sizes[()] - sizes[(7,)] == fc_params(512, 512)
    model = cifar_alexnet(remove=(3, 4, 6, 7), dropout=0.0)
    assert not any(isinstance(m, torch.nn.Dropout) for m in model.modules())  # 6, 7 and their dropout are gone
    assert all(m.p == 0.0 for m in cifar_alexnet(dropout=0.0).modules() if isinstance(m, torch.nn.Dropout))


def test_he_init_keeps_the_activation_scale_through_the_convs():
    torch.manual_seed(0)
    x = torch.randn(64, 3, 32, 32)

    def last_conv_rms(model):
        with torch.no_grad():
            return model.features(x).pow(2).mean().sqrt().item()

    default, he = cifar_alexnet(), cifar_alexnet(init="he")
    # PyTorch's default shrinks the signal by about sqrt(6) per conv + ReLU; He's keeps its order of magnitude.
    assert last_conv_rms(default) < 0.05 < 0.3 < last_conv_rms(he)
    assert all(m.bias.abs().sum() == 0 for m in he.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    with pytest.raises(ValueError, match=r"init must be one of 'pytorch', 'he'"):
        cifar_alexnet(init="xavier")


def test_batch_norm_sits_between_each_kept_conv_and_its_relu():
    model = cifar_alexnet(remove=(3, 4), width=0.25, batch_norm=True, init="he")
    names = list(model.features._modules)
    assert [n for n in names if n.startswith("bn")] == ["bn1", "bn2", "bn5"]  # one per kept conv
    for k in (1, 2, 5):
        assert names.index(f"conv{k}") + 1 == names.index(f"bn{k}") == names.index(f"relu{k}") - 1
        assert model.features._modules[f"conv{k}"].bias is None  # the norm's shift replaces it
    plain = cifar_alexnet(remove=(3, 4), width=0.25)
    conv_biases = sum(m.bias.numel() for m in plain.modules() if isinstance(m, torch.nn.Conv2d))
    bn_params = sum(p.numel() for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d) for p in m.parameters())
    assert count_parameters(model) == count_parameters(plain) - conv_biases + bn_params
    torch.manual_seed(0)
    x = torch.randn(8, 3, 32, 32)
    with torch.no_grad():  # in training mode batch norm scales the conv output to unit variance
        assert 0.95 < model.features[:2](x).std().item() < 1.05  # conv1 + bn1, batch statistics
