"""Design study for notebook 07b, section 1: which "tiny" net underfits without failing to train?

The section contrasts a conv net that memorizes a few hundred images with a net too small for all the training
images. A net with 2 and 2 channels and 4 hidden units sometimes starts with every hidden unit dead and stays at
chance: a failed run, not a small net, and one such seed makes a 5-seed interval useless. This trains candidate
sizes exactly as the notebook's section 1 does (4,000 MNIST training images, 30 epochs, batches of 32, SGD with
Nesterov momentum and cosine decay, no weight decay, validation on 2,000 test images) and prints each seed's training and
validation error (%), so that a candidate's failures show. Run it on one thread:

    OMP_NUM_THREADS=1 python bench/design_tiny_net.py --widths 3 3 --hidden 4 --seeds 6 --first-seed 100
"""

import argparse
import time

import torch

from lecture_utils.data import DeviceBatches, load_data, take_subset
from lecture_utils.device import seed_everything
from lecture_utils.models.tiny import tiny_convnet
from lecture_utils.train import fit


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs=2, default=(3, 3), help="channels of the two conv layers")
    parser.add_argument("--hidden", type=int, default=4, help="hidden units of the fully connected layer")
    parser.add_argument("--activation", default="relu", help="relu, tanh or silu (tiny_convnet's activations)")
    parser.add_argument("--lr", type=float, default=0.05, help="peak learning rate (the notebook's LR)")
    parser.add_argument("--seeds", type=int, default=6, help="how many seeds")
    parser.add_argument("--first-seed", type=int, default=0, help="the first seed; also picks the images (SEED)")
    parser.add_argument("--weight-decay", type=float, default=0.0, help="the notebook's section 1 uses none")
    parser.add_argument("--n-train", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args(argv)
    data = load_data("mnist")
    x, y = take_subset(data.train_images, data.train_labels, args.n_train, args.first_seed)
    val = DeviceBatches(*take_subset(data.test_images, data.test_labels, 2000, args.first_seed), 1000)
    print(f"tiny_convnet({tuple(args.widths)}, {args.hidden}, activation={args.activation!r}), lr {args.lr}, weight decay {args.weight_decay:g}: "
          f"{sum(p.numel() for p in tiny_convnet(tuple(args.widths), args.hidden, activation=args.activation).parameters()):,} parameters")
    print(f"{'seed':>5} {'train error %':>14} {'val. error %':>13} {'CPU s':>7}")
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        start = time.process_time()
        seed_everything(seed)
        torch.manual_seed(seed)
        net = tiny_convnet(tuple(args.widths), args.hidden, activation=args.activation)
        batches = DeviceBatches(x, y, 32, shuffle=True, seed=seed)
        last = fit(net, batches, val, epochs=args.epochs, lr=args.lr, weight_decay=args.weight_decay)[-1]
        print(f"{seed:>5} {100 * last['train_error']:>14.1f} {100 * last['val_error']:>13.1f} "
              f"{time.process_time() - start:>7.1f}", flush=True)


if __name__ == "__main__":
    main()
