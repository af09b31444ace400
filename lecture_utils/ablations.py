"""Zeiler & Fergus' layer removals, trained: variants over seeds, on growing training sets, and their tables.

Notebook 03 asks when removing AlexNet's layers 3, 4, 6 and 7 costs what the paper says it costs. The
machinery is here; the notebook shows the model (``lecture_utils.models.cifar_alexnet``) and the results::

    runs = train_variants(make, ["full", "-3,4,6,7"], x, y, test_batches, seeds=[0, 1, 2], epochs=30,
                          batch_size=64, lr=0.05, augment=augment, mean=mean, std=std)
    study = growth_study(make, ["full", "-3,4,6,7"], x, y, test_batches, schedule={500: 40, 4000: 10}, ...)
    print(growth_table(study, "full", "-3,4,6,7"))

Every variant of a seed starts from ``seed_everything(seed)`` and sees its batches in the same order with the
same augmentation (``train.train_one_seed``), so results pair up seed by seed (``stats.paired_comparison``).
Errors are in percent: the training error on the un-augmented training images in eval mode (what the net has
fitted), the test error on ``test_batches``.
"""

import math
import statistics
import time
from dataclasses import dataclass, field

import matplotlib.pyplot as plt

from lecture_utils.data import DeviceBatches
from lecture_utils.stats import compare, paired_comparison
from lecture_utils.train import evaluate, train_one_seed

__all__ = ["VARIANTS", "ZEILER_FERGUS", "SLIDE_DROPS", "Runs", "parse_schedule", "train_variants", "growth_study",
           "runs_table", "lead_comparisons", "lead_trend", "growth_table", "growth_figure", "table3_differences",
           "variant_comparisons"]

# Zeiler & Fergus 2013, Table 3: the paper's layers removed (1-5 conv, 6-7 hidden fully connected).
VARIANTS = {"full": (), "-7": (7,), "-6,7": (6, 7), "-3,4": (3, 4), "-3,4,6,7": (3, 4, 6, 7)}
# Their ImageNet 2012 errors (%): train top-1, val top-1, val top-5 (the paper's "AlexNet replication" row is full).
ZEILER_FERGUS = {"full": (35.1, 40.5, 18.1), "-7": (27.4, 40.0, 18.4), "-6,7": (27.4, 44.8, 22.4),
                 "-3,4": (41.8, 45.4, 22.1), "-3,4,6,7": (71.1, 71.3, 50.1)}
TABLE3_COLUMNS = ("train top-1", "val top-1", "val top-5")
# The lecture's slide (from Fergus' NIPS 2013 tutorial): "drop in performance" of a removal, in %, metric not
# stated. Only the two numbers the slide is quoted for here.
SLIDE_DROPS = {"-7": 1.1, "-3,4,6,7": 33.5}


@dataclass
class Runs:
    """Variants trained over seeds: per variant the errors (%, one per seed), histories, time (s, all seeds)."""

    images: int
    epochs: int
    seeds: list
    train_error: dict = field(default_factory=dict)
    test_error: dict = field(default_factory=dict)
    histories: dict = field(default_factory=dict)
    models: dict = field(default_factory=dict)  # the first seed's trained models
    seconds: dict = field(default_factory=dict)

    @property
    def variants(self):
        return list(self.test_error)

    def mean(self, name, which="test"):
        values = (self.test_error if which == "test" else self.train_error)[name]
        return sum(values) / len(values)


def parse_schedule(text, available=None, fallback=False):
    """``"500:8,1000:8"`` -> ``{500: 8, 1000: 8}``: training-set sizes and their epochs (the notebook's GROWTH).

    ``available``: the training images there are. A size above it is dropped with a printed note when the data
    is the ``fallback`` (the small digits set), else it is a ValueError; at least one size must remain.
    """
    allowed = "sizes:epochs pairs of positive ints, e.g. '500:8,1000:8,2000:8'"
    if not isinstance(text, str):
        raise ValueError(f"GROWTH must be a string of {allowed}, got {text!r}")
    schedule = {}
    for item in text.split(","):
        parts = item.strip().split(":")
        if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
            raise ValueError(f"GROWTH={text!r}: {item.strip()!r} is not size:epochs; allowed are {allowed}")
        n, epochs = int(parts[0]), int(parts[1])
        if n in schedule:
            raise ValueError(f"GROWTH={text!r} gives size {n} twice; allowed are {allowed}, each size once")
        schedule[n] = epochs
    too_big = [n for n in schedule if available is not None and n > available]
    if too_big and not fallback:
        raise ValueError(f"GROWTH={text!r} has sizes {too_big} larger than the {available:,} training images: "
                         f"allowed are sizes from 1 to {available:,}")
    if too_big:
        print(f"GROWTH: sizes {too_big} are more than the {available:,} training images of the fallback data set: "
              "left out")
        schedule = {n: e for n, e in schedule.items() if n <= available} or {available: schedule[min(schedule)]}
    return dict(sorted(schedule.items()))


def _check_variants(variants):
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or len(variants) < 1:
        raise ValueError(f"variants must be names of VARIANTS ({', '.join(VARIANTS)}), got {list(variants)!r}")


def train_variants(make_model, variants, images, labels, test_batches, *, seeds, epochs, batch_size, lr,
                   augment=None, mean=None, std=None, device=None, label="", verbose=True, **fit_options):
    """Train each of ``variants`` on (images, labels) with every seed; a ``Runs``.

    ``make_model(name)`` builds variant ``name`` (e.g. ``lambda name: cifar_alexnet(remove=VARIANTS[name])``).
    The warm-up is a tenth of the epochs, at most one, unless ``fit_options`` say otherwise. ``verbose``:
    one line per seed with every variant's test error.
    """
    _check_variants(variants)
    if not seeds:
        raise ValueError("seeds must list at least one seed")
    fit_options.setdefault("warmup_epochs", min(1.0, epochs / 10))
    runs = Runs(images=len(labels), epochs=epochs, seeds=list(seeds))
    fitted = DeviceBatches(images, labels, 1000, mean=mean, std=std, device=device)  # un-augmented, for train error
    for seed in seeds:
        for name in variants:
            start = time.perf_counter()
            model, history = train_one_seed(lambda: make_model(name), images, labels, seed=seed,
                                            batch_size=batch_size, epochs=epochs, lr=lr, augment=augment, mean=mean,
                                            std=std, device=device, **fit_options)
            runs.seconds[name] = runs.seconds.get(name, 0.0) + time.perf_counter() - start
            runs.train_error.setdefault(name, []).append(100 * evaluate(model, fitted, device)["error"])
            runs.test_error.setdefault(name, []).append(100 * evaluate(model, test_batches, device)["error"])
            runs.histories.setdefault(name, []).append(history)
            runs.models.setdefault(name, model)
        if verbose:
            print(f"{label}{', ' if label else ''}seed {seed}: test error " +
                  ", ".join(f"{n} {runs.test_error[n][-1]:.1f}%" for n in variants))
    return runs


def growth_study(make_model, variants, images, labels, test_batches, *, schedule, seeds, **options):
    """``{n: Runs}``: the variants trained on the first ``n`` images for ``schedule[n]`` epochs, each ``n``.

    ``images`` should be a shuffled subset (``data.take_subset``): the training sets are nested, each size
    holding the smaller ones. ``options`` go to ``train_variants`` (batch_size, lr, augment, ...).
    """
    if not schedule:
        raise ValueError("schedule must map at least one training-set size to its epochs, e.g. {500: 40, 4000: 10}")
    too_big = [n for n in schedule if not 1 <= n <= len(labels)]
    if too_big:
        raise ValueError(f"schedule has sizes {too_big} outside 1 to {len(labels):,} (the images given)")
    study = {}
    for n in sorted(schedule):
        study[n] = train_variants(make_model, variants, images[:n], labels[:n], test_batches, seeds=seeds,
                                  epochs=schedule[n], label=f"{n:,} images x {schedule[n]} epochs", **options)
    return study


def runs_table(runs, title, parameters=None, paper=True):
    """The variants' mean errors, per-seed test errors and seconds per run; Zeiler & Fergus' beside (``paper``).

    ``parameters``: ``{name: count}`` to show. Returns the text.
    """
    lines = [title, f"{'variant':<10} {'params':>9} {'train err %':>12} {'test err %':>11}  {'test err per seed':<24}"
             f" {'s/run':>6}" + ("   Z&F train / val top-1 / val top-5 (ImageNet)" if paper else "")]
    for name in runs.variants:
        per_seed = ", ".join(f"{e:.1f}" for e in runs.test_error[name])
        count = f"{parameters[name]:,}" if parameters else ""
        zf = ZEILER_FERGUS[name]
        lines.append(f"{name:<10} {count:>9} {runs.mean(name, 'train'):>12.1f} {runs.mean(name):>11.1f}  "
                     f"{per_seed:<24} {runs.seconds[name] / len(runs.seeds):>6.1f}"
                     + (f"   {zf[0]:.1f} / {zf[1]:.1f} / {zf[2]:.1f}" if paper else ""))
    return "\n".join(lines)


def lead_comparisons(study, a, b, which="test"):
    """``{n: Comparison of a vs b}`` (errors, paired by seed) at every training-set size of ``study``."""
    errors = (lambda r: r.test_error) if which == "test" else (lambda r: r.train_error)
    return {n: paired_comparison(errors(r)[a], errors(r)[b], names=(a, b), lower_is_better=True, unit="%")
            for n, r in study.items()}


def lead_trend(study, a, b):
    """How the test-error difference ``a - b`` changes per doubling of the training set, over seeds.

    Per seed, the least-squares slope of ``a - b`` (points) against log2(images) over the sizes of ``study``;
    the slopes are compared with no change (0) by ``stats.paired_comparison``: a ``Comparison`` whose ``a`` is
    the change per doubling (higher: ``a - b`` grows with the data).
    """
    sizes = list(study)
    if len(sizes) < 2:
        raise ValueError(f"a trend needs at least 2 training-set sizes, the study has {len(sizes)}")
    x = [math.log2(n) for n in sizes]
    leads = [[study[n].test_error[a][i] - study[n].test_error[b][i] for n in sizes]
             for i in range(len(study[sizes[0]].seeds))]  # one list per seed
    slopes = [statistics.linear_regression(x, d).slope for d in leads]
    names = (f"change of {b}'s lead over {a} per doubling", "no change")
    return paired_comparison(slopes, [0.0] * len(slopes), names=names, unit="points per doubling")


def growth_table(study, a, b):
    """One row per training-set size: epochs, steps, both test errors per seed, ``a - b`` and its verdict."""
    comparisons = lead_comparisons(study, a, b)
    head = f"{'images':>7} {'epochs':>6}  {a + ' (per seed)':<22} {b + ' (per seed)':<22} {'a - b':>6}  verdict"
    lines = [f"test error (%), a = {a}, b = {b}", head, "-" * len(head)]
    for n, r in study.items():
        c = comparisons[n]
        seeds_a = ", ".join(f"{e:.1f}" for e in r.test_error[a])
        seeds_b = ", ".join(f"{e:.1f}" for e in r.test_error[b])
        lines.append(f"{n:>7,} {r.epochs:>6}  {seeds_a:<22} {seeds_b:<22} {c.difference:>+6.1f}  {c.verdict}")
    return "\n".join(lines)


def growth_figure(study, a, b, title=None):
    """Test error against training-set size (every seed a dot, the mean a line), and ``a - b`` with its interval."""
    sizes = list(study)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    for name, color in ((a, "tab:blue"), (b, "tab:orange")):
        for n in sizes:
            left.scatter([n] * len(study[n].seeds), study[n].test_error[name], color=color, s=12, alpha=0.5)
        left.plot(sizes, [study[n].mean(name) for n in sizes], marker="o", color=color,
                  label=f"{name} (mean of {len(study[sizes[0]].seeds)} seeds; dots: each seed)")
    left.set_ylabel("test error (%)")
    left.legend(fontsize=8)
    comparisons = lead_comparisons(study, a, b)
    diffs = [comparisons[n].difference for n in sizes]
    if all(comparisons[n].low is not None for n in sizes):
        low = [d - comparisons[n].low for d, n in zip(diffs, sizes)]
        high = [comparisons[n].high - d for d, n in zip(diffs, sizes)]
        right.errorbar(sizes, diffs, yerr=[low, high], marker="o", capsize=4, color="tab:green",
                       label=f"mean over seeds, {100 * comparisons[sizes[0]].confidence:g}% CI")
    else:
        right.plot(sizes, diffs, marker="o", color="tab:green", label="1 seed: no interval")
    right.axhline(0, color="k", lw=0.8)
    right.set_ylabel(f"test error of {a} - {b} (points)\n> 0: {b} is better")
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xticks(sizes)
        ax.set_xticklabels([f"{n:,}" for n in sizes])
        ax.minorticks_off()
        ax.set_xlabel("training images (nested subsets, log scale)")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def table3_differences():
    """Zeiler & Fergus' Table 3 as differences from the full net (points), per column, beside the slide's drops."""
    head = f"{'variant':<10} " + " ".join(f"{c + ' +/-':>15}" for c in TABLE3_COLUMNS) + "   the slide's drop"
    lines = ["Zeiler & Fergus 2013, Table 3 (ImageNet 2012): error of the variant - error of the full net, points",
             head]
    for name, row in ZEILER_FERGUS.items():
        if name == "full":
            continue
        diffs = " ".join(f"{v - ZEILER_FERGUS['full'][i]:>+15.1f}" for i, v in enumerate(row))
        slide = f"{SLIDE_DROPS[name]:.1f}" if name in SLIDE_DROPS else "-"
        lines.append(f"{name:<10} {diffs}   {slide:>17}")
    return "\n".join(lines)


def variant_comparisons(runs, which="test", **pairs):
    """``stats.compare`` of every variant against the full net (or ``pairs=[(a, b), ...]``), errors paired by seed."""
    errors = runs.test_error if which == "test" else runs.train_error
    return compare(errors, baseline=None if pairs else "full", lower_is_better=True, unit="%", **pairs)
