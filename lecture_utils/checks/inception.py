"""Self-checks of notebooks/04_googlenet_inception.ipynb: GoogLeNet's inception module.

Exercises: ``check_branch_macs``, ``check_inception_budget``, ``check_head_parameters``.
"""

import torch
from torch import nn

from ._core import ExerciseError, _keeps_rng, _correct, _wrong, _given, _which, _int_answer
from .alexnet import _alexnet_table


SIZES_3A = dict(in_channels=192, ch1x1=64, ch3x3red=96, ch3x3=128, ch5x5red=16, ch5x5=32, pool_proj=32)


@_keeps_rng
def check_branch_macs(answer, reduction=True):
    """Exercise 4.1: the multiply-adds of inception (3a)'s 5x5 branch on its 28 x 28 x 192 input.

    With the reduction: a 1x1 conv 192 -> 16, then a 5x5 conv 16 -> 32; without: a 5x5 conv 192 -> 32.
    Reference: ``layer_table(Inception(**SIZES_3A, branch5x5_kernel=5, reduce=reduction), (192, 28, 28))``,
    the Conv2d rows of ``branch3``.
    """
    from lecture_utils.inspect import layer_table
    from lecture_utils.models import Inception

    got = _int_answer(answer, "the branch's multiply-adds")

    def branch(reduce, kernel=5):
        table = layer_table(Inception(**SIZES_3A, branch5x5_kernel=kernel, reduce=reduce), (192, 28, 28))
        return [r["macs"] for r in table.rows if r["name"].startswith("branch3") and r["type"] == "Conv2d"]

    rows = branch(reduction)
    ref = sum(rows)
    if got == ref:
        return _correct(f"the 5x5 branch {'with' if reduction else 'without'} its 1x1 reduction: {ref:,} MACs")
    hint = _which(got, [(rows[-1], "count the 1x1 reduction too: it is a conv layer of its own"),
                        (sum(branch(reduction, 3)), "the paper's branch has a 5x5 kernel (torchvision's uses 3x3)"),
                        (2 * ref, "that is FLOPs; MACs count a multiply-add once"),
                        (sum(branch(not reduction)), f"that is the branch {'without' if reduction else 'with'} "
                                                     "the reduction")])
    _wrong(f"{ref:,}", f"{got:,}", hint or "per conv: 28 x 28 positions x output maps x input maps x k x k")


@_keeps_rng
def check_inception_budget(module, max_macs=100_000_000, in_channels=192, size=28, out_channels=256):
    """Exercise 4.2: your inception module on a ``size`` x ``size`` x ``in_channels`` input, under ``max_macs``.

    It must keep the spatial size, give ``out_channels`` maps, use at least two kernel sizes side by side, and
    cost at most ``max_macs`` multiply-adds per image. Reference: ``layer_table(module, (in_channels, size, size))``.
    """
    from lecture_utils.inspect import layer_table

    _given(module, "your module")
    if not isinstance(module, nn.Module):
        _wrong("an nn.Module (an instance of your class)", type(module).__name__,
               "build it: MyInception(...), not the class itself")
    want = (1, out_channels, size, size)
    first = next(module.parameters(), None)
    was_training = module.training
    try:
        with torch.no_grad():
            x = torch.zeros(1, in_channels, size, size, device=first.device if first is not None else None)
            shape = tuple(module.eval()(x).shape)
    finally:
        module.train(was_training)
    if shape != want:
        hint = "padding = kernel // 2 keeps the maps at their size" if shape[2:] != want[2:] else \
            "concatenate the branches along the channels (torch.cat(..., dim=1)); the output has their sum"
        _wrong(f"output shape {want}", shape, hint)
    kernels = {m.kernel_size for m in module.modules() if isinstance(m, nn.Conv2d)}
    if len(kernels) < 2:
        _wrong("convolutions of at least two kernel sizes (e.g. 1x1 and 3x3)", f"kernel sizes {sorted(kernels)}",
               "an inception module looks at several scales side by side")
    table = layer_table(module, (in_channels, size, size))
    if table.total_macs > max_macs:
        costly = sorted(table.rows, key=lambda r: -r["macs"])[:3]
        _wrong(f"at most {max_macs / 1e6:.1f}M MACs", f"{table.total_macs / 1e6:.1f}M",
               "the most expensive layers are " + ", ".join(f"{r['name']} ({r['macs'] / 1e6:.1f}M)" for r in costly)
               + ": put a 1x1 reduction before the 3x3 and 5x5 convs, or give them fewer maps")
    _correct(f"output {want}, {table.total_macs / 1e6:.1f}M MACs (budget {max_macs / 1e6:.1f}M), "
             f"{table.total_params:,} parameters")


@_keeps_rng
def check_head_parameters(answer, net="googlenet"):
    """Exercise 4.3: the parameters of the fully connected layers (the head) of ``net`` at 1000 classes.

    GoogLeNet: global average pooling leaves 1024 numbers, one FC layer 1024 -> 1000 (plus biases); AlexNet:
    fc6, fc7 and fc8. Reference: the Linear rows of ``layer_table`` of ``googlenet()`` / ``alexnet()`` at 224x224.
    """
    from lecture_utils.inspect import layer_table
    from lecture_utils.models import googlenet

    if net not in ("googlenet", "alexnet"):
        raise ExerciseError(f"net must be 'googlenet' or 'alexnet', got {net!r}")
    got = _int_answer(answer, f"{net}'s head parameters")
    if net == "alexnet":
        table = _alexnet_table()
    else:
        with torch.device("meta"):
            table = layer_table(googlenet(), (3, 224, 224))
    linear = [r for r in table.rows if r["type"] == "Linear"]
    ref = sum(r["params"] for r in linear)
    if got == ref:
        return _correct(f"{net}'s head has {ref:,} parameters ({100 * ref / table.total_params:.0f}% of the net)")
    outputs = sum(int(r["output_shape"].strip("()").split(", ")[1]) for r in linear)
    hint = _which(got, [(ref - outputs, "add the biases: one per output unit"),
                        (1024 * 7 * 7 * 1000 + 1000, "global average pooling leaves one number per map: 1024 inputs")])
    _wrong(f"{ref:,}", f"{got:,}", hint or "inputs x outputs + outputs, for every fully connected layer")
