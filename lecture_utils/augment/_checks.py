"""Input checks shared by every op (each fails early, naming the bad parameter) and dtype helpers."""

import math

import torch


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
    if finite and images.is_floating_point() and not _finite_if_on_cpu(images):
        raise ValueError("images must be finite, got NaN or infinite values")


def _finite_if_on_cpu(x):
    """Whether a float tensor on the CPU has no NaN/inf; True, unchecked, for a tensor on a GPU.

    On a GPU, reading the answer would make the host wait for the device at every batch. There
    ``fit`` checks each step's images on the device and reads that flag with its loss check, so
    NaN images still stop training with an error that names them. On the CPU the sum is a cheap
    first test (a NaN or inf anywhere makes it non-finite); it can also overflow, so confirm
    element-wise.
    """
    if x.device.type != "cpu":
        return True
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
