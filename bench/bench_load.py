#!/usr/bin/env python3
"""How long ``load_data("cifar10")`` (train + test) takes: the first load (decode + cache) and later ones.

Each load runs in a fresh Python process that imports torch before the clock starts (a notebook has
it already), as a notebook start does. With ``--first``, the first load goes to a temporary data root
whose ``cifar10`` folder links to the real mirror (or whose torchvision files link to the real ones),
so it decodes and writes a new cache there; the real cache is left alone.

    python3 bench/bench_load.py                 # 3 loads from the data root (cache hits once it exists)
    python3 bench/bench_load.py --first         # a first load (decode + write) and 3 loads after it
"""

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from lecture_utils.data import data_root  # noqa: E402

CHILD = """
import sys, time
import torch  # before the clock: a notebook has imported it already
from lecture_utils.data import load_data
start = time.perf_counter()
d = load_data("cifar10", root=sys.argv[1], verbose=False)
print(f"{time.perf_counter() - start:.2f} s: {len(d.train_labels):,} + {len(d.test_labels):,} images, "
      f"dataset {d.dataset!r}")
"""


def load_once(root):
    out = subprocess.run([sys.executable, "-c", CHILD, str(root)], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1])
    lines = [line for line in out.stdout.splitlines() if " s: " in line]
    return lines[-1] if lines else f"failed: {out.stderr.strip().splitlines()[-1:]}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=None, help="data root (default: the usual one)")
    parser.add_argument("--first", action="store_true", help="measure a first load into a temporary root")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    root = data_root(args.root)
    print(f"load_data('cifar10'), train + test; load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    with tempfile.TemporaryDirectory() as tmp:
        if args.first:
            for name in ("cifar10", "cifar-10-batches-py", "cifar-10-python.tar.gz"):
                if (root / name).exists():
                    os.symlink((root / name).resolve(), Path(tmp) / name)
            root = Path(tmp)
            print(f"first load (decode + write the cache): {load_once(root)}")
        for i in range(args.repeats):
            print(f"load {i + 2 if args.first else i + 1}: {load_once(root)}")


if __name__ == "__main__":
    main()
