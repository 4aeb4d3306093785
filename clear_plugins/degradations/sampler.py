"""Random (type, level) draws with the three weightings of SPEC.md, held as data tables.

- ``uniform``: every one of the 16 types and every level equally likely (the paper's text: one random type
  and level per sample).
- ``benchmark``: each of the four categories 25%, types equal within their category, levels equal (the
  reference benchmark script samples one type per image this way and then writes all three levels; its
  post-processing weights 33/33/34 are rounded thirds, taken here as exact thirds).
- ``training``: the per-type weights of the reference training script (each category sums to 100 of 400)
  and levels Low/Mid/Hard with probabilities 0.2/0.3/0.5.

Types and levels are drawn independently. A custom :class:`Weighting` may name third-party degradations.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NamedTuple

import numpy as np

from clear_plugins.degradations.registry import LEVELS, SeedLike, categories, make_rng, names
from clear_plugins.errors import ClearConfigError

TRAINING_TYPE_WEIGHTS: Mapping[str, float] = MappingProxyType(
    {
        "lens_blur": 30,
        "lens_flare": 15,
        "motion_blur": 30,
        "dirty_lens": 15,
        "hsv_saturation": 10,
        "jpeg_compression": 15,
        "block_exchange": 40,
        "mean_shift": 15,
        "scan_lines": 30,
        "dark_illumination": 40,
        "atmospheric_turbulence": 30,
        "gaussian_noise": 15,
        "color_diffusion": 15,
        "sharpness_change": 10,
        "graffiti": 45,
        "watermark_damage": 45,
    }
)
"""Type weights of the reference training script (SPEC.md, Degradations)."""

TRAINING_LEVEL_WEIGHTS: Mapping[str, float] = MappingProxyType({"low": 0.2, "mid": 0.3, "hard": 0.5})
"""Level probabilities of the reference training script (intensities 0.23 / 0.45 / 0.9)."""

BENCHMARK_CATEGORY_SHARE = 0.25
"""Share of each of the four categories in the reference benchmark script."""


class Draw(NamedTuple):
    """One sampled degradation: its type name and level name (unpacks as ``name, level``)."""

    name: str
    level: str

    @property
    def intensity(self) -> float:
        """The intensity of :attr:`level` (:data:`~clear_plugins.degradations.LEVELS`)."""
        return LEVELS[self.level]


@dataclass(frozen=True)
class Weighting:
    """Independent weights over degradation types and over levels (normalised when sampling)."""

    types: Mapping[str, float] = field(metadata={"help": "Relative weight of each type name; all > 0."})
    levels: Mapping[str, float] = field(metadata={"help": "Relative weight of each level name ('low' ...)."})
    source: str = field(default="custom", metadata={"help": "Where the numbers come from."})

    def __post_init__(self) -> None:
        for what, table in (("types", self.types), ("levels", self.levels)):
            if not table:
                raise ClearConfigError(
                    f"Weighting.{what} is empty; give at least one name with a weight > 0."
                )
            for key, weight in table.items():
                if isinstance(weight, bool) or not (
                    isinstance(weight, int | float) and math.isfinite(weight)
                ):
                    raise ClearConfigError(f"Weighting.{what}[{key!r}]={weight!r} is not a finite number.")
                if weight <= 0:
                    raise ClearConfigError(
                        f"Weighting.{what}[{key!r}]={weight!r} must be > 0; drop the entry."
                    )
        unknown = sorted(set(self.levels) - set(LEVELS))
        if unknown:
            raise ClearConfigError(f"Weighting.levels has unknown levels {unknown}; use {', '.join(LEVELS)}.")
        object.__setattr__(self, "types", MappingProxyType(dict(self.types)))
        object.__setattr__(self, "levels", MappingProxyType(dict(self.levels)))

    def probabilities(self) -> dict[tuple[str, str], float]:
        """The probability of every (type, level) pair."""
        type_total, level_total = sum(self.types.values()), sum(self.levels.values())
        return {
            (name, level): (t / type_total) * (lv / level_total)
            for name, t in self.types.items()
            for level, lv in self.levels.items()
        }


def _benchmark_types() -> dict[str, float]:
    return {name: BENCHMARK_CATEGORY_SHARE / len(group) for group in categories().values() for name in group}


WEIGHTINGS: Mapping[str, Weighting] = MappingProxyType(
    {
        "uniform": Weighting(
            types=dict.fromkeys(names(), 1.0),
            levels=dict.fromkeys(LEVELS, 1.0),
            source="paper text: one random type and level per sample, approximately uniform",
        ),
        "benchmark": Weighting(
            types=_benchmark_types(),
            levels=dict.fromkeys(LEVELS, 1.0),
            source="reference benchmark script: each category 25%, equal within",
        ),
        "training": Weighting(
            types=TRAINING_TYPE_WEIGHTS,
            levels=TRAINING_LEVEL_WEIGHTS,
            source="reference training script: per-type weights, levels 0.2/0.3/0.5",
        ),
    }
)
"""The three built-in weightings by name."""


class DegradationSampler:
    """An endless, seeded stream of (type, level) :class:`Draw` s.

    Example::

        sampler = DegradationSampler("training", seed=0)
        name, level = sampler.sample()
        for name, level in itertools.islice(sampler, 10): ...
    """

    def __init__(self, weighting: str | Weighting = "uniform", seed: SeedLike = None) -> None:
        if isinstance(weighting, str):
            if weighting not in WEIGHTINGS:
                raise ClearConfigError(
                    f"unknown weighting {weighting!r}; use one of {', '.join(WEIGHTINGS)} or a Weighting."
                )
            weighting = WEIGHTINGS[weighting]
        if not isinstance(weighting, Weighting):
            raise ClearConfigError(f"weighting={weighting!r} must be a weighting name or a Weighting.")
        self.weighting = weighting
        self._rng = make_rng(seed)
        self._types = tuple(weighting.types)
        self._type_cdf = _cdf(weighting.types.values())
        self._levels = tuple(weighting.levels)
        self._level_cdf = _cdf(weighting.levels.values())

    def sample_type(self) -> str:
        """One type name (consumes one uniform draw of the generator)."""
        return self._types[self._pick(self._type_cdf)]

    def sample_level(self) -> str:
        """One level name (consumes one uniform draw of the generator)."""
        return self._levels[self._pick(self._level_cdf)]

    def _pick(self, cdf: np.ndarray) -> int:
        """Inverse-CDF sampling: the first index whose cumulative probability exceeds a uniform draw."""
        return min(int(np.searchsorted(cdf, self._rng.random(), side="right")), len(cdf) - 1)

    def sample(self) -> Draw:
        """One (type, level) draw: the type first, then the level."""
        name = self.sample_type()
        return Draw(name, self.sample_level())

    def probabilities(self) -> dict[tuple[str, str], float]:
        """The probability of every (type, level) pair under this sampler's weighting."""
        return self.weighting.probabilities()

    def __iter__(self) -> Iterator[Draw]:
        return self

    def __next__(self) -> Draw:
        return self.sample()


def _cdf(weights: Iterable[float]) -> np.ndarray:
    """Cumulative probabilities of ``weights``, ending at exactly 1."""
    cumulative = np.cumsum(np.asarray(list(weights), dtype=np.float64))
    return cumulative / cumulative[-1]
