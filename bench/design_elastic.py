"""Design study for notebook 02: which budget settles elastic vs affine expansion most decisively?

Each design is (training digits N, epochs E); every seed s trains the notebook's
LeNet once per expansion with the same subset, initialization and data order
(paired seeds), exactly as notebooks/02_elastic_distortions.ipynb does, and
tests on the 10,000 MNIST test digits. Prints per-run errors, wall and CPU seconds (on a shared machine the CPU
seconds of the 1-thread run are the better measure of its cost), the
paired comparison of each pair, and a JSON line per design (append it with
``--out``). Run it on one thread (the notebooks' budgets are sized for one):

    OMP_NUM_THREADS=1 python3 bench/design_elastic.py --n-train 1000 --epochs 40 --seeds 3 --subset fixed
"""

import argparse
import json
import time

import torch

from lecture_utils.augment import elastic_distort, random_affine
from lecture_utils.data import DeviceBatches, load_data, take_subset
from lecture_utils.device import seed_everything
from lecture_utils.models import lenet
from lecture_utils.stats import compare, summarize
from lecture_utils.train import evaluate, fit

EXPANSIONS = {
    "none": None,
    "affine": lambda x, g: random_affine(x, degrees=15.0, translate=2.0, scale=(0.85, 1.15), shear=15.0, generator=g),
    "elastic": lambda x, g: elastic_distort(x, 34.0, 4.0, generator=g),
}


def unused_training_digits(data, n_train, subset_seed):
    """The training digits outside ``take_subset``'s subset of ``n_train`` (seed ``subset_seed``): held out too."""
    rest = torch.randperm(len(data.train_labels), generator=torch.Generator().manual_seed(subset_seed))[n_train:]
    return data.train_images[rest], data.train_labels[rest]


def run(data, test, name, n_train, epochs, seed, subset_seed=None, n_monitor=1000, lr=0.05, held_out=None):
    """One paired run: initialization, data order (and subset) from ``seed``; the distortions from their own stream.

    ``subset_seed``: one training subset for every seed (as in the notebook); None: each seed its own subset.
    """
    x, y = take_subset(data.train_images, data.train_labels, n_train, seed if subset_seed is None else subset_seed)
    expand = EXPANSIONS[name]
    if expand is not None:
        aug = torch.Generator().manual_seed(10_000 + seed)  # separate from the shuffle: same order for every expansion
        expand = (lambda f, g: lambda x_, _: f(x_, g))(expand, aug)
    seed_everything(seed)
    model = lenet()
    batches = DeviceBatches(x, y, 128, shuffle=True, augment=expand, seed=seed)
    monitor = DeviceBatches(test[0][:n_monitor], test[1][:n_monitor], 1000) if n_monitor else None
    t, cpu = time.perf_counter(), time.process_time()
    fit(model, batches, monitor, epochs=epochs, lr=lr, warmup_epochs=min(1.0, epochs / 10))
    error = evaluate(model, DeviceBatches(*test, 1000))["error"]
    extra = None if held_out is None else 100 * evaluate(model, DeviceBatches(*held_out, 2000))["error"]
    return 100 * error, time.perf_counter() - t, time.process_time() - cpu, extra


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-train", type=int, required=True)
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--expansions", default="affine,elastic")
    p.add_argument("--subset", choices=("fixed", "per-seed"), default="fixed",
                   help="fixed: seed 0's training subset for every seed (the notebook's design); per-seed: its own")
    p.add_argument("--n-monitor", type=int, default=0, help="test images watched after every epoch (0: none)")
    p.add_argument("--first-seed", type=int, default=0, help="seeds first-seed, first-seed + 1, ...")
    p.add_argument("--held-out", action="store_true",
                   help="also evaluate on the training digits outside the (fixed) subset")
    p.add_argument("--out", default=None, help="append the design's JSON line to this file")
    args = p.parse_args()
    names = args.expansions.split(",")
    data = load_data("mnist", strict=True)
    test = (data.test_images, data.test_labels)
    errors, seconds, cpu = {n: [] for n in names}, {n: [] for n in names}, {n: [] for n in names}
    held = {n: [] for n in names}
    held_out = unused_training_digits(data, args.n_train, 0) if args.held_out else None
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for name in names:
            e, s, c, h = run(data, test, name, args.n_train, args.epochs, seed,
                             subset_seed=0 if args.subset == "fixed" else None, n_monitor=args.n_monitor,
                             held_out=held_out)
            if h is not None:
                held[name].append(h)
            errors[name].append(e)
            seconds[name].append(s)
            cpu[name].append(c)
            print(f"N={args.n_train} E={args.epochs} seed {seed} {name:<8} test error {e:.2f}%  {s:.1f} s wall, "
                  f"{c:.1f} s CPU" + (f", held-out error {h:.3f}%" if h is not None else ""), flush=True)
    print(summarize(errors, unit="%"))
    pairs = [(a, b) for a, b in (("none", "affine"), ("affine", "elastic")) if a in names and b in names]
    table = compare(errors, pairs=pairs, lower_is_better=True, unit="%")
    print(table)
    if args.held_out:
        print(f"on the {len(held_out[1]):,} training digits outside the subset:")
        print(compare(held, pairs=pairs, lower_is_better=True, unit="%"))
    line = dict(n_train=args.n_train, epochs=args.epochs, seeds=args.seeds, first_seed=args.first_seed, subset=args.subset,
                n_monitor=args.n_monitor, threads=torch.get_num_threads(),
                errors=errors, seconds=seconds, cpu_seconds=cpu, held_out_errors=held,
                date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                comparisons={c.title: dict(difference=c.difference, low=c.low, high=c.high,
                                           sd=float((c.a - c.b).std(ddof=1)), verdict=c.verdict) for c in table})
    print(json.dumps(line))
    if args.out:
        with open(args.out, "a") as f:
            f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
