"""Small nets for debugging demonstrations (notebooks 07 and 07b): a conv net of adjustable width, and a layer with a
hand-written backward that can carry a planted bug.

``HandSiLU`` computes SiLU, y = x * sigmoid(x), with its derivative written out by hand,

    dy/dx = s + x * s * (1 - s),   s = sigmoid(x),

as a ``torch.autograd.Function``. ``bug="missing_factor"`` drops the ``x`` of the second term
(s + s (1 - s)), ``bug="sign"`` flips the sign of the gradient: the kinds of slips a gradient check catches.
"""

from collections import OrderedDict

import torch
from torch import nn

__all__ = ["SiLUFunction", "HandSiLU", "TinyConvNet", "tiny_convnet", "BUGS"]

BUGS = (None, "missing_factor", "sign")


class SiLUFunction(torch.autograd.Function):
    """SiLU with a hand-written backward; ``bug`` plants one of ``BUGS`` in it."""

    @staticmethod
    def forward(ctx, x, bug=None):
        ctx.save_for_backward(x)
        ctx.bug = bug
        return x * torch.sigmoid(x)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(x)
        if ctx.bug == "missing_factor":
            local = s + s * (1 - s)  # the x of the product rule forgotten
        elif ctx.bug == "sign":
            local = -(s + x * s * (1 - s))
        else:
            local = s + x * s * (1 - s)
        return grad_output * local, None


class HandSiLU(nn.Module):
    """``SiLUFunction`` as a layer."""

    def __init__(self, bug=None):
        super().__init__()
        if bug not in BUGS:
            raise ValueError(f"bug must be one of {BUGS}, got {bug!r}")
        self.bug = bug

    def forward(self, x):
        return SiLUFunction.apply(x, self.bug)

    def extra_repr(self):
        return f"bug={self.bug!r}"


def _activation(name):
    if name == "relu":
        return nn.ReLU()
    if name == "tanh":
        return nn.Tanh()
    if name == "silu":
        return HandSiLU()
    if name.startswith("silu:"):
        return HandSiLU(name.split(":", 1)[1])
    raise ValueError(f"unknown activation {name!r}: use relu, tanh, silu or silu:<bug> with a bug of {BUGS[1:]}")


class TinyConvNet(nn.Module):
    """conv(c1, k x k, same padding)-act-pool, conv(c2, 3x3)-act-pool, fc(hidden)-act, fc(num_classes).

    ``pool="avg"`` (2x2 average pooling instead of max) with ``activation="silu"`` or ``"tanh"`` makes the whole
    net smooth, with no kinks to disturb a gradient check. Wide enough to learn MNIST's strokes, narrow enough
    (``widths=(2, 2), hidden=4``: 584 parameters) to underfit; the first layer's filters (``conv1``) are big enough
    (``kernel_size`` 7 by default) to look at.
    """

    def __init__(self, widths=(16, 32), hidden=64, kernel_size=7, num_classes=10, in_channels=1, image_size=28,
                 activation="relu", batch_norm=False, dropout=0.0, pool="max"):
        super().__init__()
        if pool not in ("max", "avg"):
            raise ValueError(f"pool must be 'max' or 'avg', got {pool!r}")
        Pool = nn.MaxPool2d if pool == "max" else nn.AvgPool2d
        c1, c2 = widths
        layers = [("conv1", nn.Conv2d(in_channels, c1, kernel_size, padding=kernel_size // 2))]
        if batch_norm:
            layers.append(("bn1", nn.BatchNorm2d(c1)))
        layers += [("act1", _activation(activation)), ("pool1", Pool(2)),
                   ("conv2", nn.Conv2d(c1, c2, 3, padding=1))]
        if batch_norm:
            layers.append(("bn2", nn.BatchNorm2d(c2)))
        layers += [("act2", _activation(activation)), ("pool2", Pool(2))]
        self.features = nn.Sequential(OrderedDict(layers))
        spatial = image_size // 4
        head = [("flatten", nn.Flatten(1))]
        if dropout > 0:
            head.append(("drop3", nn.Dropout(dropout)))
        head += [("fc3", nn.Linear(c2 * spatial * spatial, hidden)), ("act3", _activation(activation))]
        if dropout > 0:
            head.append(("drop4", nn.Dropout(dropout)))
        head.append(("fc4", nn.Linear(hidden, num_classes)))
        self.classifier = nn.Sequential(OrderedDict(head))

    def hidden(self, x):
        """The activations of the hidden fully connected layer (after its nonlinearity): samples x units."""
        h = self.features(x)
        for name, layer in self.classifier.named_children():
            h = layer(h)
            if name == "act3":
                return h
        raise AssertionError("no act3 layer")

    def forward(self, x):
        return self.classifier(self.features(x))


def tiny_convnet(widths=(16, 32), hidden=64, kernel_size=7, **kwargs):
    """A ``TinyConvNet`` for (N, 1, 28, 28) inputs (106,506 parameters with the defaults)."""
    return TinyConvNet(widths, hidden, kernel_size, **kwargs)
