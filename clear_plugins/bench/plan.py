"""Which (type, level, seed) each row gets, derived deterministically from the global seed and the row id.

Nothing here depends on shard boundaries, worker count or order: every seed is a pure function of
(global seed, row id, type, level), computed with :class:`numpy.random.SeedSequence`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from clear_plugins import degradations
from clear_plugins.degradations.sampler import DegradationSampler

_SEED_BITS = 63
"""Derived seeds are non-negative and fit a signed 64-bit integer (parquet, JSON, numpy all hold them)."""


@dataclass(frozen=True)
class Job:
    """One degraded image to make: the type, level, intensity, seed and file name (relative to the level folder)."""

    type: str
    level: str
    intensity: float
    seed: int
    file: str


def _text_key(text: str) -> int:
    """A 128-bit integer standing for ``text`` (SeedSequence takes integers only)."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:16], "little")


def derive_seed(global_seed: int, row_id: str, *parts: str) -> int:
    """A seed in ``[0, 2**63)`` from the global seed, the row id and extra parts (type, level)."""
    entropy = [int(global_seed) & (2**64 - 1), _text_key(row_id), *(_text_key(p) for p in parts)]
    low, high = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint32)
    return ((int(high) << 32) | int(low)) & (2**_SEED_BITS - 1)


def sampled_type(global_seed: int, row_id: str, weighting: str) -> str:
    """The one type a row gets in sampled mode (the same at every level), drawn with ``weighting``."""
    sampler = DegradationSampler(weighting=weighting, seed=derive_seed(global_seed, row_id, "type"))
    return sampler.sample_type()


def image_file(position: int, type_name: str | None, extension: str) -> str:
    """File name of a degraded image: the row's position in the source (ids may hold any character)."""
    stem = f"r{position:07d}" if type_name is None else f"r{position:07d}_{type_name}"
    return f"images/{stem}.{extension}"


def row_jobs(
    position: int,
    row_id: str,
    *,
    mode: str,
    weighting: str,
    levels: tuple[str, ...],
    global_seed: int,
    extension: str,
) -> list[Job]:
    """Every image to make for one row, level by level (types in :func:`degradations.names` order in full mode)."""
    types = list(degradations.names()) if mode == "full" else [sampled_type(global_seed, row_id, weighting)]
    jobs = []
    for level in levels:
        intensity = float(degradations.LEVELS[level])
        for type_name in types:
            file = image_file(position, type_name if mode == "full" else None, extension)
            seed = derive_seed(global_seed, row_id, type_name, level)
            jobs.append(Job(type_name, level, intensity, seed, file))
    return jobs
