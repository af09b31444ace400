"""Self-checks of notebooks/05_resnets.ipynb: ResNets.

Exercises: ``check_basic_block``, ``check_resnet20_parameters``, ``check_ensemble``.
"""

import torch
import torch.nn.functional as F
from torch import nn

from ._core import _keeps_rng, _correct, _wrong, _tensor, _function, _which, _close, _int_answer


def _copy_weights(source, target):
    """Load ``source``'s state into ``target``: by name, else by order (same shapes); False if neither fits."""
    state = source.state_dict()
    try:
        target.load_state_dict(state)
        return True
    except RuntimeError:
        pass
    mine = target.state_dict()
    if len(mine) != len(state) or any(a.shape != b.shape for a, b in zip(mine.values(), state.values())):
        return False
    target.load_state_dict(dict(zip(mine, state.values())))
    return True


@_keeps_rng
def check_basic_block(block_class):
    """Exercise 5.1: ``block_class(in_channels, out_channels, stride)``, a BasicBlock with the option-A shortcut.

    relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), 3x3 convs without bias; the shortcut is the identity,
    or on downsampling x[:, :, ::2, ::2] with the new channels zero-padded half before, half after (no
    parameters). Reference: ``lecture_utils.models.resnet.BasicBlock``: output shapes (stride 1; stride 2 with
    twice the channels), parameter counts, the output with the convolutions switched off (all weights 0: only
    the shortcut is left, so the gradient reaches the input through it), and the output with the reference's
    weights copied in (by name; else in order of the state_dict entries, whose shapes must match).
    """
    from lecture_utils.models.resnet import BasicBlock, PadShortcut

    _function(block_class, "your block class")
    g = torch.Generator().manual_seed(0)
    for cin, cout, stride in ((16, 16, 1), (16, 32, 2)):
        x = torch.randn(4, cin, 8, 8, generator=g)
        mine, ref = block_class(cin, cout, stride), BasicBlock(cin, cout, stride)
        what = f"a block ({cin} -> {cout} channels, stride {stride})"
        out = mine(x.clone())
        _tensor(out, f"the output of {what}", ref(x).shape)
        n_mine, n_ref = (sum(p.numel() for p in m.parameters()) for m in (mine, ref))
        if n_mine != n_ref:
            hint = "option A's shortcut has no parameters: subsample and zero-pad, no 1x1 conv" if n_mine > n_ref \
                else "two 3x3 convs (bias=False), each followed by a BatchNorm2d"
            _wrong(f"{what} with {n_ref:,} parameters", f"{n_mine:,}", hint)
        # The convolutions switched off: F(x) = 0, so the block must give relu(shortcut(x)).
        with torch.no_grad():
            for p in mine.parameters():
                p.zero_()
        xg = x.clone().requires_grad_()
        off = mine.eval()(xg)
        if off.abs().sum() == 0 or (off.requires_grad and torch.autograd.grad(off.sum(), xg)[0].abs().sum() == 0):
            _wrong(f"{what} whose output, with every weight 0, is relu(shortcut(x)) and passes the gradient to x",
                   "an output of 0 (no gradient reaches the input)",
                   "add the shortcut: out = out + shortcut(x), before the last ReLU")
        shortcut = PadShortcut(cin, cout, stride)(x).double()
        off = off.detach().double()
        if not _close(off, torch.relu(shortcut), 1e-6):
            hint = _which(off, [(shortcut, "the last ReLU comes after the sum: relu(F(x) + shortcut(x))")]) or (
                "subsample with x[:, :, ::stride, ::stride] and pad the new channels half before, half after: "
                "F.pad(x, (0, 0, 0, 0, extra // 2, extra - extra // 2))" if stride != 1 else
                "the identity shortcut adds x itself")
            _wrong(f"relu(shortcut(x)) with every weight 0 ({what})", "another output", hint)
        # The reference's weights copied in: the same function.
        if not _copy_weights(ref, mine):
            _wrong(f"layers matching the package's BasicBlock: {', '.join(ref.state_dict())}",
                   ", ".join(mine.state_dict()), "name them conv1, bn1, conv2, bn2 (and define them in that order)")
        for mode in ("train", "eval"):
            getattr(mine, mode)(), getattr(ref, mode)()
            a, b = mine(x.clone()).detach().double(), ref(x.clone()).detach().double()
            if not _close(a, b, 1e-5):
                _wrong(f"the package's output with its weights copied in ({what}, {mode} mode)",
                       f"a largest difference of {(a - b).abs().max():.3g}",
                       "conv1 -> bn1 -> relu -> conv2 -> bn2, then + shortcut(x), then the last relu (after the sum)")
    _correct("shapes, parameter counts, the shortcut's gradient and the outputs match the package's BasicBlock")


@_keeps_rng
def check_resnet20_parameters(answer):
    """Exercise 5.2: ResNet-20's parameters by hand (the paper's 0.27M).

    conv 3 -> 16, three stages of 3 blocks (two 3x3 convs each) at 16, 32, 64 maps, BatchNorm (2 per map)
    after every conv, FC 64 -> 10. Reference: ``count_parameters(cifar_resnet(20))``.
    """
    from lecture_utils.inspect import count_parameters
    from lecture_utils.models import cifar_resnet

    got = _int_answer(answer, "ResNet-20's parameters")
    model = cifar_resnet(20)
    ref = count_parameters(model)
    if got == ref:
        return _correct(f"ResNet-20 has {ref:,} parameters (the paper's 0.27M)")
    bn = sum(p.numel() for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters())
    projections = 16 * 32 + 32 * 64 + 2 * (32 + 64)  # option B: a 1x1 conv + BatchNorm on the two downsamplings
    hint = _which(got, [(ref - bn, "count BatchNorm's scale and shift: 2 per map after every conv"),
                        (ref + projections, "option A's shortcuts have no parameters (no 1x1 projections)"),
                        (ref - 10, "the FC layer has 10 biases"),
                        (ref - 650, "add the FC layer: 64 x 10 + 10")])
    _wrong(f"{ref:,}", f"{got:,}", hint or "per 3x3 conv in -> out: 9 in out weights, + 2 out for its BatchNorm")


def _member_logits():
    """Three members' logits on 300 images of 10 classes, of different confidence (temperatures 0.5, 1, 4)."""
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (300,), generator=g)
    members = []
    for t in (0.5, 1.0, 4.0):
        scores = torch.randn(300, 10, generator=g) + 1.5 * F.one_hot(labels, 10)
        members.append(scores * t)
    return members, labels


@_keeps_rng
def check_ensemble(student_fn, member_logits=None, labels=None):
    """Exercise 5.3: a softmax ensemble by hand, ``student_fn(member_logits)`` -> (N, classes) probabilities.

    Average the members' class probabilities: mean over members of softmax(logits). Reference: the average of
    ``torch.softmax``, and its error against ``lecture_utils.ensemble.ensemble_errors``.
    """
    from lecture_utils.ensemble import ensemble_errors

    if member_logits is None:
        member_logits, labels = _member_logits()
    member_logits = [torch.as_tensor(m).detach().float().cpu() for m in member_logits]
    labels = torch.as_tensor(labels).cpu()
    probs = [m.softmax(1) for m in member_logits]
    ref = torch.stack(probs).mean(0).double()
    got = _tensor(_function(student_fn, "your ensemble function")([m.clone() for m in member_logits]),
                  "the ensemble's probabilities", ref.shape)
    if not _close(got, ref, 1e-5):
        mean_logits = torch.stack(member_logits).mean(0)
        hint = _which(got, [(mean_logits.softmax(1), "average the probabilities, not the logits: softmax each "
                                                     "member first, then average"),
                            (mean_logits, "apply softmax to each member's logits: probabilities sum to 1"),
                            (torch.stack(probs).sum(0), "divide the sum by the number of members")])
        _wrong("the mean over members of softmax(logits)", f"a largest difference of {(got - ref).abs().max():.3g}",
               hint or "torch.stack([m.softmax(dim=1) for m in member_logits]).mean(0)")
    result = ensemble_errors(probs, labels)
    error = (got.argmax(1) != torch.as_tensor(labels)).double().mean().item()
    _correct(f"ensemble error {100 * error:.1f}% (ensemble_errors: {100 * result['error']:.1f}%), members "
             + ", ".join(f"{100 * e:.1f}%" for e in result["member_errors"]))
