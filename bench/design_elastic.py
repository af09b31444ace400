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


def run(data, test, name, n_train, epochs, seed, subset_seed=None, n_monitor=1000, lr=0.05):
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
    monitor = DeviceBatches(test[0][:n_monitor], test[1][:n_monitor], 1000)
    t, cpu = time.perf_counter(), time.process_time()
    fit(model, batches, monitor, epochs=epochs, lr=lr, warmup_epochs=min(1.0, epochs / 10), verbose=False,
        progress=False)
    error = evaluate(model, DeviceBatches(*test, 1000))["error"]
    return 100 * error, time.perf_counter() - t, time.process_time() - cpu


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-train", type=int, required=True)
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--expansions", default="affine,elastic")
    p.add_argument("--subset", choices=("fixed", "per-seed"), default="fixed",
                   help="fixed: seed 0's training subset for every seed (the notebook's design); per-seed: its own")
    p.add_argument("--n-monitor", type=int, default=1000, help="test images watched after every epoch")
    p.add_argument("--out", default=None, help="append the design's JSON line to this file")
    args = p.parse_args()
    names = args.expansions.split(",")
    data = load_data("mnist", strict=True)
    test = (data.test_images, data.test_labels)
    errors, seconds, cpu = {n: [] for n in names}, {n: [] for n in names}, {n: [] for n in names}
    for seed in range(args.seeds):
        for name in names:
            e, s, c = run(data, test, name, args.n_train, args.epochs, seed,
                          subset_seed=0 if args.subset == "fixed" else None, n_monitor=args.n_monitor)
            errors[name].append(e)
            seconds[name].append(s)
            cpu[name].append(c)
            print(f"N={args.n_train} E={args.epochs} seed {seed} {name:<8} test error {e:.2f}%  {s:.1f} s wall, "
                  f"{c:.1f} s CPU", flush=True)
    print(summarize(errors, unit="%"))
    pairs = [(a, b) for a, b in (("none", "affine"), ("affine", "elastic")) if a in names and b in names]
    table = compare(errors, pairs=pairs, lower_is_better=True, unit="%")
    print(table)
    line = dict(n_train=args.n_train, epochs=args.epochs, seeds=args.seeds, subset=args.subset,
                n_monitor=args.n_monitor, threads=torch.get_num_threads(),
                errors=errors, seconds=seconds, cpu_seconds=cpu,
                date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                comparisons={c.title: dict(difference=c.difference, low=c.low, high=c.high,
                                           sd=float((c.a - c.b).std(ddof=1)), verdict=c.verdict) for c in table})
    print(json.dumps(line))
    if args.out:
        with open(args.out, "a") as f:
            f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
