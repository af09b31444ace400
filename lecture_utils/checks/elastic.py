"""Self-checks of notebooks/02_elastic_distortions.ipynb: elastic distortions.

Exercises: ``check_displacement_field``, ``check_interior_rms``, ``check_warp``.
"""

import math

import torch
import torch.nn.functional as F

from ._core import _keeps_rng, _correct, _wrong, _number, _tensor, _function, _which, _close


def _smoothed(noise, sigma):
    """SciPy's Gaussian filter of each (H, W) plane (mode 'reflect', truncate 4): independent of the package."""
    from scipy.ndimage import gaussian_filter

    sigmas = (0,) * (noise.dim() - 2) + (sigma, sigma)
    return torch.from_numpy(gaussian_filter(noise.double().numpy(), sigmas, mode="reflect", truncate=4.0))


def _interior_rms(field, margin):
    return field[..., margin:-margin, margin:-margin].double().pow(2).mean().sqrt().item()


@_keeps_rng
def check_displacement_field(student_fn, alpha=34.0, sigma=4.0, size=(28, 28), n=4, seed=0):
    """Exercise 2.1: Simard's field in three lines, ``student_fn(n, height, width, alpha, sigma, generator)``.

    Draw the noise as ``torch.rand(n, 2, height, width, generator=generator) * 2 - 1`` (uniform in (-1, 1)),
    smooth each (H, W) plane with a Gaussian of width sigma, multiply by alpha. Reference: the same draws
    smoothed by ``scipy.ndimage.gaussian_filter``; then the size of your fields (interior RMS over 64 of them)
    against ``random_displacement_field``'s, which draws its noise in its own (faster) way.
    """
    from lecture_utils.augment import random_displacement_field

    fn = _function(student_fn, "your field function")
    height, width = size
    shape = (n, 2, height, width)
    got = _tensor(fn(n, height, width, alpha, sigma, torch.Generator().manual_seed(seed)), "the field", shape)
    noise = torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    ref = alpha * _smoothed(noise, sigma)
    if not _close(got, ref, 1e-4):
        again = _tensor(fn(n, height, width, alpha, sigma, torch.Generator().manual_seed(seed)), "the field", shape)
        from scipy.ndimage import gaussian_filter

        hint = _which(got, [
            (_smoothed(noise, sigma), "scale the smoothed field by alpha"),
            (alpha * noise, "smooth the noise with a Gaussian of width sigma (gaussian_smooth(noise, sigma))"),
            (alpha * _smoothed((noise + 1) / 2, sigma), "the noise is uniform in (-1, 1): torch.rand(...) * 2 - 1"),
            (alpha * torch.from_numpy(gaussian_filter(noise.double().numpy(), sigma, mode="reflect")),
             "smooth each (H, W) plane alone: gaussian_filter(noise, sigma) on a 4-D array also smooths across "
             "images and the two components"),
        ], tol=1e-3)
        if hint is None and not torch.equal(got, again):
            hint = "draw the noise from the generator you are given (generator=generator): the same seed must " \
                   "give the same field"
        _wrong("alpha * G(noise), noise = torch.rand(n, 2, H, W, generator=generator) * 2 - 1",
               f"a largest difference of {(got - ref).abs().max():.3g} px",
               hint or "draw the noise in one call of that shape, smooth each plane, then scale by alpha")
    margin = min(size) // 4
    many = fn(64, height, width, alpha, sigma, torch.Generator().manual_seed(seed + 1))
    package = random_displacement_field(64, height, width, alpha, sigma, torch.Generator().manual_seed(seed + 1))
    yours, theirs = _interior_rms(many, margin), _interior_rms(package, margin)
    _correct(f"your field is alpha * G(noise) (largest difference {(got - ref).abs().max():.1e} px); interior RMS "
             f"over 64 fields {yours:.3f} px, random_displacement_field's {theirs:.3f} px")


def _gaussian_taps(sigma, truncate=4.0):
    """The package's (and SciPy's) 1-D kernel: exp(-k^2 / 2 sigma^2) at k = -r..r, r = int(4 sigma + 0.5), sum 1."""
    radius = int(truncate * sigma + 0.5)
    k = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (k / sigma) ** 2)
    return g / g.sum()


@_keeps_rng
def check_interior_rms(answer, alpha=34.0, sigma=4.0):
    """Exercise 2.2: the RMS (in pixels) of one component (dx or dy) of the field, away from the border.

    Uniform(-1, 1) noise has variance 1/3; smoothing with the 2-D kernel w_pq = g_p g_q sums independent values
    with weights w, so the variance becomes (1/3) sum w^2 = (1/3) (sum g^2)^2 and
        RMS = alpha * sum(g^2) / sqrt(3)   ~ alpha / (2 sqrt(3 pi) sigma)   (sum g^2 ~ 1 / (2 sqrt(pi) sigma)).
    Reference: the exact sum over the package's discrete kernel; within 2%, so the integral's value passes too.
    """
    got = _number(answer, "the RMS displacement")
    taps = _gaussian_taps(sigma)
    s2 = taps.pow(2).sum().item()
    ref = alpha * s2 / math.sqrt(3)
    if abs(got / ref - 1) <= 0.02:
        return _correct(f"RMS = alpha * sum(g^2) / sqrt(3) = {ref:.4f} px (integral: "
                        f"{alpha / (2 * math.sqrt(3 * math.pi) * sigma):.4f} px)")
    hint = _which(got, [(ref * math.sqrt(2), "that is the RMS length of the vector (dx, dy); give one component"),
                        (ref * math.sqrt(3), "uniform(-1, 1) has variance 1/3, not 1"),
                        (alpha * math.sqrt(s2 / 3), "the 2-D kernel's squared weights sum to (sum g^2)^2, so the "
                                                    "std is alpha * sum(g^2) / sqrt(3), without a square root"),
                        (ref / alpha, "multiply by alpha"),
                        (alpha / math.sqrt(3), "that is the RMS before smoothing; smoothing shrinks it by sum(g^2)")],
                  tol=0.02)
    _wrong(f"about {ref:.4f} px", f"{got:.4f}", hint or "variance of a weighted sum of independent values: "
                                                       "(1/3) * sum of the squared 2-D weights")


def _warp_inputs():
    """Test images (2, 1, 9, 12) and a field whose source points are inside the image or over a pixel outside.

    (Within one pixel outside, grid_sample blends in its zero padding where SciPy's mode='constant' gives 0.)
    """
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, 1, 9, 12, generator=g)
    field = torch.rand(2, 2, 9, 12, generator=g) * 3 - 1.5
    for axis, size in ((0, 9), (1, 12)):
        pos = torch.arange(size, dtype=torch.float32).view((1, -1, 1) if axis == 0 else (1, 1, -1))
        src = pos + field[:, axis]
        src = torch.where(src < 0, src - 1.5, torch.where(src > size - 1, src + 1.5, src))
        field[:, axis] = src - pos
    return images, field


def _scipy_warp(images, field):
    from scipy.ndimage import map_coordinates

    n, c, h, w = images.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    out = torch.empty(images.shape, dtype=torch.float64)
    for i in range(n):
        coords = torch.stack([ys + field[i, 0].double(), xs + field[i, 1].double()]).numpy()
        for ch in range(c):
            out[i, ch] = torch.from_numpy(map_coordinates(images[i, ch].double().numpy(), coords, order=1,
                                                          mode="constant", cval=0.0))
    return out


@_keeps_rng
def check_warp(student_fn):
    """Exercise 2.3: resample by a pixel field with ``F.grid_sample``, ``student_fn(images, field)``.

    Output pixel (y, x) takes the bilinear interpolation of the input at (y + dy, x + dx), ``field[:, 0]`` = dy,
    ``field[:, 1]`` = dx, 0 outside. grid_sample wants (x, y) in [-1, 1]: with align_corners=True pixel p of a
    side of n pixels is at 2 p / (n - 1) - 1. Reference: ``scipy.ndimage.map_coordinates(order=1,
    mode='constant')``, the convention of ``lecture_utils.augment.warp``.
    """
    images, field = _warp_inputs()
    got = _tensor(_function(student_fn, "your warp function")(images.clone(), field.clone()), "the warped images",
                  images.shape)
    ref = _scipy_warp(images, field)
    if _close(got, ref, 1e-5):
        return _correct(f"your warp matches map_coordinates (largest difference {(got - ref).abs().max():.1e})")
    n, _, h, w = images.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")

    def sampled(x, y, scale_w, scale_h, corners):
        grid = torch.stack([x * scale_w - 1, y * scale_h - 1], dim=-1)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=corners).double()

    x, y = xs + field[:, 1], ys + field[:, 0]
    hint = _which(got, [
        (sampled(xs + field[:, 0], ys + field[:, 1], 2 / (w - 1), 2 / (h - 1), True),
         "field[:, 0] is dy (down) and field[:, 1] is dx (right); grid_sample's last axis is (x, y)"),
        (sampled(y, x, 2 / (h - 1), 2 / (w - 1), True), "grid_sample's grid holds (x, y) in that order"),
        (sampled(xs - field[:, 1], ys - field[:, 0], 2 / (w - 1), 2 / (h - 1), True),
         "sample at (y + dy, x + dx): add the displacement"),
        (sampled(x, y, 2 / (w - 1), 2 / (h - 1), False), "pass align_corners=True: pixel centers at -1 and 1"),
        (sampled(x, y, 2 / w, 2 / h, True), "normalize by (n - 1): pixel p is at 2 p / (n - 1) - 1"),
    ], tol=1e-4)
    _wrong("map_coordinates(image, [y + dy, x + dx], order=1, mode='constant')",
           f"a largest difference of {(got - ref).abs().max():.3g}",
           hint or "grid[..., 0] = 2 (x + dx) / (W - 1) - 1, grid[..., 1] = 2 (y + dy) / (H - 1) - 1, "
                   "F.grid_sample(images, grid, align_corners=True)")
