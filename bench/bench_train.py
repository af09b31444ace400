#!/usr/bin/env python3
"""Benchmark training throughput: ``fit`` against a bare PyTorch loop, and the device-resident data path.

Prints markdown tables of images/second (median over repeats, after a warm-up):

1. ``lecture_utils.train.fit`` against a bare hand-written loop on the same
   model, the same pre-made batches, batch size and optimizer (SGD, Nesterov
   momentum 0.9, weight decay 5e-4 on weights), no validation, no progress bar:
   what fit's bookkeeping costs per step;
2. a full training epoch (data + augmentation + step) with Simard's elastic
   expansion done on the fly: ``DeviceBatches`` + batched ``elastic_distort``
   against the usual ``DataLoader`` over a ``Dataset`` applying torchvision's v2
   ``ElasticTransform`` per image (num_workers 0 and 2), both trained by ``fit``.

Both for the MNIST-size LeNet (real MNIST when its files are in data/, else
synthetic) and a CIFAR ResNet-20 (synthetic 3x32x32 images: speed only).

    python3 bench/bench_train.py [--repeats 7] [--rounds 15] [--quick] [--skip-resnet]
"""

import argparse
import copy
import datetime
import functools
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from common import cpu_name  # noqa: E402
from lecture_utils.augment import elastic_distort  # noqa: E402
from lecture_utils.data import DeviceBatches  # noqa: E402
from lecture_utils.device import get_device, precision_for  # noqa: E402
from lecture_utils.models import cifar_resnet, lenet  # noqa: E402
from lecture_utils.train import channels_last, fit  # noqa: E402

ALPHA, SIGMA = 34.0, 4.0  # Simard et al. 2003, pixels; torchvision's alpha for the same displacement is 2 x ALPHA
LR, MOMENTUM, WEIGHT_DECAY = 0.02, 0.9, 5e-4
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(run, device):
    """Seconds taken by ``run()``, the device's queue drained before and after."""
    synchronize(device)
    start = time.perf_counter()
    run()
    synchronize(device)
    return time.perf_counter() - start


def load_images(kind, count, seed=0):
    """(uint8 images, int64 labels, source) for ``mnist`` (real when available) or ``cifar`` (synthetic)."""
    generator = torch.Generator().manual_seed(seed)
    if kind == "mnist":
        try:
            from lecture_utils.data import load_dataset

            x, y = load_dataset("mnist", train=True, download=False, verbose=False)
            return x[:count], y[:count], "MNIST training images (real)"
        except Exception as err:  # noqa: BLE001 - any failure: fall back to synthetic data, and say so
            source = f"synthetic (MNIST not available: {type(err).__name__})"
        shape = (count, 1, 28, 28)
    else:
        source = "synthetic uniform noise (speed only)"
        shape = (count, 3, 32, 32)
    x = torch.randint(0, 256, shape, generator=generator, dtype=torch.uint8)
    return x, torch.randint(0, 10, (count,), generator=generator), source


# --- 1. fit against a bare loop ----------------------------------------------------------------


def bare_optimizer(model):
    """SGD as fit builds it: Nesterov momentum, weight decay on weights only (not biases or norm scales)."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=LR, momentum=MOMENTUM, nesterov=True)


def bare_epoch(model, optimizer, scaler, batches, device):
    """The textbook loop: forward, loss, zero_grad, backward, step; nothing else.

    In fit's layout (channels_last where fit uses it) and precision (autocast and gradient scaler on CUDA):
    the same arithmetic on every device.
    """
    model.train()
    dtype = precision_for(device)
    layout = torch.channels_last if channels_last(model, device) else torch.preserve_format
    for x, y in batches:
        x, y = x.to(device, non_blocking=True, memory_format=layout), y.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()


def fit_epoch(model, batches, device):
    fit(model, batches, epochs=1, lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY, device=device)


def fit_against_bare(name, make_model, batches, device, repeats):
    """(name, bare img/s, fit img/s, per-round ratios): ABBA-interleaved epochs over the same batches."""
    torch.manual_seed(0)
    bare_model = make_model().to(device)
    fit_model = copy.deepcopy(bare_model)
    if channels_last(bare_model, device):
        bare_model.to(memory_format=torch.channels_last)
    optimizer = bare_optimizer(bare_model)
    scaler = torch.amp.GradScaler(device.type, enabled=precision_for(device) == torch.float16)
    images = sum(len(y) for _, y in batches)
    bare_epoch(bare_model, optimizer, scaler, batches[:2], device)  # warm-up: allocator, kernels, autotuning
    fit_epoch(fit_model, batches[:2], device)
    bare, fitted = [], []
    for r in range(repeats):
        runs = [("bare", lambda: bare_epoch(bare_model, optimizer, scaler, batches, device)),
                ("fit", lambda: fit_epoch(fit_model, batches, device))]
        for label, run in runs if r % 2 == 0 else runs[::-1]:
            (bare if label == "bare" else fitted).append(images / timed(run, device))
    ratios = [f / b for f, b in zip(fitted, bare)]
    return name, statistics.median(bare), statistics.median(fitted), ratios


# --- 2. device-resident elastic expansion against DataLoader + per-image torchvision -------------


class PerImageDataset(torch.utils.data.Dataset):
    """The usual pipeline: a Dataset that applies a torchvision transform to one (C, H, W) uint8 image at a time."""

    def __init__(self, images, labels, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.transform(self.images[i]), self.labels[i]


def torchvision_elastic(mean, std):
    from torchvision.transforms import v2

    # torchvision's alpha is in other units: 2 x Simard's pixels gives the same displacement.
    return v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.ElasticTransform(alpha=2 * ALPHA, sigma=SIGMA),
                       v2.Normalize(mean, std)])


def pipelines(images, labels, batch_size, device, mean, std):
    """(name, batches) for each data path, all over the same images with the same batch size."""
    elastic = functools.partial(elastic_distort, alpha=ALPHA, sigma=SIGMA)
    dataset = PerImageDataset(images, labels, torchvision_elastic(mean, std))

    def loader(workers):
        return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                                           drop_last=True, pin_memory=device.type == "cuda")

    common = dict(batch_size=batch_size, shuffle=True, mean=mean, std=std, device=device, drop_last=True)
    return [
        ("DeviceBatches, no augmentation (the training step alone)", DeviceBatches(images, labels, **common)),
        ("DeviceBatches + `elastic_distort` on the fly (batched, one field per image)",
         DeviceBatches(images, labels, augment=lambda x, g: elastic(x, generator=g), **common)),
        ("DataLoader + torchvision v2 `ElasticTransform` per image, num_workers=0", loader(0)),
        ("DataLoader + torchvision v2 `ElasticTransform` per image, num_workers=2", loader(2)),
    ]


def pipeline_rows(make_model, images, labels, batch_size, device, mean, std, repeats):
    """(name, median img/s, all img/s) per data path; each repeat is one full epoch through fit."""
    torch.manual_seed(0)
    initial = make_model()
    paths = pipelines(images, labels, batch_size, device, mean, std)
    models = {name: copy.deepcopy(initial) for name, _ in paths}
    for name, batches in paths:  # warm-up: one short epoch each (worker start-up is measured below, as it happens)
        fit_epoch(models[name], [next(iter(batches))], device)
    speeds = {name: [] for name, _ in paths}
    for r in range(repeats):
        for name, batches in paths if r % 2 == 0 else paths[::-1]:
            seconds = timed(lambda: fit_epoch(models[name], batches, device), device)
            speeds[name].append(len(batches) * batch_size / seconds)
    return [(name, statistics.median(speeds[name]), speeds[name]) for name, _ in paths]


# --- output --------------------------------------------------------------------------------------


def header(args, device):
    import torchvision

    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"# Training throughput benchmark, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC\n")
    print(f"- machine: {cpu_name()}, {os.cpu_count()} CPUs, device {device}, torch threads {torch.get_num_threads()}")
    print(f"- Python {platform.python_version()}, torch {torch.__version__}, torchvision {torchvision.__version__}")
    print(f"- load average (1, 5, 15 min) at start: {load}")
    print(f"- command: `python3 {' '.join(sys.argv)}`")
    print(f"- batch {args.batch}, after a warm-up; rows interleaved epoch by epoch, order alternating\n", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed epochs per data path (median reported)")
    parser.add_argument("--rounds", type=int, default=15,
                        help="fit-against-bare rounds of one short epoch each (median reported)")
    parser.add_argument("--batch", type=int, default=128, help="images per batch")
    parser.add_argument("--mnist-steps", type=int, default=40, help="batches per LeNet epoch")
    parser.add_argument("--resnet-steps", type=int, default=6, help="batches per ResNet-20 epoch")
    parser.add_argument("--skip-resnet", action="store_true", help="LeNet only")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: lecture_utils.device.get_device())")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 repeats, few steps")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.rounds, args.mnist_steps, args.resnet_steps = 2, 2, 4, 2
    torch.set_num_threads(os.cpu_count())
    device = get_device(args.device)
    header(args, device)

    nets = [("LeNet (`lenet()`), 1x28x28", lenet, "mnist", args.mnist_steps, MNIST_MEAN, MNIST_STD)]
    if not args.skip_resnet:
        nets.append(("CIFAR ResNet-20 (`cifar_resnet(20)`), 3x32x32", functools.partial(cifar_resnet, 20), "cifar",
                     args.resnet_steps, CIFAR_MEAN, CIFAR_STD))

    print("## 1. `fit` against a bare training loop\n")
    print(f"Same model (same initial weights), same pre-made normalized batches, same optimizer; "
          f"fit as a notebook calls it (quiet), no validation. {args.rounds} rounds of one short epoch "
          "each (shorter than section 2's), bare and fit back to back, order alternating: the ratio of each round "
          "is taken within seconds, so slow drifts of the machine's speed cancel.\n")
    print("| model | data | images/epoch | bare loop (img/s, median) | fit (img/s, median) | fit / bare (median of "
          "rounds) | middle half of the rounds' ratios |")
    print("|---|---|--:|--:|--:|--:|--:|")
    data = {}
    for name, make_model, kind, steps, mean, std in nets:
        x, y, source = load_images(kind, steps * args.batch)
        data[kind] = (x, y, source)
        m, s = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
        count = max(1, steps // (4 if kind == "mnist" else 2)) * args.batch  # short epochs: 10 and 3 steps
        batches = [((x[i:i + args.batch].float() / 255 - m) / s, y[i:i + args.batch])
                   for i in range(0, count, args.batch)]
        _, bare, fitted, ratios = fit_against_bare(name, make_model, batches, device, args.rounds)
        low, high = statistics.quantiles(ratios, n=4)[::2] if len(ratios) > 1 else (ratios[0], ratios[0])
        print(f"| {name} | {source} | {count:,} | {bare:,.0f} | {fitted:,.0f} | {statistics.median(ratios):.3f} | "
              f"{low:.3f}-{high:.3f} |", flush=True)

    print("\n## 2. Elastic expansion on the fly: device-resident batches against DataLoader + per-image transforms\n")
    print(f"A full training epoch through `fit` (data + augmentation + step), median of {args.repeats} epochs per "
          f"row. Elastic distortion alpha = {ALPHA:g} px, "
          f"sigma = {SIGMA:g} px (torchvision: alpha = {2 * ALPHA:g}), then normalization; one field per image "
          "in every row. DataLoader workers start afresh each epoch (the default).\n")
    for name, make_model, kind, steps, mean, std in nets:
        x, y, source = data[kind]
        print(f"### {name}: {len(y):,} images per epoch, {source}\n")
        print("| data path | images/s | vs DataLoader, 0 workers | vs DataLoader, 2 workers | epochs (img/s) |")
        print("|---|--:|--:|--:|---|")
        rows = pipeline_rows(make_model, x, y, args.batch, device, mean, std, args.repeats)
        base0, base2 = rows[2][1], rows[3][1]
        for row_name, speed, all_speeds in rows:
            print(f"| {row_name} | {speed:,.0f} | {speed / base0:.2f}x | {speed / base2:.2f}x | "
                  f"{', '.join(f'{v:,.0f}' for v in all_speeds)} |", flush=True)
        print()
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"Load average at the end: {load}.")


if __name__ == "__main__":
    main()
