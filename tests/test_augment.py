"""Tests for lecture_utils.augment: exact identities, SciPy references, statistics, conventions, errors."""

import functools
import math

import numpy as np
import pytest
import torch

from lecture_utils import augment as A
from lecture_utils.augment.elastic import _uniform_levels


@pytest.fixture
def ndimage():
    """scipy.ndimage, the reference implementation (a test dependency); skip the test without it."""
    return pytest.importorskip("scipy.ndimage")


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def random_images(shape, dtype=torch.float32, seed=0):
    x = torch.rand(shape, generator=seeded(seed))
    return (x * 255).round().to(torch.uint8) if dtype == torch.uint8 else x.to(dtype)


# --- Gaussian smoothing --------------------------------------------------------------------------


@pytest.mark.parametrize("height, width, sigma", [(28, 28, 4.0), (32, 32, 1.3), (20, 17, 10.0), (5, 9, 0.5)])
def test_gaussian_smooth_matches_scipy_reflect(height, width, sigma, ndimage):
    # (20, 17, 10): the 81-tap kernel is wider than the image, so the reflection wraps several times.
    x = torch.rand(3, height, width, generator=seeded(1))
    ours = A.gaussian_smooth(x, sigma)
    ref = np.stack([ndimage.gaussian_filter(v, sigma, mode="reflect", truncate=4.0) for v in x.double().numpy()])
    np.testing.assert_allclose(ours.numpy(), ref, rtol=0, atol=1e-5)


def test_gaussian_matrix_rows_sum_to_one():
    g = A.gaussian_matrix(28, 4.0, dtype=torch.float64)
    torch.testing.assert_close(g.sum(dim=1), torch.ones(28, dtype=torch.float64), rtol=0, atol=1e-12)


def test_noise_levels_are_uniform_with_the_stated_moments():
    # The noise behind the fields: 256 equally likely levels k + 0.5, k in [-128, 127] (then / 128).
    levels = _uniform_levels((1_000_000,), seeded(9)).double() / 128
    values, counts = torch.unique(levels, return_counts=True)
    torch.testing.assert_close(values, (torch.arange(-128, 128, dtype=torch.float64) + 0.5) / 128)
    expected = len(levels) / 256
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < 255 + 5 * math.sqrt(2 * 255)  # 255 degrees of freedom: mean 255, sd 22.6
    assert abs(levels.mean().item()) < 5 * math.sqrt(1 / 3 / len(levels))
    assert levels.var().item() == pytest.approx((1 - 2**-16) / 3, rel=0.005)


def test_displacement_field_is_smoothed_noise():
    # The field is alpha * gaussian_smooth(uniform noise): smoothing it again changes little,
    # and its values are bounded by alpha (a weighted mean of values in (-1, 1)).
    field = A.random_displacement_field(8, 28, 28, alpha=34.0, sigma=4.0, generator=seeded())
    assert field.shape == (8, 2, 28, 28) and field.dtype == torch.float32
    assert field.abs().max() < 34.0
    assert field.abs().max() > 1.0


# --- warp ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.uint8, torch.float16])
@pytest.mark.parametrize("height, width", [(28, 28), (32, 32), (17, 40), (2, 3)])
def test_zero_field_is_exactly_the_identity(dtype, height, width):
    images = random_images((3, 2, height, width), dtype)
    out = A.warp(images, torch.zeros(3, 2, height, width))
    assert out.dtype == dtype
    assert torch.equal(out, images)


@pytest.mark.parametrize("dtype, atol", [(torch.float32, 1e-4), (torch.float64, 1e-10)])
def test_warp_matches_scipy_map_coordinates(dtype, atol, ndimage):
    images = random_images((4, 3, 28, 31), dtype)
    field = 5 * torch.randn(4, 2, 28, 31, generator=seeded(2))  # many samples fall outside
    ours = A.warp(images, field).double().numpy()
    rows, cols = np.meshgrid(np.arange(28), np.arange(31), indexing="ij")
    outside = 0
    for n in range(4):
        coords = [rows + field[n, 0].double().numpy(), cols + field[n, 1].double().numpy()]
        outside += ((coords[0] < 0) | (coords[0] > 27) | (coords[1] < 0) | (coords[1] > 30)).sum()
        for c in range(3):
            ref = ndimage.map_coordinates(images[n, c].double().numpy(), coords, order=1, mode="constant", cval=0.0)
            np.testing.assert_allclose(ours[n, c], ref, rtol=0, atol=atol)
    assert outside > 100  # the test exercised the zero fill


def test_warp_by_whole_pixels_is_a_shift():
    images = random_images((2, 1, 10, 12))
    field = torch.zeros(2, 2, 10, 12)
    field[:, 0], field[:, 1] = 1.0, -2.0  # sample from one row down, two columns left
    out = A.warp(images, field)
    assert torch.equal(out[..., :-1, 2:], images[..., 1:, :-2])
    assert (out[..., -1, :] == 0).all() and (out[..., :2] == 0).all()


# --- elastic distortion --------------------------------------------------------------------------


def test_elastic_distort_is_warp_with_its_field():
    images = random_images((6, 3, 28, 28))
    out, field = A.elastic_distort(images, alpha=34, sigma=4, generator=seeded(), return_field=True)
    assert field.shape == (6, 2, 28, 28) and field.dtype == torch.float32
    assert torch.equal(out, A.warp(images, field))
    # Same seed, same field: the field came from random_displacement_field.
    assert torch.equal(field, A.random_displacement_field(6, 28, 28, 34, 4, generator=seeded()))


def test_elastic_distort_without_the_field_gives_the_same_images():
    # The fast path (no field returned) skips reordering the field: same bits as with it.
    images = random_images((5, 3, 28, 28))
    fast = A.elastic_distort(images, alpha=34, sigma=4, generator=seeded(5))
    out, field = A.elastic_distort(images, alpha=34, sigma=4, generator=seeded(5), return_field=True)
    assert torch.equal(fast, out)
    assert torch.equal(fast, A.warp(images, field))


@pytest.mark.parametrize("offset", [0.0, 1e-6, -1e-6, 0.25, -0.25, 0.999, -0.999, 1.5])
def test_warp_at_the_edges_matches_scipy_constant_mode(offset, ndimage):
    # Sources just inside, exactly on and just outside the first and last pixel centers.
    images = random_images((1, 1, 9, 12))
    field = torch.zeros(1, 2, 9, 12)
    field[0, 1, :, -1] = offset  # last column, x = 11 + offset
    field[0, 1, :, 0] = -offset  # first column, x = 0 - offset
    field[0, 0, -1, 1:-1] = offset  # last row
    field[0, 0, 0, 1:-1] = -offset  # first row
    ours = A.warp(images, field)[0, 0].double().numpy()
    rows, cols = np.meshgrid(np.arange(9), np.arange(12), indexing="ij")
    coords = [rows + field[0, 0].double().numpy(), cols + field[0, 1].double().numpy()]
    ref = ndimage.map_coordinates(images[0, 0].double().numpy(), coords, order=1, mode="constant", cval=0.0)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-5)


def test_huge_displacements_give_zeros_not_nan():
    images = random_images((2, 2, 10, 14))
    for value in (1e30, -1e30, torch.finfo(torch.float32).max, 1e6):
        out = A.warp(images, torch.full((2, 2, 10, 14), value))
        assert torch.equal(out, torch.zeros_like(out)), value


def test_elastic_distortion_of_coordinate_ramps_has_the_analytic_rms():
    # End to end (field, grid, sampling): bilinear sampling reproduces a linear ramp exactly, so
    # warping the channels (x, y, 1) reads back each output pixel's source point.
    alpha, sigma, n, size, margin = 34.0, 4.0, 48, 96, 20
    y, x = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                          indexing="ij")
    ramps = torch.stack([x, y, torch.ones_like(x)]).expand(n, 3, size, size).contiguous()
    out = A.elastic_distort(ramps, alpha, sigma, generator=seeded(6))
    inner = (slice(None), slice(margin, -margin), slice(margin, -margin))
    inside = ((out[:, 2] - 1).abs() < 1e-4)[inner]
    squared = ((out[:, 0] - x) ** 2 + (out[:, 1] - y) ** 2)[inner]
    assert inside.float().mean() > 0.99
    measured = squared[inside].double().mean().sqrt().item()
    expected = math.sqrt(2 / 3) * alpha * (gaussian_taps(sigma) ** 2).sum()  # both axes
    assert measured == pytest.approx(expected, rel=0.03)


def test_each_image_gets_its_own_field():
    one = random_images((1, 1, 28, 28))
    images = one.expand(8, 1, 28, 28).contiguous()
    out, field = A.elastic_distort(images, 34, 4, generator=seeded(), return_field=True)
    for i in range(8):
        for j in range(i):
            assert (field[i] - field[j]).abs().mean() > 0.1
            assert (out[i] - out[j]).abs().mean() > 0.01
    # ... and channels of one image share it: a 3-channel copy distorts like each channel alone.
    rgb = one.expand(1, 3, 28, 28).contiguous()
    out_rgb = A.elastic_distort(rgb, 34, 4, generator=seeded())
    assert torch.equal(out_rgb[:, 0], out_rgb[:, 1]) and torch.equal(out_rgb[:, 0], out_rgb[:, 2])


def gaussian_taps(sigma, truncate=4.0):
    radius = int(truncate * sigma + 0.5)
    g = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    return g / g.sum()


def test_rms_displacement_matches_theory_in_the_interior():
    # field = alpha * sum_pq g_p g_q u(y+p, x+q) with u ~ U(-1, 1) i.i.d., Var u = 1/3:
    # Var = alpha^2 / 3 * (sum_k g_k^2)^2 per axis, away from the edges (radius 16 at sigma = 4).
    alpha, sigma = 34.0, 4.0
    field = A.random_displacement_field(128, 96, 96, alpha, sigma, generator=seeded(3)).double()
    interior = field[..., 16:-16, 16:-16]
    measured = interior.pow(2).mean().sqrt().item()
    expected = alpha * (gaussian_taps(sigma) ** 2).sum() / math.sqrt(3)
    assert expected == pytest.approx(alpha / (2 * sigma * math.sqrt(3 * math.pi)), rel=1e-3)  # continuous limit
    assert measured == pytest.approx(expected, rel=0.03)
    assert interior.mean().abs().item() < 0.05 * expected


def test_rms_displacement_matches_theory_with_reflected_edges():
    # Near an edge, reflection folds several taps onto one noise sample, so the variance there is
    # alpha^2 / 3 * (sum_j G_H[i, j]^2) * (sum_k G_W[x, k]^2): exact per pixel for any image size.
    alpha, sigma = 34.0, 4.0
    field = A.random_displacement_field(512, 28, 28, alpha, sigma, generator=seeded(4)).double()
    g = A.gaussian_matrix(28, sigma, dtype=torch.float64)
    row_power = g.pow(2).sum(dim=1)
    expected = alpha * math.sqrt(row_power.mean().item() ** 2 / 3)
    measured = field.pow(2).mean().sqrt().item()
    assert measured == pytest.approx(expected, rel=0.03)
    assert expected > 1.1 * alpha * (gaussian_taps(sigma) ** 2).sum() / math.sqrt(3)  # edges do matter at 28x28


def test_normalized_fields_have_rms_alpha_at_every_sigma():
    # Normalized before scaling (Simard et al.): every field's RMS over its pixels and both axes is alpha,
    # and it is the unnormalized field of the same draw, rescaled (the same shape, another size).
    for sigma in (0.5, 4.0, 16.0):
        plain = A.random_displacement_field(6, 28, 28, 1.0, sigma, generator=seeded(7)).double()
        field = A.random_displacement_field(6, 28, 28, 2.5, sigma, generator=seeded(7), normalize=True).double()
        rms = field.pow(2).mean(dim=(1, 2, 3)).sqrt()
        assert torch.allclose(rms, torch.full_like(rms, 2.5), rtol=1e-5)
        ratio = field / plain
        assert torch.allclose(ratio, ratio[:, :1, :1, :1].expand_as(ratio), rtol=1e-4)  # one factor per image
    images = random_images((6, 1, 28, 28))
    out, field = A.elastic_distort(images, 2.5, 4.0, generator=seeded(8), return_field=True, normalize=True)
    assert torch.equal(field, A.random_displacement_field(6, 28, 28, 2.5, 4.0, generator=seeded(8), normalize=True))
    assert torch.allclose(out, A.warp(images, field), atol=1e-6)


def test_normalized_fields_go_from_noise_to_a_translation_as_sigma_grows():
    # What Simard et al. say of the normalized field: small sigma, neighbours move independently; large sigma,
    # the whole field is nearly one vector (its mean carries nearly all of its power).
    def neighbour_correlation(f):
        a, b = f[..., :, :-1].flatten(), f[..., :, 1:].flatten()
        return torch.corrcoef(torch.stack([a, b]))[0, 1].item()

    def translation_share(f):
        return (f.mean(dim=(2, 3)).pow(2).sum(1) / f.pow(2).mean(dim=(2, 3)).sum(1)).mean().item()

    fields = {s: A.random_displacement_field(64, 28, 28, 1.0, s, generator=seeded(9), normalize=True).double()
              for s in (0.3, 4.0, 64.0)}
    assert neighbour_correlation(fields[0.3]) < 0.2 < 0.9 < neighbour_correlation(fields[4.0])
    assert translation_share(fields[0.3]) < 0.05 < translation_share(fields[4.0]) < 0.9 < translation_share(fields[64.0])


def test_seeded_runs_are_bitwise_repeatable():
    images = random_images((5, 3, 32, 32))
    ops = [
        functools.partial(A.elastic_distort, alpha=34, sigma=4),
        functools.partial(A.random_affine, degrees=20, translate=3, scale=(0.8, 1.2), shear=10),
        functools.partial(A.jitter, brightness=0.2, contrast=0.3),
        functools.partial(A.gaussian_noise, std=0.1),
        functools.partial(A.pad_crop, padding=4),
        functools.partial(A.flip, p=0.5),
    ]
    for op in ops:
        first, second, other = op(images, generator=seeded(7)), op(images, generator=seeded(7)), op(images, generator=seeded(8))
        assert torch.equal(first, second), op
        assert not torch.equal(first, other), op


ALL_OPS = {
    "elastic": lambda x: A.elastic_distort(x, 8, 3, generator=seeded()),
    "warp": lambda x: A.warp(x, torch.ones(x.shape[0], 2, *x.shape[2:])),
    "affine": lambda x: A.affine(x, angle=10, translate=(1, -2), scale=1.1, shear=5),
    "random_affine": lambda x: A.random_affine(x, 10, 2, (0.9, 1.1), 5, generator=seeded()),
    "adjust": lambda x: A.adjust_brightness_contrast(x, -0.2, 0.7),
    "jitter": lambda x: A.jitter(x, 0.2, 0.3, generator=seeded()),
    "noise": lambda x: A.gaussian_noise(x, 0.05, generator=seeded()),
    "pad_crop": lambda x: A.pad_crop(x, 4, generator=seeded()),
    "flip": lambda x: A.flip(x, 0.5, generator=seeded()),
    "compose": lambda x: A.compose(functools.partial(A.flip, p=0.5), functools.partial(A.elastic_distort, alpha=5, sigma=3))(
        x, generator=seeded()),
}


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize("name", sorted(ALL_OPS))
def test_dtype_shape_and_device_are_preserved(name, dtype):
    images = random_images((4, 3, 20, 24), dtype)
    out = ALL_OPS[name](images)
    assert out.dtype == dtype and out.shape == images.shape and out.device == images.device
    assert not torch.equal(out, images)
    if dtype == torch.uint8:  # computed in float, rounded back: close to the float result
        ref = ALL_OPS[name](images.float() / 255) * 255
        assert (out.float() - ref).abs().max() <= 0.5 + 1e-3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_runs_on_cuda_with_a_cuda_generator():
    images = random_images((4, 3, 32, 32)).cuda()
    generator = torch.Generator(device="cuda").manual_seed(0)
    out, field = A.elastic_distort(images, 34, 4, generator=generator, return_field=True)
    assert out.is_cuda and field.is_cuda
    torch.testing.assert_close(out.cpu(), A.warp(images.cpu(), field.cpu()), rtol=0, atol=1e-5)
    assert torch.equal(A.warp(images, torch.zeros_like(field)), images)


# --- affine --------------------------------------------------------------------------------------


def test_affine_rotation_by_90_degrees_is_rot90_counter_clockwise():
    images = random_images((3, 2, 16, 16))
    for angle, k in [(90, 1), (-90, -1), (180, 2)]:
        out = A.affine(images, angle=angle)
        ref = torch.rot90(images, k, dims=(2, 3))
        # Exact pixel-to-pixel map; only the outer ring could be hit by rounding at the edge.
        torch.testing.assert_close(out[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1], rtol=0, atol=1e-5)


def zero_filled_roll(images, dx, dy):
    out = torch.roll(images, shifts=(dy, dx), dims=(2, 3))
    if dy > 0:
        out[..., :dy, :] = 0
    elif dy < 0:
        out[..., dy:, :] = 0
    if dx > 0:
        out[..., :dx] = 0
    elif dx < 0:
        out[..., dx:] = 0
    return out


@pytest.mark.parametrize("dx, dy", [(3, 0), (0, -2), (-4, 5), (1, 1)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8])
def test_affine_translation_by_whole_pixels_is_a_zero_filled_roll(dx, dy, dtype):
    images = random_images((2, 3, 28, 30), dtype)
    assert torch.equal(A.affine(images, translate=(dx, dy)), zero_filled_roll(images, dx, dy))


def test_affine_identity_and_scale_about_the_center():
    images = random_images((2, 1, 17, 17))
    assert torch.equal(A.affine(images), images)
    zoomed = A.affine(images, scale=2.0)
    # Scaling by 2 about pixel (8, 8): output (8 + 2k) samples input (8 + k).
    assert torch.equal(zoomed[..., 8::2, 8::2], images[..., 8:13, 8:13])
    assert torch.equal(zoomed[..., 8, 8], images[..., 8, 8])


def test_affine_shear_moves_lower_rows_right():
    images = torch.zeros(1, 1, 21, 21)
    images[..., :, 10] = 1.0  # a vertical line through the center
    out = A.affine(images, shear=45.0)  # x' = x + (y - 10)
    for y in range(21):
        x = 10 + (y - 10)
        if 0 <= x < 21:
            assert out[0, 0, y, x] == pytest.approx(1.0)


# torchvision's two conventions: its functional `rotate` turns counter-clockwise, as `affine` here does;
# its functional `affine` turns clockwise and shears the other way. Pinned on real photographs.


@pytest.fixture(scope="module")
def photographs():
    """scikit-learn's two bundled photographs (china.jpg, flower.jpg), 32x32 crops on an 80x80 zero canvas.

    The zero margin keeps every warped pixel inside both libraries' images: at the
    edge torchvision blends in its zero fill half a pixel further out than here
    (SciPy's convention), a difference of boundary handling, not of the warp.
    """
    from sklearn.datasets import load_sample_image

    crops = []
    for name in ("china.jpg", "flower.jpg"):
        photo = torch.from_numpy(load_sample_image(name).copy()).permute(2, 0, 1).float() / 255
        crop = torch.nn.functional.avg_pool2d(photo[None, :, 100:228, 200:328], 4)[0]  # 3x32x32
        crops.append(torch.nn.functional.pad(crop, (24, 24, 24, 24)))
    return torch.stack(crops)


TORCHVISION_CASES = [  # angle, shear, scale, translate
    (30.0, 0.0, 1.0, (0.0, 0.0)),
    (0.0, 20.0, 1.0, (0.0, 0.0)),
    (-40.0, 15.0, 1.2, (3.0, -2.0)),
    (17.0, -25.0, 0.8, (1.5, 2.5)),
]


@pytest.mark.parametrize("angle, shear, scale, translate", TORCHVISION_CASES)
def test_affine_is_torchvision_affine_with_angle_and_shear_negated(photographs, angle, shear, scale, translate):
    tv = pytest.importorskip("torchvision.transforms.v2.functional")
    from torchvision.transforms import InterpolationMode

    ours = A.affine(photographs, angle=angle, translate=translate, scale=scale, shear=shear)
    theirs = tv.affine(photographs, angle=-angle, translate=list(translate), scale=scale, shear=[-shear, 0.0],
                       interpolation=InterpolationMode.BILINEAR)
    assert ours.abs().sum() > 100  # the photographs are still there
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-4)  # float rounding of the coordinates only
    same_signs = tv.affine(photographs, angle=angle, translate=list(translate), scale=scale, shear=[shear, 0.0],
                           interpolation=InterpolationMode.BILINEAR)
    assert (ours - same_signs).abs().max() > 0.3  # the signs matter: the unnegated call is far off


@pytest.mark.parametrize("angle", [30.0, -65.0, 90.0])
def test_affine_angle_turns_like_torchvision_rotate(photographs, angle):
    tv = pytest.importorskip("torchvision.transforms.v2.functional")
    from torchvision.transforms import InterpolationMode

    theirs = tv.rotate(photographs, angle=angle, interpolation=InterpolationMode.BILINEAR)
    torch.testing.assert_close(A.affine(photographs, angle=angle), theirs, rtol=0, atol=1e-4)
    assert (A.affine(photographs, angle=-angle) - theirs).abs().max() > 0.3


def test_random_affine_differs_per_image_and_respects_ranges():
    images = random_images((1, 1, 33, 33)).expand(16, 1, 33, 33).contiguous()
    out = A.random_affine(images, degrees=30, generator=seeded())
    assert all((out[i] - out[0]).abs().mean() > 1e-3 for i in range(1, 16))
    # degrees=0, translate=0, scale=(1, 1), shear=0: the identity.
    assert torch.equal(A.random_affine(images, generator=seeded()), images)
    # Pure translations of at most 2 px: a centered 5x5 block stays fully inside the image.
    block = torch.zeros(8, 1, 33, 33)
    block[..., 14:19, 14:19] = 1.0
    moved = A.random_affine(block, translate=2.0, generator=seeded())
    torch.testing.assert_close(moved.sum(dim=(1, 2, 3)), torch.full((8,), 25.0), rtol=0, atol=1e-4)


# --- local contrast normalization ----------------------------------------------------------------


def test_lcn_is_invariant_to_brightness_and_contrast():
    images = random_images((4, 3, 32, 32), torch.float64)
    base = A.local_contrast_normalize(images)
    for a, b in [(0.5, 0.2), (3.0, -1.0), (0.05, 0.9)]:
        torch.testing.assert_close(A.local_contrast_normalize(a * images + b), base, rtol=1e-6, atol=1e-6)
    assert base.dtype == torch.float64


def test_lcn_matches_jarrett_formula_with_scipy_windows(ndimage):
    # v = x - sum_c w * x_c / C; s = sqrt(sum_c w * v_c^2 / C); y = v / max(s, mean(s)).
    images = random_images((2, 3, 20, 20), torch.float64) ** 2  # some structure in the contrast
    out = A.local_contrast_normalize(images, sigma=1.5).numpy()
    for x, y in zip(images.numpy(), out):
        smooth = functools.partial(ndimage.gaussian_filter, sigma=1.5, mode="reflect", truncate=4.0)
        v = x - smooth(x.mean(axis=0))
        s = np.sqrt(smooth((v**2).mean(axis=0)))
        np.testing.assert_allclose(y, v / np.maximum(s, s.mean()), rtol=1e-9, atol=1e-9)
        assert (s < s.mean()).any()  # the floor was used somewhere


def test_lcn_uint8_gives_float_and_matches_float_input():
    images = random_images((2, 3, 24, 24), torch.uint8)
    out = A.local_contrast_normalize(images)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, A.local_contrast_normalize(images.float() / 255), rtol=1e-5, atol=1e-5)
    flat = torch.full((1, 1, 8, 8), 0.3)
    assert A.local_contrast_normalize(flat).abs().max() < 1e-3  # eps guards 0 / 0: rounding noise only


# --- photometric ops -----------------------------------------------------------------------------


def test_adjust_brightness_contrast_formula():
    images = random_images((3, 3, 8, 8)) * 0.5 + 0.25
    out = A.adjust_brightness_contrast(images, brightness=0.1, contrast=0.5)
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(out, 0.5 * (images - mean) + mean + 0.1)
    dark = A.adjust_brightness_contrast(random_images((2, 1, 8, 8), torch.uint8), brightness=-0.5)
    assert dark.dtype == torch.uint8 and dark.max() <= 128
    assert A.adjust_brightness_contrast(images, brightness=2.0).eq(1.0).all()  # clipped to 0..1


def test_jitter_draws_factors_per_image():
    images = random_images((1, 3, 16, 16)).expand(64, 3, 16, 16) * 0.5 + 0.25
    out = A.jitter(images, brightness=0.2, contrast=0.5, generator=seeded())
    shift = out.mean(dim=(1, 2, 3)) - images.mean(dim=(1, 2, 3))
    spread = out.std(dim=(1, 2, 3)) / images.std(dim=(1, 2, 3))
    assert shift.abs().max() <= 0.2 + 1e-5 and shift.std() > 0.05
    assert spread.min() >= 0.5 - 1e-4 and spread.max() <= 1.5 + 1e-4 and spread.std() > 0.1


def test_gaussian_noise_std_in_units_of_the_range():
    flat = torch.full((16, 1, 32, 32), 0.5)
    noisy = A.gaussian_noise(flat, 0.1, generator=seeded())
    assert (noisy - flat).std().item() == pytest.approx(0.1, rel=0.03)
    noisy8 = A.gaussian_noise((flat * 255).to(torch.uint8), 0.1, generator=seeded())
    assert (noisy8.float() - 127).std().item() == pytest.approx(25.5, rel=0.03)


# --- crops and flips -----------------------------------------------------------------------------


def test_pad_crop_returns_a_crop_of_the_zero_padded_image():
    images = random_images((16, 3, 10, 12), torch.uint8)
    out = A.pad_crop(images, padding=2, generator=seeded())
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    offsets = set()
    for n in range(16):
        hits = [(oy, ox) for oy in range(5) for ox in range(5) if torch.equal(out[n], padded[n, :, oy:oy + 10, ox:ox + 12])]
        assert hits, n
        offsets.add(hits[0])
    assert len(offsets) > 5  # offsets differ per image


def test_flip_mirrors_chosen_images_only():
    images = random_images((64, 2, 5, 7))
    out = A.flip(images, p=0.5, generator=seeded())
    flipped = torch.tensor([torch.equal(o, i.flip(-1)) for o, i in zip(out, images)])
    kept = torch.tensor([torch.equal(o, i) for o, i in zip(out, images)])
    assert (flipped ^ kept).all() and 16 < flipped.sum() < 48
    assert torch.equal(A.flip(images, p=1.0), images.flip(-1))
    assert torch.equal(A.flip(images, p=0.0), images)


def test_compose_passes_the_generator_along():
    pipeline = A.compose(functools.partial(A.pad_crop, padding=4), A.flip, A.local_contrast_normalize)
    images = random_images((4, 3, 16, 16))
    assert torch.equal(pipeline(images, generator=seeded(1)), pipeline(images, generator=seeded(1)))
    with pytest.raises(ValueError, match="ops"):
        A.compose(A.flip, 3)


# --- input validation ----------------------------------------------------------------------------


GOOD = random_images((2, 1, 8, 8))


@pytest.mark.parametrize("call, match", [
    (lambda: A.elastic_distort(GOOD[0], 1, 1), "images must be a 4-D"),
    (lambda: A.elastic_distort(GOOD[:0], 1, 1), "empty batch"),
    (lambda: A.elastic_distort(torch.full_like(GOOD, float("nan")), 1, 1), "finite"),
    (lambda: A.elastic_distort(GOOD.int(), 1, 1), "uint8 or floating"),
    (lambda: A.elastic_distort(GOOD, -1.0, 4), "alpha must be >= 0.0, got -1.0"),
    (lambda: A.elastic_distort(GOOD, 1.0, 0.0), "sigma must be > 0.0, got 0.0"),
    (lambda: A.elastic_distort(GOOD, float("inf"), 1), "alpha must be finite"),
    (lambda: A.random_displacement_field(0, 8, 8, 1, 1), "n must be >= 1"),
    (lambda: A.random_displacement_field(2.5, 8, 8, 1, 1), "n must be a whole number"),
    (lambda: A.random_displacement_field(2, 8, 8, 1, 1, normalize=1), "normalize must be True or False"),
    (lambda: A.elastic_distort(GOOD, 1.0, 4, normalize="yes"), "normalize must be True or False"),
    (lambda: A.warp(GOOD, torch.zeros(2, 2, 8, 7)), "field must be a tensor of shape"),
    (lambda: A.warp(GOOD, torch.full((2, 2, 8, 8), float("nan"))), "field must be a finite"),
    (lambda: A.warp(GOOD[..., :1, :], torch.zeros(2, 2, 1, 8)), "H, W >= 2"),
    (lambda: A.affine(GOOD, scale=0.0), "scale must be > 0.0"),
    (lambda: A.affine(GOOD, translate=3), "translate must be a pair"),
    (lambda: A.affine(GOOD, shear=90), "shear must be <= 89"),
    (lambda: A.random_affine(GOOD, degrees=-5), "degrees must be >= 0"),
    (lambda: A.random_affine(GOOD, scale=(1.2, 1.1)), r"scale\[1\] must be >= 1.2"),
    (lambda: A.random_affine(GOOD, translate="a"), "translate must be a real number"),
    (lambda: A.local_contrast_normalize(GOOD, sigma=-1), "sigma must be > 0.0"),
    (lambda: A.jitter(GOOD, contrast=1.5), "contrast must be <= 1.0"),
    (lambda: A.jitter(GOOD, brightness=-0.1), "brightness must be >= 0.0"),
    (lambda: A.adjust_brightness_contrast(GOOD, contrast=-1), "contrast must be >= 0.0"),
    (lambda: A.gaussian_noise(GOOD, std=-0.1), "std must be >= 0.0"),
    (lambda: A.pad_crop(GOOD, padding=-1), "padding must be >= 0"),
    (lambda: A.pad_crop(GOOD, padding=1.5), "padding must be a whole number"),
    (lambda: A.flip(GOOD, p=1.5), "p must be <= 1.0"),
    (lambda: A.gaussian_smooth(torch.zeros(4, 4), sigma=0), "sigma must be > 0.0"),
])
def test_bad_inputs_raise_value_errors_naming_the_parameter(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_non_tensor_images_raise_type_error():
    with pytest.raises(TypeError, match="images must be a torch.Tensor"):
        A.flip(np.zeros((1, 1, 4, 4)))
