"""Crops and flips (the CIFAR ResNet recipe of He et al. 2016)."""

import torch
import torch.nn.functional as F

from ._checks import _check_generator, _check_images, _check_int, _check_real


def pad_crop(images, padding=4, generator=None):
    """Zero-pad by ``padding`` pixels on each side, then crop back to (H, W) at a random offset per image.

    The crop is one ``gather``: the flat index of output pixel (i, j) of image
    n is (i + oy_n) * (W + 2p) + (j + ox_n) in the padded image.
    """
    _check_images(images)
    p = _check_int("padding", padding, low=0)
    _check_generator(generator, images.device)
    n, c, height, width = images.shape
    if p == 0:
        return images.clone()
    padded = F.pad(images, (p, p, p, p))
    offsets = torch.randint(0, 2 * p + 1, (2, n), generator=generator, device=images.device)
    rows = offsets[0, :, None] + torch.arange(height, device=images.device)  # (N, H)
    cols = offsets[1, :, None] + torch.arange(width, device=images.device)  # (N, W)
    index = rows[:, :, None] * (width + 2 * p) + cols[:, None, :]  # (N, H, W)
    index = index.view(n, 1, height * width).expand(n, c, height * width)
    return padded.flatten(2).gather(2, index).view(n, c, height, width)


def flip(images, p=0.5, generator=None):
    """Mirror each image left-right with probability ``p``, independently per image."""
    _check_images(images)
    p = _check_real("p", p, low=0.0, high=1.0)
    _check_generator(generator, images.device)
    chosen = torch.rand(images.shape[0], generator=generator, device=images.device) < p
    return torch.where(chosen.view(-1, 1, 1, 1), images.flip(-1), images)
