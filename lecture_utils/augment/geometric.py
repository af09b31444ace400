"""Affine warps: one for the whole batch (``affine``) or a random one per image (``random_affine``)."""

import torch

from ._checks import _check_generator, _check_images, _check_real, _restore, _work_dtype
from ._sampling import _constant, _padded, _sample, _scratch


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

    Sign convention, beside torchvision's (the two disagree with each other):
    the angle turns the way ``torchvision.transforms.v2.functional.rotate`` and
    ``scipy.ndimage.rotate`` turn (counter-clockwise), so ``affine(x, angle=a)``
    equals ``rotate(x, a)``; ``torchvision.transforms.v2.functional.affine``
    turns clockwise and shears the other way, so ``affine(x, angle=a, shear=s)``
    equals torchvision's ``affine(x, angle=-a, shear=[-s, 0], ...)`` with the same
    translate and scale and bilinear interpolation (pinned in tests/test_augment.py,
    up to float rounding away from the edges, where torchvision blends in the zero fill).
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
    [-shear, shear] degrees. Conventions as in ``affine``: a positive angle turns
    counter-clockwise, as torchvision's ``rotate`` does and opposite to
    torchvision's ``affine`` (whose angle and shear signs are both mirrored). The
    ranges are symmetric, so the distribution is the one of torchvision's
    ``v2.RandomAffine(degrees, shear=shear)``, except that ``translate`` is in
    pixels here and a fraction of the image size there.
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
