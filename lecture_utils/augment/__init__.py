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

The package, one seam per module (import the names from here, ``lecture_utils.augment``):
    ``_checks``      input checks shared by every op, dtype helpers
    ``gaussian``     ``gaussian_matrix``, ``gaussian_smooth``
    ``_sampling``    pixel-exact bilinear sampling, scratch buffers
    ``elastic``      ``random_displacement_field``, ``warp``, ``elastic_distort``
    ``geometric``    ``affine``, ``random_affine``
    ``photometric``  ``local_contrast_normalize``, ``adjust_brightness_contrast``, ``jitter``, ``gaussian_noise``
    ``crops``        ``pad_crop``, ``flip``
    ``pipeline``     ``compose``
"""

from .crops import flip, pad_crop
from .elastic import elastic_distort, random_displacement_field, warp
from .gaussian import gaussian_matrix, gaussian_smooth
from .geometric import affine, random_affine
from .photometric import adjust_brightness_contrast, gaussian_noise, jitter, local_contrast_normalize
from .pipeline import compose

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

