"""GoogLeNet / Inception v1 (Szegedy et al. 2015), laid out like torchvision's.

Two ideas from the paper show up in the code: the Inception block looks at
the same input at several scales in parallel (1x1, 3x3, 5x5, pooling) and
concatenates the results, with cheap 1x1 convs shrinking the channels before
the expensive convs; and global average pooling replaces AlexNet's huge fully
connected layers, which is why it has ~9x fewer parameters than AlexNet.
"""

from collections import OrderedDict

import torch
from torch import nn

__all__ = ["BasicConv2d", "Inception", "GoogLeNet", "googlenet", "cifar_googlenet", "INCEPTION_CONFIG"]


class BasicConv2d(nn.Module):
    """conv (no bias: BatchNorm makes it redundant) -> BatchNorm -> ReLU, as in torchvision."""

    def __init__(self, in_channels: int, out_channels: int, **conv_kwargs) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **conv_kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class Inception(nn.Module):
    """Four parallel branches, concatenated along channels (paper Figure 2b).

    branch1: 1x1; branch2: 1x1 "reduce" -> 3x3; branch3: 1x1 "reduce" -> "5x5";
    branch4: 3x3 max-pool -> 1x1 "pool proj". The 1x1 reductions are what keep
    the 3x3/5x5 convs affordable. Output channels: ch1x1 + ch3x3 + ch5x5 + pool_proj.

    ``branch5x5_kernel`` defaults to 3, NOT 5: torchvision's GoogLeNet uses a
    3x3 kernel in the "5x5" branch (a known bug kept for its pretrained weights,
    pytorch/vision#906). We copy it so the parameter count matches torchvision's
    6,624,904; pass 5 for the paper's block.

    ``reduce=False`` builds the paper's naive module (Figure 2a) for comparison:
    the 3x3 and 5x5 convs read all input channels, and the pool branch passes the
    input's channels through unprojected (``ch3x3red``, ``ch5x5red`` and
    ``pool_proj`` are then ignored; output channels: ch1x1 + ch3x3 + ch5x5 + in_channels).
    """

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        ch5x5red: int,
        ch5x5: int,
        pool_proj: int,
        branch5x5_kernel: int = 3,
        reduce: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(branch5x5_kernel, int) or isinstance(branch5x5_kernel, bool) or branch5x5_kernel not in (3, 5):
            raise ValueError(f"branch5x5_kernel must be 3 (torchvision's) or 5 (the paper's), got {branch5x5_kernel!r}")
        if not isinstance(reduce, bool):
            raise ValueError(f"reduce must be True (1x1 reductions) or False (the naive module), got {reduce!r}")
        k5 = branch5x5_kernel
        self.reduce = reduce
        self.branch1 = BasicConv2d(in_channels, ch1x1, kernel_size=1)
        pool = nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True)
        if reduce:
            self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj
            self.branch2 = nn.Sequential(
                BasicConv2d(in_channels, ch3x3red, kernel_size=1),
                BasicConv2d(ch3x3red, ch3x3, kernel_size=3, padding=1),
            )
            self.branch3 = nn.Sequential(
                BasicConv2d(in_channels, ch5x5red, kernel_size=1),
                BasicConv2d(ch5x5red, ch5x5, kernel_size=k5, padding=k5 // 2),
            )
            self.branch4 = nn.Sequential(pool, BasicConv2d(in_channels, pool_proj, kernel_size=1))
        else:
            self.out_channels = ch1x1 + ch3x3 + ch5x5 + in_channels
            self.branch2 = nn.Sequential(BasicConv2d(in_channels, ch3x3, kernel_size=3, padding=1))
            self.branch3 = nn.Sequential(BasicConv2d(in_channels, ch5x5, kernel_size=k5, padding=k5 // 2))
            self.branch4 = nn.Sequential(pool)

    def branches(self, x: torch.Tensor) -> list:
        """The four branch outputs, before concatenation (for looking at what each one responds to)."""
        return [self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Every branch keeps the spatial size, so the outputs stack along channels.
        return torch.cat(self.branches(x), 1)


# Paper Table 1: (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj) per block.
# Each block's input channels are the previous block's output channels.
INCEPTION_CONFIG = OrderedDict(
    [
        ("inception3a", (64, 96, 128, 16, 32, 32)),
        ("inception3b", (128, 128, 192, 32, 96, 64)),
        ("inception4a", (192, 96, 208, 16, 48, 64)),
        ("inception4b", (160, 112, 224, 24, 64, 64)),
        ("inception4c", (128, 128, 256, 24, 64, 64)),
        ("inception4d", (112, 144, 288, 32, 64, 64)),
        ("inception4e", (256, 160, 320, 32, 128, 128)),
        ("inception5a", (256, 160, 320, 32, 128, 128)),
        ("inception5b", (384, 192, 384, 48, 128, 128)),
    ]
)


def _scaled(channels: int, width: float) -> int:
    return max(1, round(channels * width))


def _make_stem(kind: str, width: float) -> nn.Sequential:
    """The convs before the first Inception block; both end with 192*width channels."""
    c64, c192 = _scaled(64, width), _scaled(192, width)
    if kind == "imagenet":
        # 224 -> 112 (7x7/2 conv) -> 56 (pool) -> 28 (pool): cheap early downsampling.
        return nn.Sequential(
            OrderedDict(
                [
                    ("conv1", BasicConv2d(3, c64, kernel_size=7, stride=2, padding=3)),
                    ("maxpool1", nn.MaxPool2d(3, stride=2, ceil_mode=True)),
                    ("conv2", BasicConv2d(c64, c64, kernel_size=1)),
                    ("conv3", BasicConv2d(c64, c192, kernel_size=3, padding=1)),
                    ("maxpool2", nn.MaxPool2d(3, stride=2, ceil_mode=True)),
                ]
            )
        )
    if kind == "cifar":
        # A 32x32 image cannot afford /8 before the first block: only 32 -> 16.
        return nn.Sequential(
            OrderedDict(
                [
                    ("conv1", BasicConv2d(3, c64, kernel_size=3, padding=1)),
                    ("conv2", BasicConv2d(c64, c192, kernel_size=3, padding=1)),
                    ("maxpool2", nn.MaxPool2d(3, stride=2, padding=1)),
                ]
            )
        )
    raise ValueError(f"stem must be 'imagenet' or 'cifar', got {kind!r}")


class GoogLeNet(nn.Module):
    """Stem, nine Inception blocks (3a-3b, pool, 4a-4e, pool, 5a-5b), global avg pool, one FC.

    No auxiliary classifiers (torchvision's ``aux_logits=False``): with
    BatchNorm the network trains fine without them.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        stem: str = "imagenet",
        width: float = 1.0,
        branch5x5_kernel: int = 3,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be positive, got {width!r}")
        self.stem = _make_stem(stem, width)
        channels = _scaled(192, width)
        blocks = OrderedDict()
        for name, config in INCEPTION_CONFIG.items():
            widths = (_scaled(c, width) for c in config)
            block = Inception(channels, *widths, branch5x5_kernel=branch5x5_kernel)
            blocks[name] = block
            channels = block.out_channels
            # Stride-2 pools between the stages: 28 -> 14 -> 7 at 224x224 input.
            if name == "inception3b":
                blocks["maxpool3"] = nn.MaxPool2d(3, stride=2, ceil_mode=True)
            elif name == "inception4e":
                blocks["maxpool4"] = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.inception = nn.Sequential(blocks)
        # Global average pooling: one number per channel, so the classifier is a
        # single 1024 x num_classes layer instead of AlexNet's 58M-parameter FC stack.
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.flatten = nn.Flatten(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.inception(self.stem(x)))
        return self.fc(self.dropout(self.flatten(x)))


def googlenet(num_classes: int = 1000, branch5x5_kernel: int = 3) -> GoogLeNet:
    """GoogLeNet for 224x224 images, parameter-for-parameter torchvision's (aux_logits=False)."""
    return GoogLeNet(num_classes=num_classes, stem="imagenet", branch5x5_kernel=branch5x5_kernel)


def cifar_googlenet(num_classes: int = 10, width: float = 0.25, branch5x5_kernel: int = 3) -> GoogLeNet:
    """GoogLeNet for 32x32 images: a light stem (32 -> 16), then stages at 16, 8, 4 pixels.

    ``width`` scales every channel count; the default 0.25 keeps it CPU-trainable.
    """
    return GoogLeNet(num_classes=num_classes, stem="cifar", width=width, branch5x5_kernel=branch5x5_kernel)
