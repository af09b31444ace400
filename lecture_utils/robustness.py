"""Robustness curves: a network's accuracy on test sets moved along one transformation axis (notebook 01).

A *test axis* is a transformation with a size: a shift of d pixels, a rotation by an angle, a rescaling, a
brightness or contrast change. Every point of a curve is the accuracy on the *same* test images, all moved
by the same amount; a point that has two directions (a shift up, down, left or right; a rotation by +a or
-a) is the mean over them. Each axis has an identity point (shift 0, angle 0, scale 1, brightness 0,
contrast 1), the unmoved test set.

The measure of invariance is the **drop**: the accuracy (in points) a network loses from its own accuracy on
the unmoved test set. Two networks that differ in clean accuracy (one better trained, or with normalized
inputs) are then compared on what the transformation costs each of them, not on where each started.

``Robustness(images, labels)`` holds the test set and the networks (one trained model per seed, the seeds
paired across networks); ``accuracy``, ``drop`` and ``compare_drops`` give per-seed values and paired
comparisons (``lecture_utils.stats``), ``curves_figure`` the curves. ``train_seeds`` trains a network once
per seed, its expansion drawing from a stream of its own so that every network sees the batches in the same order.
"""

import math

import torch

from lecture_utils.augment import adjust_brightness_contrast, affine
from lecture_utils.data import DeviceBatches
from lecture_utils.data.batches import _takes_generator_keyword
from lecture_utils.device import get_device
from lecture_utils.stats import paired_comparison
from lecture_utils.train import evaluate, train_one_seed

AXES = ("translation", "rotation", "scale", "brightness", "contrast")
AXIS_LABELS = {"translation": "shift (pixels)", "rotation": "angle (degrees)", "scale": "scale factor",
               "brightness": "brightness change (fraction of the range)", "contrast": "contrast factor"}
IDENTITY = {"translation": 0.0, "rotation": 0.0, "scale": 1.0, "brightness": 0.0, "contrast": 1.0}


def _check_axis(axis):
    if axis not in AXES:
        raise ValueError(f"axis must be one of {', '.join(AXES)}, got {axis!r}")
    return axis


def transforms(axis, value):
    """The transformations of the test set at ``value`` of ``axis``: a list of functions images -> images.

    A point's accuracy is the mean over them: translation by ``value`` pixels right, left, down and up;
    rotation by +value and -value degrees; one rescaling about the center by ``value`` (0.6: 60% of the
    size); brightness + value (a fraction of the range, clipped); contrast x value about the image mean.
    The identity point is one function that returns the images unchanged.
    """
    _check_axis(axis)
    value = float(value)
    if value == IDENTITY[axis]:
        return [lambda x: x]
    if axis == "translation":
        return [lambda x, t=t: affine(x, translate=t) for t in ((value, 0), (-value, 0), (0, value), (0, -value))]
    if axis == "rotation":
        return [lambda x, a=a: affine(x, angle=a) for a in (value, -value)]
    if axis == "scale":
        return [lambda x: affine(x, scale=value)]
    if axis == "brightness":
        return [lambda x: adjust_brightness_contrast(x, brightness=value)]
    return [lambda x: adjust_brightness_contrast(x, contrast=value)]


def point_label(axis, value):
    """How a point reads for people: ``shift 2 px``, ``rotation 45°``, ``scale 0.6x``, ``brightness +0.6``."""
    _check_axis(axis)
    if axis == "translation":
        return f"shift {value:g} px"
    if axis == "rotation":
        return f"rotation {value:g}°"
    if axis == "brightness":
        return f"brightness {value:+.1f}" if value else "brightness 0"
    return f"{axis} {value:g}x"


def accuracy(model, images, labels, axis, value, device=None, batch_size=1000):
    """Accuracy (a fraction) of ``model`` on ``images`` moved to ``value`` of ``axis`` (mean over directions)."""
    errors = []
    for t in transforms(axis, value):
        batches = DeviceBatches(images, labels, batch_size, device=device, augment=lambda x, _, t=t: t(x))
        errors.append(evaluate(model, batches, device)["error"])
    return 1 - sum(errors) / len(errors)


def ink_displacement(images, scale):
    """Mean distance (pixels) that the ink of ``images`` moves when rescaled by ``scale`` about the center.

    A pixel at distance r from the center moves to s r: by |s - 1| r. Weighted by the ink (the pixel values),
    averaged over the images. Rescaling is a shift that grows with r: small near the center, large at the rim.
    """
    x = images.float()
    x = x / 255 if images.dtype == torch.uint8 else x
    height, width = x.shape[-2:]
    ys = torch.arange(height, dtype=torch.float32) - (height - 1) / 2
    xs = torch.arange(width, dtype=torch.float32) - (width - 1) / 2
    r = (ys[:, None] ** 2 + xs[None, :] ** 2).sqrt()
    ink = x.sum(dim=1)  # (N, H, W)
    per_image = (ink * r).sum(dim=(1, 2)) / ink.sum(dim=(1, 2)).clamp_min(1e-12)
    return abs(float(scale) - 1) * per_image.mean().item()


def train_seeds(make_model, images, labels, seeds, *, batch_size, epochs, lr, augment=None, device=None,
                name="network", verbose=True, **fit_options):
    """One model per seed (``train.train_one_seed``): the seed fixes the initialization and the batch order.

    ``augment`` expands every batch, drawing from a generator of its own (seeded 10,000 + seed), so a
    network with an expansion sees the batches in the same order as one without. It gets the generator as
    ``generator=`` when it has a parameter of that name (every ``lecture_utils.augment`` op and a
    ``functools.partial`` of one), else as its second argument (``lambda x, g: ...``).
    Warm-up: a tenth of the epochs, at most one. Prints each seed's last-epoch training error; returns the models.
    """
    device = get_device(device)
    fit_options.setdefault("warmup_epochs", min(1.0, epochs / 10))
    models = []
    for seed in seeds:
        expand = None
        if augment is not None:
            expand = _with_stream(augment, torch.Generator(device=device).manual_seed(10_000 + seed))
        model, history = train_one_seed(make_model, images, labels, seed=seed, batch_size=batch_size, epochs=epochs,
                                        lr=lr, augment=expand, device=device, **fit_options)
        if verbose:
            print(f"{name}, seed {seed}: training error {100 * history[-1]['train_error']:.2f}% in the last of "
                  f"{epochs} epochs ({sum(h['seconds'] for h in history):.0f} s)")
        models.append(model)
    return models


def _with_stream(augment, generator):
    """``augment`` as DeviceBatches calls it, ``(images, its generator)``, drawing from ``generator`` instead."""
    if _takes_generator_keyword(augment):
        return lambda x, _: augment(x, generator=generator)
    return lambda x, _: augment(x, generator)


def expanded_accuracy(model, images, labels, augment, seed=0, device=None, batch_size=1000):
    """Accuracy (a fraction) of ``model`` on ``images``, each transformed by one random draw of ``augment``.

    ``augment`` as in ``train_seeds``; its random numbers come from a generator seeded ``seed``, so every
    model sees the same transformed images.
    """
    generator = torch.Generator(device=get_device(device)).manual_seed(seed)
    batches = DeviceBatches(images, labels, batch_size, device=device, augment=_with_stream(augment, generator))
    return 1 - evaluate(model, batches, device)["error"]


class Robustness:
    """Networks (one model per seed, the seeds paired) measured on one test set moved along the test axes.

    ``add(name, models)`` registers a network; ``accuracy(name, axis, value)`` is its accuracy (%) per seed at
    that point (measured once, then kept); ``drop(name, axis, value)`` the points it loses there from its own
    unmoved accuracy; ``compare_drops(a, b, axis, value)`` the paired comparison of two networks' drops.
    """

    def __init__(self, images, labels, device=None):
        if len(images) != len(labels) or len(labels) == 0:
            raise ValueError(f"images and labels must be the same non-zero length, got {len(images)} and {len(labels)}")
        self.images, self.labels, self.device = images, labels, device
        self.models, self._cache = {}, {}

    def add(self, name, models):
        """Register network ``name``: its trained models, one per seed (the same seeds for every network)."""
        models = list(models)
        if not models:
            raise ValueError(f"network {name!r}: give at least one model (one per seed)")
        if self.models and len(models) != len(next(iter(self.models.values()))):
            raise ValueError(f"network {name!r} has {len(models)} models, the others "
                             f"{len(next(iter(self.models.values())))}: one per seed, the same seeds for every network")
        self.models[name] = models

    def _network(self, name):
        if name not in self.models:
            raise ValueError(f"unknown network {name!r}: known are {', '.join(self.models) or 'none (use add)'}")
        return self.models[name]

    def accuracy(self, name, axis, value):
        """Accuracy (%) of each seed's model of ``name`` at ``value`` of ``axis`` (the identity: unmoved)."""
        _check_axis(axis)
        key = (name, "clean", 0.0) if float(value) == IDENTITY[axis] else (name, axis, float(value))  # one clean
        if key not in self._cache:
            self._cache[key] = [100 * accuracy(m, self.images, self.labels, axis, value, self.device)
                                for m in self._network(name)]
        return self._cache[key]

    def clean(self, name):
        """Accuracy (%) of each seed's model of ``name`` on the unmoved test set."""
        return self.accuracy(name, "translation", 0)

    def curve(self, name, axis, values):
        """Per seed, the accuracies (fractions, for ``plots.curves_figure``) at every value of ``axis``."""
        per_value = [self.accuracy(name, axis, v) for v in values]
        return [[acc[s] / 100 for acc in per_value] for s in range(len(self._network(name)))]

    def drop(self, name, axis, value):
        """Points of accuracy each seed's model of ``name`` loses at ``value`` of ``axis``, from its own clean accuracy."""
        return [c - a for c, a in zip(self.clean(name), self.accuracy(name, axis, value))]

    def compare_drops(self, a, b, axis, value):
        """Paired comparison of the drops of networks ``a`` and ``b`` at ``value`` of ``axis`` (smaller is better)."""
        return paired_comparison(self.drop(a, axis, value), self.drop(b, axis, value), names=(a, b),
                                 lower_is_better=True, unit="%")

    def compare_to_clean(self, name, axis, value):
        """Paired comparison of ``name``'s accuracy unmoved and at ``value`` of ``axis`` (higher is better)."""
        return paired_comparison(self.clean(name), self.accuracy(name, axis, value),
                                 names=("unmoved", point_label(axis, value)), lower_is_better=False, unit="%")

    def equivalent_shift(self, name, axis, value, shifts):
        """The shift (pixels) that costs ``name`` as much accuracy as ``value`` of ``axis`` does, on the mean curves.

        Linear interpolation of the mean accuracy over the seeds along the translation points ``shifts``
        (increasing, from 0); 0.0 when ``value`` costs nothing, None when it costs more than the largest shift.
        """
        target = mean(self.accuracy(name, axis, value))
        points = [(float(d), mean(self.accuracy(name, "translation", d))) for d in shifts]
        if target >= points[0][1]:
            return 0.0
        for (d0, a0), (d1, a1) in zip(points, points[1:]):
            if a1 <= target <= a0 and a0 > a1:
                return d0 + (a0 - target) / (a0 - a1) * (d1 - d0)
        return None

    def panels(self, axes, names):
        """``{axis: (x label, values, {name: per-seed curves})}`` for ``plots.curves_figure``."""
        return {axis: (AXIS_LABELS[axis], list(values), {n: self.curve(n, axis, values) for n in names})
                for axis, values in axes.items()}

    def table(self, points, names):
        """Text table: accuracy (%) of every network at every ``(axis, value)`` point, mean (lowest-highest seed)."""
        def cell(values):
            mean = sum(values) / len(values)
            spread = f" ({min(values):.1f}-{max(values):.1f})" if len(values) > 1 else ""
            return f"{mean:.1f}{spread}"

        rows = [["test set", *names]]
        for axis, value in points:
            rows.append([point_label(axis, value) if value != IDENTITY[axis] else "unmoved",
                         *(cell(self.accuracy(n, axis, value)) if n in self.models else "-" for n in names)])
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                 for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)


def mean(values):
    """The mean of a list of numbers (per-seed values), NaN for an empty list."""
    values = list(values)
    return sum(values) / len(values) if values else math.nan
