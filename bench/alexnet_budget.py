"""Budget study for notebook 03: at which training-set size and budget does the full AlexNet beat -3,4,6,7?

Trains ``cifar_alexnet(remove=...)`` variants on nested CIFAR-10 subsets (one shuffle, seeded by
``--subset-seed``; the first n images for each size n of ``--schedule``), with pad-and-crop + flip, SGD with
Nesterov momentum and cosine decay, as notebooks/03_alexnet_ablations.ipynb does (``lecture_utils.ablations``),
and prints one JSON line per run: the training error (un-augmented training subset, eval mode), the test error
on ``--n-test`` test images (a fixed seeded subset), the seconds and images/second of the run, the per-epoch
training error; then the growth table (test error per seed and the paired verdict per size). ``--out``
appends the JSON lines to a file. Run it on one thread (the notebooks' budgets are sized for one):

    OMP_NUM_THREADS=1 python3 bench/alexnet_budget.py --schedule 500:40,2000:20,8000:8 --seeds 0,1 --bn 1

Variants are ``;``-separated names of ``lecture_utils.ablations.VARIANTS`` (full, -7, -6,7, -3,4, -3,4,6,7).
"""

import argparse
import json

from lecture_utils.ablations import VARIANTS, growth_study, growth_table
from lecture_utils.augment import flip, pad_crop
from lecture_utils.data import DeviceBatches, as_rgb32, load_data, take_subset
from lecture_utils.models import cifar_alexnet


def augment(x, g):
    return flip(pad_crop(x, 4, generator=g), generator=g)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", default="full;-3,4,6,7", help="';'-separated variant names")
    p.add_argument("--schedule", default="1000:30", help="training-set sizes and their epochs, e.g. 500:40,4000:10")
    p.add_argument("--n-test", type=int, default=2000, help="test images scored (a fixed seeded subset)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds (initialization, batch order, augmentation)")
    p.add_argument("--subset-seed", type=int, default=0, help="seed of the shuffle the nested training sets come from")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--wd", type=float, default=5e-4)
    p.add_argument("--bs", type=int, default=64)
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--conv1-kernel", type=int, default=3)
    p.add_argument("--init", choices=("pytorch", "he"), default="pytorch")
    p.add_argument("--bn", type=int, default=1, help="1: batch norm after every conv")
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--out", default=None, help="append the JSON lines to this file")
    a = p.parse_args(argv)

    variants = a.variants.split(";")
    schedule = {int(n): int(e) for n, e in (item.split(":") for item in a.schedule.split(","))}
    seeds = [int(s) for s in a.seeds.split(",")]
    data = load_data("cifar10", strict=True)
    x, y = take_subset(as_rgb32(data.train_images), data.train_labels, max(schedule), a.subset_seed)
    mean, std = x.float().div(255).mean((0, 2, 3)), x.float().div(255).std((0, 2, 3))
    tx, ty = take_subset(as_rgb32(data.test_images), data.test_labels, a.n_test, 123)
    test = DeviceBatches(tx, ty, 1000, mean=mean, std=std)

    def make(name):
        return cifar_alexnet(remove=VARIANTS[name], width=a.width, hidden=a.hidden, init=a.init,
                             batch_norm=bool(a.bn), dropout=a.dropout, conv1_kernel=a.conv1_kernel)

    study = growth_study(make, variants, x, y, test, schedule=schedule, seeds=seeds, batch_size=a.bs, lr=a.lr,
                         weight_decay=a.wd, augment=augment, mean=mean, std=std)
    settings = dict(bs=a.bs, lr=a.lr, wd=a.wd, width=a.width, hidden=a.hidden, conv1_kernel=a.conv1_kernel,
                    init=a.init, bn=a.bn, dropout=a.dropout, subset_seed=a.subset_seed, n_test=a.n_test,
                    dataset=data.dataset)
    for n, runs in study.items():
        for name in variants:
            for i, seed in enumerate(runs.seeds):
                h = runs.histories[name][i]
                seconds = sum(r["seconds"] for r in h)
                row = dict(variant=name, seed=seed, n_train=n, epochs=runs.epochs, **settings,
                           train_err=round(runs.train_error[name][i], 2), test_err=round(runs.test_error[name][i], 2),
                           seconds=round(seconds, 1), images_per_second=round(n * runs.epochs / seconds),
                           train_err_per_epoch=[round(r["train_error"], 4) for r in h])
                print(json.dumps(row), flush=True)
                if a.out:
                    with open(a.out, "a") as f:
                        f.write(json.dumps(row) + "\n")
    if len(variants) == 2:
        print(growth_table(study, *variants))


if __name__ == "__main__":
    main()
