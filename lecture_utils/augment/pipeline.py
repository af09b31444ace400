"""Chaining ops into one pipeline."""

import inspect


def _takes_generator(op):
    """Whether ``op`` accepts a ``generator`` keyword argument."""
    try:
        return "generator" in inspect.signature(op).parameters
    except (TypeError, ValueError):
        return False


def compose(*ops):
    """Chain ops into one ``pipeline(images, generator=None)``; bind parameters with functools.partial.

    Each op is called as ``op(images, generator=generator)`` if it takes a
    generator, else ``op(images)``. Example:
    ``compose(partial(elastic_distort, alpha=34, sigma=4), partial(random_affine, degrees=10))``.
    """
    for op in ops:
        if not callable(op):
            raise ValueError(f"ops must be callables taking images, got {op!r}")
    takes = [_takes_generator(op) for op in ops]

    def pipeline(images, generator=None):
        for op, with_generator in zip(ops, takes):
            images = op(images, generator=generator) if with_generator else op(images)
        return images

    return pipeline
