"""Data folders as users have them (hidden entries, stray files, other class names), and printed paths."""

import functools

import pytest
import torch
from PIL import Image

from lecture_utils.augment import elastic_distort
from lecture_utils.data import (CIFAR10_CLASSES, DataUnavailable, DeviceBatches, MirrorLayoutError, load_data,
                                load_dataset)
from lecture_utils.data.paths import shown


@pytest.fixture(autouse=True)
def offline(no_network, monkeypatch):
    monkeypatch.delenv("LECTURE_DATA_DIR", raising=False)
    monkeypatch.delenv("LECTURE_STRICT_DATA", raising=False)


def make_split(root, name, split, classes, size=32, per_class=2):
    mode = "L" if name == "mnist" else "RGB"
    for label, cls in enumerate(classes):
        folder = root / name / split / cls
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.new(mode, (size, size), 10 * label + i if mode == "L" else (10 * label + i,) * 3).save(
                folder / f"{i:04d}.png")
    return root / name / split


def test_hidden_checkpoint_folder_beside_the_classes_does_not_shift_the_labels(tmp_path, capsys):
    split = make_split(tmp_path, "cifar10", "train", CIFAR10_CLASSES)
    (split / ".ipynb_checkpoints").mkdir()  # JupyterLab makes these; sorted first, it used to become class 0
    x, y = load_dataset("cifar10", root=tmp_path)
    assert y.tolist() == [c for c in range(10) for _ in range(2)]  # 10 classes, airplane is still 0
    assert x[2, 0, 0, 0] == 10  # automobile/0000.png has label 1
    assert "ignored 1 hidden entry" in capsys.readouterr().out


def test_ds_store_and_stray_files_in_class_folders_are_ignored_and_counted(tmp_path, capsys):
    split = make_split(tmp_path, "cifar10", "test", CIFAR10_CLASSES)
    (split / "cat" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (split / "dog" / "notes.txt").write_text("labels checked by hand")
    (split / "README.md").write_text("a CIFAR-10 copy")
    (split / "dog" / "subfolder").mkdir()
    x, y = load_dataset("cifar10", train=False, root=tmp_path)
    assert x.shape == (20, 3, 32, 32) and y.bincount().tolist() == [2] * 10
    assert "ignored 1 hidden entry and 3 non-image entries" in capsys.readouterr().out


def test_class_folders_with_other_names_are_refused_naming_missing_and_unexpected(tmp_path):
    classes = ("plane", "car") + CIFAR10_CLASSES[2:]  # would permute the labels silently
    make_split(tmp_path, "cifar10", "train", classes)
    with pytest.raises(MirrorLayoutError, match=r"exactly the 10 class folders of cifar10 \(airplane, automobile, "
                                                r".*missing: airplane, automobile; unexpected: car, plane\."):
        load_dataset("cifar10", root=tmp_path)
    with pytest.raises(MirrorLayoutError):  # not papered over by the fallback
        load_data("cifar10", root=tmp_path, strict=False)


def test_a_missing_class_folder_is_named(tmp_path):
    make_split(tmp_path, "cifar10", "train", CIFAR10_CLASSES[:9])
    with pytest.raises(MirrorLayoutError, match=r"missing: truck; unexpected: none"):
        load_dataset("cifar10", root=tmp_path)


def test_an_empty_class_folder_is_refused(tmp_path):
    split = make_split(tmp_path, "cifar10", "train", CIFAR10_CLASSES)
    for p in (split / "frog").iterdir():
        p.unlink()
    (split / "frog" / ".DS_Store").write_bytes(b"x")
    with pytest.raises(MirrorLayoutError, match=r"frog of the ImageFolder mirror holds no images"):
        load_dataset("cifar10", root=tmp_path)


def test_mnist_mirror_needs_digit_folders_and_28x28_images(tmp_path):
    make_split(tmp_path, "mnist", "test", [str(d) for d in range(10)], size=28)
    x, y = load_dataset("mnist", train=False, root=tmp_path, verbose=False)
    assert x.shape == (20, 1, 28, 28) and y[-1] == 9 and x[-1, 0, 0, 0] == 91
    (tmp_path / "mnist" / "test" / "10").mkdir()
    with pytest.raises(MirrorLayoutError, match=r"unexpected: 10"):
        load_dataset("mnist", train=False, root=tmp_path)
    make_split(tmp_path, "mnist", "train", [str(d) for d in range(10)], size=32)
    with pytest.raises(MirrorLayoutError, match=r"0000.png is 32x32 pixels: every mnist image is 28x28"):
        load_dataset("mnist", train=True, root=tmp_path)


def test_a_split_folder_with_only_hidden_entries_is_no_mirror(tmp_path):
    (tmp_path / "cifar10" / "train" / ".ipynb_checkpoints").mkdir(parents=True)
    with pytest.raises(DataUnavailable, match="not available"):
        load_dataset("cifar10", root=tmp_path)


# --- printed paths --------------------------------------------------------------------------------------------


def test_paths_are_shown_relative_to_the_course_folder_the_data_dir_or_home(tmp_path, monkeypatch):
    lecture = tmp_path / "lecture"
    for folder in ("data", "notebooks"):
        (lecture / folder).mkdir(parents=True)
    monkeypatch.chdir(lecture / "notebooks")  # as a notebook runs
    assert shown(lecture / "data" / "cifar10" / "train") == "data/cifar10/train"
    assert shown(lecture / "data") == "data"
    monkeypatch.setenv("LECTURE_DATA_DIR", str(tmp_path / "course"))
    assert shown(tmp_path / "course" / "MNIST" / "raw") == "$LECTURE_DATA_DIR/MNIST/raw"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert shown(tmp_path / "home" / ".cache" / "lecture_utils") == "~/.cache/lecture_utils"


def test_loader_messages_carry_no_absolute_path_for_the_data_dir(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LECTURE_DATA_DIR", str(tmp_path))
    make_split(tmp_path, "cifar10", "test", CIFAR10_CLASSES)
    load_dataset("cifar10", train=False)
    out = capsys.readouterr().out
    assert "$LECTURE_DATA_DIR/cifar10/test" in out and "$LECTURE_DATA_DIR/cache/cifar10-test.pt" in out
    assert str(tmp_path) not in out
    d = load_data("mnist")  # nothing there: the fallback's reason names the folder the same way
    assert "$LECTURE_DATA_DIR" in d.fallback_reason and str(tmp_path) not in d.fallback_reason


# --- DeviceBatches with a partial of an augment op ----------------------------------------------------------


def test_device_batches_accept_a_partial_of_an_augment_op():
    x = torch.randint(0, 256, (16, 1, 28, 28), dtype=torch.uint8)
    y = torch.zeros(16, dtype=torch.long)
    expand = functools.partial(elastic_distort, alpha=34, sigma=4)  # "got multiple values for argument 'alpha'"
    (xb, _), = DeviceBatches(x, y, 16, augment=expand, seed=3)
    reference = elastic_distort(x.float() / 255, 34, 4, generator=torch.Generator().manual_seed(3))
    assert torch.equal(xb, reference)  # the batches' own generator reached the op
    (xl, _), = DeviceBatches(x, y, 16, augment=lambda images, g: elastic_distort(images, 34, 4, generator=g), seed=3)
    assert torch.equal(xl, reference)  # the notebooks' lambda x, g: ... works as before

    class Op:
        def __call__(self, images, generator=None):
            return images + torch.rand(1, generator=generator)

    (xo, _), = DeviceBatches(x, y, 16, augment=Op(), seed=3)
    assert torch.allclose(xo - x.float() / 255, torch.rand(1, generator=torch.Generator().manual_seed(3)), atol=1e-6)
    with pytest.raises(ValueError, match="augment must be a callable"):
        DeviceBatches(x, y, 16, augment="elastic")
