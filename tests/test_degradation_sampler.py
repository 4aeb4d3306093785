"""(type, level) sampling with the three weightings of SPEC.md: the tables, empirical frequencies, seeds."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest

from clear_plugins import degradations
from clear_plugins.degradations import WEIGHTINGS, DegradationSampler, Draw, Weighting
from clear_plugins.errors import ClearConfigError

DRAWS = 12_000


def category_shares(types: dict[str, float]) -> dict[str, float]:
    total = sum(types.values())
    return {cat: sum(types[n] for n in group) / total for cat, group in degradations.categories().items()}


def test_the_three_tables():
    uniform = WEIGHTINGS["uniform"].probabilities()
    assert set(uniform) == {(n, lv) for n in degradations.names() for lv in degradations.LEVELS}
    assert all(p == pytest.approx(1 / 48) for p in uniform.values())

    benchmark = WEIGHTINGS["benchmark"]
    assert category_shares(dict(benchmark.types)) == pytest.approx(
        dict.fromkeys(degradations.categories(), 0.25)
    )
    assert benchmark.types["graffiti"] / benchmark.types["mean_shift"] == pytest.approx(4 / 3)  # 1/3 vs 1/4

    training = WEIGHTINGS["training"]
    assert dict(training.types) == {
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
    assert dict(training.levels) == {"low": 0.2, "mid": 0.3, "hard": 0.5}
    for weighting in WEIGHTINGS.values():
        assert sum(weighting.probabilities().values()) == pytest.approx(1.0)


@pytest.mark.parametrize("weighting", list(WEIGHTINGS))
def test_empirical_frequencies_match_the_tables(weighting):
    sampler = DegradationSampler(weighting, seed=123)
    draws = [sampler.sample() for _ in range(DRAWS)]
    table = WEIGHTINGS[weighting]
    for counts, weights in (
        (Counter(d.name for d in draws), table.types),
        (Counter(d.level for d in draws), table.levels),
    ):
        total = sum(weights.values())
        for key, weight in weights.items():
            p = weight / total
            tolerance = 4.5 * np.sqrt(p * (1 - p) / DRAWS)
            assert counts[key] / DRAWS == pytest.approx(p, abs=tolerance), (weighting, key)


def test_training_levels_lean_hard_and_types_follow_weights():
    sampler = DegradationSampler("training", seed=1)
    draws = list(itertools.islice(sampler, DRAWS))
    levels = Counter(d.level for d in draws)
    assert levels["hard"] > levels["mid"] > levels["low"]
    names = Counter(d.name for d in draws)
    assert names["graffiti"] > 3 * names["hsv_saturation"]  # weights 45 vs 10


def test_seeded_streams_repeat_and_differ():
    first = DegradationSampler("uniform", seed=5).sample()
    a = list(itertools.islice(DegradationSampler("uniform", seed=5), 50))
    b = list(itertools.islice(DegradationSampler("uniform", seed=5), 50))
    c = list(itertools.islice(DegradationSampler("uniform", seed=6), 50))
    assert a == b and a != c and a[0] == first
    types = [DegradationSampler("benchmark", seed=s).sample_type() for s in range(200)]
    assert set(types) == set(degradations.names())


def test_draws_unpack_and_know_their_intensity():
    name, level = DegradationSampler("training", seed=0).sample()
    draw = Draw(name, level)
    assert name in degradations.names() and level in degradations.LEVELS
    assert draw.intensity == degradations.LEVELS[level]
    assert isinstance(DegradationSampler("uniform", seed=0).sample_level(), str)


def test_custom_weighting_may_name_plugin_types():
    custom = Weighting(types={"invert": 1.0, "lens_blur": 3.0}, levels={"hard": 1.0})
    sampler = DegradationSampler(custom, seed=0)
    draws = Counter(sampler.sample() for _ in range(2000))
    assert set(draws) == {("invert", "hard"), ("lens_blur", "hard")}
    assert draws[("lens_blur", "hard")] / 2000 == pytest.approx(0.75, abs=0.05)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"types": {}, "levels": {"low": 1}}, "types is empty"),
        ({"types": {"a": -1}, "levels": {"low": 1}}, r"types\['a'\]=-1 must be > 0"),
        ({"types": {"a": float("nan")}, "levels": {"low": 1}}, "not a finite number"),
        ({"types": {"a": 1}, "levels": {"extreme": 1}}, "unknown levels"),
    ],
)
def test_bad_weightings(kwargs, match):
    with pytest.raises(ClearConfigError, match=match):
        Weighting(**kwargs)


def test_unknown_weighting_name():
    with pytest.raises(ClearConfigError, match=r"unknown weighting 'paper'.*uniform, benchmark, training"):
        DegradationSampler("paper")
