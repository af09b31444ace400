"""Notebook 03's models and machinery: the grouped AlexNet of 2012, Zeiler & Fergus' removals, their bad input,
and lecture_utils.ablations (variants trained over seeds on growing training sets, their tables)."""

import pytest
import torch

from lecture_utils import ablations
from lecture_utils.data import DeviceBatches
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


def test_conv1_kernel_widens_only_the_first_layer_and_keeps_the_maps():
    small, wide = cifar_alexnet(width=0.25), cifar_alexnet(width=0.25, conv1_kernel=5)
    assert wide.features.conv1.kernel_size == (5, 5) and wide.features.conv1.padding == (2, 2)
    assert count_parameters(wide) - count_parameters(small) == 16 * 3 * (25 - 9)  # 16 filters, 3 colours
    assert wide(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    for bad in (4, 0, -3, 5.0, True, "5"):
        with pytest.raises(ValueError, match=r"conv1_kernel must be an odd positive int"):
            cifar_alexnet(conv1_kernel=bad)


# ---------------------------------------------------------------- lecture_utils.ablations



def test_parse_schedule_reads_sizes_and_epochs_and_names_what_is_wrong(capsys):
    assert ablations.parse_schedule("2000:8, 500:12") == {500: 12, 2000: 8}  # sorted by size
    for bad, message in (("500", "is not size:epochs"), ("500:0", "is not size:epochs"), ("a:1", "is not size:epochs"),
                         ("1:2,1:3", "gives size 1 twice"), (500, "must be a string")):
        with pytest.raises(ValueError, match=message):
            ablations.parse_schedule(bad)
    with pytest.raises(ValueError, match=r"sizes \[2000\] larger than the 1,437 training images"):
        ablations.parse_schedule("500:8,2000:8", available=1437)
    assert ablations.parse_schedule("500:8,2000:8", available=1437, fallback=True) == {500: 8}
    assert "left out" in capsys.readouterr().out
    assert ablations.parse_schedule("2000:8", available=1437, fallback=True) == {1437: 8}


def test_table3_differences_are_the_papers_columns_minus_the_full_net():
    text = ablations.table3_differences()
    row = next(line for line in text.splitlines() if line.startswith("-3,4,6,7"))
    # Table 3: 71.1 - 35.1 (train top-1), 71.3 - 40.5 (val top-1), 50.1 - 18.1 (val top-5); the slide: 33.5.
    assert row.split() == ["-3,4,6,7", "+36.0", "+30.8", "+32.0", "33.5"]
    row7 = next(line for line in text.splitlines() if line.startswith("-7 "))
    assert row7.split() == ["-7", "-7.7", "-0.5", "+0.3", "1.1"]  # the slide's 1.1 matches no column


def tiny_data(n=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    return x, torch.arange(n) % 10


def make_tiny(name):
    return cifar_alexnet(remove=ablations.VARIANTS[name], width=0.0625, hidden=16, batch_norm=True)


def test_train_variants_pairs_the_variants_by_seed_and_repeats_a_seeded_run(capsys):
    x, y = tiny_data()
    test = DeviceBatches(*tiny_data(32, seed=1), 16)
    options = dict(seeds=[0, 1], epochs=1, batch_size=16, lr=0.05)
    runs = ablations.train_variants(make_tiny, ["full", "-3,4,6,7"], x, y, test, **options)
    assert runs.variants == ["full", "-3,4,6,7"] and runs.images == 48 and runs.seeds == [0, 1]
    for name in runs.variants:
        assert len(runs.test_error[name]) == len(runs.train_error[name]) == len(runs.histories[name]) == 2
        assert all(0 <= e <= 100 for e in runs.test_error[name] + runs.train_error[name])
    assert runs.models["-3,4,6,7"].removed == (3, 4, 6, 7)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("seed 0: test error full ") and len(lines) == 2
    again = ablations.train_variants(make_tiny, ["full"], x, y, test, verbose=False, **options)
    assert again.test_error["full"] == runs.test_error["full"]  # the same seeds give the same runs
    with pytest.raises(ValueError, match=r"variants must be names of VARIANTS"):
        ablations.train_variants(make_tiny, ["-5"], x, y, test, **options)


def test_growth_study_trains_nested_sizes_and_tables_the_lead(capsys):
    x, y = tiny_data()
    test = DeviceBatches(*tiny_data(32, seed=1), 16)
    study = ablations.growth_study(make_tiny, ["full", "-3,4,6,7"], x, y, test, schedule={40: 1, 20: 2},
                                   seeds=[0, 1], batch_size=16, lr=0.05, verbose=False)
    assert list(study) == [20, 40] and [r.images for r in study.values()] == [20, 40]
    assert [r.epochs for r in study.values()] == [2, 1]
    leads = ablations.lead_comparisons(study, "full", "-3,4,6,7")
    for n, c in leads.items():
        full, small = study[n].test_error["full"], study[n].test_error["-3,4,6,7"]
        assert c.difference == pytest.approx(sum(a - b for a, b in zip(full, small)) / 2)
    table = ablations.growth_table(study, "full", "-3,4,6,7").splitlines()
    assert len(table) == 5 and table[3].split()[0] == "20" and table[4].split()[0] == "40"
    fig = ablations.growth_figure(study, "full", "-3,4,6,7")
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["20", "40"]
    with pytest.raises(ValueError, match=r"sizes \[99\] outside 1 to 48"):
        ablations.growth_study(make_tiny, ["full"], x, y, test, schedule={99: 1}, seeds=[0], batch_size=16, lr=0.1)


def test_lead_trend_is_the_per_seed_slope_against_log2_of_the_size():
    # Seed 0: the lead of -3,4,6,7 grows by 2 points per doubling; seed 1 by 4; seed 2 by 3 (plus an offset).
    slopes = [2.0, 4.0, 3.0]
    study = {}
    for k, n in enumerate((500, 1000, 2000, 4000)):
        full = [50.0 + s * k + i for i, s in enumerate(slopes)]
        study[n] = ablations.Runs(images=n, epochs=8, seeds=[0, 1, 2],
                                  test_error={"full": full, "-3,4,6,7": [50.0] * 3})
    trend = ablations.lead_trend(study, "full", "-3,4,6,7")
    assert trend.mean_a == pytest.approx(3.0) and trend.difference == pytest.approx(3.0)
    assert trend.established and trend.outcome.endswith("higher")
    assert trend.names[0] == "change of -3,4,6,7's lead over full per doubling" and trend.unit == "points per doubling"
    same = {"full": [40.0, 41.0], "-3,4,6,7": [40.0, 41.0]}
    flat = {n: ablations.Runs(images=n, epochs=8, seeds=[0, 1], test_error=same) for n in (500, 1000)}
    assert not ablations.lead_trend(flat, "full", "-3,4,6,7").established
    with pytest.raises(ValueError, match="at least 2 training-set sizes"):
        ablations.lead_trend({500: study[500]}, "full", "-3,4,6,7")
