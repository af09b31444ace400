"""Device choice and seeding: the one place that decides where tensors live."""

import os
import random

import numpy as np
import torch

ENV_VAR = "LECTURE_DEVICE"


def get_device(name=None):
    """The device to train on: ``name`` (a string or a ``torch.device``), else ``$LECTURE_DEVICE``,
    else cuda, then mps, then cpu."""
    name = name or os.environ.get(ENV_VAR) or None
    if name is not None:
        try:
            device = torch.device(name)
        except (RuntimeError, TypeError) as err:
            raise ValueError(f"unknown device {name!r} ({err}): use cpu, cuda, cuda:N or mps") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {name!r} asked for, but this torch sees no CUDA GPU: use cpu")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"device {name!r} asked for, but MPS is not available here: use cpu")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def precision_for(device):
    """The dtype ``fit`` autocasts to on ``device``, or None for float32 throughout.

    bfloat16 on CUDA GPUs of compute capability 8.0 and up (Ampere on: bfloat16 tensor cores, float32's
    range, no loss scaling); float16 below (e.g. Colab's T4, 7.5, has float16 tensor cores only; ``fit``
    then scales the loss with a ``torch.amp.GradScaler`` so small gradients do not underflow); None on
    MPS and the CPU, which train in float32 (a CPU run repeats bitwise for a seed).
    """
    device = torch.device(device)
    if device.type != "cuda":
        return None
    major, minor = torch.cuda.get_device_capability(device)
    return torch.bfloat16 if (major, minor) >= (8, 0) else torch.float16


MAX_SEED = 2**64 - 1  # torch.manual_seed takes seeds up to this


def seed_everything(seed):
    """Seed Python, NumPy and torch (all devices); return a CPU ``torch.Generator`` seeded the same.

    Pass the generator to the loaders and augmentations that take one, so a
    run's randomness does not depend on what else drew from the global RNG.
    Any int from 0 to 2**64 - 1 works; NumPy's legacy seed takes 32 bits, so a
    larger seed reaches it as its 32-bit words (seeds below 2**32 as before).
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be an int from 0 to 2**64 - 1, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed if seed < 2**32 else [seed & 0xFFFFFFFF, seed >> 32])
    torch.manual_seed(seed)  # also seeds every CUDA device
    return torch.Generator().manual_seed(seed)


def describe(device):
    """One line naming the device, for a notebook's first output."""
    device = torch.device(device)
    if device.type == "cuda":
        what = torch.cuda.get_device_name(device)
    elif device.type == "cpu":
        what = f"{torch.get_num_threads()} threads"
    else:
        what = device.type
    return f"device: {device} ({what}), torch {torch.__version__}"
