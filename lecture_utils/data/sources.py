"""Where the images come from: torchvision's files on disk, its download, and scikit-learn's digits.

Every reader returns images as uint8 ``(N, C, H, W)`` and labels as int64 ``(N,)``.
Files are checksum-verified and read in place: nothing here writes next to
them, extracts them, or downloads over a damaged one. A download waits at most
``PROBE_SECONDS`` for a server to answer and 30 s for a stalled transfer.
"""

import hashlib
import math
import os
import socket

import torch
import torch.nn.functional as F

from lecture_utils.data.paths import ROOT_ENV, shown, writable_ancestor

OFFLINE_ENV = "LECTURE_OFFLINE"
DATASETS = ("mnist", "cifar10", "digits")
SIZES = {"mnist": (60000, 10000), "cifar10": (50000, 10000), "digits": (1437, 360)}  # (train, test) images
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
DIGIT_CLASSES = tuple(str(d) for d in range(10))
PROBE_SECONDS = 3  # how long to wait for a download server before calling it unreachable
_MNIST_FILES = {  # split -> (IDX file, shape) for images and labels
    "train": (("train-images-idx3-ubyte", (60000, 28, 28)), ("train-labels-idx1-ubyte", (60000,))),
    "test": (("t10k-images-idx3-ubyte", (10000, 28, 28)), ("t10k-labels-idx1-ubyte", (10000,))),
}
_CIFAR_BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
_HOW_TO_GET = {
    "mnist": "with internet, torchvision downloads it; offline, copy the four MNIST .gz files "
    "(train-images-idx3-ubyte.gz, ...) into {root}/MNIST/raw/",
    "cifar10": "with internet, torchvision downloads it; offline, put cifar-10-python.tar.gz in {root}/, "
    "or an ImageFolder copy in {root}/cifar10/{{train,test}}/<class>/*.jpg",
}


class DataUnavailable(RuntimeError):
    """The data set is neither on disk nor downloadable from here."""


class DataCorrupted(RuntimeError):
    """A data file on disk does not match its published checksum, or is truncated; it is left as it is."""


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


# --- MNIST: torchvision's IDX files in <root>/MNIST/raw ------------------------------------------------------


def read_mnist(root, split):
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
    header = 4 + 4 * len(shape)  # IDX: 0, 0, type 8 (uint8), number of dimensions, then each size as 4 bytes
    expected = bytes([0, 0, 8, len(shape)]) + b"".join(d.to_bytes(4, "big") for d in shape)
    if len(data) != header + math.prod(shape) or data[:header] != expected:
        name = path.name if path.suffix == ".gz" else path.name + ".gz"
        raise DataCorrupted(
            f"{shown(path)} is truncated or damaged: {len(data):,} bytes where an MNIST IDX file of shape {shape} has "
            f"{header + math.prod(shape):,}. It was left as it is; replace it with a fresh copy of {name} "
            f"(published MD5 {gz_md5}), or delete it to download again."
        )
    return torch.frombuffer(bytearray(data[header:]), dtype=torch.uint8).view(shape)


# --- CIFAR-10: torchvision's pickles, extracted or inside cifar-10-python.tar.gz ---------------------------


def cifar_files(root, train):
    """torchvision's CIFAR-10 files that hold the split: the extracted batches, else the archive, else ``None``.

    Returns ``(kind, paths)`` with kind ``"batches"`` (``cifar-10-batches-py``) or
    ``"archive"`` (``cifar-10-python.tar.gz``, read without extracting it).
    """
    folder, archive = root / "cifar-10-batches-py", root / "cifar-10-python.tar.gz"  # torchvision's names
    batches = [folder / f for f in _CIFAR_BATCHES["train" if train else "test"]]
    if any(p.is_file() for p in batches) or (folder / "batches.meta").is_file():
        return "batches", batches + ([archive] if archive.is_file() else [])
    if archive.is_file():
        return "archive", [archive]
    return None


def decode_cifar(root, train, kind):
    """Images and labels of the split from torchvision's files (``kind`` as ``cifar_files``), checksums first."""
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


# --- downloading, with bounded waits --------------------------------------------------------------------------


def download_allowed(download=None):
    """``download`` if given, else True unless ``$LECTURE_OFFLINE=1`` (never touch the network)."""
    if download is None:
        return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("1", "true", "yes")
    return bool(download)


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


def download(name, root, train, allowed):
    """Fetch ``name`` with torchvision into ``root``; DataUnavailable, quickly, when it cannot be done from here."""
    from torchvision.datasets import CIFAR10

    split = "train" if train else "test"
    how, where = _HOW_TO_GET[name].format(root=shown(root)), shown(root)
    target = root / "MNIST" / "raw" if name == "mnist" else root
    ancestor, writable = writable_ancestor(target)
    if not allowed:
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
            return read_mnist(root, split)
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


# --- scikit-learn's digits: no download, the fallback -----------------------------------------------------------


def digits(train):
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
