"""Batched data augmentation as plain tensor ops: elastic distortion, affine warps, LCN, jitter.

Every op takes a batch ``images`` of shape (N, C, H, W), uint8 (0..255) or
floating point (0..1 by convention), on any device, and returns the same
dtype, shape and device (uint8 is computed in float32, then rounded and
clamped back). ``local_contrast_normalize`` is the one exception: its output
is a normalized float image.

Random ops draw *per-sample* parameters (one displacement field, one angle,
one crop... per image) from ``generator`` with tensor ops on the images'
device, so a seeded run is bitwise repeatable and nothing loops over samples.

Geometric ops share one sampling convention, the one of
``scipy.ndimage.map_coordinates(order=1, mode='constant', cval=0)``: bilinear
interpolation between pixel centers, and 0 wherever the source point falls
outside the image (pixel centers ``0 .. H-1`` by ``0 .. W-1``).

References:
    Simard, Steinkraus & Platt (2003), "Best practices for convolutional neural
    networks applied to visual document analysis" (elastic distortion).
    Jarrett, Kavukcuoglu, Ranzato & LeCun (2009), "What is the best multi-stage
    architecture for object recognition?" (local contrast normalization).
    He, Zhang, Ren & Sun (2016), "Deep residual learning" (pad-and-crop, flips on CIFAR).
"""

import functools
import inspect
import math
import threading

import torch
import torch.nn.functional as F

__all__ = [
    "gaussian_matrix",
    "gaussian_smooth",
    "random_displacement_field",
    "warp",
    "elastic_distort",
    "affine",
    "random_affine",
    "local_contrast_normalize",
    "adjust_brightness_contrast",
    "jitter",
    "gaussian_noise",
    "pad_crop",
    "flip",
    "compose",
]


# ----------------------------------------------------------------------------
# Input checks: every public op fails early, naming the bad parameter.
# ----------------------------------------------------------------------------


def _check_images(images, min_size=1, finite=False):
    """Raise ValueError unless ``images`` is a non-empty (N, C, H, W) uint8 or float tensor."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.dim() != 4:
        raise ValueError(f"images must be a 4-D tensor (N, C, H, W), got shape {tuple(images.shape)}")
    n, c, h, w = images.shape
    if n == 0:
        raise ValueError("images must hold at least one image, got an empty batch (N = 0)")
    if c == 0 or h < min_size or w < min_size:
        raise ValueError(f"images must have C >= 1 and H, W >= {min_size}, got shape {tuple(images.shape)}")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise ValueError(f"images must be uint8 or floating point, got dtype {images.dtype}")
    # A NaN mixes into its neighbours (warps, smoothing) or the whole image (means):
    # reject it where that happens.
    if finite and images.is_floating_point() and not _all_finite(images):
        raise ValueError("images must be finite, got NaN or infinite values")


def _all_finite(x):
    """Whether a float tensor has no NaN/inf. The sum is a cheap first test (a NaN or inf
    anywhere makes it non-finite); it can also overflow, so confirm element-wise."""
    return math.isfinite(x.sum().item()) or bool(torch.isfinite(x).all())


def _check_real(name, value, low=None, high=None, low_open=False):
    """Return ``value`` as a float; ValueError naming ``name`` unless low <(=) value <= high."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {value!r}") from None
    if not math.isfinite(x):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if low is not None and (x <= low if low_open else x < low):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {value!r}")
    if high is not None and x > high:
        raise ValueError(f"{name} must be <= {high}, got {value!r}")
    return x


def _check_int(name, value, low):
    """Return ``value`` as an int; ValueError naming ``name`` unless it is a whole number >= low."""
    x = _check_real(name, value, low=low)
    if x != int(x):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    return int(x)


def _check_generator(generator, device):
    """Raise ValueError if ``generator`` lives on another kind of device than the images."""
    if generator is not None and torch.device(generator.device).type != torch.device(device).type:
        raise ValueError(f"generator is on {generator.device} but the images are on {device}: "
                         "create it with torch.Generator(device=images.device)")


def _work_dtype(dtype):
    """Float type to compute in: float32 / float64 as given, float32 for uint8 and half types."""
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def _value_range(dtype):
    """The full range of pixel values: 255 for uint8, 1 for floats (0..1 by convention)."""
    return 255.0 if dtype == torch.uint8 else 1.0


def _restore(out, dtype, clip=False):
    """Back to the input dtype: uint8 is rounded and clamped; floats are clamped to 0..1 if ``clip``."""
    if dtype == torch.uint8:
        return out.round_().clamp_(0, 255).to(torch.uint8)
    if clip:
        out = out.clamp(0.0, 1.0)
    return out.to(dtype)


# ----------------------------------------------------------------------------
# Gaussian smoothing as two small matrix products.
# ----------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------
# Scratch buffers for intermediate results.
# ----------------------------------------------------------------------------

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


# ----------------------------------------------------------------------------
# Bilinear sampling with pixel-exact coordinates.
# ----------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------
# Elastic distortion (Simard et al. 2003).
# ----------------------------------------------------------------------------


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


def random_displacement_field(n, height, width, alpha, sigma, generator=None, device=None):
    """Simard's random displacement fields: (n, 2, H, W) float32 in pixels, (dy, dx) order.

    For each image and axis independently: uniform(-1, 1) noise at every pixel,
    smoothed by a Gaussian of std ``sigma`` pixels (``gaussian_smooth``), times
    ``alpha`` pixels. Small sigma gives nearly random (jagged) fields, large
    sigma nearly a translation; Simard used sigma = 4, alpha = 34 on MNIST. In
    the image interior each component has std alpha * sum(g^2) / sqrt(3), where g
    is the 1-D kernel (about alpha / (2 sigma sqrt(3 pi)) for sigma >~ 1).
    """
    n = _check_int("n", n, low=1)
    height = _check_int("height", height, low=1)
    width = _check_int("width", width, low=1)
    alpha = _check_real("alpha", alpha, low=0.0)
    sigma = _check_real("sigma", sigma, low=0.0, low_open=True)
    if device is None:
        device = generator.device if generator is not None else torch.device("cpu")
    _check_generator(generator, device)
    return _field_from_smoothed(_smoothed_noise(n, height, width, alpha, sigma, generator, device))


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
    if not field.is_floating_point() or not _all_finite(field):
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


def elastic_distort(images, alpha, sigma, generator=None, return_field=False):
    """Simard et al.'s elastic distortion, a new random field for every image in the batch.

    ``alpha`` (pixels) scales the field, ``sigma`` (pixels) smooths it (Simard:
    alpha = 34, sigma = 4 for MNIST). All channels of an image share its field.
    With ``return_field=True`` returns ``(distorted, field)``, ``field`` being
    (N, 2, H, W) float32 displacements in pixels, (dy, dx) order, as ``warp`` takes them.
    """
    _check_images(images, min_size=2, finite=True)
    alpha = _check_real("alpha", alpha, low=0.0)
    sigma = _check_real("sigma", sigma, low=0.0, low_open=True)
    _check_generator(generator, images.device)
    n, _, height, width = images.shape
    smoothed = _smoothed_noise(n, height, width, alpha, sigma, generator, images.device)
    out = _warp_smoothed(images, smoothed)
    return (out, _field_from_smoothed(smoothed)) if return_field else out


# ----------------------------------------------------------------------------
# Affine warps.
# ----------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _constant(values, dtype, device):
    """``torch.tensor(values)``, made once (a new small tensor costs more than a small op). Do not modify."""
    return torch.tensor(values, dtype=dtype, device=device)


def _inverse_affine(params, height, width):
    """(N, 2, 3) coefficients [[a00, a01, bx], [a10, a11, by]] of the map from output to input pixels.

    Forward map (input -> output): p_out = c + t + scale * R(angle) Shear(shear) (p_in - c),
    c the image center, R counter-clockwise as displayed (y points down):
    R = [[cos, sin], [-sin, cos]], Shear = [[1, tan], [0, 1]]. Sampling needs the
    inverse, p_in = A (p_out - c - t) + c with A = Shear(-shear) R(-angle) / scale.
    ``params`` is a (5, N) tensor of (angle, tx, ty, scale, shear), angles in degrees.
    """
    _, tx, ty, scale, _ = params
    rad = torch.deg2rad(params[0::4])  # angle and shear
    cos, sin, tan = torch.cos(rad[0]), torch.sin(rad[0]), torch.tan(rad[1])
    # Shear(-shear) @ R(-angle) = [[1, -tan], [0, 1]] @ [[cos, -sin], [sin, cos]]
    a = torch.stack([cos - tan * sin, -sin - tan * cos, sin, cos], dim=-1).view(-1, 2, 2) / scale.view(-1, 1, 1)
    center = _constant(((width - 1) / 2, (height - 1) / 2), params.dtype, params.device)
    shifted = torch.stack([tx, ty], dim=-1) + center  # c + t, (N, 2)
    b = center - (a @ shifted.unsqueeze(-1)).squeeze(-1)
    return torch.cat([a, b.unsqueeze(-1)], dim=-1)


def _affine_sample(images, coefficients):
    """Sample each image at x_in = a00 x + a01 y + bx, y_in = a10 x + a11 y + by (coefficients (N or 1, 2, 3))."""
    n, _, height, width = images.shape
    dtype, device = _work_dtype(images.dtype), images.device
    scale_y, scale_x = _padded(height)[1], _padded(width)[1]
    # Normalized (x_in, y_in) = c0 x + c1 y + c2 per image and coordinate.
    coef = coefficients * _constant(((scale_x,), (scale_y,)), coefficients.dtype, coefficients.device)
    coef[..., 2] -= 1
    coef = coef.to(device=device, dtype=dtype).view(-1, 2, 3, 1, 1)
    xs = _constant(tuple(range(width)), dtype, device)
    ys = _constant(tuple((y,) for y in range(height)), dtype, device)
    # A term in x (N, 2, 1, W) plus a term in y (N, 2, H, 1): one broadcast add fills the grid.
    grid = _scratch("grid", (n, 2, height, width), dtype, device)
    torch.add((coef[:, :, 0] * xs).expand(n, 2, 1, width), (coef[:, :, 1] * ys + coef[:, :, 2]).expand(n, 2, height, 1),
              out=grid)
    return _restore(_sample(images, grid), images.dtype)


def affine(images, angle=0.0, translate=(0.0, 0.0), scale=1.0, shear=0.0):
    """The same affine warp of every image, about the image center; 0 fills the outside.

    ``angle`` in degrees, counter-clockwise as displayed (angle=90 on a square
    image equals ``torch.rot90(images, 1, dims=(2, 3))``); ``translate`` =
    (dx, dy) pixels, right and down; ``scale`` > 0 magnifies; ``shear`` in
    degrees, x' = x + tan(shear) * y (lower rows move right). Order: shear,
    scale, rotate, then translate. For shifted/rotated/rescaled test sets.
    """
    _check_images(images, min_size=2, finite=True)
    angle = _check_real("angle", angle)
    try:
        dx, dy = translate
    except (TypeError, ValueError):
        raise ValueError(f"translate must be a pair (dx, dy) of pixels, got {translate!r}") from None
    dx, dy = _check_real("translate[0]", dx), _check_real("translate[1]", dy)
    scale = _check_real("scale", scale, low=0.0, low_open=True)
    shear = _check_real("shear", shear, low=-89.0, high=89.0)
    # Coefficients in float64 on the CPU (exact for whole-pixel shifts), then to the images' device.
    params = torch.tensor([[angle], [dx], [dy], [scale], [shear]], dtype=torch.float64)
    _, _, height, width = images.shape
    return _affine_sample(images, _inverse_affine(params, height, width))


def random_affine(images, degrees=0.0, translate=0.0, scale=(1.0, 1.0), shear=0.0, generator=None):
    """A random affine warp per image, all in one batched grid_sample.

    Per image, uniformly: angle in [-degrees, degrees], dx and dy each in
    [-translate, translate] pixels, scale in [scale[0], scale[1]], shear in
    [-shear, shear] degrees. Conventions as in ``affine``.
    """
    _check_images(images, min_size=2, finite=True)
    degrees = _check_real("degrees", degrees, low=0.0)
    translate = _check_real("translate", translate, low=0.0)
    try:
        lo, hi = scale
    except (TypeError, ValueError):
        raise ValueError(f"scale must be a pair (min, max), got {scale!r}") from None
    lo = _check_real("scale[0]", lo, low=0.0, low_open=True)
    hi = _check_real("scale[1]", hi, low=lo)
    shear = _check_real("shear", shear, low=0.0, high=89.0)
    _check_generator(generator, images.device)
    n, _, height, width = images.shape
    device = images.device
    u = torch.rand(5, n, generator=generator, device=device)
    low = torch.tensor([-degrees, -translate, -translate, lo, -shear], device=device)
    high = torch.tensor([degrees, translate, translate, hi, shear], device=device)
    params = low[:, None] + (high - low)[:, None] * u  # angle, dx, dy, scale, shear: (5, N)
    return _affine_sample(images, _inverse_affine(params, height, width))


# ----------------------------------------------------------------------------
# Local contrast normalization (Jarrett et al. 2009).
# ----------------------------------------------------------------------------


def local_contrast_normalize(images, sigma=2.0, eps=1e-4):
    """Jarrett et al.'s LCN: subtract the local mean, divide by the local std (Gaussian windows).

    With w a Gaussian window over space and channels (sum 1):
        v = x - sum_{c,p,q} w_pq x_c(y+p, x+q)           (subtractive)
        s = sqrt(sum_{c,p,q} w_pq v_c(y+p, x+q)^2)        (local std)
        y = v / max(s, mean of s over the image, eps)     (divisive)
    Jarrett et al.'s floor at the image's mean local std keeps flat regions
    from being blown up to noise (Pinto et al. 2008 floor at a constant
    instead); ``eps`` (in units of the 0..1 range) only guards all-constant images. Output: float32 (float64
    for float64 input), zero-mean, unit-ish scale, not an image in 0..1, so this
    op does not return uint8. LCN(a * x + b) == LCN(x) for a > 0.
    """
    _check_images(images, finite=True)
    sigma = _check_real("sigma", sigma, low=0.0, low_open=True)
    eps = _check_real("eps", eps, low=0.0, low_open=True)
    x = images.to(_work_dtype(images.dtype))
    if images.dtype == torch.uint8:
        x = x / 255.0
    # Smoothing is linear, so averaging over channels first gives the same window sum.
    v = x - gaussian_smooth(x.mean(dim=1, keepdim=True), sigma)
    s = gaussian_smooth((v * v).mean(dim=1, keepdim=True), sigma).clamp_min_(0).sqrt_()
    floor = s.mean(dim=(2, 3), keepdim=True)
    return v / torch.maximum(s, floor).clamp_min_(eps)


# ----------------------------------------------------------------------------
# Photometric jitter and noise.
# ----------------------------------------------------------------------------


def _brightness_contrast(images, brightness, contrast, clip):
    """y = contrast * (x - mean) + mean + brightness * range; (N,)-shaped or scalar factors."""
    x = images.to(_work_dtype(images.dtype))
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    out = (x - mean) * contrast + (mean + brightness * _value_range(images.dtype))
    return _restore(out, images.dtype, clip)


def adjust_brightness_contrast(images, brightness=0.0, contrast=1.0, clip=True):
    """Deterministic brightness/contrast change of every image, e.g. for a darkened test set.

    y = contrast * (x - m) + m + brightness * R, with m the image's mean (over
    channels and pixels) and R the value range (1 for floats, 255 for uint8):
    ``brightness`` is a fraction of the range, ``contrast`` >= 0 a factor (1 =
    unchanged). uint8 is clamped to 0..255; floats to 0..1 unless ``clip=False``
    (for inputs that are already normalized).
    """
    _check_images(images, finite=True)
    brightness = _check_real("brightness", brightness)
    contrast = _check_real("contrast", contrast, low=0.0)
    return _brightness_contrast(images, brightness, contrast, clip)


def jitter(images, brightness=0.0, contrast=0.0, generator=None, clip=True):
    """Random brightness and contrast per image, as in ``adjust_brightness_contrast``.

    Per image, uniformly: brightness shift in [-brightness, brightness] (fraction
    of the range) and contrast factor in [1 - contrast, 1 + contrast], contrast <= 1.
    """
    _check_images(images, finite=True)
    brightness = _check_real("brightness", brightness, low=0.0)
    contrast = _check_real("contrast", contrast, low=0.0, high=1.0)
    _check_generator(generator, images.device)
    dtype = _work_dtype(images.dtype)
    u = torch.rand(2, images.shape[0], 1, 1, 1, generator=generator, device=images.device, dtype=dtype) * 2 - 1
    return _brightness_contrast(images, brightness * u[0], 1 + contrast * u[1], clip)


def gaussian_noise(images, std, generator=None, clip=True):
    """Add i.i.d. Gaussian noise of standard deviation ``std`` times the value range (1 or 255).

    uint8 is rounded and clamped to 0..255; floats are clamped to 0..1 unless ``clip=False``.
    """
    _check_images(images)
    std = _check_real("std", std, low=0.0)
    _check_generator(generator, images.device)
    x = images.to(_work_dtype(images.dtype))
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return _restore(x + noise * (std * _value_range(images.dtype)), images.dtype, clip)


# ----------------------------------------------------------------------------
# Crops and flips (the CIFAR ResNet recipe).
# ----------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------
# Chaining.
# ----------------------------------------------------------------------------


def _takes_generator(op):
    """Whether ``op`` accepts a ``generator`` keyword argument."""
    try:
        return "generator" in inspect.signature(op).parameters
    except (TypeError, ValueError):
        return False


def compose(*ops):
    """Chain ops into one ``pipeline(images, generator=None)``; bind parameters with functools.partial.

    Each op is called as ``op(images, generator=generator)`` if it takes a
    generator, else ``op(images)``. Example:
    ``compose(partial(elastic_distort, alpha=34, sigma=4), partial(random_affine, degrees=10))``.
    """
    for op in ops:
        if not callable(op):
            raise ValueError(f"ops must be callables taking images, got {op!r}")
    takes = [_takes_generator(op) for op in ops]

    def pipeline(images, generator=None):
        for op, with_generator in zip(ops, takes):
            images = op(images, generator=generator) if with_generator else op(images)
        return images

    return pipeline
