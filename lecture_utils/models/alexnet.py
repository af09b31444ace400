"""AlexNet (Krizhevsky et al. 2012) with Zeiler & Fergus-style layer removal.

Zeiler & Fergus (2013, Table 3) asked how much each layer matters by removing
it and retraining: dropping the hidden fully connected layers 6-7 (most of the
parameters) or the middle conv layers 3-4 each costs only a little, but
dropping all four hurts a lot: the overall *depth* matters more than any one
layer or the parameter count. ``remove`` reproduces that ablation with the
paper's numbers: 1-5 for the conv layers, 6-7 for the hidden fully connected
layers (layer 8, the classifier, always stays).

``alexnet`` follows torchvision's single-GPU variant (61,100,840 parameters at
1000 classes); ``cifar_alexnet`` keeps the same 5-conv + 2-FC structure at a
size that trains on a CPU in minutes.
"""

from collections import OrderedDict
from numbers import Integral
from typing import Iterable, NamedTuple, Sequence, Tuple

import torch
from torch import nn

__all__ = ["AlexNet", "alexnet", "cifar_alexnet", "he_init_", "IMAGENET_CONVS", "KRIZHEVSKY2012_CONVS", "CIFAR_CONVS"]


class ConvSpec(NamedTuple):
    """One conv layer of the paper: its shape, whether a max-pool follows it, its groups."""

    out_channels: int
    kernel_size: int
    stride: int
    padding: int
    pool_after: bool
    groups: int = 1


# torchvision's AlexNet ("One weird trick", Krizhevsky 2014): 64-192-384-256-256
# maps, an 11x11 stride-4 first layer and max-pooling after conv1, conv2, conv5.
IMAGENET_CONVS = (
    ConvSpec(64, 11, 4, 2, True),
    ConvSpec(192, 5, 1, 2, True),
    ConvSpec(384, 3, 1, 1, False),
    ConvSpec(256, 3, 1, 1, False),
    ConvSpec(256, 3, 1, 1, True),
)

# Krizhevsky et al. 2012 as published: 96-256-384-384-256 maps, split over two
# GPUs. Conv2, conv4 and conv5 see only the maps on their own GPU (groups=2);
# conv1, conv3 and the FC layers connect across both. (Its local response
# normalization has no parameters and is left out.) 60,965,224 parameters.
KRIZHEVSKY2012_CONVS = (
    ConvSpec(96, 11, 4, 2, True),
    ConvSpec(256, 5, 1, 2, True, groups=2),
    ConvSpec(384, 3, 1, 1, False),
    ConvSpec(384, 3, 1, 1, False, groups=2),
    ConvSpec(256, 3, 1, 1, True, groups=2),
)
# Layer widths by name, for ``alexnet(widths=...)``.
WIDTHS = {"torchvision": IMAGENET_CONVS, "2012": KRIZHEVSKY2012_CONVS}

# CIFAR (32x32): same widths and pooling positions, but every conv is 3x3 /
# stride 1 (a 32x32 image has no room for an 11x11 stride-4 stem), and 2x2
# pools take the maps 32 -> 16 -> 8 -> 4.
CIFAR_CONVS = (
    ConvSpec(64, 3, 1, 1, True),
    ConvSpec(192, 3, 1, 1, True),
    ConvSpec(384, 3, 1, 1, False),
    ConvSpec(256, 3, 1, 1, False),
    ConvSpec(256, 3, 1, 1, True),
)

_CONV_LAYERS = (1, 2, 3, 4, 5)
_HIDDEN_FC_LAYERS = (6, 7)


def _validate_remove(remove: Iterable[int]) -> Tuple[int, ...]:
    """Check ``remove`` against the paper's layer numbering; return it sorted, without repeats."""
    if isinstance(remove, (Integral, str)):
        raise ValueError(
            f"remove must be a collection of layer numbers (1-5 conv, 6-7 hidden FC) "
            f"such as (3, 4) or (7,), got {remove!r}"
        )
    try:
        layers = tuple(remove)
    except TypeError:
        raise ValueError(
            f"remove must be a collection of layer numbers (1-5 conv, 6-7 hidden FC) "
            f"such as (3, 4) or (7,), got {remove!r}"
        ) from None
    bad = [n for n in layers if isinstance(n, bool) or not isinstance(n, Integral) or not 1 <= n <= 7]
    if bad:
        raise ValueError(
            f"remove may contain only layer numbers 1-5 (conv layers) and 6-7 (hidden fully "
            f"connected layers), numbered as in Zeiler & Fergus 2013 Table 3; the final "
            f"classifier (layer 8) cannot be removed. Invalid entries: {bad}"
        )
    if set(_CONV_LAYERS) <= set(layers):
        raise ValueError(
            "remove cannot drop all five conv layers (1-5): at least one must remain, "
            f"got remove={layers}"
        )
    return tuple(sorted(set(int(n) for n in layers)))


class AlexNet(nn.Module):
    """Five conv layers and three fully connected ones, minus the paper layers in ``remove``.

    Removing conv layer k drops its conv + ReLU but keeps its max-pool, so the
    feature maps keep their size and the next conv simply takes conv k-1's
    channels. Removing FC6 (or FC7) makes the next FC layer take its input.
    A conv's ``groups`` (``ConvSpec.groups``) splits its input and output maps
    into that many halves that do not see each other, as on Krizhevsky's two GPUs.
    ``batch_norm=True`` puts a BatchNorm2d between every conv and its ReLU (not in
    the paper, which predates it: it lets a deep plain net train from the first steps).
    """

    def __init__(
        self,
        num_classes: int = 1000,
        remove: Iterable[int] = (),
        convs: Sequence[ConvSpec] = IMAGENET_CONVS,
        pool_kernel: int = 3,
        pool_stride: int = 2,
        pooled_size: int = 6,
        hidden: int = 4096,
        dropout: float = 0.5,
        in_channels: int = 3,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        if len(convs) != len(_CONV_LAYERS):
            raise ValueError(f"convs must describe exactly 5 conv layers, got {len(convs)}")
        self.removed = _validate_remove(remove)

        # Conv layers 1-5. Krizhevsky's pools overlap (3x3 window, stride 2).
        features = OrderedDict()
        channels = in_channels
        for number, spec in zip(_CONV_LAYERS, convs):
            if number not in self.removed:
                if channels % spec.groups or spec.out_channels % spec.groups:
                    raise ValueError(
                        f"conv{number} with groups={spec.groups} needs input and output channels divisible "
                        f"by {spec.groups}, got {channels} -> {spec.out_channels}"
                    )
                features[f"conv{number}"] = nn.Conv2d(
                    channels, spec.out_channels, spec.kernel_size, spec.stride, spec.padding, groups=spec.groups,
                    bias=not batch_norm,  # batch norm's shift takes the place of the bias
                )
                if batch_norm:
                    features[f"bn{number}"] = nn.BatchNorm2d(spec.out_channels)
                features[f"relu{number}"] = nn.ReLU(inplace=True)
                channels = spec.out_channels  # the next conv is rewired to these channels
            if spec.pool_after:
                features[f"pool{number}"] = nn.MaxPool2d(pool_kernel, pool_stride)
        self.features = nn.Sequential(features)
        # Fixes the size of the flattened features for any input size (torchvision does the same).
        self.avgpool = nn.AdaptiveAvgPool2d((pooled_size, pooled_size))
        self.flatten = nn.Flatten(1)

        # FC6 and FC7 hold most of the parameters; dropout on their inputs is
        # the paper's main defence against overfitting them.
        classifier = OrderedDict()
        width = channels * pooled_size * pooled_size
        for number in _HIDDEN_FC_LAYERS:
            if number not in self.removed:
                classifier[f"drop{number}"] = nn.Dropout(dropout)
                classifier[f"fc{number}"] = nn.Linear(width, hidden)
                classifier[f"relu{number}"] = nn.ReLU(inplace=True)
                width = hidden
        classifier["fc8"] = nn.Linear(width, num_classes)
        self.classifier = nn.Sequential(classifier)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.avgpool(self.features(x))))


def alexnet(
    num_classes: int = 1000, remove: Iterable[int] = (), widths: str = "torchvision", grouped: bool = False
) -> AlexNet:
    """AlexNet for 224x224 images; ``remove`` drops paper layers 1-7.

    ``widths="torchvision"`` (default): torchvision's single-GPU 64-192-384-256-256
    maps, 61,100,840 parameters. ``widths="2012"``: the published 96-256-384-384-256.
    ``grouped=True`` splits conv2, conv4 and conv5 into two groups, as on the
    paper's two GPUs (``widths="2012", grouped=True`` is the published net).
    """
    if widths not in WIDTHS:
        raise ValueError(f"widths must be one of {', '.join(map(repr, WIDTHS))}, got {widths!r}")
    if not isinstance(grouped, bool):
        raise ValueError(f"grouped must be True or False, got {grouped!r}")
    convs = [spec._replace(groups=2 if grouped and number in (2, 4, 5) else 1)
             for number, spec in zip(_CONV_LAYERS, WIDTHS[widths])]
    return AlexNet(num_classes=num_classes, remove=remove, convs=convs)


INITS = ("pytorch", "he")


def he_init_(model: nn.Module) -> nn.Module:
    """He et al. 2015 initialization of the conv and hidden FC layers (normal, fan-in, ReLU gain; zero biases).

    It keeps the variance of the activations the same from layer to layer, so a
    deep net without normalization starts learning at once; PyTorch's default
    (uniform, variance 1/(3 fan-in)) shrinks it at every layer. The classifier
    (the last linear layer) starts small, normal with std 0.01 (as torchvision's
    VGG does), so the first logits are near zero and the first steps stay stable.
    """
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for m in layers[:-1]:
        nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    nn.init.normal_(layers[-1].weight, std=0.01)
    nn.init.zeros_(layers[-1].bias)
    return model


def cifar_alexnet(
    num_classes: int = 10,
    remove: Iterable[int] = (),
    width: float = 0.5,
    hidden: int = 512,
    dropout: float = 0.5,
    init: str = "pytorch",
    batch_norm: bool = False,
    conv1_kernel: int = 3,
) -> AlexNet:
    """AlexNet for 32x32 images: 3x3 convs, 2x2 pools to 4x4, channels scaled by ``width``.

    The default (width 0.5: 32-96-192-128-128 maps, FC 512, 1.88M parameters)
    trains at a few hundred images/s on two CPU cores; ``width=1.0, hidden=1024``
    gives AlexNet's full 64-192-384-256-256 maps (7.5M parameters, ~3.5x slower).
    ``init="pytorch"`` keeps PyTorch's default initialization (as torchvision's
    AlexNet does); ``init="he"`` applies ``he_init_``. ``batch_norm=True`` adds
    batch normalization after every conv (see ``AlexNet``). ``conv1_kernel``: the
    first layer's kernel size (odd, padded to keep 32x32; 5 or 7 gives filters
    large enough to see what they learned, as AlexNet's 11x11 at 224x224).
    """
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not width > 0:
        raise ValueError(f"width must be a positive number (1.0: AlexNet's 64-192-384-256-256 maps), got {width!r}")
    if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
        raise ValueError(f"hidden must be a positive int (the width of FC6 and FC7), got {hidden!r}")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"dropout must be a number in [0, 1) (the paper's 0.5), got {dropout!r}")
    if init not in INITS:
        raise ValueError(f"init must be one of {', '.join(map(repr, INITS))}, got {init!r}")
    if not isinstance(batch_norm, bool):
        raise ValueError(f"batch_norm must be True or False, got {batch_norm!r}")
    if isinstance(conv1_kernel, bool) or not isinstance(conv1_kernel, int) or conv1_kernel < 1 or conv1_kernel % 2 == 0:
        raise ValueError(f"conv1_kernel must be an odd positive int (3: the default, 5 or 7: larger first-layer "
                         f"filters), got {conv1_kernel!r}")
    convs = [spec._replace(out_channels=max(1, round(spec.out_channels * width))) for spec in CIFAR_CONVS]
    convs[0] = convs[0]._replace(kernel_size=conv1_kernel, padding=conv1_kernel // 2)
    model = AlexNet(
        num_classes=num_classes,
        remove=remove,
        convs=convs,
        pool_kernel=2,
        pool_stride=2,
        pooled_size=4,
        hidden=hidden,
        dropout=dropout,
        batch_norm=batch_norm,
    )
    return he_init_(model) if init == "he" else model
