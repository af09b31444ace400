#!/usr/bin/env python3
"""Training throughput of every model the notebooks train, in both memory layouts, against the CPU's measured peak.

For each model: training images/second at batch 128 through ``lecture_utils.train.fit`` (SGD, Nesterov
momentum, weight decay, the per-step divergence check: what a notebook runs) in the default layout
(NCHW) and in channels_last (NHWC), and the layout ``fit`` picks for it (``train.channels_last``); the
multiply-accumulates (MACs) per image of one forward pass from ``layer_table``; and the MACs per
second the training step achieves as a fraction of the peak of a large float32 matrix multiply
(sgemm) measured in the same run on the same number of threads. A training step costs about 3x the
forward MACs (forward, gradient of the input, gradient of the weights), so
``achieved = images/s x 3 x forward MACs``.

Images are synthetic uint8 noise of the model's input size: the speed of a step does not depend on
the pixel values. The two layouts are timed interleaved, one epoch each per round (the order
alternating), from the same initial weights on the same seeded batches, so that a change in the
machine's load hits both: one warm-up epoch each, then ``--epochs`` rounds of epochs of as many
steps as would fill about ``--epoch-seconds`` at 40% of the peak (at least 3). The fastest epoch's
images/second (fit's own ``images_per_second``) is reported, the one least disturbed by other work
on a shared machine, with the median beside it; and each layout's training loss after its last
epoch, to show that the layouts compute the same thing up to float32 rounding.

``--variants`` adds, for ``--variant-models`` and in fit's layout, what else could move it: a batch
of ``--big-batch`` images, and ``torch.compile`` (its compile time is counted: the first epoch's
time beyond what its steps take once compiled). All in float32: no variant lowers precision.

    python3 bench/bench_models.py --threads 2                 # main table, 2 threads
    python3 bench/bench_models.py --threads 2 --variants      # + batch and torch.compile rows
    python3 bench/bench_models.py --quick                     # smoke run (a few steps, two models)
"""

import argparse
import datetime
import os
import platform
import re
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from common import cpu_name  # noqa: E402
from lecture_utils import models  # noqa: E402
from lecture_utils.data import DeviceBatches  # noqa: E402
from lecture_utils.inspect import layer_table  # noqa: E402
from lecture_utils.train import TrainingDiverged, channels_last, fit  # noqa: E402

BATCH = 128
LR = 0.01


def model_rows():
    """(row name, factory, input shape, notebook) for every model the notebooks train."""
    rows = [("lenet", lambda: models.lenet(), (1, 28, 28), "01, 02")]
    for remove in ((), (7,), (6, 7), (3, 4), (3, 4, 6, 7)):
        name = "cifar_alexnet" + (f" remove={remove}" if remove else "")
        rows.append((name, lambda remove=remove: models.cifar_alexnet(remove=remove), (3, 32, 32),
                     "03" if remove else "03, 04 default"))
    rows.append(("cifar_googlenet", lambda: models.cifar_googlenet(), (3, 32, 32), "04"))
    for residual in (True, False):
        for depth in (20, 32, 44, 56):
            name = f"cifar_resnet({depth}{'' if residual else ', plain'})"
            rows.append((name, lambda d=depth, r=residual: models.cifar_resnet(d, residual=r), (3, 32, 32), "05"))
    rows.extend(extra_rows())
    # the narrower nets the notebooks' `default` profiles train on a laptop CPU
    from lecture_utils.models.small import small_convnet
    from lecture_utils.models.tiny import tiny_convnet

    rows += [("cifar_alexnet(width=0.25)", lambda: models.cifar_alexnet(width=0.25), (3, 32, 32), "03 default"),
             ("cifar_alexnet(width=0.25, remove=(3, 4, 6, 7))",
              lambda: models.cifar_alexnet(width=0.25, remove=(3, 4, 6, 7)), (3, 32, 32), "03 default"),
             ("cifar_resnet(8, width=8)", lambda: models.cifar_resnet(8, width=8), (3, 32, 32), "05 default"),
             ("cifar_resnet(20, width=8)", lambda: models.cifar_resnet(20, width=8), (3, 32, 32), "05 default"),
             ("cifar_resnet(20, plain, width=8)", lambda: models.cifar_resnet(20, residual=False, width=8),
              (3, 32, 32), "05 default"),
             ("small_convnet(batch_norm=True)", lambda: small_convnet(batch_norm=True), (1, 28, 28), "06"),
             ("tiny_convnet((8, 16), 32)", lambda: tiny_convnet((8, 16), 32), (1, 28, 28), "07")]
    return rows


def extra_rows():
    """Small nets the other notebooks (06, 07) added to ``lecture_utils.models``: factories that need no argument.

    Every submodule of the package is searched (a factory need not be re-exported yet).
    """
    import importlib
    import pkgutil

    known = {"lenet", "alexnet", "cifar_alexnet", "googlenet", "cifar_googlenet", "cifar_resnet"}
    found, seen = [], set()
    for info in pkgutil.iter_modules(models.__path__):
        module = importlib.import_module(f"{models.__name__}.{info.name}")
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if name in known or name in seen or isinstance(obj, type) or not callable(obj) or not name[0].islower():
                continue
            try:
                model = obj()
            except TypeError:
                continue
            if not isinstance(model, torch.nn.Module):
                continue
            shape = _guess_input(model)
            if shape is not None:
                seen.add(name)
                found.append((name, obj, shape, f"models/{info.name}.py"))
    return found


def _guess_input(model):
    for shape in ((3, 32, 32), (1, 28, 28)):
        try:
            with torch.no_grad():
                model.eval()(torch.zeros((2,) + shape))
            return shape
        except RuntimeError:
            continue
    return None


def matmul_peak(n=2048, repeats=30):
    """MAC/s of an n x n float32 matrix multiply (the fastest of ``repeats``: a peak), on the current threads."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)
    for _ in range(3):
        torch.mm(a, b, out=out)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        times.append(time.perf_counter() - start)
    return n ** 3 / min(times)


def batches_for(shape, steps, batch=BATCH, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (steps * batch,) + shape, generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (steps * batch,), generator=g)
    return DeviceBatches(x, y, batch, shuffle=True, seed=seed, mean=0.5, std=0.25, device="cpu", drop_last=True)


def build(factory, layout=None, compiled=False):
    """The model, seeded; ``layout`` True/False forces channels_last on/off (None: fit's own choice)."""
    torch.manual_seed(0)
    model = factory()
    if layout is not None:
        model.channels_last = layout
    return torch.compile(model) if compiled else model


def time_fit(runs, shape, steps, epochs, batch=BATCH):
    """Interleaved timing of ``runs`` ({label: model}): per label (fastest img/s, median img/s, last train
    loss, seconds of the warm-up epoch beyond a timed one, for compile time)."""
    batches = {label: batches_for(shape, steps, batch) for label in runs}
    warm = {}
    for label, model in runs.items():
        start = time.perf_counter()
        fit(model, batches[label], epochs=1, lr=LR, schedule="constant", device="cpu")
        warm[label] = time.perf_counter() - start
    rates, losses, labels = {label: [] for label in runs}, {}, list(runs)
    for r in range(epochs):
        for label in labels if r % 2 == 0 else labels[::-1]:
            row = fit(runs[label], batches[label], epochs=1, lr=LR, schedule="constant", device="cpu")[0]
            rates[label].append(row["images_per_second"])
            losses[label] = row["train_loss"]
    result = {}
    for label in runs:
        best = max(rates[label])
        result[label] = (best, statistics.median(rates[label]), losses[label],
                         max(0.0, warm[label] - steps * batch / best))
    return result


def steps_for(macs, peak, epoch_seconds):
    """Steps per epoch so an epoch takes about ``epoch_seconds`` if training runs at 40% of the matmul peak.

    Computed, not probed, so that a noisy probe step cannot make one row's epochs much shorter than another's.
    """
    expected_rate = 0.4 * peak / (3 * macs)
    return max(3, min(60, round(epoch_seconds * expected_rate / BATCH)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "0") or 0) or 1)
    parser.add_argument("--epochs", type=int, default=5, help="timed rounds per row (fastest and median)")
    parser.add_argument("--epoch-seconds", type=float, default=2.5, help="about how long one timed epoch runs")
    parser.add_argument("--variants", action="store_true", help="also a bigger batch and torch.compile")
    parser.add_argument("--variant-models", default="cifar_googlenet,cifar_resnet(20)",
                        help="comma-separated row names for --variants")
    parser.add_argument("--big-batch", type=int, default=256, help="the batch size of the --variants rows")
    parser.add_argument("--only", default="", help="comma-separated row names: measure just these")
    parser.add_argument("--skip-main", action="store_true", help="only the --variants table")
    parser.add_argument("--quick", action="store_true", help="smoke run: two models, 3 steps per epoch")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")
    rows = model_rows()
    if args.only:
        wanted = set(_names(args.only))
        rows = [r for r in rows if r[0] in wanted]
    if args.quick:
        rows = [r for r in rows if r[0] in ("lenet", "cifar_resnet(20)")]
        args.epochs, args.epoch_seconds = 1, 0.0
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"# bench_models.py, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"- {cpu_name()}, {os.cpu_count()} CPUs, torch.get_num_threads() = {torch.get_num_threads()}")
    print(f"- Python {platform.python_version()}, torch {torch.__version__}; load average at start: {load}")
    print(f"- command: {' '.join(sys.argv)}")
    peak = matmul_peak()
    print(f"- peak: 2048x2048 float32 matmul, fastest of 30, {peak / 1e9:.1f} GMAC/s ({2 * peak / 1e9:.1f} GFLOP/s) "
          f"on {args.threads} thread(s) (measured again at the end)")
    print(f"- batch {BATCH}, synthetic uint8 images, fit (SGD, lr {LR}), fastest (and median) of {args.epochs} "
          f"timed epochs of about {args.epoch_seconds:g} s per layout, the layouts interleaved, after one warm-up "
          "epoch each")
    print()
    steps = {}
    if not args.skip_main:
        print(f"| model | notebook | MACs/image (forward) | steps/epoch | fit's layout | "
              f"NCHW img/s (median) | NCHW % of peak | channels_last img/s (median) | channels_last % of peak | "
              f"channels_last / NCHW | train loss NCHW | train loss channels_last |")
        print("|---|---|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|")
        for name, factory, shape, notebook in rows:
            macs = layer_table(factory(), shape).total_macs
            steps[name] = 3 if args.quick else steps_for(macs, peak, args.epoch_seconds)
            chosen = "channels_last" if channels_last(factory(), "cpu") else "NCHW"
            try:
                result = time_fit({"NCHW": build(factory, False), "channels_last": build(factory, True)}, shape,
                                  steps[name], args.epochs)
            except TrainingDiverged as err:
                print(f"| {name} | {notebook} | diverged: {err} |")
                continue
            (a, a_med, a_loss, _), (b, b_med, b_loss, _) = result["NCHW"], result["channels_last"]
            print(f"| {name} | {notebook} | {macs / 1e6:,.1f}M | {steps[name]} | {chosen} | {a:,.0f} ({a_med:,.0f}) | "
                  f"{3 * macs * a / peak:.0%} | {b:,.0f} ({b_med:,.0f}) | {3 * macs * b / peak:.0%} | "
                  f"{b / a:.2f}x | {a_loss:.6f} | {b_loss:.6f} |", flush=True)
        print()
    if args.variants:
        variant_rows(rows, steps, args, peak)
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"Peak again at the end: {matmul_peak() / 1e9:.1f} GMAC/s (the fractions above are of the first, "
          f"{peak / 1e9:.1f}). Load average at the end: {load}.")


def _names(text):
    """Comma-separated row names; a comma inside parentheses ("cifar_resnet(20, plain)") belongs to the name."""
    return [name.strip() for name in re.split(r",(?![^(]*\))", text) if name.strip()]


def variant_rows(rows, steps, args, peak):
    """In fit's layout: batch 128 against ``--big-batch``, each with and without torch.compile, interleaved."""
    names = set(_names(args.variant_models))
    print(f"Variants, {args.threads} thread(s), in fit's layout: train img/s and fraction of the peak; torch.compile's "
          "compile time (the warm-up epoch's time beyond a compiled epoch's) beside it; the final training loss "
          "(float32 throughout)")
    print()
    print("| model | variant | train img/s (median) | % of peak | vs fit at batch 128 | final train loss | compile s |")
    print("|---|---|--:|--:|--:|--:|--:|")
    for name, factory, shape, _ in rows:
        if name not in names:
            continue
        macs = layer_table(factory(), shape).total_macs
        n = steps.get(name) or (3 if args.quick else steps_for(macs, peak, args.epoch_seconds))
        base = None
        for batch in (BATCH, args.big_batch):
            steps_here = max(3, n * BATCH // batch)
            try:
                result = time_fit({"fit": build(factory), "fit + torch.compile": build(factory, compiled=True)},
                                  shape, steps_here, args.epochs, batch)
            except Exception as err:  # noqa: BLE001 - a variant that fails is a result too
                print(f"| {name} | batch {batch} | failed: {type(err).__name__}: {str(err).splitlines()[0][:120]} "
                      "| | | | |")
                continue
            for label, (rate, median, loss, extra) in result.items():
                base = rate if base is None else base
                comp = f"{extra:.0f}" if "compile" in label else ""
                print(f"| {name} | {label}, batch {batch} | {rate:,.0f} ({median:,.0f}) | "
                      f"{3 * macs * rate / peak:.0%} | {rate / base:.2f}x | {loss:.6f} | {comp} |", flush=True)
    print()


if __name__ == "__main__":
    main()
