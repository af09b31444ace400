"""Data: one root, real data sets through torchvision, an embedded fallback, device-resident batches.

The data path is ``load -> uint8 tensor on the device -> batches by index ->
batched augmentation on the device -> model``: no PIL per sample and no
DataLoader worker processes (the bottleneck on small images, and fragile in
notebooks). It is the same code on CPU and GPU.
"""

import hashlib
import inspect
import math
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from lecture_utils.datafiles import (CACHE_FOLDER, CIFAR10_CLASSES, DIGIT_CLASSES, IMAGE_EXTENSIONS,  # noqa: F401
                                     KNOWN_CLASSES, ROOT_ENV, DataCorrupted, DataUnavailable, MirrorLayoutError,
                                     _cached, _checkout, _from_mirror, _list_mirror, _mirror_dir, _stat_fingerprint,
                                     _writable_ancestor, shown)  # the names users import from here are re-exported

STRICT_ENV = "LECTURE_STRICT_DATA"
OFFLINE_ENV = "LECTURE_OFFLINE"
DATASETS = ("mnist", "cifar10", "digits")
SIZES = {"mnist": (60000, 10000), "cifar10": (50000, 10000), "digits": (1437, 360)}  # (train, test) images
PROBE_SECONDS = 3  # how long to wait for a download server before calling it unreachable
_MNIST_FILES = {  # split -> (IDX file, shape) for images and labels
    "train": (("train-images-idx3-ubyte", (60000, 28, 28)), ("train-labels-idx1-ubyte", (60000,))),
    "test": (("t10k-images-idx3-ubyte", (10000, 28, 28)), ("t10k-labels-idx1-ubyte", (10000,))),
}
_HOW_TO_GET = {
    "mnist": "with internet, torchvision downloads it; offline, copy the four MNIST .gz files "
    "(train-images-idx3-ubyte.gz, ...) into {root}/MNIST/raw/",
    "cifar10": "with internet, torchvision downloads it; offline, put cifar-10-python.tar.gz in {root}/, "
    "or an ImageFolder copy in {root}/cifar10/{{train,test}}/<class>/*.jpg",
}


def data_root(root=None):
    """Where data sets live: ``root``, else ``$LECTURE_DATA_DIR``, else the repository's ``data/``.

    A regular (non-editable) install, as on Colab, has no repository beside
    it: then the root is ``~/.cache/lecture_utils``.
    """
    if root is None:
        root = os.environ.get(ROOT_ENV) or None
    if root is None:
        checkout = _checkout()
        if checkout is not None and (checkout / "data").is_dir():
            return checkout / "data"
        return Path.home() / ".cache" / "lecture_utils"
    return Path(root).expanduser()


def strict_mode(strict=None):
    """True when a missing data set must be an error rather than a fallback (``$LECTURE_STRICT_DATA=1``)."""
    if strict is None:
        return os.environ.get(STRICT_ENV, "").strip().lower() in ("1", "true", "yes")
    return bool(strict)


def _md5(path):
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify(path, md5):
    """Raise DataCorrupted if ``path`` exists with the wrong checksum (torchvision would download over it)."""
    actual = _md5(path) if path.is_file() else md5
    if actual != md5:
        raise DataCorrupted(
            f"{shown(path)} is damaged: its MD5 is {actual}, the published file's is {md5}. "
            "It was left as it is; delete or replace it yourself."
        )


def _mnist_local(root, split):
    """MNIST's images and labels of ``split`` read straight from ``<root>/MNIST/raw`` (never written to).

    Each file is read from its ``.gz`` (checksum verified) or, without it, from
    the extracted IDX file; a missing one gives ``None``.
    """
    from torchvision.datasets import MNIST

    raw, md5s = root / "MNIST" / "raw", dict(MNIST.resources)
    arrays = []
    for filename, shape in _MNIST_FILES[split]:
        gz, plain = raw / (filename + ".gz"), raw / filename
        _verify(gz, md5s[gz.name])
        path = gz if gz.is_file() else plain if plain.is_file() else None
        if path is None:
            return None
        arrays.append(_read_idx(path, shape, md5s[gz.name]))
    images, labels = arrays
    return images.unsqueeze(1).contiguous(), labels.long()


def _read_idx(path, shape, gz_md5):
    """The uint8 tensor of ``shape`` in the IDX file ``path``; DataCorrupted (file left alone) if it is not that."""
    import gzip
    import zlib

    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except PermissionError:
        raise
    except (OSError, EOFError, zlib.error) as err:  # gzip's BadGzipFile is an OSError
        raise DataCorrupted(f"{shown(path)} cannot be read ({err}); it was left as it is.") from None
    header = 4 + 4 * len(shape)
    expected = bytes([0, 0, 8, len(shape)]) + b"".join(d.to_bytes(4, "big") for d in shape)
    if len(data) != header + math.prod(shape) or data[:header] != expected:
        name = path.name if path.suffix == ".gz" else path.name + ".gz"
        raise DataCorrupted(
            f"{shown(path)} is truncated or damaged: {len(data):,} bytes where an MNIST IDX file of shape {shape} has "
            f"{header + math.prod(shape):,}. It was left as it is; replace it with a fresh copy of {name} "
            f"(published MD5 {gz_md5}), or delete it to download again."
        )
    return torch.frombuffer(bytearray(data[header:]), dtype=torch.uint8).view(shape)
_CIFAR_ARCHIVE, _CIFAR_FOLDER = "cifar-10-python.tar.gz", "cifar-10-batches-py"  # torchvision's names
_CIFAR_BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}


def _cifar_files(root, train):
    """torchvision's CIFAR-10 files that hold ``split``: the extracted batches, else the archive, else ``None``.

    Returns ``(kind, paths)`` with kind ``"batches"`` (``cifar-10-batches-py``) or
    ``"archive"`` (``cifar-10-python.tar.gz``, read without extracting it).
    """
    folder, archive = root / _CIFAR_FOLDER, root / _CIFAR_ARCHIVE  # torchvision is imported only to decode
    batches = [folder / f for f in _CIFAR_BATCHES["train" if train else "test"]]
    if any(p.is_file() for p in batches) or (folder / "batches.meta").is_file():
        return "batches", batches + ([archive] if archive.is_file() else [])
    if archive.is_file():
        return "archive", [archive]
    return None


def _decode_cifar(root, train, kind):
    """Images and labels of ``split`` from torchvision's files, every one checksum-verified first."""
    import pickle
    import tarfile

    from torchvision.datasets import CIFAR10

    archive = root / CIFAR10.filename
    _verify(archive, CIFAR10.tgz_md5)  # torchvision would download over a damaged archive
    md5s = dict(CIFAR10.train_list if train else CIFAR10.test_list)
    blobs = []
    if kind == "batches":
        for filename, md5 in md5s.items():
            path = root / CIFAR10.base_folder / filename
            if not path.is_file():
                raise DataCorrupted(f"{shown(path)} is missing from the extracted CIFAR-10 batches; extract "
                                    f"{CIFAR10.filename} again (or delete {shown(path.parent)} to use the archive).")
            _verify(path, md5)
            blobs.append(path.read_bytes())
    else:
        with tarfile.open(archive, "r:gz") as tar:
            for filename in md5s:
                blobs.append(tar.extractfile(f"{CIFAR10.base_folder}/{filename}").read())
    images, labels = [], []
    for blob in blobs:  # pickles of checksum-verified files only, as torchvision reads them
        entry = pickle.loads(blob, encoding="latin1")
        images.append(torch.from_numpy(entry["data"]).view(-1, 3, 32, 32))
        labels.append(torch.tensor(entry["labels"], dtype=torch.long))
    return torch.cat(images).contiguous(), torch.cat(labels)


def _urls(name):
    from torchvision.datasets import CIFAR10, MNIST

    return list(MNIST.mirrors) if name == "mnist" else [CIFAR10.url]


def _reachable(urls, timeout=PROBE_SECONDS):
    """Whether a TCP connection to one of the hosts of ``urls`` (or to the configured proxy) opens in ``timeout`` s."""
    from urllib.parse import urlsplit
    from urllib.request import getproxies

    proxies = getproxies()
    for url in urls:
        parts = urlsplit(proxies.get(urlsplit(url).scheme) or url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            socket.create_connection((parts.hostname, port), timeout=timeout).close()
            return True
        except OSError:
            continue
    return False


def _download(name, root, train, download):
    """Fetch ``name`` with torchvision into ``root``; DataUnavailable, quickly, when it cannot be done from here."""
    from torchvision.datasets import CIFAR10

    split = "train" if train else "test"
    how, where = _HOW_TO_GET[name].format(root=shown(root)), shown(root)
    target = root / "MNIST" / "raw" if name == "mnist" else root
    ancestor, writable = _writable_ancestor(target)
    if not download:
        raise DataUnavailable(f"{name} ({split}) is not available under {where} (not on disk and downloading is off). "
                              f"To get it: {how}.")
    if not writable:
        raise DataUnavailable(f"{name} ({split}) is not ready under {where}: it would download it into "
                              f"{shown(target)}, but {shown(ancestor)} is not writable (a read-only mirror?). "
                              f"Set ${ROOT_ENV} to a writable folder and copy the files there, or get it yourself: "
                              f"{how}.")
    if not _reachable(_urls(name)):
        hosts = ", ".join(sorted({u.split("/")[2] for u in _urls(name)}))
        raise DataUnavailable(f"{name} ({split}) is not available under {where}, and the download servers ({hosts}) "
                              f"cannot be reached within {PROBE_SECONDS} s (offline?). To get it: {how}.")
    timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)  # torchvision's download has none: a stalled transfer fails in seconds, not hours
    try:
        if name == "mnist":
            _download_mnist(target, split)
            return _mnist_local(root, split)
        ds = CIFAR10(root, train=train, download=True)
        return torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(ds.targets)
    except (RuntimeError, OSError) as err:
        if isinstance(err, (DataCorrupted, DataUnavailable)):
            raise
        raise DataUnavailable(f"{name} ({split}) is not available under {where} (download failed: {err}). "
                              f"To get it: {how}.") from None
    finally:
        socket.setdefaulttimeout(timeout)


def _download_mnist(raw, split):
    """Download the missing ``.gz`` files of ``split`` into ``raw``, each via a ``.part`` file renamed once verified."""
    from torchvision.datasets import MNIST
    from torchvision.datasets.utils import download_url

    md5s = dict(MNIST.resources)
    raw.mkdir(parents=True, exist_ok=True)
    for filename, _ in _MNIST_FILES[split]:
        gz = raw / (filename + ".gz")
        if gz.is_file() or (raw / filename).is_file():
            continue
        errors = []
        for mirror in MNIST.mirrors:
            part = gz.with_name(gz.name + ".part")
            try:
                download_url(mirror + gz.name, str(raw), part.name, md5s[gz.name])
                os.replace(part, gz)
                break
            except (OSError, RuntimeError) as err:
                part.unlink(missing_ok=True)
                errors.append(f"{mirror}: {err}")
        else:
            raise OSError("; ".join(errors))


def cache_path(name, split, root=None):
    """Where the decoded uint8 tensors of ``name``'s ``split`` are cached: ``<root>/cache/<name>-<split>.pt``."""
    return data_root(root) / CACHE_FOLDER / f"{name}-{split}.pt"


def _digits(train):
    """scikit-learn's 1,797 bundled 8x8 digits, drawn like MNIST: scaled to 20x20, centred in 28x28."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.pad(F.interpolate(x, size=(20, 20), mode="bilinear", align_corners=False), (4, 4, 4, 4))
    x = (x * 255).round().clamp(0, 255).to(torch.uint8)
    y = torch.tensor(bunch.target, dtype=torch.long)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))  # a fixed 80/20 split
    n_train = int(0.8 * len(y))
    keep = order[:n_train] if train else order[n_train:]
    return x[keep], y[keep]


def _download_allowed(download):
    """``download`` if given, else True unless ``$LECTURE_OFFLINE=1`` (never touch the network)."""
    if download is None:
        return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("1", "true", "yes")
    return bool(download)


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
    download = _download_allowed(download)
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}: known are {', '.join(DATASETS)}")
    split = "train" if train else "test"
    dataset = name
    if name == "digits":
        x, y = _digits(train)
        source = "scikit-learn's bundled digits (8x8, resized to 28x28)"
    else:
        root = data_root(root)
        local = _mnist_local(root, split) if name == "mnist" else None
        files = _cifar_files(root, train) if name == "cifar10" and local is None else None
        mirror = _mirror_dir(name, root, split) if local is None and files is None else None
        if local is not None:
            (x, y), source = local, f"torchvision mnist files in {shown(root)}"
        elif files is not None:
            kind, paths = files
            what = "archive" if kind == "archive" else "batches"
            x, y, source = _cached(name, split, root, _stat_fingerprint(paths) + kind,
                                   f"torchvision's cifar10 {what} in {shown(root)}",
                                   lambda: _decode_cifar(root, train, kind))
        elif mirror is not None:
            listing = _list_mirror(name, mirror)
            lossy = " of JPEG files (a lossy copy)" if listing.lossy else ""
            x, y, source = _cached(name, split, root, listing.fingerprint(), f"the ImageFolder mirror {shown(mirror)}"
                                   f"{lossy}", lambda: _from_mirror(name, listing))
            source += listing.ignored()
            dataset = f"{name} (JPEG copy)" if listing.lossy else name
        else:
            x, y = _download(name, root, train, download)
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


def _fallback_note(wanted):
    return " (resized to 3x32x32, the gray level copied into each channel)" if wanted == "cifar10" else ""


def fallback_banner(wanted, reason):
    """Show, unmissably, that a notebook runs on the embedded digits instead of ``wanted``."""
    note = _fallback_note(wanted)
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


def _as_cifar(images):
    """Digits (N, 1, 28, 28) as CIFAR-sized images (N, 3, 32, 32): resized, the gray level in every channel."""
    x = F.interpolate(images.float(), size=(32, 32), mode="bilinear", align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).expand(-1, 3, -1, -1).contiguous()


def load_data(name, root=None, *, strict=None, download=None, verbose=True):
    """Train and test splits of ``name``; if it cannot be had, the embedded digits with a banner.

    With ``strict=True`` (or ``$LECTURE_STRICT_DATA=1``, as in CI) a missing
    data set is an error naming what is missing and how to get it. For
    ``cifar10`` the fallback digits come as 3x32x32 images, so CIFAR models run.
    Records ``dataset`` (what ran, e.g. ``"cifar10 (JPEG copy)"`` or ``"digits"``)
    and ``dataset_requested`` (``name``) for the batch runner's summary.
    """
    from lecture_utils.record import record

    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}: known are {', '.join(DATASETS)}")
    try:
        *train, dataset = _load(name, True, root, download, verbose)
        *test, _ = _load(name, False, root, download, verbose)
        reason = ""
    except DataUnavailable as err:
        if strict_mode(strict):
            raise
        reason = str(err)
        fallback_banner(name, reason)
        train, test = load_dataset("digits", True, verbose=verbose), load_dataset("digits", False, verbose=verbose)
        if name == "cifar10":
            train, test = (_as_cifar(train[0]), train[1]), (_as_cifar(test[0]), test[1])
            if verbose:
                print(f"digits resized to {tuple(train[0].shape[1:])} for the cifar10 models")
        dataset = "digits"
    used = name if not reason else "digits"
    classes = CIFAR10_CLASSES if used == "cifar10" else DIGIT_CLASSES
    record("dataset", dataset)
    record("dataset_requested", name)
    return Data(used, *train, *test, classes=classes, fallback_reason=reason, dataset=dataset, requested=name)


def take_subset(images, labels, n, seed=0):
    """The first ``n`` examples of a seeded shuffle (the same ``n`` and seed give the same subset)."""
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= len(labels):
        raise ValueError(f"subset size n={n!r} must be an int from 1 to {len(labels):,} (the data set's size)")
    keep = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))[:n]
    return images[keep], labels[keep]


class DeviceBatches:
    """Batches of a data set held whole on the device: shuffled indices, augmentation batched on the device.

    ``augment`` gets float images in [0, 1] and a generator on the same
    device: as ``generator=`` when it has a parameter of that name (every
    ``lecture_utils.augment`` op, and a ``functools.partial`` of one, e.g.
    ``partial(elastic_distort, alpha=34, sigma=4)``), else as the second
    positional argument (``lambda x, g: ...``). Normalization by ``mean``/``std``
    comes after it. The generator is seeded once, so every epoch differs and a
    seeded run repeats.
    """

    def __init__(self, images, labels, batch_size, *, shuffle=False, augment=None, mean=None, std=None,
                 device=None, seed=0, drop_last=False):
        if images.ndim != 4 or len(images) != len(labels) or len(labels) == 0:
            raise ValueError(
                f"images must be (N, C, H, W) with N == len(labels) > 0, got {tuple(images.shape)} "
                f"and {len(labels)} labels"
            )
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if augment is not None and not callable(augment):
            raise ValueError(f"augment must be a callable (images, generator) -> images or None, got {augment!r}")
        self._generator_keyword = augment is not None and _takes_generator_keyword(augment)
        device = torch.device(device) if device is not None else images.device
        self.images, self.labels = images.to(device), labels.to(device)
        self.batch_size, self.shuffle, self.augment, self.drop_last = batch_size, shuffle, augment, drop_last
        shape = (1, -1, 1, 1)
        self.mean = None if mean is None else torch.as_tensor(mean, dtype=torch.float32, device=device).view(shape)
        self.std = None if std is None else torch.as_tensor(std, dtype=torch.float32, device=device).view(shape)
        self.device = device
        self.generator = torch.Generator(device=device).manual_seed(seed)

    def __len__(self):
        n, b = len(self.labels), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __iter__(self):
        n = len(self.labels)
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator, device=self.device)
        else:
            order = torch.arange(n, device=self.device)
        for b in range(len(self)):
            index = order[b * self.batch_size:(b + 1) * self.batch_size]
            x = self.images[index]
            x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
            if self.augment is not None:
                if self._generator_keyword:
                    x = self.augment(x, generator=self.generator)
                else:
                    x = self.augment(x, self.generator)
            if self.mean is not None:
                x = (x - self.mean) / self.std
            yield x, self.labels[index]


def _takes_generator_keyword(fn):
    """Whether ``fn`` (a function, a ``functools.partial``, a callable object) has a parameter named ``generator``."""
    try:
        parameter = inspect.signature(fn).parameters.get("generator")
    except (TypeError, ValueError):  # no signature to read (some builtins): positional, as before
        return False
    return parameter is not None and parameter.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                        inspect.Parameter.KEYWORD_ONLY)
