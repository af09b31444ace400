"""A LeNet-style convolutional network for 28x28 digit images (MNIST-sized).

The two conv-ReLU-pool stages followed by two fully connected layers are the
template (LeCun et al. 1998) that AlexNet, GoogLeNet and ResNet all grow from.
It is small enough to train at thousands of images per second on a laptop CPU.
"""

from collections import OrderedDict

import torch
from torch import nn

__all__ = ["LeNet", "lenet"]


def _conv_stage(number: int, in_channels: int, out_channels: int, batch_norm: bool, pooling: bool = True) -> list:
    """conv(5x5, no padding) -> [BatchNorm] -> ReLU -> maxpool(2x2): halves the map.

    ``pooling=False``: conv(5x5, stride 2) -> [BatchNorm] -> ReLU, no pooling: the conv itself halves the map
    (it is evaluated at every other position), with the same weights as the pooled stage.
    """
    # With batch norm right after it, a conv bias is redundant (BN subtracts the mean).
    conv = nn.Conv2d(in_channels, out_channels, kernel_size=5, stride=1 if pooling else 2, bias=not batch_norm)
    layers = [(f"conv{number}", conv)]
    if batch_norm:
        layers.append((f"bn{number}", nn.BatchNorm2d(out_channels)))
    layers.append((f"relu{number}", nn.ReLU(inplace=True)))
    if pooling:
        layers.append((f"pool{number}", nn.MaxPool2d(kernel_size=2, stride=2)))
    return layers


class LeNet(nn.Module):
    """conv(32, 5x5)-ReLU-pool, conv(64, 5x5)-ReLU-pool, fc(hidden)-ReLU, fc(num_classes).

    ``batch_norm`` adds BatchNorm after each conv and the hidden FC layer;
    ``dropout`` > 0 adds dropout before each FC layer. ``pooling=False``
    replaces each conv + 2x2 max-pool by the same conv with stride 2 (no
    pooling; at 28x28: 28 -> 12 -> 4, as with pooling). None of them changes the
    output shapes or the weights' shapes, so the variants can be compared one-for-one.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        hidden: int = 128,
        batch_norm: bool = False,
        dropout: float = 0.0,
        image_size: int = 28,
        pooling: bool = True,
    ) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        if not isinstance(pooling, bool):
            raise TypeError(f"pooling must be True (conv + max-pool) or False (stride-2 conv), got {pooling!r}")
        if pooling:  # 5x5 conv without padding shrinks by 4, the 2x2 pool halves: 28 -> 24 -> 12 -> 8 -> 4.
            spatial = ((image_size - 4) // 2 - 4) // 2
        else:  # a 5x5 conv with stride 2: (size - 5) // 2 + 1, so 28 -> 12 -> 4.
            spatial = ((image_size - 5) // 2 + 1 - 5) // 2 + 1 if image_size >= 5 else 0
        if spatial < 1:
            raise ValueError(
                f"image_size must be at least {16 if pooling else 13} for two 5x5 conv stages "
                f"{'with pooling' if pooling else 'with stride 2'}, got {image_size}"
            )

        self.features = nn.Sequential(
            OrderedDict(_conv_stage(1, in_channels, 32, batch_norm, pooling)
                        + _conv_stage(2, 32, 64, batch_norm, pooling))
        )
        self.flatten = nn.Flatten(1)
        # Layers are numbered through the whole net, as in the AlexNet paper: conv1-2, fc3-4.
        head = []
        if dropout > 0:
            head.append(("drop3", nn.Dropout(dropout)))
        head.append(("fc3", nn.Linear(64 * spatial * spatial, hidden, bias=not batch_norm)))
        if batch_norm:
            head.append(("bn3", nn.BatchNorm1d(hidden)))
        head.append(("relu3", nn.ReLU(inplace=True)))
        if dropout > 0:
            head.append(("drop4", nn.Dropout(dropout)))
        head.append(("fc4", nn.Linear(hidden, num_classes)))
        self.classifier = nn.Sequential(OrderedDict(head))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.features(x)))


def lenet(
    num_classes: int = 10,
    in_channels: int = 1,
    batch_norm: bool = False,
    dropout: float = 0.0,
    hidden: int = 128,
    pooling: bool = True,
) -> LeNet:
    """LeNet for (N, in_channels, 28, 28) inputs (184,586 parameters with the defaults).

    ``pooling=False``: the same net with stride-2 convolutions instead of conv + max-pool (the same
    184,586 parameters, a quarter of the convolutions' multiply-adds): what max-pooling adds, alone.
    """
    return LeNet(num_classes, in_channels, hidden=hidden, batch_norm=batch_norm, dropout=dropout, pooling=pooling)
