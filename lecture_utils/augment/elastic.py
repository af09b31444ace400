"""The elastic distortion field of Simard, Steinkraus & Platt (2003), and ``warp`` by any pixel field."""

import math

import torch

from ._checks import _check_generator, _check_images, _check_int, _check_real, _finite_if_on_cpu, _restore, _work_dtype
from ._sampling import _base_grid, _constant, _padded, _sample, _scratch
from .gaussian import gaussian_matrix


def _uniform_levels(shape, generator=None, device=None):
    """Uniform noise on (-128, 128) in float32, with 2^8 levels: 128 x uniform(-1, 1).

    The random bits are the largest single cost of an elastic distortion on a CPU
    (torch.rand spends ~4 ns per number on the CPU generator, serially). One
    64-bit draw holds eight independent uniform 8-bit integers k in [-128, 127];
    k + 0.5 is the midpoint of one of 256 equal bins of (-128, 128). After the
    (exact) division by 128: mean 0 and variance (1 - 2^-16) / 3, and each value
    is the continuous uniform one rounded to its bin, an independent error of at
    most 1/256. Smoothing averages over ~4 pi sigma^2 noise values, so that error
    moves the field by 0.4% of its RMS, independently of it: far below what the
    bilinear sampling of pixels can show. The division is left to the caller, who
    folds it into a later product for free (a power of two scales exactly).
    """
    count = math.prod(shape)
    bits = _scratch("bits", ((count + 7) // 8,), torch.int64, device)
    bits.random_(-(2**63), None, generator=generator)  # the full 64-bit range
    k = bits.view(torch.int8)[:count].view(shape)
    return _scratch("noise", shape, torch.float32, device).copy_(k).add_(0.5)  # exact in float32


def _smoothed_noise(n, height, width, alpha, sigma, generator, device):
    """Simard's fields as an (H, n, 2, W) float32 tensor in pixels: ``[:, i, 0]`` is dx of image i, ``[:, i, 1]`` dy.

    alpha * G_H U G_W^T for each image and axis, U uniform(-1, 1) noise. The
    noise is i.i.d., so where each value is stored is free: storing it with the
    rows outermost makes both smoothing passes one large matrix product each,
    G_H @ (H, 2nW) then (2nH, W) @ G_W^T, instead of 2n small products per
    pass; alpha and the noise's 1/128 ride on G_H.
    """
    noise = _uniform_levels((height, n * 2 * width), generator, device)
    g_h = gaussian_matrix(height, sigma, 4.0, device, torch.float32)
    g_w = gaussian_matrix(width, sigma, 4.0, device, torch.float32)
    rows = torch.mm(g_h * (alpha / 128), noise, out=_scratch("rows", noise.shape, noise.dtype, device))  # along y
    torch.mm(rows.view(-1, width), g_w.T, out=noise.view(-1, width))  # along x, into the noise's memory
    return noise.view(height, n, 2, width)


def _field_from_smoothed(smoothed):
    """(N, 2, H, W) field in (dy, dx) order from ``_smoothed_noise``'s (H, N, (dx, dy), W) layout."""
    height, n, _, width = smoothed.shape
    field = torch.empty(n, 2, height, width, dtype=smoothed.dtype, device=smoothed.device)
    field[:, 0].copy_(smoothed[:, :, 1].transpose(0, 1))
    field[:, 1].copy_(smoothed[:, :, 0].transpose(0, 1))
    return field


def _normalize(smoothed, alpha):
    """Fields in ``_smoothed_noise``'s (H, n, 2, W) layout rescaled in place to an RMS of ``alpha`` pixels each.

    The RMS of image i's field is sqrt(mean over its pixels and both axes of d^2): the displacement along
    one axis, typically. Simard et al.'s normalization (to a norm of 1) before the scaling by alpha.
    """
    rms = smoothed.pow(2).mean(dim=(0, 2, 3), keepdim=True).sqrt_()  # (1, n, 1, 1)
    return smoothed.mul_(alpha / rms.clamp_min_(1e-12))


def random_displacement_field(n, height, width, alpha, sigma, generator=None, device=None, normalize=False):
    """Simard's random displacement fields: (n, 2, H, W) float32 in pixels, (dy, dx) order.

    For each image and axis independently: uniform(-1, 1) noise at every pixel,
    smoothed by a Gaussian of std ``sigma`` pixels (``gaussian_smooth``), times
    ``alpha`` pixels. Simard used sigma = 4, alpha = 34 on MNIST. In the image
    interior each component has std alpha * sum(g^2) / sqrt(3), where g is the
    1-D kernel (about alpha / (2 sigma sqrt(3 pi)) for sigma >~ 1): the larger
    sigma, the smaller the field at a given alpha.

    ``normalize=True``: each smoothed field is first divided by its own RMS (over
    its pixels and both axes), then scaled by ``alpha``, so every field has an RMS
    displacement of exactly ``alpha`` pixels whatever sigma is. Simard et al.
    describe sigma for fields normalized this way: small sigma gives a nearly
    random (jagged) field, intermediate sigma an elastic one, large sigma nearly
    a translation in a random direction.
    """
    n = _check_int("n", n, low=1)
    height = _check_int("height", height, low=1)
    width = _check_int("width", width, low=1)
    alpha = _check_real("alpha", alpha, low=0.0)
    sigma = _check_real("sigma", sigma, low=0.0, low_open=True)
    if not isinstance(normalize, bool):
        raise ValueError(f"normalize must be True or False, got {normalize!r}")
    if device is None:
        device = generator.device if generator is not None else torch.device("cpu")
    _check_generator(generator, device)
    smoothed = _smoothed_noise(n, height, width, 1.0 if normalize else alpha, sigma, generator, device)
    if normalize:
        _normalize(smoothed, alpha)
    return _field_from_smoothed(smoothed)


def warp(images, field):
    """Resample ``images`` at (y + dy, x + dx) for a pixel displacement ``field`` (N, 2, H, W).

    ``field[:, 0]`` is dy (down), ``field[:, 1]`` is dx (right); output pixel
    (y, x) takes the bilinear interpolation of the input at (y + dy, x + dx), 0
    if that lies outside the image: ``scipy.ndimage.map_coordinates(image,
    [y + dy, x + dx], order=1, mode='constant', cval=0)`` per channel. A zero
    field returns the images unchanged, bit for bit.
    """
    _check_images(images, min_size=2, finite=True)
    n, _, height, width = images.shape
    if not isinstance(field, torch.Tensor) or tuple(field.shape) != (n, 2, height, width):
        got = tuple(field.shape) if isinstance(field, torch.Tensor) else type(field).__name__
        raise ValueError(f"field must be a tensor of shape (N, 2, H, W) = {(n, 2, height, width)}, got {got}")
    if not field.is_floating_point() or not _finite_if_on_cpu(field):
        raise ValueError("field must be a finite floating point tensor")
    return _warp(images, field)


def _warp(images, field):
    """``warp`` without the input checks."""
    n, _, height, width = images.shape
    dtype = _work_dtype(images.dtype)
    base = _base_grid(height, width, images.device, dtype)
    scale_y, scale_x = _padded(height)[1], _padded(width)[1]
    field = field.to(device=images.device, dtype=dtype)
    # Normalized x + dx and y + dy (the scales are powers of two: one rounding, in the add).
    grid = _scratch("grid", (n, 2, height, width), dtype, images.device)
    torch.add(base[0], field[:, 1], alpha=scale_x, out=grid[:, 0])
    torch.add(base[1], field[:, 0], alpha=scale_y, out=grid[:, 1])
    return _restore(_sample(images, grid), images.dtype)


def _warp_smoothed(images, smoothed):
    """``_warp`` for a field in ``_smoothed_noise``'s layout, without first reordering it.

    Gives the same bits as ``_warp(images, _field_from_smoothed(smoothed))``: each
    grid value is base + scale * d with an exact product and one rounding either way.
    """
    n, _, height, width = images.shape
    dtype = _work_dtype(images.dtype)
    base = _base_grid(height, width, images.device, dtype)  # (2, H, W)
    scale_y, scale_x = _padded(height)[1], _padded(width)[1]
    scale = _constant((((scale_x,), (scale_y,)),), dtype, images.device)  # (1, 2, 1)
    grid = _scratch("grid", (n, 2, height, width), dtype, images.device)
    # One pass writes the (N, 2, H, W) grid from the (H, N, 2, W) field: the transpose rides along.
    torch.addcmul(base.permute(1, 0, 2).unsqueeze(1), smoothed.to(dtype), scale, out=grid.permute(2, 0, 1, 3))
    return _restore(_sample(images, grid), images.dtype)


def elastic_distort(images, alpha, sigma, generator=None, return_field=False, normalize=False):
    """Simard et al.'s elastic distortion, a new random field for every image in the batch.

    ``alpha`` (pixels) scales the field, ``sigma`` (pixels) smooths it (Simard:
    alpha = 34, sigma = 4 for MNIST). All channels of an image share its field.
    ``normalize=True``: each field is normalized to an RMS of 1 pixel before the
    scaling, so ``alpha`` is its RMS displacement (see ``random_displacement_field``).
    With ``return_field=True`` returns ``(distorted, field)``, ``field`` being
    (N, 2, H, W) float32 displacements in pixels, (dy, dx) order, as ``warp`` takes them.
    """
    _check_images(images, min_size=2, finite=True)
    alpha = _check_real("alpha", alpha, low=0.0)
    sigma = _check_real("sigma", sigma, low=0.0, low_open=True)
    if not isinstance(normalize, bool):
        raise ValueError(f"normalize must be True or False, got {normalize!r}")
    _check_generator(generator, images.device)
    n, _, height, width = images.shape
    smoothed = _smoothed_noise(n, height, width, 1.0 if normalize else alpha, sigma, generator, images.device)
    if normalize:
        _normalize(smoothed, alpha)
    out = _warp_smoothed(images, smoothed)
    return (out, _field_from_smoothed(smoothed)) if return_field else out
