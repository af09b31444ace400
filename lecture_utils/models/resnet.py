"""The CIFAR-10 ResNets of He et al. 2016 (section 4.2) and their "plain" twins.

The residual idea: a block learns F(x) and outputs relu(F(x) + x), so an
identity mapping (F = 0) is easy to represent and deeper nets are never harder
to fit than shallower ones. The plain net has exactly the same layers without
the "+ x"; with depth it gets *worse* even on the training set (the
degradation problem, paper Figure 6), which is what the shortcuts fix.
"""

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BasicBlock", "PadShortcut", "CifarResNet", "cifar_resnet", "imagenet_resnet"]


class PadShortcut(nn.Module):
    """Option-A shortcut: identity, or on downsampling subsample by ``stride`` and zero-pad channels.

    It has no parameters, so a ResNet and its plain twin have identical counts.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra_channels = out_channels - in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.extra_channels:
            # Pad the channel dimension (F.pad lists dims last-first: W, H, C).
            half = self.extra_channels // 2
            x = F.pad(x, (0, 0, 0, 0, half, self.extra_channels - half))
        return x


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers; ``residual=True`` adds the (option-A) shortcut before the last ReLU."""

    expansion = 1

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, residual: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu2 = nn.ReLU(inplace=True)
        self.shortcut = PadShortcut(in_channels, out_channels, stride) if residual else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        if self.shortcut is not None:
            out = out + self.shortcut(x)  # y = F(x) + x: the block only learns a residual
        return self.relu2(out)


class CifarResNet(nn.Module):
    """3x3 conv (16), three stages of n blocks at 16/32/64 channels on 32/16/8 maps, avg pool, FC.

    Depth = 6n + 2: the first conv, 2n convs per stage, and the FC layer.
    ``width`` is the first stage's channels (the paper's 16; the stages have
    width, 2 width, 4 width): a narrower net of the same depth for a CPU budget.
    """

    def __init__(self, depth: int, residual: bool = True, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
            raise ValueError(
                f"depth must be 6n+2 with n >= 1 (e.g. 8, 14, 20, 32, 44, 56, 110), got {depth!r}"
            )
        if not isinstance(residual, bool):
            raise TypeError(
                f"residual must be a bool (True: ResNet with identity shortcuts, False: the plain net), "
                f"got {residual!r} of type {type(residual).__name__}"
            )
        if isinstance(width, bool) or not isinstance(width, int) or width < 2 or width % 2:
            raise ValueError(f"width must be an even int >= 2 (the first stage's channels; the paper's 16), got {width!r}")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
        n = (depth - 2) // 6
        self.depth = depth
        self.residual = residual
        self.width = width
        self.in_channels = width

        self.conv1 = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        # The first block of stages 2 and 3 halves the map (stride 2) and doubles
        # the channels, keeping the cost per layer roughly constant.
        self.layer1 = self._make_layer(width, n, stride=1)
        self.layer2 = self._make_layer(2 * width, n, stride=2)
        self.layer3 = self._make_layer(4 * width, n, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(4 * width, num_classes)

        # He et al. 2015 ("Kaiming") init, as the paper specifies.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, out_channels: int, blocks: int, stride: int) -> nn.Sequential:
        layers = []
        for i in range(blocks):
            layers.append(
                BasicBlock(self.in_channels, out_channels, stride if i == 0 else 1, residual=self.residual)
            )
            self.in_channels = out_channels
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.flatten(self.avgpool(x)))


def cifar_resnet(depth: int, residual: bool = True, num_classes: int = 10, width: int = 16) -> CifarResNet:
    """ResNet-``depth`` for 32x32 images (``residual=False``: the plain net of the same depth).

    ``width`` (default 16, the paper's) sets the channels of the three stages to width, 2 width, 4 width.
    """
    return CifarResNet(depth, residual=residual, num_classes=num_classes, width=width)


IMAGENET_LAYOUTS = ("torchvision", "paper", "C")


def imagenet_resnet(depth: int, layout: str = "torchvision") -> nn.Module:
    """torchvision's ImageNet ResNet-``depth`` (18, 34, 50, 101, 152), untrained, in one of three layouts.

    ``"torchvision"``: as torchvision builds it: projection shortcuts (1x1 conv + BN) only where the shape
    changes (He et al.'s option B) and, in ResNet-50/101/152, the stride-2 of a downsampling bottleneck in its
    3x3 conv (the "v1.5" variant, more multiply-adds). ``"paper"``: He et al. 2016's v1, the stride in the first
    1x1 conv of that bottleneck (the parameters are the same). ``"C"``: option C, a projection on every shortcut.
    Build it under ``torch.device("meta")`` to count it without allocating weights.
    """
    from torchvision import models as tv_models

    if layout not in IMAGENET_LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(map(repr, IMAGENET_LAYOUTS))}, got {layout!r}")
    if depth not in (18, 34, 50, 101, 152):
        raise ValueError(f"depth must be one of 18, 34, 50, 101, 152 (torchvision's ImageNet ResNets), got {depth!r}")
    model = getattr(tv_models, f"resnet{depth}")()
    for block in model.modules():
        if layout == "paper" and isinstance(block, tv_models.resnet.Bottleneck) and block.conv2.stride == (2, 2):
            block.conv1.stride, block.conv2.stride = (2, 2), (1, 1)
        if layout == "C" and isinstance(block, (tv_models.resnet.BasicBlock, tv_models.resnet.Bottleneck)) \
                and block.downsample is None:
            c_in, c_out = block.conv1.in_channels, block.bn3.num_features if hasattr(block, "bn3") else \
                block.bn2.num_features
            device = block.conv1.weight.device
            block.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False, device=device),
                                             nn.BatchNorm2d(c_out, device=device))
    return model
