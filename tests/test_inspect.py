"""layer_table: totals, per-layer rows, printing and input validation."""

import pytest
import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from lecture_utils.inspect import LayerTable, count_parameters, layer_table
from lecture_utils.models import cifar_resnet, googlenet

ALEXNET_MACS = 714_188_480


@pytest.fixture(scope="module")
def alexnet_table():
    return layer_table(torchvision.models.alexnet(weights=None), (3, 224, 224))


def test_alexnet_totals(alexnet_table):
    t = alexnet_table
    assert isinstance(t, LayerTable)
    assert t.total_params == 61_100_840
    assert t.total_macs == ALEXNET_MACS
    assert t.total_flops == 2 * ALEXNET_MACS == 1_428_376_960
    # torchvision's model table lists AlexNet at "0.714 GFLOPS": those are MACs.
    published = torchvision.models.AlexNet_Weights.IMAGENET1K_V1.meta["_ops"]
    assert round(t.total_macs / 1e9, 3) == published == 0.714


def test_alexnet_rows_sum_to_totals(alexnet_table):
    rows = alexnet_table.rows
    assert len(rows) == 21  # 13 in features, avgpool, 7 in classifier
    for key, total in [
        ("params", alexnet_table.total_params),
        ("flops", alexnet_table.total_flops),
        ("macs", alexnet_table.total_macs),
        ("activation_bytes", alexnet_table.total_activation_bytes),
    ]:
        assert sum(r[key] for r in rows) == total


def test_alexnet_first_conv_row(alexnet_table):
    row = alexnet_table.rows[0]
    assert (row["name"], row["type"], row["output_shape"]) == ("features.0", "Conv2d", "(1, 64, 55, 55)")
    assert row["params"] == 3 * 64 * 11 * 11 + 64 == 23_296
    assert row["macs"] == (64 * 55 * 55) * (3 * 11 * 11) == 70_276_800  # outputs x MACs per output
    assert row["activation_bytes"] == 64 * 55 * 55 * 4  # float32


def test_flops_agree_with_flop_counter_mode_directly():
    model = cifar_resnet(8).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, 32, 32))
    assert layer_table(model, (3, 32, 32)).total_flops == counter.get_total_flops() > 0


def mac_parts(table):
    """The per-element ops other counters add, from layer_table's rows (float32: 4 bytes per element)."""
    rows = {r["name"]: r for r in table.rows}
    conv_out = sum(r["activation_bytes"] // 4 for r in table.rows if r["type"] == "Conv2d")
    linear_out = sum(r["activation_bytes"] // 4 for r in table.rows if r["type"] == "Linear")
    return {"biases": conv_out + linear_out, "avgpool": rows["avgpool"]["activation_bytes"] // 4}


# What each counter gave for AlexNet at 224x224 (bench/count_macs.py, which checks the same sums).
OTHER_COUNTERS = {
    "fvcore": 714_197_696,  # + 1 per adaptive-avg-pool element
    "thop": 714_206_912,  # + 2 per adaptive-avg-pool element
    "ptflops_aten": 714_682_664,  # + 1 per bias add
    "torchinfo": 714_682_664,  # + 1 per bias add
}


def test_other_mac_counters_add_per_element_ops_on_top(alexnet_table):
    base, parts = alexnet_table.total_macs, mac_parts(alexnet_table)
    assert parts == {"biases": 484_992 + 9_192, "avgpool": 256 * 6 * 6}
    assert OTHER_COUNTERS["fvcore"] == base + parts["avgpool"]
    assert OTHER_COUNTERS["thop"] == base + 2 * parts["avgpool"]
    assert OTHER_COUNTERS["ptflops_aten"] == OTHER_COUNTERS["torchinfo"] == base + parts["biases"]


@pytest.mark.parametrize("counter", sorted(OTHER_COUNTERS))
def test_other_mac_counters_when_installed(counter):
    """The live measurement, where the bench extra is installed (skipped without it)."""
    model, x = torchvision.models.alexnet(weights=None).eval(), torch.zeros(1, 3, 224, 224)
    if counter == "fvcore":
        analysis = pytest.importorskip("fvcore.nn").FlopCountAnalysis(model, x)
        analysis.unsupported_ops_warnings(False)
        total = analysis.total()
    elif counter == "thop":
        total = int(pytest.importorskip("thop").profile(model, inputs=(x,), verbose=False)[0])
    elif counter == "ptflops_aten":
        ptflops = pytest.importorskip("ptflops")
        total = ptflops.get_model_complexity_info(model, (3, 224, 224), as_strings=False,
                                                  print_per_layer_stat=False, backend="aten")[0]
    else:
        total = pytest.importorskip("torchinfo").summary(model, input_size=(1, 3, 224, 224), verbose=0).total_mult_adds
    assert total == OTHER_COUNTERS[counter]


def test_googlenet_macs_match_torchvision_table():
    t = layer_table(googlenet(), (1, 3, 224, 224))
    assert t.total_params == 6_624_904
    published = torchvision.models.GoogLeNet_Weights.IMAGENET1K_V1.meta["_ops"]
    assert round(t.total_macs / 1e9, 3) == published == 1.498


def test_batch_dimension_scales_flops_not_params():
    model = cifar_resnet(8)
    one, two = layer_table(model, (3, 32, 32)), layer_table(model, (2, 3, 32, 32))
    assert two.total_params == one.total_params == 75_290
    assert two.total_flops == 2 * one.total_flops
    assert two.rows[0]["output_shape"] == "(2, 16, 32, 32)"


def test_restores_train_mode():
    model = cifar_resnet(8).train()
    layer_table(model, (3, 32, 32))
    assert all(m.training for m in model.modules())
    model.eval()
    layer_table(model, (3, 32, 32))
    assert not any(m.training for m in model.modules())


def test_printing_is_deterministic_and_aligned(alexnet_table):
    text = str(alexnet_table)
    again = layer_table(torchvision.models.alexnet(weights=None), (3, 224, 224))
    assert text == repr(alexnet_table) == str(again)
    assert "61,100,840" in text and "714,188,480" in text and "0x" not in text
    lines = text.splitlines()
    assert lines[0].split() == "Layer Type Output shape Params FLOPs MACs Act. bytes".split()
    table_lines = lines[:-1]  # the last line is the one-line summary
    assert len({len(line) for line in table_lines}) == 1  # the last column is right-aligned
    assert lines[-2].startswith("Total")
    assert lines[-2].endswith(f"{alexnet_table.total_activation_bytes:,}")


def test_markdown_and_html(alexnet_table):
    md = alexnet_table.to_markdown().splitlines()
    assert md[0] == "| Layer | Type | Output shape | Params | FLOPs | MACs | Act. bytes |"
    assert len(md) == 2 + len(alexnet_table.rows) + 1
    assert "**61,100,840**" in md[-1]
    assert "<table>" in alexnet_table._repr_html_()


class InlineOps(nn.Module):
    """A container that owns a parameter and does a matmul in its own forward."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.scale = nn.Parameter(torch.ones(3, 3))
        self.unused = nn.Linear(3, 100)

    def forward(self, x):
        return self.fc(x.flatten(1)) @ self.scale


def test_work_outside_leaf_modules_is_kept_in_the_totals():
    t = layer_table(InlineOps(), (1, 2, 2))
    rows = {r["name"]: r for r in t.rows}
    assert rows["fc"]["macs"] == 4 * 3
    assert rows["unused"]["output_shape"] == "(not run)" and rows["unused"]["params"] == 3 * 100 + 100
    assert rows["(outside leaf modules)"]["params"] == 9 and rows["(outside leaf modules)"]["macs"] == 9
    assert t.total_params == count_parameters(InlineOps()) == 15 + 9 + 400


def test_count_parameters_trainable_only():
    model = cifar_resnet(8)
    for p in model.fc.parameters():
        p.requires_grad_(False)
    assert count_parameters(model) == 75_290
    assert count_parameters(model, trainable_only=True) == 75_290 - (64 * 10 + 10)


@pytest.mark.parametrize(
    "bad",
    [(224, 224), (3, 224), (1, 1, 3, 32, 32), (3, -1, 32), (3, 0, 32), (3, 32.0, 32), (3, True, 32)]
    + ["abc", 32, None],
)
def test_bad_input_size_raises(bad):
    with pytest.raises(ValueError, match=r"3 or 4 positive ints.*\(3, 224, 224\)"):
        layer_table(cifar_resnet(8), bad)


def test_a_module_called_several_times_counts_every_call():
    # torchvision's ResNets reuse one ReLU per block: each call's output is memory of its own.
    model = torchvision.models.resnet18(weights=None)
    seen = []  # an independent tally: every leaf module call's output, through a global hook

    def hook(module, inputs, output):
        if not list(module.children()):
            seen.append(output.numel() * output.element_size())

    handle = nn.modules.module.register_module_forward_hook(hook)
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, 224, 224))
    finally:
        handle.remove()
    t = layer_table(model, (3, 224, 224))
    assert t.total_activation_bytes == sum(seen) == 29_910_944  # 26.9 MB if each module counted once
    rows = {r["name"]: r for r in t.rows}
    relu = rows["layer1.0.relu"]
    assert (relu["calls"], relu["output_shape"]) == (2, "(1, 64, 56, 56) x2")
    assert relu["activation_bytes"] == 2 * 64 * 56 * 56 * 4
    assert rows["conv1"]["calls"] == 1 and rows["conv1"]["output_shape"] == "(1, 64, 112, 112)"
    assert "(1, 64, 56, 56) x2" in str(t)


class Reused(nn.Module):
    """One Linear applied twice and one ReLU three times, on outputs of different shapes."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.relu = nn.ReLU()

    def forward(self, x):
        x = self.relu(x.flatten(1))
        x = self.relu(self.fc(self.fc(x)))
        return self.relu(x[:, :2])


def test_reused_modules_sum_work_and_list_differing_shapes():
    t = layer_table(Reused(), (1, 2, 2))
    rows = {r["name"]: r for r in t.rows}
    assert rows["fc"]["calls"] == 2 and rows["fc"]["macs"] == 2 * 4 * 4
    assert rows["fc"]["params"] == 4 * 4 + 4  # parameters once, however often it runs
    assert rows["relu"]["calls"] == 3 and rows["relu"]["output_shape"] == "(1, 4); (1, 4); (1, 2)"
    assert rows["relu"]["activation_bytes"] == (4 + 4 + 2) * 4
    assert [r["name"] for r in t.rows] == ["relu", "fc"]  # in order of first call
