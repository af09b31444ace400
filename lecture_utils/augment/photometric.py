"""Photometric ops: local contrast normalization (Jarrett et al. 2009), brightness/contrast, noise."""

import torch

from ._checks import _check_generator, _check_images, _check_real, _restore, _value_range, _work_dtype
from .gaussian import gaussian_smooth


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
