"""``clear-plugins eval compare RUN_A RUN_B``: B minus A with paired bootstrap confidence intervals.

Rows are paired by benchmark, level, type and row (circular groups as one unit); only units present in both
runs count. A level's delta is the mean over benchmarks of each benchmark's mean paired difference, as the
paper averages its benchmarks; the bootstrap resamples units within each benchmark (stratified), ``resamples``
times with a fixed seed. A difference whose interval contains 0 is reported as within noise: the paper's
per-level differences are 1-3 points, which a few hundred rows cannot resolve.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clear_plugins.errors import ClearConfigError
from clear_plugins.eval import metrics, plots
from clear_plugins.eval.items import LEVELS
from clear_plugins.eval.report import markdown_table
from clear_plugins.eval.runner import RUN_NAME, read_predictions
from clear_plugins.eval.scoring import unit_scores


@dataclass
class CompareConfig:
    """Settings of the paired bootstrap."""

    resamples: int = field(default=2000, metadata={"help": "Bootstrap resamples."})
    confidence: float = field(default=0.95, metadata={"help": "Confidence level of the interval."})
    seed: int = field(default=0, metadata={"help": "Seed of the resampling (results are reproducible)."})

    def __post_init__(self) -> None:
        """Check the fields."""
        if self.resamples < 100:
            raise ClearConfigError(
                f"resamples={self.resamples} is too few for an interval; use at least 100."
            )
        if not 0.5 <= self.confidence < 1:
            raise ClearConfigError(f"confidence={self.confidence} must be in [0.5, 1), e.g. 0.95.")


def _units(records: list[dict[str, Any]], by_type: bool = False) -> dict[tuple, dict[str, Any]]:
    units = unit_scores(metrics.valid(records), by_type=by_type)
    return {
        (
            u["benchmark"],
            u["level"],
            ("group", u["circular_group"]) if u.get("circular_group") else ("row", u["row_id"]),
            u["type"] if by_type else None,
        ): u
        for u in units
    }


def _pairs(a: list[dict[str, Any]], b: list[dict[str, Any]], by_type: bool) -> tuple[list[tuple], int, int]:
    """Units present in both runs, paired; and how many are only in A, only in B."""
    a_units, b_units = _units(a, by_type), _units(b, by_type)
    shared = [k for k in a_units if k in b_units]
    return [(a_units[k], b_units[k]) for k in shared], len(a_units) - len(shared), len(b_units) - len(shared)


def paired_delta(strata: dict[str, np.ndarray], config: CompareConfig) -> dict[str, float | int | str]:
    """Delta (points) = mean over strata of mean(B - A), with a stratified bootstrap interval and a verdict."""
    rng = np.random.default_rng(config.seed)
    point = 100.0 * float(np.mean([d.mean() for d in strata.values()]))
    boot = np.zeros(config.resamples)
    for diffs in strata.values():
        picks = rng.integers(0, len(diffs), size=(config.resamples, len(diffs)))
        boot += diffs[picks].mean(axis=1)
    boot *= 100.0 / len(strata)
    tail = (1 - config.confidence) / 2 * 100
    low, high = (float(v) for v in np.percentile(boot, [tail, 100 - tail]))
    verdict = "within noise" if low <= 0 <= high else ("B better" if point > 0 else "A better")
    return {
        "delta": point,
        "low": low,
        "high": high,
        "verdict": verdict,
        "units": sum(map(len, strata.values())),
    }


def _slices(
    pairs: list[tuple[dict, dict]], key: Callable[[dict], Any], config: CompareConfig
) -> dict[Any, dict[str, Any]]:
    """Paired deltas of every slice ``key(unit)``, stratified by benchmark; also A's and B's accuracy."""
    groups: dict[Any, dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    for a, b in pairs:
        groups[key(a)][a["benchmark"]].append((a["score"], b["score"]))
    result = {}
    for name, strata in groups.items():
        arrays = {bench: np.array(v) for bench, v in strata.items()}
        entry = paired_delta({bench: v[:, 1] - v[:, 0] for bench, v in arrays.items()}, config)
        entry["A"] = 100.0 * float(np.mean([v[:, 0].mean() for v in arrays.values()]))
        entry["B"] = 100.0 * float(np.mean([v[:, 1].mean() for v in arrays.values()]))
        result[name] = entry
    return result


def compare_runs(run_a: str | Path, run_b: str | Path, config: CompareConfig | None = None) -> dict[str, Any]:
    """Per-level, per-benchmark, per-corruption and per-category deltas of B over A.

    The per-corruption and per-category slices (Table 10) use the hard level when both runs have it, as the
    paper does, else the other degraded levels together (``per_type_levels`` says which).
    """
    config = config or CompareConfig()
    a_records, b_records = read_predictions(run_a), read_predictions(run_b)
    pairs, only_a, only_b = _pairs(a_records, b_records, by_type=False)
    if not pairs:
        raise ClearConfigError(
            f"{run_a} and {run_b} share no rows (benchmark, level, row); compare runs over the same benchmarks."
        )
    typed = [p for p in _pairs(a_records, b_records, by_type=True)[0] if p[0]["level"] != "clean"]
    table10_level = "hard" if any(p[0]["level"] == "hard" for p in typed) else "low, mid"
    if table10_level == "hard":  # Table 10 compares per corruption under Hard degradation
        typed = [p for p in typed if p[0]["level"] == "hard"]
    order = {level: n for n, level in enumerate(LEVELS)}
    by_level = _slices(pairs, lambda u: u["level"], config)
    return {
        "A": str(run_a),
        "B": str(run_b),
        "only_in_A": only_a,
        "only_in_B": only_b,
        "confidence": config.confidence,
        "per_level": dict(sorted(by_level.items(), key=lambda kv: order[kv[0]])),
        "per_benchmark_level": {
            f"{b} / {lv}": v
            for (b, lv), v in _slices(pairs, lambda u: (u["benchmark"], u["level"]), config).items()
        },
        "per_type_levels": table10_level,
        "per_type": dict(sorted(_slices(typed, lambda u: u["type"], config).items())),
        "per_corruption_category": dict(
            sorted(_slices(typed, lambda u: u["corruption_category"], config).items())
        ),
    }


def _label(run_dir: str) -> str:
    try:
        header = json.loads((Path(run_dir) / RUN_NAME).read_text(encoding="utf-8"))
        return str(header["model"]["name"])
    except (OSError, ValueError, KeyError, TypeError):
        return Path(run_dir).name


def write_comparison(
    run_a: str | Path, run_b: str | Path, output_dir: str | Path, config: CompareConfig | None = None
) -> dict[str, Path]:
    """Write ``compare.md``, ``compare.json`` (and ``clean_to_hard.png`` with matplotlib) into ``output_dir``."""
    result = compare_runs(run_a, run_b, config)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    columns = ["A", "B", "delta", "low", "high"]
    pct = round(result["confidence"] * 100)

    def table(rows: dict[str, dict[str, Any]], first: str) -> str:
        """A Markdown table of deltas with a verdict column."""
        text = markdown_table(rows, columns, first).splitlines()
        text[0] += " verdict |"
        text[1] += "---|"
        return "\n".join(
            [
                *text[:2],
                *(f"{line} {row['verdict']} |" for line, row in zip(text[2:], rows.values(), strict=True)),
            ]
        )

    parts = [
        f"# {_label(str(run_b))} (B) vs {_label(str(run_a))} (A)",
        f"Accuracy in %, delta = B - A in points with a {pct}% paired bootstrap interval [low, high]; "
        f"'within noise' when the interval contains 0. Rows only in A: {result['only_in_A']}, only in B: "
        f"{result['only_in_B']}.",
        "## Per level",
        table(result["per_level"], "level"),
        "## Per benchmark and level",
        table(result["per_benchmark_level"], "benchmark / level"),
        f"## Per corruption (Table 10), level: {result['per_type_levels']}",
        table(result["per_type"], "corruption"),
        table(result["per_corruption_category"], "category"),
    ]
    written = {"json": out / "compare.json", "markdown": out / "compare.md"}
    if plots.available():
        tables = {
            _label(str(run)): metrics.accuracy_table(metrics.valid(read_predictions(run)))
            for run in (run_a, run_b)
        }
        written["curve"] = plots.curve_figure(tables, out / "clean_to_hard.png")
        parts.append("![clean to hard](clean_to_hard.png)")
    written["json"].write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    written["markdown"].write_text("\n\n".join(parts) + "\n", encoding="utf-8")
    return written
