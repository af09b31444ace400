"""Small nets for the optimization-tricks notebook: every switch of the lecture's recipe is an argument.

- ``SmallConvNet``: two conv-[BN]-activation-pool stages and a hidden FC layer; ``activation``
  ("relu", "tanh", "sigmoid"), ``batch_norm`` and ``dropout`` switch the recipe's pieces on and off.
- ``MLP``: the fully connected counterpart (no weight sharing), for the parameter-count comparison.
- ``PlainNet``: a deep stack of equal fully connected layers without normalization, for the
  initialization study (``lecture_utils.initialization``).

``SmallConvNet`` and ``MLP`` keep their last hidden activations in ``.hidden`` when
``keep_hidden`` is set, so a penalty on them (sparsity) can be added to the loss.
"""

from collections import OrderedDict

import torch
from torch import nn

__all__ = ["ACTIVATIONS", "activation_layer", "SmallConvNet", "small_convnet", "MLP", "mlp", "PlainNet", "plain_net"]

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


def activation_layer(name: str) -> nn.Module:
    """A new activation module by name: relu, tanh or sigmoid."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}: choose one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def _check_dropout(dropout):
    if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")


class _KeepsHidden(nn.Module):
    """Stores its input in the owner's ``.hidden`` when the owner's ``keep_hidden`` is set (an identity otherwise)."""

    def __init__(self, owner_ref):
        super().__init__()
        self._owner = owner_ref  # a one-element list: no submodule cycle

    def forward(self, x):
        owner = self._owner[0]
        if owner.keep_hidden:
            owner.hidden = x
        return x


class SmallConvNet(nn.Module):
    """conv(w1, 5x5, pad 2)-[BN]-act-pool, conv(w2, 5x5, pad 2)-[BN]-act-pool, [drop]-fc(hidden)-[BN]-act-[drop]-fc.

    At 28x28 with the defaults (8, 16 channels, 64 hidden units): 54,314 parameters.
    """

    def __init__(self, num_classes=10, in_channels=1, widths=(8, 16), hidden=64, activation="relu",
                 batch_norm=False, dropout=0.0, image_size=28, keep_hidden=False):
        super().__init__()
        _check_dropout(dropout)
        activation_layer(activation)  # checks the name
        if image_size < 4 or image_size % 4:
            raise ValueError(f"image_size must be a positive multiple of 4 (two 2x2 poolings), got {image_size!r}")
        self.activation, self.keep_hidden, self.hidden = activation, keep_hidden, None
        layers, channels = [], in_channels
        for i, width in enumerate(widths, start=1):
            layers.append((f"conv{i}", nn.Conv2d(channels, width, kernel_size=5, padding=2, bias=not batch_norm)))
            if batch_norm:
                layers.append((f"bn{i}", nn.BatchNorm2d(width)))
            layers += [(f"act{i}", activation_layer(activation)), (f"pool{i}", nn.MaxPool2d(2))]
            channels = width
        self.features = nn.Sequential(OrderedDict(layers))
        spatial = image_size // 2 ** len(widths)
        n = len(widths) + 1
        head = [("flatten", nn.Flatten(1))]
        if dropout > 0:
            head.append((f"drop{n}", nn.Dropout(dropout)))
        head.append((f"fc{n}", nn.Linear(channels * spatial * spatial, hidden, bias=not batch_norm)))
        if batch_norm:
            head.append((f"bn{n}", nn.BatchNorm1d(hidden)))
        head += [(f"act{n}", activation_layer(activation)), ("keep", _KeepsHidden([self]))]
        if dropout > 0:
            head.append((f"drop{n + 1}", nn.Dropout(dropout)))
        head.append((f"fc{n + 1}", nn.Linear(hidden, num_classes)))
        self.classifier = nn.Sequential(OrderedDict(head))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def small_convnet(activation="relu", batch_norm=False, dropout=0.0, **kwargs) -> SmallConvNet:
    """A ``SmallConvNet`` for (N, 1, 28, 28) digits."""
    return SmallConvNet(activation=activation, batch_norm=batch_norm, dropout=dropout, **kwargs)


class MLP(nn.Module):
    """flatten, then [drop]-fc-[BN]-act per hidden layer, then fc: a fully connected net, no weight sharing."""

    def __init__(self, in_features=784, hidden=(256,), num_classes=10, activation="relu", batch_norm=False,
                 dropout=0.0, keep_hidden=False):
        super().__init__()
        _check_dropout(dropout)
        activation_layer(activation)
        if not hidden:
            raise ValueError("hidden must list at least one layer width")
        self.activation, self.keep_hidden, self.hidden = activation, keep_hidden, None
        layers, width = [("flatten", nn.Flatten(1))], in_features
        for i, h in enumerate(hidden, start=1):
            if dropout > 0 and i > 1:
                layers.append((f"drop{i}", nn.Dropout(dropout)))
            layers.append((f"fc{i}", nn.Linear(width, h, bias=not batch_norm)))
            if batch_norm:
                layers.append((f"bn{i}", nn.BatchNorm1d(h)))
            layers.append((f"act{i}", activation_layer(activation)))
            width = h
        layers.append(("keep", _KeepsHidden([self])))
        if dropout > 0:
            layers.append((f"drop{len(hidden) + 1}", nn.Dropout(dropout)))
        layers.append((f"fc{len(hidden) + 1}", nn.Linear(width, num_classes)))
        self.layers = nn.Sequential(OrderedDict(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def mlp(hidden=(256,), activation="relu", **kwargs) -> MLP:
    """An ``MLP`` for flattened (N, 1, 28, 28) digits."""
    return MLP(hidden=tuple(hidden), activation=activation, **kwargs)


class PlainNet(nn.Module):
    """``depth`` fully connected layers of ``width`` units with ``activation`` between them, then a classifier.

    No normalization and no shortcuts: whether a signal survives 20 layers
    depends on the initialization alone. ``hidden_layers`` and ``act`` are
    public so ``initialization.layer_statistics`` can walk the layers.
    """

    def __init__(self, depth=20, width=128, activation="tanh", in_features=784, num_classes=10):
        super().__init__()
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth must be an int >= 1, got {depth!r}")
        self.activation = activation
        self.act = activation_layer(activation)
        self.flatten = nn.Flatten(1)
        self.hidden_layers = nn.ModuleList(
            nn.Linear(in_features if i == 0 else width, width) for i in range(depth))
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.flatten(x)
        for layer in self.hidden_layers:
            h = self.act(layer(h))
        return self.head(h)


def plain_net(depth=20, width=128, activation="tanh", **kwargs) -> PlainNet:
    """A ``PlainNet`` for flattened (N, 1, 28, 28) digits."""
    return PlainNet(depth=depth, width=width, activation=activation, **kwargs)
