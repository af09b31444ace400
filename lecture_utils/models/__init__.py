"""The lecture's architectures, from LeNet to ResNet, built from scratch (no pretrained weights).

ImageNet-sized models match torchvision's parameter counts; the ``cifar_*``
variants are small enough to train on a CPU during the lecture.
"""

from .alexnet import AlexNet, alexnet, cifar_alexnet
from .googlenet import BasicConv2d, GoogLeNet, Inception, cifar_googlenet, googlenet
from .lenet import LeNet, lenet
from .resnet import BasicBlock, CifarResNet, PadShortcut, cifar_resnet

__all__ = [
    "LeNet",
    "lenet",
    "AlexNet",
    "alexnet",
    "cifar_alexnet",
    "BasicConv2d",
    "Inception",
    "GoogLeNet",
    "googlenet",
    "cifar_googlenet",
    "BasicBlock",
    "PadShortcut",
    "CifarResNet",
    "cifar_resnet",
]
