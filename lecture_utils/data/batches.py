"""Batches of a data set held whole on the device, augmented there: no PIL per sample, no DataLoader workers.

As in airbench: the images are one uint8 tensor on the device, an epoch is a
shuffled index, and each batch is cut, scaled to [0, 1], augmented as a batch
and normalized, all on the device. The same code runs on the CPU and the GPU.
"""

import inspect

import torch


class DeviceBatches:
    """``for x, y in DeviceBatches(images, labels, batch_size, shuffle=True, augment=..., mean=..., std=...)``.

    ``augment`` gets float images in [0, 1] and a generator on the same
    device: as ``generator=`` when it has a parameter of that name (every
    ``lecture_utils.augment`` op, and a ``functools.partial`` of one, e.g.
    ``partial(elastic_distort, alpha=34, sigma=4)``), else as the second
    positional argument (``lambda x, g: ...``). Normalization by ``mean``/``std``
    comes after it. The generator is seeded once, so every epoch differs and a
    seeded run repeats.
    """

    def __init__(self, images, labels, batch_size, *, shuffle=False, augment=None, mean=None, std=None,
                 device=None, seed=0, drop_last=False):
        if images.ndim != 4 or len(images) != len(labels) or len(labels) == 0:
            raise ValueError(f"images must be (N, C, H, W) with N == len(labels) > 0, got {tuple(images.shape)} "
                             f"and {len(labels)} labels")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if augment is not None and not callable(augment):
            raise ValueError(f"augment must be a callable (images, generator) -> images or None, got {augment!r}")
        self.device = torch.device(device) if device is not None else images.device
        self.images, self.labels = images.to(self.device), labels.to(self.device)
        self.batch_size, self.shuffle, self.augment, self.drop_last = batch_size, shuffle, augment, drop_last
        self._generator_keyword = augment is not None and _takes_generator_keyword(augment)
        as_channels = dict(dtype=torch.float32, device=self.device)
        self.mean = None if mean is None else torch.as_tensor(mean, **as_channels).view(1, -1, 1, 1)
        self.std = None if std is None else torch.as_tensor(std, **as_channels).view(1, -1, 1, 1)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)

    def __len__(self):
        n, b = len(self.labels), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __iter__(self):
        n = len(self.labels)
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator, device=self.device)
        else:
            order = torch.arange(n, device=self.device)
        for b in range(len(self)):
            index = order[b * self.batch_size:(b + 1) * self.batch_size]
            x = self.images[index]
            x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
            if self.augment is not None and self._generator_keyword:
                x = self.augment(x, generator=self.generator)
            elif self.augment is not None:
                x = self.augment(x, self.generator)
            if self.mean is not None:
                x = (x - self.mean) / self.std
            yield x, self.labels[index]


def _takes_generator_keyword(fn):
    """Whether ``fn`` (a function, a ``functools.partial``, a callable object) has a parameter named ``generator``."""
    try:
        parameter = inspect.signature(fn).parameters.get("generator")
    except (TypeError, ValueError):  # no signature to read (some builtins): positional, as before
        return False
    return parameter is not None and parameter.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                        inspect.Parameter.KEYWORD_ONLY)
