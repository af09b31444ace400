import os
from urllib.error import URLError

import pytest
import torch
from PIL import Image

from lecture_utils.data import (CIFAR10_CLASSES, DataCorrupted, DataUnavailable, DeviceBatches, as_rgb32, data_root,
                                load_data, load_dataset, take_subset)
from lecture_utils.data.paths import shown


@pytest.fixture
def offline(no_network, monkeypatch):
    """Any download attempt fails as it does without internet, even on a machine that has it."""
    import torchvision.datasets.cifar as cifar
    import torchvision.datasets.mnist as mnist

    def refuse(url, *args, **kwargs):
        raise URLError("offline (test)")

    monkeypatch.setattr(mnist, "download_and_extract_archive", refuse)
    monkeypatch.setattr(cifar, "download_and_extract_archive", refuse)


def test_digits_are_real_28x28_uint8_with_a_fixed_split():
    x, y = load_dataset("digits", train=True, verbose=False)
    xt, yt = load_dataset("digits", train=False, verbose=False)
    assert x.dtype == torch.uint8 and y.dtype == torch.int64
    assert x.shape == (1437, 1, 28, 28) and xt.shape == (360, 1, 28, 28)
    assert x.max() == 255 and x[:, :, :4].max() == 0  # drawn like MNIST: a 4-pixel empty border
    assert torch.equal(x, load_dataset("digits", verbose=False)[0])
    assert set(y.tolist()) == set(range(10)) and set(yt.tolist()) == set(range(10))


def test_unknown_name_lists_known_ones():
    with pytest.raises(ValueError, match="mnist, cifar10, digits"):
        load_dataset("svhn")


def make_course(folder, pyproject=True, notebooks=True):
    """A course folder as a checkout has it: data/, notebooks/ and a pyproject.toml naming lecture-utils."""
    (folder / "data").mkdir(parents=True)
    if notebooks:
        (folder / "notebooks").mkdir()
    if pyproject:
        (folder / "pyproject.toml").write_text('[project]\nname = "lecture-utils"\nversion = "0.1.0"\n')
    return folder


def test_data_root_order(monkeypatch, tmp_path):
    course = make_course(tmp_path / "course")
    monkeypatch.chdir(course)
    monkeypatch.setenv("LECTURE_DATA_DIR", str(tmp_path / "env"))
    assert data_root() == tmp_path / "env"  # the variable wins over the course folder
    assert data_root(tmp_path / "arg") == tmp_path / "arg"  # and root= over both
    monkeypatch.setenv("LECTURE_DATA_DIR", "")  # empty: unset
    assert data_root() == course / "data"


@pytest.mark.parametrize("where", [".", "notebooks", "notebooks/sub"])
def test_data_root_is_the_course_folders_data_from_the_repository_and_from_notebooks(tmp_path, monkeypatch, where):
    monkeypatch.delenv("LECTURE_DATA_DIR", raising=False)
    course = make_course(tmp_path / "course", notebooks=where != ".")
    (course / where).mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(course / where)  # the runner and the tests run here (.), a notebook in notebooks/
    assert data_root() == course / "data"
    assert shown(course / "data" / "cifar10" / "train") == "data/cifar10/train"  # relative to the course folder
    assert shown(course / "data") == "data" and shown(course) == "."


def test_a_copy_with_notebooks_and_data_but_no_pyproject_is_a_course_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("LECTURE_DATA_DIR", raising=False)
    course = make_course(tmp_path / "copy", pyproject=False)
    monkeypatch.chdir(course / "notebooks")
    assert data_root() == course / "data"


def test_away_from_a_course_folder_the_root_is_the_home_cache(tmp_path, monkeypatch):
    """Wherever the package is installed (here: a checkout), only the working directory decides."""
    monkeypatch.delenv("LECTURE_DATA_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    other = tmp_path / "other"  # a data/ folder of another project is not ours
    (other / "data").mkdir(parents=True)
    (other / "pyproject.toml").write_text('[project]\nname = "lecture-utils-extra"\n')
    (other / "src").mkdir()
    for cwd in (other, other / "src"):
        monkeypatch.chdir(cwd)
        assert data_root() == tmp_path / "home" / ".cache" / "lecture_utils"
        assert shown(data_root() / "MNIST") == "~/.cache/lecture_utils/MNIST"
    assert shown(other / "data") == str(other / "data")  # outside every base: as it is


def test_strict_mode_error_names_what_is_missing_and_how_to_get_it(tmp_path, offline):
    with pytest.raises(DataUnavailable, match=r"MNIST/raw"):
        load_data("mnist", root=tmp_path, strict=True)
    with pytest.raises(DataUnavailable, match="cifar-10-python.tar.gz"):
        load_dataset("cifar10", root=tmp_path)


def test_strict_mode_from_the_environment(tmp_path, offline, monkeypatch):
    monkeypatch.setenv("LECTURE_STRICT_DATA", "1")
    with pytest.raises(DataUnavailable):
        load_data("mnist", root=tmp_path)


def test_fallback_to_digits_shows_a_banner(tmp_path, offline, capsys, monkeypatch):
    monkeypatch.delenv("LECTURE_STRICT_DATA", raising=False)
    d = load_data("cifar10", root=tmp_path)
    err = capsys.readouterr().err
    assert "DATA FALLBACK" in err and "cifar10 is not available" in err and "NOT cifar10 numbers" in err
    assert "resized to 3x32x32" in err
    assert d.name == "digits" and d.dataset == "digits" and d.requested == "cifar10" and d.fallback_reason
    assert d.train_images.shape[1:] == (3, 32, 32) and d.train_images.dtype == torch.uint8  # CIFAR models run on it
    assert torch.equal(d.train_images[:, 0], d.train_images[:, 2]) and d.train_images.max() > 200
    assert d.classes == tuple("0123456789") and len(d.test_images) == 360
    assert torch.equal(d.train_images, as_rgb32(load_dataset("digits", verbose=False)[0]))


def test_no_download_means_no_network(tmp_path, monkeypatch):
    import torchvision.datasets.mnist as mnist

    def fail(*a, **k):
        raise AssertionError("tried to download")

    monkeypatch.setattr(mnist, "download_and_extract_archive", fail)
    with pytest.raises(DataUnavailable, match="downloading is off"):
        load_dataset("mnist", root=tmp_path, download=False)


def test_offline_env_var_turns_downloads_off(tmp_path, monkeypatch):
    import torchvision.datasets.mnist as mnist

    monkeypatch.setattr(mnist, "download_and_extract_archive", lambda *a, **k: pytest.fail("tried to download"))
    monkeypatch.setenv("LECTURE_OFFLINE", "1")
    with pytest.raises(DataUnavailable, match="downloading is off"):
        load_dataset("mnist", root=tmp_path)


def test_corrupted_file_is_reported_and_left_alone(tmp_path, offline):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    bad = raw / "train-images-idx3-ubyte.gz"
    bad.write_bytes(b"not the real file")
    before = os.stat(bad).st_mtime_ns
    with pytest.raises(DataCorrupted, match="f68b3c2dcbeaaa9fbdd348bbdeb94873") as info:
        load_data("mnist", root=tmp_path)
    assert str(bad) in str(info.value)
    assert bad.read_bytes() == b"not the real file" and os.stat(bad).st_mtime_ns == before


def test_imagefolder_mirror_is_used_and_named(tmp_path, offline, capsys):
    classes = CIFAR10_CLASSES
    for split, n in (("train", 3), ("test", 2)):
        for label, cls in enumerate(classes):
            folder = tmp_path / "cifar10" / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (32, 32), (10 * label + i,) * 3).save(folder / f"{i:04d}.png")
    x, y = load_dataset("cifar10", root=tmp_path)
    assert "ImageFolder mirror" in capsys.readouterr().out
    assert x.shape == (30, 3, 32, 32) and y.tolist() == [c for c in range(10) for _ in range(3)]
    assert x[4, 0, 0, 0] == 11  # automobile/0001.png
    d = load_data("cifar10", root=tmp_path)
    assert d.name == "cifar10" and d.dataset == "cifar10"  # PNG files: lossless, not called a JPEG copy


def test_load_data_records_nothing(tmp_path, offline, capsys, monkeypatch):
    """The notebook records what ran (record("dataset", data.dataset)); the library does not."""
    import lecture_utils.record

    monkeypatch.setattr(lecture_utils.record, "record", lambda *a, **k: pytest.fail("load_data recorded"))
    monkeypatch.delenv("LECTURE_STRICT_DATA", raising=False)
    for name in ("digits", "mnist"):  # mnist: not in tmp_path, so the fallback
        d = load_data(name, root=tmp_path)
        assert d.dataset == "digits" and d.requested == name
    assert " = " not in capsys.readouterr().out


def test_as_rgb32_resizes_gray_images_and_keeps_cifar_sized_ones():
    x, _ = load_dataset("digits", verbose=False)
    rgb = as_rgb32(x[:8])
    assert rgb.shape == (8, 3, 32, 32) and rgb.dtype == torch.uint8 and rgb.is_contiguous()
    assert torch.equal(rgb[:, 0], rgb[:, 1]) and torch.equal(rgb[:, 0], rgb[:, 2])  # the gray level in each channel
    assert abs(rgb.float().mean() - x[:8].float().mean()) < 2  # resized, not cropped or padded
    assert rgb[:, :, :4].max() == 0 and rgb.max() > 200  # the empty border scales with the digit
    flat = torch.full((2, 1, 28, 28), 77, dtype=torch.uint8)
    assert (as_rgb32(flat) == 77).all()
    colour = torch.tensor([10, 20, 30], dtype=torch.uint8).view(1, 3, 1, 1).expand(2, 3, 24, 24)
    assert as_rgb32(colour)[:, :, 5, 5].tolist() == [[10, 20, 30]] * 2  # RGB of another size: each channel resized
    cifar = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    assert as_rgb32(cifar) is cifar


def test_as_rgb32_rejects_what_is_not_uint8_images():
    with pytest.raises(TypeError, match="uint8"):
        as_rgb32(torch.zeros(2, 1, 28, 28))
    with pytest.raises(ValueError, match=r"C = 1 \(gray\) or 3 \(RGB\), got \(2, 2, 28, 28\)"):
        as_rgb32(torch.zeros(2, 2, 28, 28, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"got \(28, 28\)"):
        as_rgb32(torch.zeros(28, 28, dtype=torch.uint8))


def _real(name):
    root = data_root()
    have = (root / "MNIST" / "raw").is_dir() if name == "mnist" else (root / "cifar10" / "test").is_dir()
    if not have and os.environ.get("LECTURE_STRICT_DATA") != "1":
        pytest.skip(f"no local {name} copy under {root} (CI provides one)")


def test_real_mnist_through_torchvision():
    _real("mnist")
    x, y = load_dataset("mnist", train=False)
    assert x.shape == (10000, 1, 28, 28) and x.dtype == torch.uint8
    assert y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]  # MNIST's test set starts 7 2 1 0 4


def test_real_cifar10_test_split():
    _real("cifar10")
    x, y = load_dataset("cifar10", train=False)
    assert x.shape == (10000, 3, 32, 32) and torch.equal(y.bincount(), torch.full((10,), 1000))
    mean = x.float().mean((0, 2, 3)) / 255
    assert torch.allclose(mean, torch.tensor([0.4942, 0.4851, 0.4504]), atol=0.01)  # CIFAR-10's test mean


def test_take_subset_is_seeded_and_checked():
    x, y = torch.arange(10).view(10, 1, 1, 1), torch.arange(10)
    a, b = take_subset(x, y, 4, seed=1), take_subset(x, y, 4, seed=1)
    assert torch.equal(a[1], b[1]) and len(set(a[1].tolist())) == 4
    with pytest.raises(ValueError, match="from 1 to 10"):
        take_subset(x, y, 11)
    with pytest.raises(ValueError, match="from 1 to 10"):
        take_subset(x, y, 0)


def test_device_batches_cover_every_example_once_per_epoch():
    x = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1)
    y = torch.arange(10)
    batches = DeviceBatches(x, y, 4, shuffle=True, seed=0)
    assert len(batches) == 3
    epochs = [torch.cat([b for _, b in batches]) for _ in range(2)]
    assert sorted(epochs[0].tolist()) == list(range(10)) and not torch.equal(epochs[0], epochs[1])
    for xb, yb in batches:  # images follow their labels, scaled to [0, 1]
        assert torch.equal(xb.view(-1), yb.float() / 255)
    again = DeviceBatches(x, y, 4, shuffle=True, seed=0)
    assert torch.equal(torch.cat([b for _, b in again]), epochs[0])


def test_device_batches_augment_then_normalize():
    x = torch.full((4, 1, 2, 2), 255, dtype=torch.uint8)
    seen = []

    def augment(images, generator):
        seen.append(generator.device)
        return images * 0.5

    (xb, _), = DeviceBatches(x, torch.zeros(4, dtype=torch.long), 8, augment=augment, mean=0.25, std=0.5)
    assert torch.allclose(xb, torch.full_like(xb, 0.5)) and seen == [torch.device("cpu")]


def test_device_batches_reject_bad_input():
    with pytest.raises(ValueError, match="N == len"):
        DeviceBatches(torch.zeros(0, 1, 2, 2), torch.zeros(0), 4)
    with pytest.raises(ValueError, match="batch_size"):
        DeviceBatches(torch.zeros(2, 1, 2, 2), torch.zeros(2), 0)


def test_damaged_cifar_files_are_reported_with_their_checksum(tmp_path, offline):
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"not the archive")
    with pytest.raises(DataCorrupted, match="c58f30108f718f92721af3b95e74349a"):
        load_dataset("cifar10", root=tmp_path)
    (tmp_path / "cifar-10-python.tar.gz").unlink()
    batches = tmp_path / "cifar-10-batches-py"
    batches.mkdir()
    (batches / "test_batch").write_bytes(b"not a batch")
    with pytest.raises(DataCorrupted, match=r"test_batch is damaged: .*40351d587109b95175f43aff81a1287e"):
        load_dataset("cifar10", train=False, root=tmp_path)
    assert (batches / "test_batch").read_bytes() == b"not a batch"


def test_mnist_reads_the_gz_files_without_extracting(tmp_path):
    _real("mnist")
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (raw / name).write_bytes((data_root() / "MNIST" / "raw" / name).read_bytes())
    x, y = load_dataset("mnist", train=False, root=tmp_path, download=False, verbose=False)
    assert x.shape == (10000, 1, 28, 28) and y[:4].tolist() == [7, 2, 1, 0]
    assert sorted(p.name for p in raw.iterdir()) == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
