"""The decoded cache: written once per split, read instead of decoding, rebuilt when stale or damaged."""

import gzip
import hashlib
import io
import os
import pickle
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from lecture_utils.data import CIFAR10_CLASSES, DataCorrupted, cache_path, load_data, load_dataset
from lecture_utils.data import mirror, sources


@pytest.fixture(autouse=True)
def offline(no_network, monkeypatch):
    monkeypatch.delenv("LECTURE_DATA_DIR", raising=False)


def make_mirror(root, per_class=2, ext="png"):
    """A tiny CIFAR-10 ImageFolder mirror: image i of class c is a flat colour (10 c + i) in every channel."""
    for split in ("train", "test"):
        for label, cls in enumerate(CIFAR10_CLASSES):
            folder = root / "cifar10" / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                Image.new("RGB", (32, 32), (10 * label + i,) * 3).save(folder / f"{i:04d}.{ext}")


def snapshot(root):
    return sorted((str(p.relative_to(root)), p.stat().st_mtime_ns) for p in root.rglob("*"))


def no_decoding(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("decoded although the cache is valid")

    monkeypatch.setattr(mirror, "decode_mirror", fail)
    monkeypatch.setattr(sources, "decode_cifar", fail)
    monkeypatch.setattr(Image, "open", fail)


def test_first_load_writes_the_cache_and_the_second_reads_it_without_decoding(tmp_path, capsys, monkeypatch):
    make_mirror(tmp_path)
    x, y = load_dataset("cifar10", root=tmp_path)
    first = capsys.readouterr().out
    assert "decoded cache written to" in first and "ImageFolder mirror" in first
    path = cache_path("cifar10", "train", tmp_path)
    assert path.is_file() and not cache_path("cifar10", "test", tmp_path).exists()  # one file per split, on use
    assert [p.name for p in path.parent.iterdir()] == ["cifar10-train.pt"]  # no temporary file left behind
    no_decoding(monkeypatch)
    x2, y2 = load_dataset("cifar10", root=tmp_path)
    second = capsys.readouterr().out
    assert "from the decoded cache" in second and "cifar10-train.pt" in second and "ImageFolder mirror" in second
    assert torch.equal(x, x2) and torch.equal(y, y2) and x2.dtype == torch.uint8 and y2.dtype == torch.int64
    assert x2.shape == (20, 3, 32, 32) and x2[3, 1, 5, 5] == 11  # automobile/0001.png


def test_a_changed_source_rebuilds_the_cache(tmp_path, capsys):
    make_mirror(tmp_path)
    load_dataset("cifar10", train=False, root=tmp_path, verbose=False)
    image = tmp_path / "cifar10" / "test" / "bird" / "0000.png"
    new = image.with_name("new.tmp")  # replaced as tar, rsync or an editor's save do: a new file renamed over it
    Image.new("RGB", (32, 32), (200, 200, 200)).save(new, format="PNG")
    os.replace(new, image)
    x, _ = load_dataset("cifar10", train=False, root=tmp_path)
    assert "the source changed since it was cached" in capsys.readouterr().out
    assert x[4, 0, 0, 0] == 200  # bird is class 2: images 4 and 5
    extra = tmp_path / "cifar10" / "test" / "bird" / "0002.png"  # an image added
    Image.new("RGB", (32, 32), (7, 7, 7)).save(extra)
    x, y = load_dataset("cifar10", train=False, root=tmp_path, verbose=False)
    assert len(x) == 21 and y.bincount()[2] == 3
    x_cached, _ = load_dataset("cifar10", train=False, root=tmp_path, verbose=False)
    assert torch.equal(x, x_cached)
    extra.unlink()  # and removed again
    assert len(load_dataset("cifar10", train=False, root=tmp_path, verbose=False)[0]) == 20


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong contents"])
def test_a_damaged_cache_is_ignored_with_a_message_and_rebuilt(tmp_path, capsys, damage):
    make_mirror(tmp_path)
    x, y = load_dataset("cifar10", root=tmp_path, verbose=False)
    path = cache_path("cifar10", "train", tmp_path)
    if damage == "garbage":
        path.write_bytes(b"not a cache")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        torch.save({"version": 1, "fingerprint": "x", "images": torch.zeros(3), "labels": torch.zeros(3)}, path)
    x2, y2 = load_dataset("cifar10", root=tmp_path)
    captured = capsys.readouterr()
    assert f"the decoded cache {path} is damaged" in captured.err and "decoding the source again" in captured.err
    assert "the damaged cache was replaced" in captured.out
    assert torch.equal(x, x2) and torch.equal(y, y2)
    blob = torch.load(path, weights_only=True)  # rebuilt: a valid cache again
    assert torch.equal(blob["images"], x)


def test_a_read_only_root_is_never_written_and_still_loads(tmp_path, capsys, monkeypatch):
    make_mirror(tmp_path)
    expected = load_dataset("cifar10", train=False, root=tmp_path, download=False, verbose=False)
    cache_path("cifar10", "test", tmp_path).unlink()
    cache_path("cifar10", "test", tmp_path).parent.rmdir()
    monkeypatch.setattr(os, "access", lambda p, mode, **k: mode != os.W_OK)  # nothing writable
    before = snapshot(tmp_path)
    for _ in range(2):
        x, y = load_dataset("cifar10", train=False, root=tmp_path)
        assert torch.equal(x, expected[0]) and torch.equal(y, expected[1])
        assert "not cached: " in capsys.readouterr().out
    assert snapshot(tmp_path) == before  # no cache folder, no temporary file


def test_a_stale_temporary_file_of_a_killed_writer_is_removed(tmp_path):
    make_mirror(tmp_path)
    folder = cache_path("cifar10", "train", tmp_path).parent
    folder.mkdir(parents=True)
    stale = folder / ".cifar10-train.pt.999999999.tmp"  # no such process
    stale.write_bytes(b"partial")
    load_dataset("cifar10", root=tmp_path, verbose=False)
    assert sorted(p.name for p in folder.iterdir()) == ["cifar10-train.pt"]


def test_load_data_says_what_ran_and_calls_a_jpeg_mirror_a_copy(tmp_path, capsys):
    make_mirror(tmp_path, ext="jpg")
    d = load_data("cifar10", root=tmp_path)
    out = capsys.readouterr().out
    assert d.name == "cifar10" and d.dataset == "cifar10 (JPEG copy)" and d.requested == "cifar10"
    assert "of JPEG files (a lossy copy)" in out
    assert abs(int(d.train_images[3, 0, 0, 0]) - 11) <= 2  # JPEG: close, not exact


# --- torchvision's cifar-10-python.tar.gz and cifar-10-batches-py ------------------------------------------


def fake_cifar_archive(root, monkeypatch, value=0):
    """A small archive laid out like torchvision's (2 images per batch), its checksums patched in."""
    from torchvision.datasets import CIFAR10

    batches = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        data = np.full((2, 3072), value + i, dtype=np.uint8)
        batches[name] = pickle.dumps({"data": data, "labels": [i % 10, (i + 1) % 10]})
    batches["batches.meta"] = pickle.dumps({"label_names": list(CIFAR10_CLASSES)})
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, blob in batches.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    archive = root / "cifar-10-python.tar.gz"
    archive.write_bytes(gzip.compress(buffer.getvalue()))
    md5 = {name: hashlib.md5(blob).hexdigest() for name, blob in batches.items()}
    monkeypatch.setattr(CIFAR10, "tgz_md5", hashlib.md5(archive.read_bytes()).hexdigest())
    monkeypatch.setattr(CIFAR10, "train_list", [[f"data_batch_{k}", md5[f"data_batch_{k}"]] for k in range(1, 6)])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(CIFAR10, "meta", {"filename": "batches.meta", "key": "label_names",
                                          "md5": md5["batches.meta"]})
    return archive, batches


def test_the_archive_is_read_without_extracting_and_cached(tmp_path, capsys, monkeypatch):
    archive, _ = fake_cifar_archive(tmp_path, monkeypatch)
    x, y = load_dataset("cifar10", root=tmp_path)
    out = capsys.readouterr().out
    assert "torchvision's cifar10 archive" in out and "decoded cache written" in out
    assert x.shape == (10, 3, 32, 32) and x[2:4].eq(1).all() and y.tolist()[:4] == [0, 1, 1, 2]
    assert not (tmp_path / "cifar-10-batches-py").exists()  # read in place, never extracted
    monkeypatch.setattr(tarfile, "open", lambda *a, **k: pytest.fail("read the archive although cached"))
    x2, _ = load_dataset("cifar10", root=tmp_path)
    assert "from the decoded cache" in capsys.readouterr().out and torch.equal(x, x2)
    monkeypatch.undo()
    fake_cifar_archive(tmp_path, monkeypatch, value=100)  # a new archive: rebuilt
    os.utime(archive, ns=(archive.stat().st_atime_ns, archive.stat().st_mtime_ns + 10**9))
    x3, _ = load_dataset("cifar10", root=tmp_path)
    assert "the source changed" in capsys.readouterr().out and x3[0, 0, 0, 0] == 100


def test_a_damaged_archive_is_reported_even_with_a_cache_of_the_old_one(tmp_path, monkeypatch):
    archive, _ = fake_cifar_archive(tmp_path, monkeypatch)
    load_dataset("cifar10", train=False, root=tmp_path, verbose=False)
    archive.write_bytes(b"damaged")
    with pytest.raises(DataCorrupted, match="cifar-10-python.tar.gz is damaged"):
        load_dataset("cifar10", train=False, root=tmp_path, verbose=False)


def test_extracted_batches_are_cached_too(tmp_path, capsys, monkeypatch):
    _, batches = fake_cifar_archive(tmp_path, monkeypatch)
    (tmp_path / "cifar-10-python.tar.gz").unlink()
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name, blob in batches.items():
        (folder / name).write_bytes(blob)
    x, y = load_dataset("cifar10", train=False, root=tmp_path)
    assert "torchvision's cifar10 batches" in capsys.readouterr().out and x.shape == (2, 3, 32, 32)
    assert x.eq(5).all() and y.tolist() == [5, 6]
    no_decoding(monkeypatch)
    x2, _ = load_dataset("cifar10", train=False, root=tmp_path)
    assert "from the decoded cache" in capsys.readouterr().out and torch.equal(x, x2)
