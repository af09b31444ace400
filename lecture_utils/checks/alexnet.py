"""Self-checks of notebooks/03_alexnet_ablations.ipynb: AlexNet's layers.

Exercises: ``check_output_size``, ``check_layer_parameters``, ``check_layer_macs``, ``check_biggest_saving``.
"""

import functools
from numbers import Integral, Real

import torch
import torch.nn.functional as F

from ._core import ExerciseError, _keeps_rng, _correct, _wrong, _function, _which, _int_answer


@_keeps_rng
def check_output_size(student_fn):
    """Exercise 3.1: ``student_fn(size, kernel, stride=1, padding=0)``, the output side of a conv or a pool.

    floor((size + 2 padding - kernel) / stride) + 1, an int. Reference: the shapes torch's conv2d and max_pool2d
    give on AlexNet's and LeNet's layers (meta tensors: shapes only).
    """
    fn = _function(student_fn, "your output-size function")
    cases = ((224, 11, 4, 2), (55, 3, 2, 0), (27, 5, 1, 2), (13, 3, 2, 0), (28, 5, 1, 0), (7, 3, 2, 1), (32, 3, 1, 1))
    got, ref = [], []
    for size, k, s, p in cases:
        x = torch.empty(1, 1, size, size, device="meta")
        if p == 0:
            ref.append(F.max_pool2d(x, k, s).shape[-1])
        else:
            ref.append(F.conv2d(x, torch.empty(1, 1, k, k, device="meta"), stride=s, padding=p).shape[-1])
        got.append(fn(size, k, s, p))
        if isinstance(got[-1], bool) or not isinstance(got[-1], Integral):
            hint = "round down with // (integer division): a window that does not fit is dropped" \
                if isinstance(got[-1], Real) and not isinstance(got[-1], bool) else "return an int"
            _wrong(f"output_size({size}, kernel={k}, stride={s}, padding={p}) = {ref[-1]} (an int)", repr(got[-1]),
                   hint)
    if got != ref:
        i = next(i for i, (a, b) in enumerate(zip(got, ref)) if a != b)
        size, k, s, p = cases[i]
        mistakes = [(lambda n, k, s, p: (n + 2 * p - k) // s, "add 1: the first window sits at position 0"),
                    (lambda n, k, s, p: (n + p - k) // s + 1, "padding is added on both sides: size + 2 padding"),
                    (lambda n, k, s, p: (n - k) // s + 1, "count the padding: size + 2 padding - kernel")]
        hint = next((h for f, h in mistakes if [f(*c) for c in cases] == got), None)
        _wrong(f"output_size({size}, kernel={k}, stride={s}, padding={p}) = {ref[i]}", got[i],
               hint or "floor((size + 2 padding - kernel) / stride) + 1")
    _correct(f"all {len(cases)} layers give torch's output sizes (AlexNet's conv1: 224 -> 55)")


@functools.lru_cache(maxsize=16)
def _alexnet_table(remove=()):
    """layer_table of torchvision's AlexNet (224x224), built on the meta device: shapes only, no weights."""
    from lecture_utils.inspect import layer_table
    from lecture_utils.models import alexnet

    with torch.device("meta"):
        model = alexnet(remove=remove)
    return layer_table(model, (3, 224, 224))


def _alexnet_row(layer):
    names = {f"conv{i}": f"features.conv{i}" for i in range(1, 6)}
    names.update({f"fc{i}": f"classifier.fc{i}" for i in range(6, 9)})
    if layer not in names:
        raise ExerciseError(f"layer must be one of {', '.join(names)}, got {layer!r}")
    return next(r for r in _alexnet_table().rows if r["name"] == names[layer])


@_keeps_rng
def check_layer_parameters(answer, layer="fc6"):
    """Exercise 3.2: the parameters of one AlexNet layer by hand (fc6: 9216 inputs x 4096 outputs + 4096 biases).

    Reference: the ``params`` column of ``layer_table(alexnet(), (3, 224, 224))`` (torchvision's AlexNet).
    """
    got = _int_answer(answer, f"{layer}'s parameters")
    row = _alexnet_row(layer)
    ref = row["params"]
    if got == ref:
        return _correct(f"{layer} has {ref:,} parameters ({100 * ref / _alexnet_table().total_params:.0f}% of AlexNet)")
    out = int(row["output_shape"].strip("()").split(", ")[1])
    hint = _which(got, [(ref - out, "add the biases: one per output unit"),
                        (256 * 13 * 13 * 4096 + 4096, "pool5 leaves 256 maps of 6 x 6, not 13 x 13"),
                        (256 * 4096 + 4096, "fc6 reads every position of every map: 256 x 6 x 6 = 9216 inputs")])
    _wrong(f"{ref:,}", f"{got:,}", hint or "weights = inputs x outputs (a conv: in x out x k x k), plus one bias "
                                          "per output")


@_keeps_rng
def check_layer_macs(answer, layer="conv1"):
    """Exercise 3.2: the multiply-adds of one AlexNet layer by hand (conv1: 55 x 55 outputs x 64 maps x 3 x 11 x 11).

    A conv layer: output positions x output maps x (input maps x k x k) MACs (bias adds not counted).
    Reference: the ``macs`` column of ``layer_table(alexnet(), (3, 224, 224))`` (FlopCounterMode's FLOPs / 2).
    """
    got = _int_answer(answer, f"{layer}'s multiply-adds")
    row = _alexnet_row(layer)
    ref = row["macs"]
    if got == ref:
        return _correct(f"{layer} does {ref:,} multiply-adds per 224 x 224 image")
    hint = _which(got, [(2 * ref, "that is FLOPs (a multiply and an add); MACs count the pair once"),
                        (ref * 56 * 56 // (55 * 55), "the output is 55 x 55: floor((224 + 4 - 11) / 4) + 1"),
                        (ref // 3, "each output reads all 3 input channels: multiply by them"),
                        (row["params"], "that is the parameter count: each weight is used at every output position")])
    _wrong(f"{ref:,}", f"{got:,}", hint or "output height x width x output maps x input maps x kernel x kernel")


@_keeps_rng
def check_biggest_saving(answer, quantity="macs"):
    """Exercise 3.3: predict which single layer (1-7, Zeiler & Fergus' numbering), removed, saves the most.

    ``quantity``: "macs" (compute) or "params". Removing a layer rewires the next one to its input, so the next
    layer changes too. Reference: ``layer_table(alexnet()) - layer_table(alexnet(remove=(k,)))`` per layer k.
    A tie (several layers save the same) accepts any of them.
    """
    if quantity not in ("macs", "params"):
        raise ExerciseError(f"quantity must be 'macs' or 'params', got {quantity!r}")
    got = _int_answer(answer, "the layer")
    total = "total_macs" if quantity == "macs" else "total_params"
    full = getattr(_alexnet_table(), total)
    saved = {k: full - getattr(_alexnet_table((k,)), total) for k in range(1, 8)}
    best = max(saved.values())
    winners = [k for k, v in saved.items() if v == best]
    unit = "multiply-adds" if quantity == "macs" else "parameters"
    listing = ", ".join(f"{k}: {v / 1e6:+.1f}M" for k, v in saved.items())
    if got in winners:
        return _correct(f"removing layer {got} saves the most {unit}, {best / 1e6:.1f}M (saved per layer, negative: "
                        f"it costs more: {listing})")
    if got not in saved:
        _wrong("a layer number from 1 (conv1) to 7 (fc7)", got, "fc8, the classifier, cannot be removed")
    _wrong(f"layer {' or '.join(map(str, winners))} (saves {best / 1e6:.1f}M {unit})",
           f"layer {got} (saves {saved[got] / 1e6:.1f}M)",
           f"saved per layer (negative: it costs more) {listing}; the next layer reads the removed layer's input "
           "instead, so its cost changes too")
