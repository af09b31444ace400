#!/usr/bin/env python3
"""What other MAC counters count: AlexNet at 224x224 through fvcore, ptflops, thop and torchinfo.

    python3 bench/count_macs.py          # needs the bench extra: pip install -e ".[bench]"

Every counter agrees on the multiply-accumulates of the convolutions and linear
layers (what ``torch.utils.flop_counter`` and ``lecture_utils.inspect.layer_table``
count); they differ in which cheap per-element ops they add on top. This script
measures each counter's total, measures those per-element counts on the model
itself (forward hooks: bias adds, ReLU outputs, pooling inputs and outputs), and
checks each counter's total against the stated sum of parts, exactly (at 224x224
AlexNet's adaptive average pool maps 256x6x6 to 256x6x6: its input and output
counts are equal, so fvcore's "per input" and thop's "per output" are one reading of
the code, not of this measurement). A counter
whose library is missing is printed as skipped; a total that no stated sum
explains is printed as "unexplained", with its difference.
"""

import argparse
import contextlib
import importlib.metadata
import io
import sys
import warnings
from pathlib import Path

import torch
import torchvision
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lecture_utils.inspect import layer_table  # noqa: E402


def alexnet():
    return torchvision.models.alexnet(weights=None).eval()


def version(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def parts(model, shape):
    """Per-element op counts of one forward pass, measured with forward hooks on the leaf modules."""
    counts = dict(conv_bias=0, linear_bias=0, relu=0, maxpool_in=0, avgpool_in=0, avgpool_out=0)

    def hook(module, inputs, output):
        if isinstance(module, nn.Conv2d) and module.bias is not None:
            counts["conv_bias"] += output.numel()
        elif isinstance(module, nn.Linear) and module.bias is not None:
            counts["linear_bias"] += output.numel()
        elif isinstance(module, nn.ReLU):
            counts["relu"] += output.numel()
        elif isinstance(module, nn.MaxPool2d):
            counts["maxpool_in"] += inputs[0].numel()
        elif isinstance(module, nn.AdaptiveAvgPool2d):
            counts["avgpool_in"] += inputs[0].numel()
            counts["avgpool_out"] += output.numel()

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            model(torch.zeros(shape))
    finally:
        for h in handles:
            h.remove()
    return counts


def quiet(call):
    """Run ``call()`` with the counters' own printing and warnings silenced."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        return call()


def fvcore_total(shape):
    from fvcore.nn import FlopCountAnalysis

    analysis = FlopCountAnalysis(alexnet(), torch.zeros(shape))
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    return analysis.total()


def ptflops_total(shape, **options):
    from ptflops import get_model_complexity_info

    macs, _ = get_model_complexity_info(alexnet(), tuple(shape[1:]), as_strings=False,
                                        print_per_layer_stat=False, **options)
    return macs


def thop_total(shape):
    import thop

    macs, _ = thop.profile(alexnet(), inputs=(torch.zeros(shape),), verbose=False)
    return int(macs)


def torchinfo_total(shape):
    import torchinfo

    return torchinfo.summary(alexnet(), input_size=shape, verbose=0).total_mult_adds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=224, help="input height and width (default 224)")
    args = parser.parse_args(argv)
    shape = (1, 3, args.size, args.size)

    base = layer_table(alexnet(), shape).total_macs  # convolutions and linear layers, no biases
    p = parts(alexnet(), shape)
    biases = p["conv_bias"] + p["linear_bias"]
    elementwise = p["relu"] + p["maxpool_in"] + p["avgpool_in"]
    # (counter, distribution, how it is called, what its total is claimed to be: (formula, value))
    counters = [
        ("torch.utils.flop_counter (layer_table)", "torch", lambda: base,
         ("conv + linear MACs, no biases", base)),
        ("fvcore FlopCountAnalysis", "fvcore", lambda: fvcore_total(shape),
         ("conv + linear MACs + 1 per adaptive-avg-pool input element", base + p["avgpool_in"])),
        ("thop profile", "ultralytics-thop", lambda: thop_total(shape),
         ("conv + linear MACs + 2 per adaptive-avg-pool output", base + 2 * p["avgpool_out"])),
        ("ptflops, backend='aten'", "ptflops", lambda: ptflops_total(shape, backend="aten"),
         ("conv + linear MACs + 1 per bias add", base + biases)),
        ("torchinfo summary (total_mult_adds)", "torchinfo", lambda: torchinfo_total(shape),
         ("conv + linear MACs + 1 per bias add", base + biases)),
        ("ptflops, backend='pytorch', count_functional=False", "ptflops",
         lambda: ptflops_total(shape, backend="pytorch", backend_specific_config={"count_functional": False}),
         ("... + 1 per bias add, ReLU output, max-pool input, avg-pool input", base + biases + elementwise)),
        ("ptflops, backend='pytorch' (its default)", "ptflops", lambda: ptflops_total(shape, backend="pytorch"),
         ("... + bias adds + ReLU and pooling counted twice (module hook and patched F.*)",
          base + biases + 2 * elementwise)),
    ]
    if version("ultralytics-thop") is None and version("thop") is not None:
        counters[2] = ("thop profile",) + ("thop",) + counters[2][2:]

    print(f"# MAC counters on torchvision AlexNet, input {shape}\n")
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, Python {sys.version.split()[0]}\n")
    print("Measured per-element counts: " + ", ".join(f"{k} {v:,}" for k, v in p.items()) + "\n")
    print("| counter | version | total MACs | - conv/linear MACs | counts | explained |")
    print("|---|---|--:|--:|---|---|")
    for name, dist, call, (what, expected) in counters:
        have = version(dist)
        if have is None:
            print(f"| {name} | not installed | | | | skipped |")
            continue
        try:
            total = int(quiet(call))
        except Exception as error:  # a counter that breaks on this torch is reported, not fatal
            print(f"| {name} | {have} | | | | failed: {type(error).__name__}: {error} |")
            continue
        verdict = "yes, exactly" if total == expected else f"unexplained: {total - expected:+,} vs the formula"
        print(f"| {name} | {have} | {total:,} | {total - base:+,} | {what} | {verdict} |")


if __name__ == "__main__":
    main()
