"""Budget study for notebook 03: at which budget do Zeiler & Fergus' AlexNet removals order as in the paper?

Trains ``cifar_alexnet(remove=...)`` variants on a CIFAR-10 subset (pad-and-crop + flip, SGD with Nesterov
momentum, cosine decay, as notebooks/03_alexnet_ablations.ipynb does) and prints one JSON line per run:
training error (un-augmented training subset, eval mode), test error on ``--n-val`` test images, the
per-epoch training error (augmented, dropout on) and, with ``--monitor 1``, the test error after every epoch;
``--out`` appends the lines to a file; ``--bn 1`` adds batch norm after every conv. Run it on one thread
(the notebooks' budgets are sized for one):

    OMP_NUM_THREADS=1 python3 bench/alexnet_budget.py --n-train 1000 --epochs 30 --variants "none;3,4,6,7" --monitor 1

Variants are ``;``-separated removals (``none`` is the full net).
"""

import argparse
import json
import time

from lecture_utils.augment import flip, pad_crop
from lecture_utils.data import DeviceBatches, load_data, take_subset
from lecture_utils.device import seed_everything
from lecture_utils.models import cifar_alexnet
from lecture_utils.train import evaluate, fit


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", default="none;7;6,7;3,4;3,4,6,7", help="';'-separated removals, 'none' = full net")
    p.add_argument("--n-train", type=int, default=2000)
    p.add_argument("--n-val", type=int, default=2000, help="test images scored (a fixed seeded subset)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seeds", default="0", help="comma-separated seeds (subset, initialization, order)")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--wd", type=float, default=5e-4)
    p.add_argument("--bs", type=int, default=128)
    p.add_argument("--width", type=float, default=0.5)
    p.add_argument("--init", choices=("pytorch", "he"), default="pytorch")
    p.add_argument("--bn", type=int, default=0, help="1: batch norm after every conv")
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--monitor", type=int, default=0, help="1: test error after every epoch")
    p.add_argument("--out", default=None, help="append the JSON lines to this file")
    a = p.parse_args(argv)

    data = load_data("cifar10", strict=True)
    mean = data.train_images[:5000].float().div(255).mean((0, 2, 3))
    std = data.train_images[:5000].float().div(255).std((0, 2, 3))
    vx, vy = take_subset(data.test_images, data.test_labels, a.n_val, 123)
    val = DeviceBatches(vx, vy, 500, mean=mean, std=std)

    def augment(x, g):
        return flip(pad_crop(x, 4, generator=g), generator=g)

    for seed in [int(s) for s in a.seeds.split(",")]:
        tx, ty = take_subset(data.train_images, data.train_labels, a.n_train, seed)
        for v in a.variants.split(";"):
            remove = () if v == "none" else tuple(int(s) for s in v.split(","))
            seed_everything(seed)
            model = cifar_alexnet(remove=remove, width=a.width, init=a.init, batch_norm=bool(a.bn), dropout=a.dropout)
            batches = DeviceBatches(tx, ty, a.bs, shuffle=True, augment=augment, mean=mean, std=std, seed=seed)
            t0 = time.perf_counter()
            h = fit(model, batches, val if a.monitor else None, epochs=a.epochs, lr=a.lr, weight_decay=a.wd,
                    warmup_epochs=min(1.0, a.epochs / 10), verbose=False, progress=False)
            sec = time.perf_counter() - t0
            row = dict(variant=v, seed=seed, n_train=a.n_train, epochs=a.epochs, bs=a.bs, lr=a.lr, width=a.width,
                       init=a.init, bn=a.bn, dropout=a.dropout, dataset=data.dataset,
                       train_err=evaluate(model, DeviceBatches(tx, ty, 500, mean=mean, std=std))["error"],
                       val_err=evaluate(model, val)["error"], seconds=round(sec, 1),
                       images_per_second=round(a.n_train * a.epochs / sec),
                       train_err_per_epoch=[round(r["train_error"], 4) for r in h],
                       val_err_per_epoch=[round(r["val_error"], 4) for r in h] if a.monitor else None)
            print(json.dumps(row), flush=True)
            if a.out:
                with open(a.out, "a") as f:
                    f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
