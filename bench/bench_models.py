#!/usr/bin/env python3
"""Training throughput of every model the notebooks train, against the CPU's measured peak.

For each model: training images/second at batch 128 through ``lecture_utils.train.fit``
(SGD, Nesterov momentum, weight decay, the per-step divergence check: what a notebook
runs), the multiply-accumulates (MACs) per image of one forward pass from
``layer_table``, and the MACs per second the training step achieves as a fraction of
the peak of a large float32 matrix multiply on the same number of threads.
A training step costs about 3x the forward MACs (forward, gradient of the input,
gradient of the weights), so ``achieved = images/s x 3 x forward MACs``.

Images are synthetic uint8 noise of the model's input size: the speed of a step does
not depend on the pixel values. Each row: one warm-up epoch, then ``--epochs`` timed
epochs of as many steps as would fill about ``--epoch-seconds`` at 40% of the peak (at least
3); the fastest epoch's images/second (fit's own ``images_per_second``) is reported, the one
least disturbed by other work on a shared machine, with the median beside it.

``--variants`` adds, side by side in the same run, what could move it on a CPU:
``channels_last`` (model and batches), ``torch.backends.mkldnn`` off, and
``torch.compile`` (its compile time is reported separately). All in float32: no
variant lowers precision; the table shows each variant's training loss after its
steps beside the baseline's (same seed, same batches).

    python3 bench/bench_models.py --threads 1                 # main table, 1 thread
    python3 bench/bench_models.py --threads 2 --variants      # + channels_last / mkldnn / compile rows
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
from lecture_utils.train import TrainingDiverged, fit  # noqa: E402

BATCH = 128
LR = 0.01


def model_rows():
    """(row name, factory, input shape, notebook) for every model the notebooks train."""
    rows = [("lenet", lambda: models.lenet(), (1, 28, 28), "01, 02")]
    for remove in ((), (7,), (6, 7), (3, 4), (3, 4, 6, 7)):
        name = "cifar_alexnet" + (f" remove={remove}" if remove else "")
        rows.append((name, lambda remove=remove: models.cifar_alexnet(remove=remove), (3, 32, 32), "03"))
    rows.append(("cifar_googlenet", lambda: models.cifar_googlenet(), (3, 32, 32), "04"))
    for residual in (True, False):
        for depth in (20, 32, 44, 56):
            name = f"cifar_resnet({depth}{'' if residual else ', plain'})"
            rows.append((name, lambda d=depth, r=residual: models.cifar_resnet(d, residual=r), (3, 32, 32), "05"))
    rows.extend(extra_rows())
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


def matmul_peak(n=2048, repeats=10):
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


def batches_for(shape, steps, seed=0, channels_last=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (steps * BATCH,) + shape, generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (steps * BATCH,), generator=g)
    def to_channels_last(images, generator):
        return images.contiguous(memory_format=torch.channels_last)

    augment = to_channels_last if channels_last else None
    return DeviceBatches(x, y, BATCH, shuffle=True, seed=seed, augment=augment, mean=0.5, std=0.25, device="cpu")


def time_fit(factory, shape, steps, epochs, variant="baseline"):
    """Images/s of the fastest and of the median of ``epochs`` timed epochs of ``steps`` steps (after a warm-up
    epoch), the final training loss, and (for ``compile``) the compile seconds."""
    torch.manual_seed(0)
    model = factory()
    channels_last = variant == "channels_last"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if variant == "compile":
        model = torch.compile(model)
    batches = batches_for(shape, steps, channels_last=channels_last)
    flags = torch.backends.mkldnn.flags(enabled=variant != "mkldnn_off")
    with flags:
        warm = fit(model, batches, epochs=1, lr=LR, schedule="constant", progress=False, verbose=False, device="cpu")
        history = fit(model, batches, epochs=epochs, lr=LR, schedule="constant", progress=False, verbose=False,
                      device="cpu")
    rates = [row["images_per_second"] for row in history]
    rate, median = max(rates), statistics.median(rates)
    compile_seconds = None
    if variant == "compile":  # the warm-up epoch's time beyond what its steps take once compiled
        compile_seconds = max(0.0, warm[0]["seconds"] - steps * BATCH / rate)
    return rate, median, history[-1]["train_loss"], compile_seconds


def steps_for(macs, peak, epoch_seconds):
    """Steps per epoch so an epoch takes about ``epoch_seconds`` if training runs at 40% of the matmul peak.

    Computed, not probed, so that a noisy probe step cannot make one row's epochs much shorter than another's.
    """
    expected_rate = 0.4 * peak / (3 * macs)
    return max(3, min(60, round(epoch_seconds * expected_rate / BATCH)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "0") or 0) or 1)
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs per row (fastest and median)")
    parser.add_argument("--epoch-seconds", type=float, default=2.5, help="about how long one timed epoch runs")
    parser.add_argument("--variants", action="store_true", help="also channels_last, mkldnn off, torch.compile")
    parser.add_argument("--variant-models", default="lenet,cifar_alexnet,cifar_googlenet,cifar_resnet(20),"
                        "cifar_resnet(56)", help="comma-separated row names for --variants")
    parser.add_argument("--compile-models", default="lenet,cifar_resnet(20)",
                        help="comma-separated row names that also get a torch.compile row")
    parser.add_argument("--only", default="", help="comma-separated row names: measure just these")
    parser.add_argument("--skip-main", action="store_true", help="only the --variants table")
    parser.add_argument("--quick", action="store_true", help="smoke run: two models, 3 steps per epoch")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")  # mkldnn.flags() on a CPU build
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
    print(f"- peak: 2048x2048 float32 matmul, fastest of 10, {peak / 1e9:.1f} GMAC/s ({2 * peak / 1e9:.1f} GFLOP/s) "
          f"on {args.threads} thread(s) (measured again at the end)")
    print(f"- batch {BATCH}, synthetic uint8 images, fit (SGD, lr {LR}), fastest (and median) of {args.epochs} "
          f"timed epochs of about {args.epoch_seconds:g} s (steps/epoch from the peak and the MACs), "
          "after one warm-up epoch")
    print(f"- known models in lecture_utils.models: {', '.join(getattr(models, '__all__', []))}")
    print()
    steps = {}
    rates = {}
    if not args.skip_main:
        print(f"| model | notebook | input | MACs/image (forward) | steps/epoch | "
              f"train img/s, {args.threads} thread(s) (median) | achieved GMAC/s (3x fwd) | fraction of peak |")
        print("|---|---|---|--:|--:|--:|--:|--:|")
        for name, factory, shape, notebook in rows:
            macs = layer_table(factory(), shape).total_macs
            steps[name] = 3 if args.quick else steps_for(macs, peak, args.epoch_seconds)
            try:
                rate, median, _, _ = time_fit(factory, shape, steps[name], args.epochs)
            except TrainingDiverged as err:
                print(f"| {name} | {notebook} | diverged: {err} |")
                continue
            rates[name] = rate
            achieved = rate * 3 * macs
            print(f"| {name} | {notebook} | {'x'.join(map(str, shape))} | {macs / 1e6:,.1f}M | {steps[name]} | "
                  f"{rate:,.0f} ({median:,.0f}) | {achieved / 1e9:.1f} | {achieved / peak:.0%} |", flush=True)
        print()
    if args.variants:
        variant_rows(rows, steps, args, peak)
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"Peak again at the end: {matmul_peak() / 1e9:.1f} GMAC/s. Load average at the end: {load}.")


def _names(text):
    """Comma-separated row names; a comma inside parentheses ("cifar_resnet(20, plain)") belongs to the name."""
    return [name.strip() for name in re.split(r",(?![^(]*\))", text) if name.strip()]


def variant_rows(rows, steps, args, peak):
    """Baseline, channels_last, mkldnn off (and torch.compile) side by side, interleaved per model."""
    names = set(_names(args.variant_models))
    compiled = set(_names(args.compile_models))
    print(f"Variants, {args.threads} thread(s): train img/s (change against the baseline of the same model, "
          "measured just before it); final training loss after the same steps (float32 throughout)")
    print()
    print("| model | variant | train img/s (median) | vs baseline | final train loss | compile s |")
    print("|---|---|--:|--:|--:|--:|")
    for name, factory, shape, _ in rows:
        if name not in names:
            continue
        macs = layer_table(factory(), shape).total_macs
        n = steps.get(name) or (3 if args.quick else steps_for(macs, peak, args.epoch_seconds))
        variants = ["baseline", "channels_last", "mkldnn_off"] + (["compile"] if name in compiled else [])
        base = None
        for variant in variants:
            try:
                rate, median, loss, compile_seconds = time_fit(factory, shape, n, args.epochs, variant)
            except Exception as err:  # noqa: BLE001 - a variant that fails is a result too
                print(f"| {name} | {variant} | failed: {type(err).__name__}: {str(err).splitlines()[0][:120]} | | | |")
                continue
            base = rate if variant == "baseline" else base
            change = f"{rate / base - 1:+.0%}" if base and variant != "baseline" else ""
            comp = f"{compile_seconds:.0f}" if compile_seconds is not None else ""
            print(f"| {name} | {variant} | {rate:,.0f} ({median:,.0f}) | {change} | {loss:.6f} | {comp} |", flush=True)
    print()


if __name__ == "__main__":
    main()
