"""Aggregates of a run's records: accuracy per benchmark and level, robustness, per-corruption accuracy,
trigger rate and time. Every function takes the records of ``predictions.jsonl`` and returns plain dicts.

Accuracy is the mean unit score in percent, where a unit is a row, or a whole circular group for MMBench-style
circular evaluation (:func:`~clear_plugins.eval.scoring.unit_scores`); the ``AVG`` entry is the mean over
benchmarks, as the paper averages its six benchmarks. Rows recorded with an ``error`` are left out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from statistics import fmean
from typing import Any

from clear_plugins.eval.items import LEVELS
from clear_plugins.eval.scoring import unit_scores

AVG = "AVG"
"""Name of the mean-over-benchmarks entry."""


def valid(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records that were answered (no ``error``)."""
    return [r for r in records if "error" not in r]


def benchmarks(records: Iterable[dict[str, Any]]) -> list[str]:
    """Benchmark names in first-seen order."""
    return list(dict.fromkeys(r["benchmark"] for r in records))


def levels(records: Iterable[dict[str, Any]]) -> list[str]:
    """Levels present, in clean/low/mid/hard order."""
    present = {r["level"] for r in records}
    return [level for level in LEVELS if level in present]


def _grouped(
    records: Iterable[dict[str, Any]], key: Callable[[dict[str, Any]], Any], value: Callable[[list], float]
) -> dict[Any, float]:
    groups: dict[Any, list] = defaultdict(list)
    for record in records:
        groups[key(record)].append(record)
    return {k: value(v) for k, v in groups.items()}


def _pct(units: list[dict[str, Any]]) -> float:
    return 100.0 * fmean(u["score"] for u in units)


def _with_average(table: dict[str, dict[str, float]], columns: list[str]) -> dict[str, dict[str, float]]:
    """Add the ``AVG`` row: per column, the mean over benchmarks that have it."""
    average = {}
    for column in columns:
        values = [row[column] for row in table.values() if column in row]
        if values:
            average[column] = fmean(values)
    return {**table, AVG: average}


def accuracy_table(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Table 1/9: ``{benchmark: {level: accuracy %}}`` plus ``AVG``."""
    units = unit_scores(valid(records))
    cells = _grouped(units, lambda u: (u["benchmark"], u["level"]), _pct)
    table: dict[str, dict[str, float]] = {}
    for (bench, level), value in cells.items():
        table.setdefault(bench, {})[level] = value
    table = {b: {lv: table[b][lv] for lv in LEVELS if lv in table[b]} for b in benchmarks(units)}
    return _with_average(table, levels(units))


def robustness(accuracy: dict[str, dict[str, float]], degraded: str = "hard") -> dict[str, dict[str, float]]:
    """Table 2: ``{benchmark: {clean, hard, drop, relative_drop}}`` where both levels were evaluated."""
    result = {}
    for bench, row in accuracy.items():
        if "clean" in row and degraded in row:
            drop = row["clean"] - row[degraded]
            relative = 100.0 * drop / row["clean"] if row["clean"] else float("nan")
            result[bench] = {
                "clean": row["clean"],
                degraded: row[degraded],
                "drop": drop,
                "relative_drop": relative,
            }
    return result


def per_corruption(records: Iterable[dict[str, Any]], field: str = "type") -> dict[str, dict[str, float]]:
    """Table 10: ``{type or category: {level: accuracy %}}``, each the mean over benchmarks (``field`` is
    ``type`` for corruptions or ``corruption_category`` for their four categories)."""
    units = [u for u in unit_scores(valid(records), by_type=True) if u["level"] != "clean"]
    cells = _grouped(units, lambda u: (u[field], u["level"], u["benchmark"]), _pct)
    by_name: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for (name, level, _bench), value in cells.items():
        by_name[name][level].append(value)
    return {
        name: {level: fmean(by_name[name][level]) for level in LEVELS if level in by_name[name]}
        for name in sorted(by_name)
    }


def trigger_rates(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Fig. 5 bars: ``{benchmark: {level: % of rows that restored}}`` plus ``AVG``."""
    rows = valid(records)
    cells = _grouped(
        rows, lambda r: (r["benchmark"], r["level"]), lambda v: 100.0 * fmean(r["restored"] for r in v)
    )
    table: dict[str, dict[str, float]] = {}
    for (bench, level), value in cells.items():
        table.setdefault(bench, {})[level] = value
    table = {b: {lv: table[b][lv] for lv in LEVELS if lv in table[b]} for b in benchmarks(rows)}
    return _with_average(table, levels(rows))


def times(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Table 11 and the Fig. 5 line: ``{benchmark: {level: {total_s, mean_s, rows}}}`` plus a ``Total`` row."""
    rows = valid(records)
    result: dict[str, dict[str, dict[str, float]]] = {}
    for bench in benchmarks(rows):
        for level in levels(rows):
            cell = [r["seconds"] for r in rows if r["benchmark"] == bench and r["level"] == level]
            if cell:
                result.setdefault(bench, {})[level] = {
                    "total_s": sum(cell),
                    "mean_s": fmean(cell),
                    "rows": len(cell),
                }
    total: dict[str, dict[str, float]] = {}
    for level in levels(rows):
        cells = [row[level] for row in result.values() if level in row]
        seconds, count = sum(c["total_s"] for c in cells), sum(c["rows"] for c in cells)
        total[level] = {"total_s": seconds, "mean_s": seconds / count, "rows": count}
    return {**result, "Total": total}
