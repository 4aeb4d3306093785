"""The report's pictures (PNG, matplotlib's Agg backend): Fig. 5 (trigger rate bars per level and benchmark, with
mean inference time as a line on a second axis) and the clean-to-hard accuracy curves.

matplotlib is an optional extra (``pip install clear-plugins[eval]``); without it :func:`available` is false and
the report is written without pictures, saying so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clear_plugins.eval.metrics import AVG

LEVEL_COLOURS = {"clean": "#9ecae1", "low": "#6baed6", "mid": "#3182bd", "hard": "#08519c"}


def available() -> bool:
    """Whether matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def trigger_figure(rates: dict, times: dict, path: Path) -> Path:
    """Fig. 5: bars = trigger rate (%) per benchmark and level; line = mean seconds per row (right axis)."""
    plt = _pyplot()
    benches = [b for b in rates if b != AVG]
    levels = [lv for lv in LEVEL_COLOURS if any(lv in rates[b] for b in benches)]
    width = 0.8 / max(len(levels), 1)
    figure, bars = plt.subplots(figsize=(max(6, 1.6 * len(benches)), 4))
    for n, level in enumerate(levels):
        xs = [i + (n - (len(levels) - 1) / 2) * width for i in range(len(benches))]
        bars.bar(
            xs, [rates[b].get(level, 0.0) for b in benches], width, label=level, color=LEVEL_COLOURS[level]
        )
    bars.set_ylabel("trigger rate (%)")
    bars.set_xticks(range(len(benches)), benches, rotation=20, ha="right")
    line = bars.twinx()
    for i, bench in enumerate(benches):
        xs = [i + (n - (len(levels) - 1) / 2) * width for n in range(len(levels))]
        ys = [times.get(bench, {}).get(level, {}).get("mean_s", float("nan")) for level in levels]
        line.plot(xs, ys, marker="o", color="#d62728", label="inference time" if i == 0 else None)
    line.set_ylabel("mean inference time per row (s)")
    bars.legend(title="level", loc="upper left")
    line.legend(loc="upper right")
    bars.set_title("Restoration trigger rate and inference time (Fig. 5)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def curve_figure(accuracies: dict[str, dict[str, dict[str, float]]], path: Path) -> Path:
    """Clean-to-hard curves: accuracy (AVG over benchmarks) per level, one line per run/model."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(5, 4))
    for name, table in accuracies.items():
        row = table.get(AVG, {})
        levels = [lv for lv in LEVEL_COLOURS if lv in row]
        axes.plot(levels, [row[lv] for lv in levels], marker="o", label=name)
    axes.set_xlabel("degradation level")
    axes.set_ylabel("accuracy (%), mean over benchmarks")
    axes.set_title("Clean to hard")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
