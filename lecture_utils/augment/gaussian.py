"""Gaussian smoothing as two small matrix products (SciPy's ``gaussian_filter``, mode 'reflect')."""

import functools

import torch

from ._checks import _check_int, _check_real


@functools.lru_cache(maxsize=64)
def gaussian_matrix(size, sigma, truncate=4.0, device=None, dtype=torch.float32):
    """(size, size) matrix G with G @ v = 1-D Gaussian smoothing of v, exactly as SciPy does it.

    Same kernel as ``scipy.ndimage.gaussian_filter1d(v, sigma, mode='reflect',
    truncate=truncate)``: taps at offsets -r..r with r = int(truncate*sigma + 0.5),
    weights exp(-k^2 / 2 sigma^2) normalized to sum 1, and the signal extended
    by mirror reflection about the edge (d c b a | a b c d | d c b a). Folding
    the reflection into the matrix keeps each row summing to 1. Cached: the
    returned tensor is shared, do not modify it in place.
    """
    size = _check_int("size", size, low=1)
    sigma = _check_real("sigma", sigma, low=0.0, low_open=True)
    radius = int(_check_real("truncate", truncate, low=0.0) * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    weights = torch.exp(-0.5 * (offsets / sigma) ** 2)
    weights = weights / weights.sum()
    # Row i needs the samples i + k; reflect indices that fall off either end.
    # The reflected signal is periodic with period 2*size, so this handles any radius.
    source = torch.arange(size)[:, None] + torch.arange(-radius, radius + 1)[None, :]
    source = source.remainder(2 * size)
    source = torch.where(source < size, source, 2 * size - 1 - source)
    matrix = torch.zeros(size, size, dtype=torch.float64)
    matrix.scatter_add_(1, source, weights.expand(size, -1).contiguous())
    return matrix.to(device=device, dtype=dtype)


def gaussian_smooth(x, sigma, truncate=4.0):
    """Gaussian-smooth the last two axes of ``x`` (..., H, W): G_H @ x @ G_W^T.

    The Gaussian is separable, so smoothing is one 1-D pass per axis; each pass
    is a product with a small (size x size) matrix, which on a CPU is far faster
    than a convolution with the 33-tap kernel of sigma = 4. Equals
    ``scipy.ndimage.gaussian_filter(x, sigma, mode='reflect', truncate=truncate)``
    on each (H, W) slice.
    """
    if not isinstance(x, torch.Tensor) or x.dim() < 2 or not x.is_floating_point():
        got = f"{x.dtype} tensor of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a floating point tensor of shape (..., H, W), got {got}")
    height, width = x.shape[-2:]
    g_h = gaussian_matrix(height, sigma, truncate, x.device, x.dtype)
    g_w = gaussian_matrix(width, sigma, truncate, x.device, x.dtype)
    return torch.matmul(g_h, torch.matmul(x, g_w.T))
