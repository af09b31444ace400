"""The decoded cache: what had to be decoded, kept as uint8 tensors in ``<root>/cache/<name>-<split>.pt``.

Each file holds the images, the labels and a fingerprint of their source; it is
written atomically (a temporary file renamed), read instead of decoding while
the fingerprint matches, rebuilt when the source changed or the file is
damaged, and never written in a read-only root.
"""

import hashlib
import os
import sys

import torch

from lecture_utils.data.paths import data_root, shown, writable_ancestor

CACHE_FOLDER = "cache"
CACHE_VERSION = 1


def cache_path(name, split, root=None):
    """Where the decoded uint8 tensors of ``name``'s ``split`` are cached: ``<root>/cache/<name>-<split>.pt``."""
    return data_root(root) / CACHE_FOLDER / f"{name}-{split}.pt"


def stat_fingerprint(paths):
    """A cheap fingerprint of files: SHA-256 of their (name, size, mtime) listing."""
    digest = hashlib.sha256(b"files\n")
    for path in paths:
        if path.is_file():
            stat = path.stat()
            digest.update(f"{path.name}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def cached(name, split, root, fingerprint, source, decode):
    """``(images, labels, text)``: from the decoded cache if it matches ``fingerprint``, else ``decode()`` + cache."""
    path = cache_path(name, split, root)
    notes = []
    hit = _read(path, fingerprint, notes)
    if hit is not None:
        return (*hit, f"the decoded cache {shown(path)} of {source}")
    x, y = decode()
    notes.append(_write(path, x, y, fingerprint, source))
    return x, y, f"{source} (decoded; {'; '.join(notes)})"


def _read(path, fingerprint, notes):
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


def _write(path, images, labels, fingerprint, source):
    """Store the decoded tensors atomically (temporary file + rename); a short note of what happened."""
    ancestor, writable = writable_ancestor(path.parent)
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
