"""The 16 degradations of MMD-Bench (App. B, Table 7), usable on their own.

>>> from clear_plugins import degradations
>>> degradations.names()[:2]
('lens_blur', 'lens_flare')
>>> out = degradations.apply(image, "motion_blur", "hard", seed=0)  # doctest: +SKIP

Importing this package needs only numpy, OpenCV and Pillow (never torch); the category modules load on first
use. Input conversion rules (grayscale, alpha, PIL modes) are in :mod:`clear_plugins.degradations.io`.
"""

from __future__ import annotations

from clear_plugins.degradations.io import ImageLike, to_rgb
from clear_plugins.degradations.registry import (
    CATEGORY_TABLE,
    LEVELS,
    SeedLike,
    apply,
    builtin,
    categories,
    category_of,
    make_rng,
    names,
    resolve_intensity,
)
from clear_plugins.degradations.sampler import WEIGHTINGS, DegradationSampler, Draw, Weighting

__all__ = [
    "CATEGORY_TABLE",
    "LEVELS",
    "WEIGHTINGS",
    "DegradationSampler",
    "Draw",
    "ImageLike",
    "SeedLike",
    "Weighting",
    "apply",
    "builtin",
    "categories",
    "category_of",
    "make_rng",
    "names",
    "resolve_intensity",
    "to_rgb",
]
