import pytest
import torch

from lecture_utils.device import describe, get_device, seed_everything


def test_cpu_when_no_accelerator(monkeypatch):
    monkeypatch.delenv("LECTURE_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert get_device() == torch.device("cpu")


def test_cuda_first_when_present(monkeypatch):
    monkeypatch.delenv("LECTURE_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert get_device() == torch.device("cuda")


def test_env_var_overrides(monkeypatch):
    monkeypatch.setenv("LECTURE_DEVICE", "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert get_device() == torch.device("cpu")


def test_bad_device_names(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no CUDA GPU"):
        get_device("cuda")
    with pytest.raises(ValueError, match="unknown device 'gpu0'"):
        get_device("gpu0")


def test_seed_everything_repeats_and_returns_a_generator():
    g = seed_everything(3)
    a, b = torch.rand(3), torch.rand(3, generator=g)
    g = seed_everything(3)
    assert torch.equal(a, torch.rand(3)) and torch.equal(b, torch.rand(3, generator=g))
    with pytest.raises(ValueError, match="non-negative int"):
        seed_everything(-1)
    assert describe("cpu").startswith("device: cpu")
