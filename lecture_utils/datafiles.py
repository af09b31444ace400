"""Data on disk: how paths are printed, ImageFolder mirrors as users have them, the decoded cache.

``lecture_utils.data`` is the interface (its names re-export the ones here);
this module holds what it needs to read folders and cache decoded tensors.
A mirror's class folders are checked against the data set's classes; hidden
entries and non-image files are ignored and counted. Decoded splits are kept
as uint8 tensors under ``<root>/cache/``, written atomically with a
fingerprint of their source, and rebuilt when it changes.
"""

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT_ENV = "LECTURE_DATA_DIR"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
DIGIT_CLASSES = tuple(str(d) for d in range(10))
KNOWN_CLASSES = {"cifar10": CIFAR10_CLASSES, "mnist": DIGIT_CLASSES}  # a mirror must hold exactly these folders
IMAGE_SIZES = {"mnist": (28, 28), "cifar10": (32, 32)}  # (height, width) of every image of a mirror
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # torchvision's
LOSSY_EXTENSIONS = (".jpg", ".jpeg")
CACHE_FOLDER = "cache"  # <root>/cache/<name>-<split>.pt: the decoded uint8 tensors of a split
CACHE_VERSION = 1


class DataUnavailable(RuntimeError):
    """The data set is neither on disk nor downloadable from here."""


class DataCorrupted(RuntimeError):
    """A data file on disk does not match its published checksum, or is truncated; it is left as it is."""


class MirrorLayoutError(DataCorrupted):
    """An ImageFolder mirror whose folders are not the data set's classes, or whose images are not its size."""


def _checkout():
    """The repository this package runs from (an editable install or a checkout), else None."""
    checkout = Path(__file__).resolve().parents[1]
    return checkout if (checkout / "pyproject.toml").is_file() else None


def shown(path):
    """``path`` as printed: relative to the repository, else ``$LECTURE_DATA_DIR/...``, else ``~/...``.

    Outputs committed with the notebooks must not carry the machine's absolute
    paths; a folder outside all three (one passed as ``root=``) is shown as it is.
    """
    path = Path(path).absolute()
    bases = [(_checkout(), "")]
    if os.environ.get(ROOT_ENV):
        bases.append((Path(os.environ[ROOT_ENV]).expanduser().absolute(), "$" + ROOT_ENV))
    bases.append((Path.home(), "~"))
    for base, prefix in bases:
        if base is None:
            continue
        for candidate, b in ((path, base), (path.resolve(), base.resolve())):
            if candidate == b or b in candidate.parents:
                rel = candidate.relative_to(b).as_posix()
                if not prefix:
                    return rel if rel != "." else "."
                return prefix if rel == "." else f"{prefix}/{rel}"
    return str(path)


def _mirror_dir(name, root, split):
    """``<root>/<name>/<split>`` if it holds anything but hidden entries, else ``None``."""
    folder = root / name / split
    if not folder.is_dir():
        return None
    return folder if any(not entry.name.startswith(".") for entry in os.scandir(folder)) else None


@dataclass
class _Listing:
    """What an ImageFolder split holds: ``(label, path)`` per image (path a str), its folders' stats, what was ignored.

    ``folders`` holds ``(name, st_mtime_ns, st_ctime_ns)`` of the split folder and of each class folder.
    """

    folder: Path
    classes: tuple
    files: list
    folders: list
    hidden: int = 0
    other: int = 0

    @property
    def lossy(self):
        return any(path.lower().endswith(LOSSY_EXTENSIONS) for _, path in self.files)

    def fingerprint(self):
        """SHA-256 of the sorted (label, file name) listing and the folders' modification and change times.

        Adding, removing, renaming or replacing an image (tar, rsync, cp to a new
        name, an editor's save-and-rename) changes its folder's times; no file
        needs to be opened, or even stat-ed, so this takes a fraction of a second
        for 60,000 images. An image rewritten in place under its own name does not
        change it: delete ``<root>/cache/`` after such an edit.
        """
        cut = len(str(self.folder)) + 1
        stats = "\n".join(f"{name}\t{mtime}\t{ctime}" for name, mtime, ctime in self.folders)
        lines = "\n".join(f"{label}\t{path[cut:]}" for label, path in self.files)
        return hashlib.sha256(f"mirror {len(self.files)}\n{stats}\n{lines}".encode()).hexdigest()

    def ignored(self):
        parts = []
        if self.hidden:
            parts.append(f"{self.hidden} hidden entr{'y' if self.hidden == 1 else 'ies'}")
        if self.other:
            parts.append(f"{self.other} non-image entr{'y' if self.other == 1 else 'ies'}")
        return f"; ignored {' and '.join(parts)}" if parts else ""


def _list_mirror(name, folder):
    """The images of an ImageFolder split: class folders (exactly the known classes), image files by extension.

    Hidden entries (``.ipynb_checkpoints/``, ``.DS_Store``) and non-image files are
    ignored and counted; class folders that are not ``name``'s classes raise
    ``MirrorLayoutError`` naming the missing and the unexpected ones.
    """
    hidden = other = 0
    classes = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name.startswith("."):
            hidden += 1
        elif entry.is_dir():
            classes.append(entry.name)
        else:
            other += 1
    known = KNOWN_CLASSES.get(name)
    if known is not None and sorted(classes) != sorted(known):
        missing = [c for c in known if c not in classes] or ["none"]
        unexpected = [c for c in classes if c not in known] or ["none"]
        raise MirrorLayoutError(
            f"the ImageFolder mirror {shown(folder)} must hold exactly the {len(known)} class folders of {name} "
            f"({', '.join(known)}); missing: {', '.join(missing)}; unexpected: {', '.join(unexpected)}. "
            "Rename or remove those folders (hidden ones, starting with '.', are ignored)."
        )
    order = known if known is not None else tuple(classes)  # labels: the known order (sorted, as torchvision's)
    files = []
    for label, cls in enumerate(order):
        found = 0
        for entry in sorted(os.scandir(folder / cls), key=lambda e: e.name):
            if entry.name.startswith("."):
                hidden += 1
            elif entry.name.lower().endswith(IMAGE_EXTENSIONS) and entry.is_file():
                files.append((label, entry.path))
                found += 1
            else:
                other += 1
        if found == 0:
            raise MirrorLayoutError(f"the class folder {shown(folder / cls)} of the ImageFolder mirror holds no "
                                    f"images (files ending in {', '.join(IMAGE_EXTENSIONS)})")
    if not files:
        raise DataUnavailable(f"the mirror {shown(folder)} holds no images")
    folders = [(name, st.st_mtime_ns, st.st_ctime_ns)
               for name, st in [(".", folder.stat())] + [(cls, (folder / cls).stat()) for cls in order]]
    return _Listing(folder, tuple(order), files, folders, hidden, other)


def _writable_ancestor(folder):
    """``(ancestor, writable)``: the nearest existing folder at or above ``folder``, and whether we may write there."""
    folder = Path(folder).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder, os.access(folder, os.W_OK)


def _from_mirror(name, listing):
    """Decode every image of an ImageFolder listing (PIL), each checked against the data set's image size."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    mode = "L" if name == "mnist" else "RGB"
    height, width = IMAGE_SIZES.get(name, (None, None))
    images = []
    for _, path in listing.files:
        try:
            with Image.open(path) as img:
                if height is not None and img.size != (width, height):
                    raise MirrorLayoutError(f"{shown(path)} is {img.size[0]}x{img.size[1]} pixels: every {name} "
                                            f"image is {width}x{height}")
                images.append(np.asarray(img.convert(mode)))
        except (OSError, UnidentifiedImageError) as err:
            raise DataCorrupted(f"{shown(path)} could not be decoded as an image ({err})") from None
    x = torch.from_numpy(np.stack(images))
    x = x.unsqueeze(1) if mode == "L" else x.permute(0, 3, 1, 2)
    labels = torch.tensor([label for label, _ in listing.files], dtype=torch.long)
    return x.contiguous(), labels


def _stat_fingerprint(paths):
    """A cheap fingerprint of files: SHA-256 of their (name, size, mtime) listing."""
    digest = hashlib.sha256(b"files\n")
    for path in paths:
        if path.is_file():
            stat = path.stat()
            digest.update(f"{path.name}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _read_cache(path, fingerprint, notes):
    """``(images, labels)`` from the decoded cache at ``path`` if it was made from this source, else ``None``.

    A damaged cache (unreadable, wrong contents) is ignored with a message and rebuilt.
    """
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        images, labels = blob["images"], blob["labels"]
        if not (blob.get("version") == CACHE_VERSION and isinstance(images, torch.Tensor)
                and isinstance(labels, torch.Tensor) and images.dtype == torch.uint8 and images.ndim == 4
                and labels.dtype == torch.long and labels.shape == (len(images),)
                and isinstance(blob.get("fingerprint"), str)):
            raise ValueError("not a decoded cache of this version")
    except Exception as err:  # noqa: BLE001 - whatever is wrong with the file, the source is decoded again
        print(f"the decoded cache {shown(path)} is damaged ({type(err).__name__}: {str(err)[:80]}): "
              "ignored, decoding the source again", file=sys.stderr)
        notes.append("the damaged cache was replaced")
        return None
    if blob["fingerprint"] != fingerprint:
        notes.append("the source changed since it was cached")
        return None
    return images, labels


def _write_cache(path, images, labels, fingerprint, source):
    """Store the decoded tensors atomically (temporary file + rename); a short note of what happened."""
    ancestor, writable = _writable_ancestor(path.parent)
    if not writable:
        return f"not cached: {shown(ancestor)} is read-only"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a process killed while writing
            pid = stale.name.rsplit(".", 2)[-2]
            if pid.isdigit() and not _alive(int(pid)):
                stale.unlink(missing_ok=True)
        with open(tmp, "wb") as f:
            torch.save({"version": CACHE_VERSION, "fingerprint": fingerprint, "source": source,
                        "images": images, "labels": labels}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        return f"not cached ({err.strerror or err})"
    finally:
        tmp.unlink(missing_ok=True)
    return f"decoded cache written to {shown(path)}"


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cached(name, split, root, fingerprint, source, decode):
    """``(images, labels, text)``: from the decoded cache if it matches ``fingerprint``, else ``decode()`` + cache."""
    path = root / CACHE_FOLDER / f"{name}-{split}.pt"
    notes = []
    hit = _read_cache(path, fingerprint, notes)
    if hit is not None:
        return (*hit, f"the decoded cache {shown(path)} of {source}")
    x, y = decode()
    notes.append(_write_cache(path, x, y, fingerprint, source))
    return x, y, f"{source} (decoded; {'; '.join(notes)})"
