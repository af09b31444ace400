import pytest
import torch

from lecture_utils.device import describe, get_device, precision_for, seed_everything


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
    with pytest.raises(ValueError, match=r"seed must be an int from 0 to 2\*\*64 - 1, got -1"):
        seed_everything(-1)
    assert describe("cpu").startswith("device: cpu")


def test_seed_everything_takes_large_seeds():
    """2**40 and up to 2**64 - 1 work (numpy's legacy seed takes only 32 bits); beyond, a one-line error."""
    np = pytest.importorskip("numpy")
    draws = {}
    for seed in (5, 2**32 + 5, 2**40, 2**64 - 1):
        g = seed_everything(seed)
        assert g.initial_seed() == seed and torch.initial_seed() == seed
        draws[seed] = (np.random.rand(), torch.rand(1).item())
    assert draws[5][0] != draws[2**32 + 5][0]  # seeds that differ above 32 bits give numpy different streams
    seed_everything(2**40)
    assert (np.random.rand(), torch.rand(1).item()) == draws[2**40]  # and repeat
    for bad in (2**64, 1.5, True, "3"):
        with pytest.raises(ValueError, match="seed must be an int from 0 to 2\\*\\*64 - 1") as err:
            seed_everything(bad)
        assert "\n" not in str(err.value)


@pytest.mark.parametrize("capability, dtype", [((7, 5), torch.float16), ((7, 0), torch.float16),
                                                ((8, 0), torch.bfloat16), ((8, 6), torch.bfloat16),
                                                ((9, 0), torch.bfloat16)])
def test_precision_by_compute_capability(monkeypatch, capability, dtype):
    """bfloat16 from Ampere (8.0) on; float16 (with a gradient scaler in fit) below, e.g. Colab's T4 (7.5)."""
    asked = []
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: asked.append(device) or capability)
    assert precision_for("cuda") is dtype
    assert precision_for(torch.device("cuda", 1)) is dtype and asked[-1] == torch.device("cuda", 1)


def test_float32_on_the_cpu_and_mps(monkeypatch):
    def no_gpu(device=None):
        raise AssertionError("a CPU or MPS device must not ask for a CUDA capability")

    monkeypatch.setattr(torch.cuda, "get_device_capability", no_gpu)
    assert precision_for("cpu") is None and precision_for("mps") is None
