"""ImageFolder mirrors as users have them: ``<root>/<name>/{train,test}/<class>/<image>``.

An institution's offline copy, or one made by hand. Its class folders must be
exactly the data set's classes (labels follow their known order, as
torchvision's); hidden entries (``.ipynb_checkpoints/``, ``.DS_Store``) and
non-image files are ignored and counted; every image must be the data set's size.
"""

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from lecture_utils.data.paths import shown
from lecture_utils.data.sources import CIFAR10_CLASSES, DIGIT_CLASSES, DataCorrupted, DataUnavailable

KNOWN_CLASSES = {"cifar10": CIFAR10_CLASSES, "mnist": DIGIT_CLASSES}  # a mirror must hold exactly these folders
IMAGE_SIZES = {"mnist": (28, 28), "cifar10": (32, 32)}  # (height, width) of every image of a mirror
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # torchvision's
LOSSY_EXTENSIONS = (".jpg", ".jpeg")


class MirrorLayoutError(DataCorrupted):
    """An ImageFolder mirror whose folders are not the data set's classes, or whose images are not its size."""


def find_mirror(name, root, split):
    """``<root>/<name>/<split>`` if it holds anything but hidden entries, else ``None``."""
    folder = root / name / split
    if not folder.is_dir():
        return None
    return folder if any(not entry.name.startswith(".") for entry in os.scandir(folder)) else None


@dataclass
class Listing:
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


def list_mirror(name, folder):
    """The images of an ImageFolder split: class folders (exactly the known classes), image files by extension.

    Hidden entries and non-image files are ignored and counted; class folders
    that are not ``name``'s classes raise ``MirrorLayoutError`` naming the
    missing and the unexpected ones.
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
    return Listing(folder, tuple(order), files, folders, hidden, other)


def decode_mirror(name, listing):
    """Decode every image of a ``Listing`` (PIL), each checked against the data set's image size."""
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
