"""Data: the lecture's data sets as uint8 tensors, an embedded fallback, batches held on the device.

The data path is ``load -> uint8 tensor on the device -> batches by index ->
batched augmentation on the device -> model``::

    data = load_data("cifar10")                    # Data: train/test images (uint8) and labels
    x, y = take_subset(data.train_images, data.train_labels, 5_000, seed=0)
    for xb, yb in DeviceBatches(x, y, 128, shuffle=True, augment=..., mean=..., std=...): ...

Where the files are looked for: ``paths`` (the data root); how they are read:
``sources`` (torchvision's files, downloads, scikit-learn's digits), ``mirror``
(ImageFolder copies) and ``cache`` (decoded once, then read); ``batches``
holds ``DeviceBatches``.
"""

import os
import sys
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lecture_utils.data import cache, mirror, sources
from lecture_utils.data.batches import DeviceBatches
from lecture_utils.data.cache import cache_path
from lecture_utils.data.mirror import MirrorLayoutError
from lecture_utils.data.paths import data_root, shown
from lecture_utils.data.sources import (CIFAR10_CLASSES, DATASETS, DIGIT_CLASSES, SIZES, DataCorrupted,
                                        DataUnavailable)

__all__ = ["load_data", "load_dataset", "Data", "take_subset", "as_rgb32", "data_root", "cache_path",
           "fallback_banner", "DeviceBatches", "DataUnavailable", "DataCorrupted", "MirrorLayoutError",
           "DATASETS", "SIZES", "CIFAR10_CLASSES", "DIGIT_CLASSES"]

STRICT_ENV = "LECTURE_STRICT_DATA"


def load_dataset(name, train=True, root=None, *, download=None, verbose=True):
    """Images as uint8 (N, C, H, W) and labels as int64 (N,) for ``"mnist"``, ``"cifar10"`` or ``"digits"``.

    Sources, in order: torchvision's own files under the data root (checksums
    verified, read without writing anything, never overwritten; CIFAR-10's
    archive is read without extracting it), an ImageFolder mirror
    ``<root>/<name>/{train,test}/<class>/*``, then torchvision's download
    (unless ``download=False`` or ``$LECTURE_OFFLINE=1``; it needs a writable
    root, and gives up in seconds when the servers cannot be reached). Raises
    ``DataUnavailable`` when none works, ``DataCorrupted`` for a damaged file,
    ``MirrorLayoutError`` for a mirror whose class folders are not ``name``'s.

    What has to be decoded (CIFAR-10's pickles, any mirror's image files) is
    decoded once and cached under ``<root>/cache/`` (see ``cache_path``) with a
    fingerprint of its source; the cache is rebuilt when the source changes or
    the cache is damaged, and never written in a read-only root.
    """
    x, y, _ = _load(name, train, root, download, verbose)
    return x, y


def _load(name, train, root, download, verbose):
    """``load_dataset``'s work: images, labels and what ran (``"mnist"``, ``"cifar10 (JPEG copy)"``, ...)."""
    download = sources.download_allowed(download)
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}: known are {', '.join(DATASETS)}")
    split = "train" if train else "test"
    dataset = name
    if name == "digits":
        x, y = sources.digits(train)
        source = "scikit-learn's bundled digits (8x8, resized to 28x28)"
    else:
        root = data_root(root)
        local = sources.read_mnist(root, split) if name == "mnist" else None
        files = sources.cifar_files(root, train) if name == "cifar10" and local is None else None
        folder = mirror.find_mirror(name, root, split) if local is None and files is None else None
        if local is not None:
            (x, y), source = local, f"torchvision mnist files in {shown(root)}"
        elif files is not None:
            kind, paths = files
            what = "archive" if kind == "archive" else "batches"
            x, y, source = cache.cached(name, split, root, cache.stat_fingerprint(paths) + kind,
                                        f"torchvision's cifar10 {what} in {shown(root)}",
                                        lambda: sources.decode_cifar(root, train, kind))
        elif folder is not None:
            listing = mirror.list_mirror(name, folder)
            lossy = " of JPEG files (a lossy copy)" if listing.lossy else ""
            x, y, source = cache.cached(name, split, root, listing.fingerprint(),
                                        f"the ImageFolder mirror {shown(folder)}{lossy}",
                                        lambda: mirror.decode_mirror(name, listing))
            source += listing.ignored()
            dataset = f"{name} (JPEG copy)" if listing.lossy else name
        else:
            x, y = sources.download(name, root, train, download)
            source = f"torchvision {name} files in {shown(root)}"
    if verbose:
        print(f"{name} {split}: {len(y):,} images {tuple(x.shape[1:])} from {source}")
    return x, y, dataset


@dataclass
class Data:
    """A train/test pair as uint8 tensors, with where it came from and why, if it was replaced.

    ``name`` is the data set that ran (``"mnist"``, ``"cifar10"`` or ``"digits"``);
    ``dataset`` says it in full (``"cifar10 (JPEG copy)"`` for a mirror of JPEG
    files, which are lossy), ``requested`` is the name that was asked for.
    """

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: tuple
    fallback_reason: str = ""
    dataset: str = ""
    requested: str = ""

    def __post_init__(self):
        self.dataset = self.dataset or self.name
        self.requested = self.requested or self.name

    @property
    def shape(self):
        return tuple(self.train_images.shape[1:])


def load_data(name, root=None, *, strict=None, download=None, verbose=True):
    """Train and test splits of ``name``; if it cannot be had, the embedded digits with a banner.

    With ``strict=True`` (or ``$LECTURE_STRICT_DATA=1``, as in CI) a missing
    data set is an error naming what is missing and how to get it. For
    ``cifar10`` the fallback digits come as 3x32x32 images (``as_rgb32``), so
    CIFAR models run. What ran is ``.dataset`` (e.g. ``"cifar10 (JPEG copy)"``
    or ``"digits"``); what was asked for is ``.requested``.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}: known are {', '.join(DATASETS)}")
    if strict is None:
        strict = os.environ.get(STRICT_ENV, "").strip().lower() in ("1", "true", "yes")
    try:
        *train, dataset = _load(name, True, root, download, verbose)
        *test, _ = _load(name, False, root, download, verbose)
        reason = ""
    except DataUnavailable as err:
        if strict:
            raise
        reason = str(err)
        fallback_banner(name, reason)
        train, test = load_dataset("digits", True, verbose=verbose), load_dataset("digits", False, verbose=verbose)
        if name == "cifar10":
            train, test = (as_rgb32(train[0]), train[1]), (as_rgb32(test[0]), test[1])
            if verbose:
                print(f"digits resized to {tuple(train[0].shape[1:])} for the cifar10 models")
        dataset = "digits"
    used = name if not reason else "digits"
    classes = CIFAR10_CLASSES if used == "cifar10" else DIGIT_CLASSES
    return Data(used, *train, *test, classes=classes, fallback_reason=reason, dataset=dataset, requested=name)


def fallback_banner(wanted, reason):
    """Show, unmissably, that a notebook runs on the embedded digits instead of ``wanted``."""
    note = " (resized to 3x32x32, the gray level copied into each channel)" if wanted == "cifar10" else ""
    text = (
        f"!!! DATA FALLBACK: {wanted} is not available, so this notebook runs on scikit-learn's "
        f"1,797 bundled digits{note} instead. Numbers below are NOT {wanted} numbers. Reason: {reason}"
    )
    html = (
        '<div style="border:4px solid #c00;background:#fee;color:#900;padding:12px;font-size:16px">'
        f"<b>DATA FALLBACK:</b> <b>{wanted}</b> is not available, so this notebook runs on scikit-learn's "
        f"1,797 bundled digits{note} instead. <b>Numbers below are not {wanted} numbers.</b><br><small>{reason}"
        "</small></div>"
    )
    if "IPython" in sys.modules:
        from IPython import get_ipython
        from IPython.display import display

        if get_ipython() is not None:
            display({"text/html": html, "text/plain": text}, raw=True)
            return text
    print(text, file=sys.stderr)
    return text


def as_rgb32(images):
    """uint8 images (N, C, H, W) as (N, 3, 32, 32), the input of the CIFAR models.

    Images already 3x32x32 are returned as they are; others (the digits, 1x28x28)
    are resized bilinearly to 32x32 and a gray level is copied into each channel.
    """
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
        raise TypeError(f"as_rgb32 takes a uint8 tensor of images, got {getattr(images, 'dtype', type(images))}")
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"as_rgb32 takes images (N, C, H, W) with C = 1 (gray) or 3 (RGB), got {tuple(images.shape)}")
    if images.shape[1:] == (3, 32, 32):
        return images
    x = F.interpolate(images.float(), size=(32, 32), mode="bilinear", align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).expand(-1, 3, -1, -1).contiguous()


def take_subset(images, labels, n, seed=0):
    """The first ``n`` examples of a seeded shuffle (the same ``n`` and seed give the same subset)."""
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= len(labels):
        raise ValueError(f"subset size n={n!r} must be an int from 1 to {len(labels):,} (the data set's size)")
    keep = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))[:n]
    return images[keep], labels[keep]
