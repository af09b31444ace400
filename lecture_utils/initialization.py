"""Initialization: the schemes the lecture compares, and what they do to each layer of a deep net.

"Initialize so that each feature across layers has similar variance; avoid
units in saturation." With ``n`` inputs per unit and weights of variance
``v``, a linear layer multiplies the signal's variance by about ``n * v``:
``v = 1 / n`` (Glorot & Bengio 2010, for tanh near 0) or ``v = 2 / n`` (He et al.
2015, for ReLU, which zeroes half) keeps it; much smaller shrinks it layer by
layer, much larger saturates tanh/sigmoid units or explodes ReLU ones.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

SCHEMES = ("small", "large", "xavier", "kaiming")
SMALL_STD = 0.01  # a "too small" N(0, 0.01^2), the classic default of early nets
LARGE_STD = 1.0  # a "too large" N(0, 1)
SATURATED = 0.99  # |tanh| above this (sigmoid within 0.01 of 0 or 1) counts as saturated


def initialize(model, scheme, seed=None):
    """Re-initialize every ``nn.Linear`` and ``nn.Conv2d`` weight of ``model`` by ``scheme``; biases to 0.

    ``small``: N(0, 0.01^2); ``large``: N(0, 1); ``xavier``: Glorot-normal,
    variance 2 / (fan_in + fan_out); ``kaiming``: He-normal, variance 2 / fan_in.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown initialization {scheme!r}: choose one of {', '.join(SCHEMES)}")
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            w = m.weight
            fan_in = w[0].numel()
            fan_out = w.shape[0] * w[0][0].numel()
            std = {"small": SMALL_STD, "large": LARGE_STD, "xavier": math.sqrt(2 / (fan_in + fan_out)),
                   "kaiming": math.sqrt(2 / fan_in)}[scheme]
            with torch.no_grad():
                w.copy_(torch.randn(w.shape, generator=gen) * std)
                if m.bias is not None:
                    m.bias.zero_()
    return model


def saturated_fraction(a, activation):
    """The fraction of units in saturation: |tanh| > 0.99, sigmoid < 0.01 or > 0.99, ReLU exactly 0 (dead)."""
    if activation == "tanh":
        return (a.abs() > SATURATED).float().mean().item()
    if activation == "sigmoid":
        return ((a < 1 - SATURATED) | (a > SATURATED)).float().mean().item()
    if activation == "relu":
        return (a == 0).float().mean().item()
    raise ValueError(f"unknown activation {activation!r}: choose one of relu, tanh, sigmoid")


def dead_fraction(a):
    """The fraction of units that are 0 for every input of the batch: ``(a == 0).all(0).mean()``.

    ``a`` is (inputs x units), or (inputs, channels, height, width): then a unit is a channel, dead when it is
    0 at every position of every input. A dead ReLU passes no gradient, so nothing brings it back.
    """
    if not isinstance(a, torch.Tensor) or a.ndim not in (2, 4) or len(a) < 1:
        raise ValueError(f"a must be activations of shape (inputs, units) or (inputs, channels, h, w), got "
                         f"{tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__}")
    zero = a.detach() == 0
    if zero.ndim == 4:
        zero = zero.transpose(0, 1).flatten(1).T  # (inputs x positions, channels)
    return zero.all(0).float().mean().item()


def layer_statistics(net, images, labels):
    """Per hidden layer of a ``PlainNet``: the std of its activations and of the loss gradient there, saturation
    and dead units.

    One forward and backward pass over ``images`` (the weights are not changed).
    Returns a list of dicts: ``layer``, ``activation_std``, ``gradient_std``, ``saturated`` (tanh/sigmoid near
    their limits; for ReLU the fraction of zero outputs, about 1/2 whatever the scheme) and ``dead`` (units 0
    for every image, ``dead_fraction``).
    """
    acts = []
    h = net.flatten(images)
    for layer in net.hidden_layers:
        h = net.act(layer(h))
        h.retain_grad()
        acts.append(h)
    loss = F.cross_entropy(net.head(h), labels)
    net.zero_grad(set_to_none=True)
    loss.backward()
    rows = [{"layer": i + 1, "activation_std": a.detach().std().item(), "gradient_std": a.grad.std().item(),
             "saturated": saturated_fraction(a.detach(), net.activation), "dead": dead_fraction(a)}
            for i, a in enumerate(acts)]
    net.zero_grad(set_to_none=True)
    return rows
