"""Bilinear sampling with pixel-exact coordinates, and the scratch buffers the warps reuse.

The convention of ``scipy.ndimage.map_coordinates(order=1, mode='constant', cval=0)``:
bilinear interpolation between pixel centers, 0 wherever the source point falls outside.
"""

import functools
import math
import threading

import torch
import torch.nn.functional as F

from ._checks import _work_dtype


@functools.lru_cache(maxsize=64)
def _constant(values, dtype, device):
    """``torch.tensor(values)``, made once (a new small tensor costs more than a small op). Do not modify."""
    return torch.tensor(values, dtype=dtype, device=device)


_SCRATCH = threading.local()
_SCRATCH_MAX_BYTES = 64 * 2**20


def _scratch(name, shape, dtype, device, zeroed=False):
    """An uninitialized tensor for an intermediate result, kept per thread between calls on the CPU.

    Allocating and freeing megabyte-sized tensors on every call makes glibc hand
    the memory back to the kernel and fault it in again, page by page (hundreds
    of page faults, up to a third of an ``elastic_distort`` call at 256x1x28x28 on
    a 2-core VM). Keeping the intermediates avoids that. Never returned to a caller. CPU only (CUDA's
    allocator caches already), and at most 64 MB per thread in all: a larger
    tensor is allocated afresh, and a new one that does not fit drops the
    others. ``zeroed``: all zeros when first made; callers that write only part
    of it (padding) rely on the rest staying zero.
    """
    device = torch.device("cpu" if device is None else device)
    nbytes = math.prod(shape) * dtype.itemsize
    if device.type != "cpu" or nbytes > _SCRATCH_MAX_BYTES:
        return (torch.zeros if zeroed else torch.empty)(shape, dtype=dtype, device=device)
    buffers = _SCRATCH.__dict__.setdefault("buffers", {})
    key = (name, tuple(shape), dtype, zeroed)
    tensor = buffers.get(key)
    if tensor is None:
        if nbytes + sum(t.nbytes for t in buffers.values()) > _SCRATCH_MAX_BYTES:
            buffers.clear()
        tensor = buffers[key] = (torch.zeros if zeroed else torch.empty)(shape, dtype=dtype)
    return tensor


def _padded(size):
    """Padded size 2^k + 1 >= size, and the scale that maps pixel index p to p * scale - 1.

    grid_sample(align_corners=True) reads normalized x as pixel (x + 1) * (S - 1) / 2.
    When S - 1 is a power of two, p * 2 / (S - 1) - 1 is an exact binary fraction
    and the round trip gives back exactly p: a zero displacement samples exactly
    the pixel, so warp with a zero field is exactly the identity. For any other
    S, rounding leaves weights of ~1e-7 on the neighbours. The scale is a power of
    two too, so multiplying a displacement by it is exact.
    """
    padded = 1 + 2 ** math.ceil(math.log2(size - 1))
    return padded, 2.0 / (padded - 1)


@functools.lru_cache(maxsize=32)
def _base_grid(height, width, device, dtype):
    """Normalized x and y of every pixel center as a (2, H, W) tensor, for the padded image size."""
    _, scale_x = _padded(width)
    _, scale_y = _padded(height)
    x = torch.arange(width, dtype=torch.float64) * scale_x - 1
    y = torch.arange(height, dtype=torch.float64) * scale_y - 1
    grid = torch.stack(torch.meshgrid(x, y, indexing="xy"))
    return grid.to(device=device, dtype=dtype)


def _grid_bounds(height, width):
    """Normalized (x, y) of the last pixel center; the first is (-1, -1)."""
    return (width - 1) * _padded(width)[1] - 1, (height - 1) * _padded(height)[1] - 1


# Where the source point is outside, the sampling grid is pushed far outside: x - b
# (x beyond the bound b) is at least one float step at b, which is at least 2^-m
# times the one-pixel step (m = mantissa bits; the bounds lie in [step, 1] or at
# -1), so 2^(m + 2) times it is more than a pixel. Clamping to +-_FAR_OUTSIDE
# (over 3 pixel steps outside, for any size) keeps it finite. Both bilinear
# neighbours then lie outside the image, in its zero padding or beyond, so
# grid_sample reads exactly 0 there.
_FAR_OUTSIDE = 8.0


def _sample(images, grid):
    """Bilinear samples of ``images`` at ``grid`` (N, 2, H, W), 0 outside the image.

    ``grid`` holds normalized x (``grid[:, 0]``) and y for the image zero-padded
    to ``_padded`` sizes; it is overwritten. Returns float in the work dtype
    (call ``_restore``).
    """
    _, _, height, width = images.shape
    padded_h, _ = _padded(height)
    padded_w, _ = _padded(width)
    # grid_sample blends in zeros up to one pixel outside the image; like SciPy's
    # mode='constant', anything whose source is outside the pixel centers is 0.
    # Pushing such a coordinate far outside does that inside grid_sample (one
    # coordinate out is enough, whatever the other): g + K (g - clamp(g)) leaves
    # an inside g exactly as it is. Three float passes over the grid, the same
    # for any number of channels; cheaper than a mask of the output.
    high_x, high_y = _grid_bounds(height, width)
    inside = _scratch("inside", grid.shape, grid.dtype, grid.device)
    if high_x == high_y:
        torch.clamp(grid, -1.0, high_x, out=inside)
    else:
        torch.clamp(grid[:, 0], -1.0, high_x, out=inside[:, 0])
        torch.clamp(grid[:, 1], -1.0, high_y, out=inside[:, 1])
    # lerp(c, g, 1 + K) = g - (g - c) * -K: exactly g where g == c.
    torch.lerp(inside, grid, 1.0 + 4.0 / torch.finfo(grid.dtype).eps, out=grid)  # K = 2^(m + 2)
    grid.clamp_(-_FAR_OUTSIDE, _FAR_OUTSIDE)
    dtype = _work_dtype(images.dtype)
    if images.requires_grad:  # keep autograd's view of the input intact
        x = F.pad(images, (0, padded_w - width, 0, padded_h - height)).to(dtype)
    elif (padded_h, padded_w) == (height, width) and images.dtype == dtype:
        x = images
    else:  # the zero padding of a kept buffer stays zero: only the image part is written
        x = _scratch(f"padded {height}x{width}", (*images.shape[:2], padded_h, padded_w), dtype, images.device,
                     zeroed=True)
        x[..., :height, :width].copy_(images)
    # (N, H, W, 2) view of the planar grid: grid_sample reads x and y as two
    # contiguous planes (its fast path for a grid whose W stride is 1).
    return F.grid_sample(x, grid.permute(0, 2, 3, 1), mode="bilinear", padding_mode="zeros", align_corners=True)
