"""Helpers for the "Convolutional Networks II" lecture notebooks.

Importing this package only defines names: no seeding, no plotting style,
no downloads. Import what you need from its modules explicitly, e.g.
``from lecture_utils.augment import elastic_distort``.
"""

__version__ = "0.1.0"
