#!/usr/bin/env python3
"""Benchmark batched augmentation: lecture_utils.augment against torchvision, kornia, albumentations, SciPy.

Prints a markdown table: images/second (median over repeats, after warm-up)
and the RMS displacement each implementation actually produces, measured by
warping coordinate ramps, so that the rows are known to do comparable work.

    python3 bench/bench_augment.py [--repeats 15] [--batch 256] [--quick] [--profile] [--rows TEXT]

``--profile`` adds, per shape, where the time of one ``elastic_distort`` and one
``random_affine`` call goes (torch.profiler, self CPU time per op).

kornia, albumentations and scipy are optional (``pip install kornia
albumentations scipy``); rows whose library is missing are skipped with a note.
"""

import argparse
import datetime
import math
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from common import cpu_name  # noqa: E402
from lecture_utils import augment  # noqa: E402

ALPHA, SIGMA = 34.0, 4.0  # Simard et al. 2003, MNIST: pixels
DEGREES, TRANSLATE, SCALE, SHEAR = 15.0, 2.0, (0.9, 1.1), 10.0  # random affine: degrees, pixels, factor, degrees


def optional(name):
    """Import an optional library, or None."""
    try:
        return __import__(name)
    except ImportError:
        return None


def per_image(transform):
    """Batch -> batch by calling ``transform`` on each image (what a Dataset + DataLoader does)."""
    return lambda batch: torch.stack([transform(image) for image in batch])


def numpy_per_image(transform):
    """Batch -> batch through an (H, W, C) float32 NumPy function per image."""

    def run(batch):
        images = batch.permute(0, 2, 3, 1).numpy()
        return torch.from_numpy(np.stack([transform(image) for image in images])).permute(0, 3, 1, 2)

    return run


# --- the implementations ---------------------------------------------------------------------------


def rows_for(shape, libs):
    """(transform, implementation, callable or None, note) for one input shape."""
    _, _, height, width = shape
    from torchvision.transforms import v2 as tv2

    kornia, albumentations, scipy_ndimage = libs["kornia"], libs["albumentations"], libs["scipy"]
    generator = torch.Generator().manual_seed(0)
    rows = [
        ("elastic", "lecture_utils.elastic_distort", lambda x: augment.elastic_distort(x, ALPHA, SIGMA, generator), ""),
        ("elastic", "lecture_utils.elastic_distort (uint8 in/out)",
         lambda x: augment.elastic_distort(x, ALPHA, SIGMA, generator), "uint8"),
    ]
    # torchvision: displacement = blur(U(-1, 1)) * alpha / size in [-1, 1] units = alpha / 2 pixels.
    tv_elastic = tv2.ElasticTransform(alpha=2 * ALPHA, sigma=SIGMA)
    rows += [
        ("elastic", "torchvision v2 ElasticTransform, per image", per_image(tv_elastic), ""),
        ("elastic", "torchvision v2 ElasticTransform, whole batch (one field shared by the batch)", tv_elastic, ""),
    ]
    if kornia is not None:
        import kornia.augmentation as K

        # kornia: alpha in [-1, 1] units (align_corners=False: 1 unit = size / 2 pixels), float only.
        ksize = 2 * math.ceil(4 * SIGMA) + 1
        k_elastic = K.RandomElasticTransform(kernel_size=(ksize, ksize), sigma=(SIGMA, SIGMA),
                                             alpha=(2 * ALPHA / width, 2 * ALPHA / height), p=1.0)
        rows.append(("elastic", "kornia RandomElasticTransform (batched)", k_elastic, ""))
    else:
        rows.append(("elastic", "kornia RandomElasticTransform", None, "kornia not installed"))
    if albumentations is not None:
        import cv2

        kwargs = dict(alpha=ALPHA, sigma=SIGMA, border_mode=cv2.BORDER_CONSTANT, p=1.0)
        try:
            a_elastic = albumentations.ElasticTransform(noise_distribution="uniform", **kwargs)
            note = ""
        except TypeError:  # albumentations < 1.4.? has Gaussian noise only
            a_elastic = albumentations.ElasticTransform(**kwargs)
            note = "Gaussian noise (no noise_distribution option)"
        rows.append(("elastic", "albumentations ElasticTransform, per image",
                     numpy_per_image(lambda image: a_elastic(image=image)["image"]), note))
    else:
        rows.append(("elastic", "albumentations ElasticTransform", None, "albumentations not installed"))
    if scipy_ndimage is not None:
        rng = np.random.default_rng(0)

        def scipy_elastic(image):  # (H, W, C) float32: the textbook Simard implementation
            h, w, _ = image.shape
            dy, dx = (scipy_ndimage.gaussian_filter(rng.uniform(-1, 1, (h, w)), SIGMA, mode="reflect") * ALPHA
                      for _ in range(2))
            rows_, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
            coords = [rows_ + dy, cols + dx]
            return np.stack([scipy_ndimage.map_coordinates(image[..., c], coords, order=1, mode="constant")
                             for c in range(image.shape[2])], axis=-1).astype(np.float32)

        rows.append(("elastic", "scipy gaussian_filter + map_coordinates, per image", numpy_per_image(scipy_elastic),
                     ""))
    else:
        rows.append(("elastic", "scipy reference", None, "scipy not installed"))

    rows.append(("affine", "lecture_utils.random_affine",
                 lambda x: augment.random_affine(x, DEGREES, TRANSLATE, SCALE, SHEAR, generator), ""))
    tv_affine = tv2.RandomAffine(degrees=DEGREES, translate=(TRANSLATE / width, TRANSLATE / height), scale=SCALE,
                                 shear=SHEAR)
    rows += [
        ("affine", "torchvision v2 RandomAffine, per image", per_image(tv_affine), "whole-pixel shifts"),
        ("affine", "torchvision v2 RandomAffine, whole batch (one transform shared by the batch)", tv_affine,
         "whole-pixel shifts"),
    ]
    if kornia is not None:
        k_affine = K.RandomAffine(degrees=DEGREES, translate=(TRANSLATE / width, TRANSLATE / height), scale=SCALE,
                                  shear=SHEAR, p=1.0)
        rows.append(("affine", "kornia RandomAffine (batched)", k_affine, ""))
    return rows


# --- measurements ----------------------------------------------------------------------------------


def images_per_second(run, images, repeats):
    """(median images/second of ``run(images)`` over ``repeats`` timed calls after two warm-up calls,
    (25th, 75th percentile) images/second, minor page faults per call)."""
    for _ in range(2):
        run(images)
    times = []
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(repeats):
        start = time.perf_counter()
        run(images)
        times.append(time.perf_counter() - start)
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / repeats
    n = images.shape[0]
    # "inclusive": quartiles within the measured times (the default extrapolates, below 0 for 2 calls).
    quartiles = statistics.quantiles(times, n=4, method="inclusive") if len(times) > 1 else [times[0]] * 3
    return n / statistics.median(times), (n / quartiles[2], n / quartiles[0]), faults


def profile_table(name, run, images, calls=50):
    """Where the time of ``run(images)`` goes: torch.profiler's self CPU time per op, per call."""
    from torch.profiler import ProfilerActivity, profile

    for _ in range(3):
        run(images)
    start = time.perf_counter()
    for _ in range(calls):
        run(images)
    plain = (time.perf_counter() - start) / calls * 1e3
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(calls):
            run(images)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) / calls / 1e3
    print(f"### {name}: {plain:.3f} ms per call unprofiled; {total:.3f} ms of op self time per call under the "
          f"profiler\n")
    print("| op | calls per call | self CPU ms per call | share |")
    print("|---|--:|--:|--:|")
    for e in events:
        ms = e.self_cpu_time_total / calls / 1e3
        if ms < 0.005:
            continue
        print(f"| `{e.key}` | {e.count / calls:g} | {ms:.3f} | {ms / total:.0%} |")
    print(flush=True)


def rms_displacement(run, n, height, width, margin=0):
    """RMS length of the displacement that ``run`` applies, measured on coordinate ramps.

    Channels (x, y, 1): bilinear interpolation reproduces a linear ramp exactly,
    so an output pixel whose third channel is 1 (its source lies wholly inside
    the image) holds its source coordinates. Only pixels at least ``margin``
    from the edges count. Returns (rms, fraction of those pixels used).
    """
    y, x = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32),
                          indexing="ij")
    ramps = torch.stack([x, y, torch.ones_like(x)]).expand(n, 3, height, width).contiguous()
    out = run(ramps).float()
    crop = (slice(margin, height - margin), slice(margin, width - margin))
    inside = ((out[:, 2] - 1).abs() < 1e-3)[(slice(None), *crop)]
    squared = ((out[:, 0] - x) ** 2 + (out[:, 1] - y) ** 2)[(slice(None), *crop)]
    return squared[inside].mean().sqrt().item(), inside.float().mean().item()


def conversion_check(libs, n=32, size=128):
    """Interior RMS displacement of each elastic row at size x size: checks the alpha conversions.

    Away from the edges (more than 4 sigma) boundary handling no longer matters,
    so every implementation should give the analytic value.
    """
    margin = int(4 * SIGMA + 0.5) + 2
    expected = analytic_rms(ALPHA, SIGMA)
    print(f"## Conversion check: elastic RMS displacement at {n}x3x{size}x{size}, pixels > {margin} px from the "
          f"edges (analytic {expected:.3f} px)\n")
    print("| implementation | RMS displacement (px) | / analytic |")
    print("|---|--:|--:|")
    for kind, name, run, note in rows_for((n, 3, size, size), libs):
        if kind != "elastic" or run is None or note == "uint8" or "whole batch" in name:
            continue
        rms, _ = rms_displacement(run, n, size, size, margin)
        print(f"| {name} | {rms:.3f} | {rms / expected:.3f} |", flush=True)
    print()


def analytic_rms(alpha, sigma, truncate=4.0):
    """sqrt(E[dx^2 + dy^2]) of a Simard field away from the edges: sqrt(2/3) * alpha * sum(g^2)."""
    radius = int(truncate * sigma + 0.5)
    g = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    g /= g.sum()
    return math.sqrt(2 / 3) * alpha * (g**2).sum()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="timed calls per row (median reported)")
    parser.add_argument("--batch", type=int, default=256, help="images per batch")
    parser.add_argument("--quick", action="store_true", help="2 repeats, batch 64: a smoke run")
    parser.add_argument("--profile", action="store_true", help="also print where the time of a call goes")
    parser.add_argument("--rows", default="", help="only the rows whose implementation contains this text "
                        "(e.g. lecture_utils, with --repeats 201 for a steadier median)")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.batch = 2, 64
    torch.set_num_threads(os.cpu_count())
    libs = {"kornia": optional("kornia"), "albumentations": optional("albumentations"), "scipy": None}
    try:
        from scipy import ndimage as scipy_ndimage

        libs["scipy"] = scipy_ndimage
    except ImportError:
        pass
    import torchvision

    versions = [f"torch {torch.__version__}", f"torchvision {torchvision.__version__}"]
    for name in ("kornia", "albumentations"):
        versions.append(f"{name} {libs[name].__version__}" if libs[name] else f"{name} not installed")
    versions.append(f"scipy {__import__('scipy').__version__}" if libs["scipy"] else "scipy not installed")
    print(f"# Augmentation benchmark, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC\n")
    print(f"- machine: {cpu_name()} ({platform.machine()}), {os.cpu_count()} CPUs, "
          f"torch threads {torch.get_num_threads()}, "
          f"Python {platform.python_version()}")
    print(f"- {', '.join(versions)}")
    print(f"- load average (1, 5, 15 min) at start: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"- command: `python3 {' '.join(sys.argv)}`")
    print(f"- batch {args.batch}, median of {args.repeats} timed calls after 2 warm-up calls, float32 CPU tensors")
    print(f"- elastic: alpha = {ALPHA:g} px, sigma = {SIGMA:g} px (Simard); analytic RMS displacement away "
          f"from the edges: {analytic_rms(ALPHA, SIGMA):.2f} px")
    print(f"- affine: +-{DEGREES:g} deg, +-{TRANSLATE:g} px, scale {SCALE}, shear +-{SHEAR:g} deg\n")

    for shape in [(args.batch, 1, 28, 28), (args.batch, 3, 32, 32)]:
        n, channels, height, width = shape
        print(f"## {n}x{channels}x{height}x{width}\n")
        print("| transform | implementation | images/s | middle half of calls (img/s) | page faults per call "
              "| RMS displacement (px) | pixels used | note |")
        print("|---|---|--:|--:|--:|--:|--:|---|")
        torch.manual_seed(0)
        images = torch.rand(shape)
        for kind, name, run, note in rows_for(shape, libs):
            if args.rows not in name:
                continue
            if run is None:
                print(f"| {kind} | {name} | skipped | | | | | {note} |")
                continue
            x = (images * 255).round().to(torch.uint8) if note == "uint8" else images
            speed, (low, high), faults = images_per_second(run, x, args.repeats)
            rms, used = rms_displacement(run, n, height, width)
            print(f"| {kind} | {name} | {speed:,.0f} | {low:,.0f}-{high:,.0f} | {faults:,.0f} | {rms:.3f} | "
                  f"{used:.0%} | {note} |", flush=True)
        print()
        if args.profile:
            generator = torch.Generator().manual_seed(0)
            profile_table(f"`elastic_distort` at {n}x{channels}x{height}x{width}",
                          lambda x: augment.elastic_distort(x, ALPHA, SIGMA, generator), images)
            profile_table(f"`random_affine` at {n}x{channels}x{height}x{width}",
                          lambda x: augment.random_affine(x, DEGREES, TRANSLATE, SCALE, SHEAR, generator), images)
    if not args.rows:
        conversion_check(libs, n=8 if args.quick else 32)
    print("RMS displacement: measured by warping coordinate ramps (x, y, 1) and reading back the source "
          "coordinates of output pixels whose source lies inside the image (the 'pixels used' column); it "
          "checks that the rows' parameters are matched. Edges differ by design: lecture_utils and the SciPy "
          "row smooth with mirror reflection ('reflect'), torchvision with 'reflect' without the edge sample, "
          "albumentations with edge replication and kornia with zero padding, which shrinks the field near "
          "the border. torchvision's RandomAffine rounds translations to whole pixels.")


if __name__ == "__main__":
    main()
