"""Per-layer tables of output shapes, parameters, FLOPs and activation memory.

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode``, which counts
matrix multiplies and convolutions (2 FLOPs per multiply-add) and nothing else:
bias adds, ReLUs, pooling and BatchNorm count as 0. MACs (multiply-accumulates,
what torchvision's model table calls "GFLOPS") are therefore FLOPs / 2.
"""

from numbers import Integral
from typing import Any, Dict, List, Optional, Sequence, Union

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["LayerTable", "layer_table", "count_parameters"]

_COLUMNS = (
    ("name", "Layer"),
    ("type", "Type"),
    ("output_shape", "Output shape"),
    ("params", "Params"),
    ("flops", "FLOPs"),
    ("macs", "MACs"),
    ("activation_bytes", "Act. bytes"),
)
_NUMERIC = ("params", "flops", "macs", "activation_bytes")
# Row for work no leaf module accounts for: parameters owned by container
# modules, or matmuls/convs written inline in a container's forward().
_OTHER = "(outside leaf modules)"


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (shared ones once); only those with requires_grad if ``trainable_only``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _si(value: float, unit: str) -> str:
    """1428376960, 'FLOPs' -> '1.43 GFLOPs' (for the summary line only)."""
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:g} {unit}"


def _tensors(output: Any) -> List[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (list, tuple)):
        return [t for item in output for t in _tensors(item)]
    return []


def _shape_str(output: Any) -> str:
    shapes = [tuple(t.shape) for t in _tensors(output)]
    return ", ".join("(" + ", ".join(str(d) for d in s) + ")" for s in shapes) or "-"


class LayerTable:
    """One row per leaf module (in order of first call) plus totals; prints as an aligned text table.

    Each row is a dict with keys name, type, output_shape, params, flops, macs,
    activation_bytes, calls. A module called several times in one forward pass
    (torchvision's ResNets reuse one ReLU per block) keeps one row that counts
    every call: ``calls`` is how often it ran, ``flops``/``macs`` and
    ``activation_bytes`` (the size of its outputs) are summed over the calls, and
    ``output_shape`` reads "(1, 64, 56, 56) x2" (or lists the shapes if they differ).
    The total of ``activation_bytes`` is the memory of every layer output of one
    forward pass. It is neither an upper nor a lower bound on what a pass stores:
    in-place ops (``ReLU(inplace=True)``) share their input's memory, and inference
    frees outputs as it goes, while training also keeps tensors that are no
    module's output (inline ops such as a residual ``+``, pooling indices, dropout masks).
    """

    def __init__(self, rows: List[Dict[str, Any]], input_shape: Sequence[int], model_name: str) -> None:
        self.rows = rows
        self.input_shape = tuple(input_shape)
        self.model_name = model_name
        self.total_params = sum(r["params"] for r in rows)
        self.total_flops = sum(r["flops"] for r in rows)
        self.total_macs = sum(r["macs"] for r in rows)
        self.total_activation_bytes = sum(r["activation_bytes"] for r in rows)

    def _cells(self) -> List[List[str]]:
        lines = [[title for _, title in _COLUMNS]]
        for row in self.rows:
            lines.append([f"{row[key]:,}" if key in _NUMERIC else str(row[key]) for key, _ in _COLUMNS])
        totals = {
            "name": "Total",
            "type": "",
            "output_shape": "",
            "params": self.total_params,
            "flops": self.total_flops,
            "macs": self.total_macs,
            "activation_bytes": self.total_activation_bytes,
        }
        lines.append([f"{totals[key]:,}" if key in _NUMERIC else totals[key] for key, _ in _COLUMNS])
        return lines

    def summary(self) -> str:
        """One line with the totals in human units."""
        return (
            f"{self.model_name}, input {tuple(self.input_shape)}: "
            f"{self.total_params:,} params, {_si(self.total_flops, 'FLOPs')}, "
            f"{_si(self.total_macs, 'MACs')}, {_si(self.total_activation_bytes, 'B')} of layer outputs"
        )

    def __str__(self) -> str:
        lines = self._cells()
        widths = [max(len(line[i]) for line in lines) for i in range(len(_COLUMNS))]

        def fmt(cells: List[str]) -> str:
            parts = [
                cell.rjust(w) if key in _NUMERIC else cell.ljust(w)
                for cell, w, (key, _) in zip(cells, widths, _COLUMNS)
            ]
            return "  ".join(parts).rstrip()

        rule = "  ".join("-" * w for w in widths)
        body = [fmt(lines[0]), rule] + [fmt(cells) for cells in lines[1:-1]] + [rule, fmt(lines[-1])]
        return "\n".join(body + [self.summary()])

    __repr__ = __str__

    def to_markdown(self) -> str:
        """The table as GitHub-flavoured Markdown (numbers right-aligned)."""
        lines = self._cells()
        align = ["---:" if key in _NUMERIC else ":---" for key, _ in _COLUMNS]
        out = ["| " + " | ".join(lines[0]) + " |", "| " + " | ".join(align) + " |"]
        for cells in lines[1:-1]:
            out.append("| " + " | ".join(cells) + " |")
        out.append("| " + " | ".join(f"**{c}**" if c else "" for c in lines[-1]) + " |")
        return "\n".join(out)

    def _repr_html_(self) -> str:
        from html import escape

        lines = self._cells()
        head = "".join(f"<th>{escape(c)}</th>" for c in lines[0])
        body = []
        for i, cells in enumerate(lines[1:], start=1):
            tag = "th" if i == len(lines) - 1 else "td"
            tds = "".join(
                f'<{tag} style="text-align:{"right" if key in _NUMERIC else "left"}">{escape(c)}</{tag}>'
                for c, (key, _) in zip(cells, _COLUMNS)
            )
            body.append(f"<tr>{tds}</tr>")
        return (
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
            f"<p>{escape(self.summary())}</p>"
        )


def _validate_input_size(input_size: Sequence[int]) -> tuple:
    try:
        dims = tuple(input_size)
    except TypeError:
        dims = None
    if (
        dims is None
        or len(dims) not in (3, 4)
        or not all(isinstance(d, Integral) and not isinstance(d, bool) and d > 0 for d in dims)
    ):
        raise ValueError(
            "input_size must be 3 or 4 positive ints, (channels, height, width) or "
            f"(batch, channels, height, width), e.g. (3, 224, 224); got {input_size!r}"
        )
    dims = tuple(int(d) for d in dims)
    return dims if len(dims) == 4 else (1,) + dims


def layer_table(
    model: nn.Module,
    input_size: Sequence[int],
    device: Optional[Union[str, torch.device]] = None,
) -> LayerTable:
    """Run one zero-filled forward pass (eval mode, no grad) and tabulate every leaf module.

    A module called several times counts every call (see ``LayerTable``).

    ``input_size`` is (C, H, W) for batch 1, or (N, C, H, W). The input is
    created on ``device`` (default: where the model's parameters are); the
    model is not moved. Its train/eval state is restored afterwards.
    """
    shape = _validate_input_size(input_size)
    first = next(model.parameters(), None)
    if device is None:
        device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    x = torch.zeros(shape, device=device, dtype=dtype)

    # Each parameter belongs to the first module that owns it (shared ones count once).
    owner: Dict[int, str] = {}
    for name, module in model.named_modules():
        for p in module.parameters(recurse=False):
            owner.setdefault(id(p), name)
    own_params: Dict[str, int] = {}
    for p in model.parameters():
        own_params[owner[id(p)]] = own_params.get(owner[id(p)], 0) + p.numel()

    leaves = [(name, m) for name, m in model.named_modules() if not list(m.children())]
    rows: Dict[str, Dict[str, Any]] = {}
    counter = FlopCounterMode(display=False)
    start: Dict[str, int] = {}

    # A leaf's FLOPs = how much FlopCounterMode's global total grew while it ran.
    # (Its per-module breakdown exists too, but is keyed by class-name paths.)
    def pre_hook(name):
        def hook(module, inputs):
            start[name] = counter.get_total_flops()

        return hook

    def post_hook(name):
        def hook(module, inputs, output):
            flops = counter.get_total_flops() - start.pop(name)
            row = rows.setdefault(
                name,
                {"name": name, "type": type(module).__name__, "params": own_params.get(name, 0), "flops": 0,
                 "activation_bytes": 0, "calls": 0, "shapes": []},
            )
            # Every call counts: a module reused in one pass adds its work and outputs each time.
            row["flops"] += flops
            row["calls"] += 1
            row["shapes"].append(_shape_str(output))
            row["activation_bytes"] += sum(t.numel() * t.element_size() for t in _tensors(output))

        return hook

    handles = []
    for name, module in leaves:
        handles.append(module.register_forward_pre_hook(pre_hook(name)))
        handles.append(module.register_forward_hook(post_hook(name)))
    was_training = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad(), counter:
            model(x)
    finally:
        for handle in handles:
            handle.remove()
        for m, mode in was_training.items():
            m.train(mode)

    table_rows = list(rows.values())
    for row in table_rows:
        shapes = row.pop("shapes")
        distinct = list(dict.fromkeys(shapes))
        if len(shapes) == 1:
            row["output_shape"] = shapes[0]
        elif len(distinct) == 1:
            row["output_shape"] = f"{shapes[0]} x{len(shapes)}"
        else:
            row["output_shape"] = "; ".join(shapes)
    # Leaves that never ran (e.g. unused heads) still own parameters.
    for name, module in leaves:
        if name not in rows and own_params.get(name, 0):
            table_rows.append(
                {"name": name, "type": type(module).__name__, "output_shape": "(not run)",
                 "params": own_params[name], "flops": 0, "activation_bytes": 0, "calls": 0}
            )
    leaf_names = {name for name, _ in leaves}
    other_params = sum(n for name, n in own_params.items() if name not in leaf_names)
    other_flops = counter.get_total_flops() - sum(r["flops"] for r in table_rows)
    if other_params or other_flops:
        table_rows.append(
            {"name": _OTHER, "type": "", "output_shape": "", "params": other_params,
             "flops": other_flops, "activation_bytes": 0, "calls": 0}
        )
    for row in table_rows:
        # All ops FlopCounterMode counts (conv, mm, addmm, bmm, attention) are 2 FLOPs per MAC.
        row["macs"] = row["flops"] // 2
    ordered = [{**{key: row[key] for key, _ in _COLUMNS}, "calls": row["calls"]} for row in table_rows]
    return LayerTable(ordered, shape, type(model).__name__)
