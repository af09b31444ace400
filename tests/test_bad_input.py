"""The bad-input campaign: every case asserts the kind of error, a message that helps, and that no file changed.

A student's typo should cost seconds, not the run: each of these fails at
once, names what was wrong and what is allowed, and leaves the user's files
(bytes and modification times) as they were.
"""

import gzip
import os
import socket
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from lecture_utils.course.cli import main
from lecture_utils.augment import elastic_distort, random_affine, warp
from lecture_utils.checkpoint import Checkpoint, CheckpointError
from lecture_utils.data import (Data, DataCorrupted, DataUnavailable, DeviceBatches, load_data, load_dataset,
                                take_subset)
from lecture_utils.device import get_device
from lecture_utils.profiles import cap_to_data, settings
from lecture_utils.record import record
from lecture_utils.train import TrainingDiverged, TrainingInterrupted, evaluate, fit

HERE = Path(__file__).parent
TRAIN_IMAGES_MD5 = "f68b3c2dcbeaaa9fbdd348bbdeb94873"
TEST_IMAGES_MD5 = "9fb629c4189551a2d022fa330f9573f3"


def snapshot(folder):
    """Every file under ``folder``: bytes and modification time, to compare before and after."""
    return {p: (p.read_bytes(), os.stat(p).st_mtime_ns) for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def tiny_net():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4), nn.Flatten(), nn.Linear(4 * 49, 10))


def quick_fit(batches, **kwargs):
    torch.manual_seed(0)
    model = tiny_net()
    return model, fit(model, batches, epochs=kwargs.pop("epochs", 1), lr=0.05, device="cpu", **kwargs)


@pytest.fixture
def no_network(monkeypatch):
    """Every connection fails at once, as offline; the attempts (host, timeout) are recorded."""
    attempts = []

    def refuse(address, timeout=None, *args, **kwargs):
        attempts.append((address, timeout))
        raise socket.timeout("timed out (test)")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.delenv("LECTURE_OFFLINE", raising=False)
    return attempts


# --- notebook parameters: settings(...) at the top of every notebook ---------------------------------------


ELASTIC = {  # notebook 02's SIZES, as its parameters cell holds them
    "N_TRAIN": {"smoke": 500, "default": 1_000, "full": 60_000},
    "N_TEST": {"smoke": 500, "default": 10_000, "full": 10_000},
    "N_MONITOR": {"smoke": 200, "default": 500, "full": 2_000},
    "EPOCHS": {"smoke": 2, "default": 40, "full": 40},
}


def test_unknown_profile():
    with pytest.raises(ValueError, match=r"unknown profile 'fast': valid profiles are smoke, default, full"):
        settings("fast", ELASTIC)


def test_negative_epochs():
    with pytest.raises(ValueError, match=r"EPOCHS=-1 at profile full is out of range: allowed is an int > 0"):
        settings("smoke", {**ELASTIC, "EPOCHS": {"smoke": 2, "default": 40, "full": -1}})


def test_wrong_type_override():
    with pytest.raises(ValueError, match=r"SIZES\['N_TRAIN'\] must hold one type at every profile .*smoke str"):
        settings("smoke", {**ELASTIC, "N_TRAIN": {"smoke": "500", "default": 1_000, "full": 60_000}})
    with pytest.raises(ValueError, match=r"LR='fast' has type str: allowed is a finite number > 0"):
        settings("smoke", ELASTIC, lr="fast")


def test_unknown_dataset():
    with pytest.raises(ValueError, match=r"DATASET='svhn' is not allowed here: allowed are 'mnist', 'digits'"):
        settings("smoke", ELASTIC, dataset="svhn", datasets=("mnist", "digits"))


def test_monitor_set_larger_than_the_test_set():
    with pytest.raises(ValueError, match=r"N_MONITOR=600 is larger than N_TEST=500"):
        settings("smoke", {**ELASTIC, "N_MONITOR": {"smoke": 600, "default": 500, "full": 500}})


def test_zero_length_subset():
    with pytest.raises(ValueError, match=r"N_TRAIN=0 is out of range: allowed is an int > 0"):
        settings("smoke", {**ELASTIC, "N_TRAIN": {"smoke": 0, "default": 1, "full": 1}})
    x, y = torch.zeros(5, 1, 2, 2), torch.zeros(5, dtype=torch.long)
    with pytest.raises(ValueError, match=r"n=0 must be an int from 1 to 5"):
        take_subset(x, y, 0)


def test_unknown_parameter_name():
    with pytest.raises(ValueError, match=r"unknown parameter 'epoch': settings knows dataset, seed, lr"):
        settings("smoke", ELASTIC, epoch=3)


def test_size_larger_than_the_loaded_data_is_an_error_unless_the_data_is_the_fallback(capsys):
    x, y = torch.zeros(100, 1, 28, 28, dtype=torch.uint8), torch.zeros(100, dtype=torch.long)
    partial = Data("mnist", x, y, x[:50], y[:50], classes=tuple("0123456789"))  # a partial mirror
    with pytest.raises(ValueError, match=r"N_TRAIN=500 is larger than the 100 train images of mnist: "
                                         r"allowed is 1 to 100"):
        cap_to_data(settings("smoke", ELASTIC, dataset="mnist"), partial)
    fallback = Data("digits", x, y, x[:50], y[:50], classes=tuple("0123456789"), fallback_reason="offline (test)")
    cfg = cap_to_data(settings("full", ELASTIC, dataset="mnist"), fallback)
    assert (cfg["n_train"], cfg["n_test"], cfg["n_monitor"]) == (100, 50, 50)
    assert "N_TRAIN: 60,000 is more than the 100 train images of digits (the fallback) in use: using 100" in \
        capsys.readouterr().out


# --- augmentation (lecture_utils.augment's public functions) ------------------------------------------------


def test_augment_wrong_shape():
    with pytest.raises(ValueError, match=r"images must be a 4-D tensor \(N, C, H, W\), got shape \(28, 28\)"):
        elastic_distort(torch.rand(28, 28), alpha=34, sigma=4)


def test_augment_wrong_dtype():
    with pytest.raises(ValueError, match=r"images must be uint8 or floating point, got dtype torch.int64"):
        random_affine(torch.zeros(2, 1, 28, 28, dtype=torch.long), degrees=10)


def test_augment_empty_batch():
    with pytest.raises(ValueError, match=r"empty batch \(N = 0\)"):
        elastic_distort(torch.rand(0, 1, 28, 28), alpha=34, sigma=4)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_augment_nan_and_inf_images(bad):
    x = torch.rand(2, 1, 28, 28)
    x[1, 0, 3, 3] = bad
    with pytest.raises(ValueError, match="images must be finite, got NaN or infinite values"):
        elastic_distort(x, alpha=34, sigma=4)
    with pytest.raises(ValueError, match="images must be finite"):
        random_affine(x, degrees=10)


def test_augment_finite_check_reads_nothing_back_from_a_device():
    """Off the CPU the check would wait for the device at every batch: it is skipped there (fit names NaN
    images instead). A meta tensor stands in for a GPU one: reading a value back from it raises."""
    from lecture_utils.augment._checks import _check_images

    _check_images(torch.empty(2, 1, 8, 8, device="meta"), finite=True)
    with pytest.raises(ValueError, match="images must be finite"):
        _check_images(torch.full((2, 1, 8, 8), float("nan")), finite=True)


def test_augment_bad_field_and_parameters():
    with pytest.raises(ValueError, match=r"field must be a tensor of shape \(N, 2, H, W\) = \(2, 2, 28, 28\)"):
        warp(torch.rand(2, 1, 28, 28), torch.zeros(2, 28, 28))
    with pytest.raises(ValueError, match="sigma must be > 0.0, got -1"):
        elastic_distort(torch.rand(2, 1, 28, 28), alpha=34, sigma=-1)


# --- training -----------------------------------------------------------------------------------------------


def test_nan_in_the_data_stops_training_and_names_the_inputs():
    x = torch.rand(8, 1, 28, 28)
    x[5] = float("nan")
    with pytest.raises(TrainingDiverged, match=r"step 2 of 2 .*input images hold NaN or infinite values.*"
                                               r"not the cause") as info:
        quick_fit(DeviceBatches(x, torch.zeros(8, dtype=torch.long), 4))
    assert info.value.history == []


def test_inf_in_the_data_keeps_the_last_good_weights():
    x = torch.rand(8, 1, 28, 28)
    x[0, 0, 0, 0] = float("inf")
    torch.manual_seed(0)
    model = tiny_net()
    with pytest.raises(TrainingDiverged, match="step 1 of 2"):
        fit(model, DeviceBatches(x, torch.zeros(8, dtype=torch.long), 4), epochs=1, lr=0.05, device="cpu")
    torch.manual_seed(0)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), tiny_net().parameters()))  # untouched


def test_uint8_images_and_float_labels():
    y = torch.zeros(4, dtype=torch.long)
    with pytest.raises(TypeError, match=r"images of dtype torch.uint8: the model needs floating point images"):
        quick_fit([(torch.zeros(4, 1, 28, 28, dtype=torch.uint8), y)])
    with pytest.raises(TypeError, match=r"labels of dtype torch.float32 .*must be int64 of shape \(N,\)"):
        quick_fit([(torch.zeros(4, 1, 28, 28), y.float())])


def test_empty_batch_and_empty_batches():
    with pytest.raises(ValueError, match=r"a batch of images \(0, 1, 28, 28\) with 0 labels"):
        quick_fit([(torch.zeros(0, 1, 28, 28), torch.zeros(0, dtype=torch.long))])
    with pytest.raises(ValueError, match="train_batches is empty"):
        quick_fit([])
    with pytest.raises(ValueError, match="evaluate got no batches"):
        evaluate(tiny_net(), [], "cpu")


def test_device_batches_mismatched_lengths():
    with pytest.raises(ValueError, match=r"N == len\(labels\) > 0, got \(5, 1, 2, 2\) and 4 labels"):
        DeviceBatches(torch.zeros(5, 1, 2, 2), torch.zeros(4, dtype=torch.long), 2)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu():
    with pytest.raises(ValueError, match=r"device 'cuda' asked for, but this torch sees no CUDA GPU: use cpu"):
        get_device("cuda")


def test_interrupted_fit_then_resume(tmp_path):
    x, y = torch.rand(16, 1, 28, 28), torch.randint(0, 10, (16,))
    calls = []

    def interrupt_at_third_batch(images, generator):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return images

    path = tmp_path / "run.pt"
    with pytest.raises(TrainingInterrupted, match=r"epoch 2, step 0 of 2.*resume=True\).*end of epoch 1") as info:
        quick_fit(DeviceBatches(x, y, 8, augment=interrupt_at_third_batch), epochs=2, checkpoint=path)
    assert len(info.value.history) == 1 and isinstance(info.value, KeyboardInterrupt)
    _, history = quick_fit(DeviceBatches(x, y, 8), epochs=2, checkpoint=Checkpoint(path, resume=True))
    assert [h["epoch"] for h in history] == [1, 2]


def test_resume_from_a_mismatched_checkpoint(tmp_path):
    batches = DeviceBatches(torch.rand(8, 1, 28, 28), torch.zeros(8, dtype=torch.long), 4)
    path = tmp_path / "run.pt"
    quick_fit(batches, checkpoint=path)
    before = snapshot(tmp_path)
    model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))  # another model, same settings
    with pytest.raises(CheckpointError, match="holds a different model or optimizer.*left as it is"):
        fit(model, batches, epochs=1, lr=0.05, device="cpu", checkpoint=Checkpoint(path, resume=True))
    with pytest.raises(CheckpointError, match=r"different run \(lr 0.05 there, 0.1 here\)"):
        fit(tiny_net(), batches, epochs=1, lr=0.1, device="cpu", checkpoint=Checkpoint(path, resume=True))
    assert snapshot(tmp_path) == before


def test_corrupt_checkpoint_file(tmp_path):
    path = tmp_path / "run.pt"
    path.write_bytes(b"\x00" * 100)
    before = snapshot(tmp_path)
    with pytest.raises(CheckpointError, match=r"run.pt cannot be read as a checkpoint .*delete it or pass another"):
        quick_fit(DeviceBatches(torch.rand(4, 1, 28, 28), torch.zeros(4, dtype=torch.long), 4),
                  checkpoint=Checkpoint(path, resume=True))
    assert snapshot(tmp_path) == before


def test_record_nan():
    with pytest.raises(ValueError, match=r"record 'error': value must be a finite number.*got nan"):
        record("error", float("nan"))
    with pytest.raises(ValueError, match=r"value must be a finite number.*got inf"):
        record("error", torch.tensor(float("inf")))


# --- data ---------------------------------------------------------------------------------------------------


def test_unknown_data_set():
    with pytest.raises(ValueError, match=r"unknown data set 'svhn': known are mnist, cifar10, digits"):
        load_dataset("svhn")


def write_mnist(raw, split="train", n=None, gz=True):
    """Write small fake IDX files for ``split`` (wrong size for real MNIST unless ``n`` is its size)."""
    raw.mkdir(parents=True, exist_ok=True)
    stem = "train" if split == "train" else "t10k"
    n = n or 3
    images = bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in (n, 28, 28)) + bytes(n * 784)
    labels = bytes([0, 0, 8, 1]) + n.to_bytes(4, "big") + bytes(n)
    for name, content in ((f"{stem}-images-idx3-ubyte", images), (f"{stem}-labels-idx1-ubyte", labels)):
        if gz:
            (raw / (name + ".gz")).write_bytes(gzip.compress(content))
        else:
            (raw / name).write_bytes(content)


def test_missing_data_file(tmp_path, no_network):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    before = snapshot(tmp_path)
    with pytest.raises(DataUnavailable, match=r"mnist \(test\) is not available under .*downloading is off.*MNIST/raw"):
        load_dataset("mnist", train=False, root=tmp_path, download=False)
    assert snapshot(tmp_path) == before


def test_corrupted_data_file(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b garbage")
    before = snapshot(tmp_path)
    with pytest.raises(DataCorrupted,
                       match=rf"train-images-idx3-ubyte.gz is damaged: .*published file's is {TRAIN_IMAGES_MD5}"):
        load_data("mnist", root=tmp_path, strict=False)  # damage is never papered over by the fallback
    assert snapshot(tmp_path) == before


def test_truncated_extracted_idx_file(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    write_mnist(raw, "test", n=10000, gz=False)
    images = raw / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-1000])  # as by an interrupted extraction
    before = snapshot(tmp_path)
    with pytest.raises(DataCorrupted, match=rf"t10k-images-idx3-ubyte is truncated or damaged: 7,839,016 bytes.*"
                                            rf"t10k-images-idx3-ubyte.gz \(published MD5 {TEST_IMAGES_MD5}\)") as info:
        load_dataset("mnist", train=False, root=tmp_path, download=False)
    assert str(images) in str(info.value)
    assert snapshot(tmp_path) == before


def test_read_only_root_needing_a_download_says_where_it_would_write(tmp_path, monkeypatch, no_network):
    # Root ignores permission bits, so a chmod would not stop this test's writes: the check is os.access,
    # which honours both permissions (for other users) and read-only mounts (for everyone); simulate it.
    real_access = os.access
    monkeypatch.setattr(os, "access",
                        lambda p, mode, **k: False if mode == os.W_OK and Path(p) == tmp_path else real_access(p, mode))
    before = snapshot(tmp_path)
    with pytest.raises(DataUnavailable, match=rf"download it into {tmp_path}/MNIST/raw, but {tmp_path} is not "
                                              r"writable \(a read-only mirror\?\)\. Set \$LECTURE_DATA_DIR"):
        load_dataset("mnist", root=tmp_path)
    assert snapshot(tmp_path) == before and not no_network  # refused before any network attempt


def test_read_only_root_with_the_files_reads_without_writing(tmp_path, monkeypatch):
    write_mnist(tmp_path / "MNIST" / "raw", "test", n=10000, gz=False)
    monkeypatch.setattr(os, "access", lambda p, mode, **k: mode != os.W_OK)  # nothing writable
    before = snapshot(tmp_path)
    x, y = load_dataset("mnist", train=False, root=tmp_path, verbose=False)
    assert x.shape == (10000, 1, 28, 28) and y.dtype == torch.int64
    assert snapshot(tmp_path) == before  # nothing changed, nothing new (no extraction, no cache)


def test_offline_with_nothing_cached_fails_within_seconds(tmp_path, no_network, capsys):
    start = time.perf_counter()
    d = load_data("mnist", root=tmp_path, strict=False)
    assert time.perf_counter() - start < 10
    assert d.name == "digits" and "cannot be reached within 3 s (offline?)" in d.fallback_reason
    assert "DATA FALLBACK" in capsys.readouterr().err
    assert no_network and all(timeout <= 3 for _, timeout in no_network)
    with pytest.raises(DataUnavailable, match="cannot be reached"):
        load_data("mnist", root=tmp_path, strict=True)
    assert list(tmp_path.iterdir()) == []  # nothing written


# --- the runner's command line --------------------------------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["--timeout", "-1"], "give a number of seconds >= 0"),
    (["--timeout", "soon"], "'soon' is not a number of seconds"),
    (["-p", "N TRAIN", "3"], "a parameter name is a Python identifier"),
    (["-p", "EPOCH", "3"], "unknown parameter EPOCH (did you mean EPOCHS?): the notebooks' parameters are"),
    (["-p", "PROFILE", "full"], "set the profile with --profile"),
    (["-p", "profile", "full"], "set the profile with --profile"),
    (["-p", "LR", "1e400"], "parameter LR=1e400 is not a finite number: allowed is a finite number > 0"),
    (["-p", "EPOCHS", "-1"], "parameter EPOCHS=-1 is out of range: allowed is an int > 0"),
    (["-p", "EPOCHS", "2.5"], "parameter EPOCHS=2.5 has type float: allowed is an int > 0"),
    (["-p", "N_TRAIN", "nan"], "parameter N_TRAIN=nan has type float: allowed is an int > 0"),
    (["-p", "SEED", str(2**63)], "parameter SEED=9223372036854775808 is out of range"),
    (["-p", "DATASET", "svhn"], "parameter DATASET='svhn' is not allowed here: allowed are 'digits', 'mnist'"),
    (["-p", "SIZES", "{}"], "set one size with -p NAME VALUE"),
    (["--cpus-per-notebook", "-1"], "argument --cpus-per-notebook: -1: give a number > 0"),
    (["--cpus-per-notebook", "-1", "--ray"], "argument --cpus-per-notebook: -1: give a number > 0"),
    (["--cpus-per-notebook", "2"], "--cpus-per-notebook needs --ray"),
    (["--gpus-per-notebook", "inf", "--ray"], "argument --gpus-per-notebook: inf: give a number >= 0"),
    (["-p", "EPOCHS", "1", "-p", "EPOCHS", "2"], "-p EPOCHS is given twice"),
    (["--profile", "fast"], "invalid choice: 'fast'"),
    (["missing.ipynb"], "missing.ipynb does not exist"),
])
def test_bad_command_lines(args, message, capsys, tmp_path):
    out = tmp_path / "runs"
    with pytest.raises(SystemExit) as info:
        main(["run", str(HERE / "notebooks" / "demo.ipynb"), *args, "--out", str(out)])
    assert info.value.code == 2 and message in capsys.readouterr().err
    assert not out.exists()  # refused before anything ran


def test_out_folder_that_would_overwrite_the_notebooks(tmp_path, capsys):
    nb = tmp_path / "mine.ipynb"
    nb.write_text((HERE / "notebooks" / "faults" / "sleeper.ipynb").read_text())
    before = snapshot(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(["run", str(nb), "--out", str(tmp_path)])
    assert info.value.code == 2 and "would overwrite it: choose another --out folder" in capsys.readouterr().err
    assert snapshot(tmp_path) == before
