"""The one-screen summary printed at the end of ``clear-plugins demo``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .evaluate import EVAL_LEVELS
from .report import MODELS, _fmt


def summary(results: dict[str, Any], out: Path) -> str:
    """Stage statuses, the gate, colour+shape accuracy and trigger rate per level, the ablation, the outputs."""
    lines = [
        f"clear-plugins demo (seed {results['seed']}, {'quick' if results['quick'] else 'default'}): "
        f"{results.get('wall_seconds', 0):.0f} s"
    ]
    lines.append("  stages: " + ", ".join(f"{k}={v['status']}" for k, v in results.get("stages", {}).items()))
    gate = results["stage0"].get("gate", {})
    lines.append(f"  stage-0 restoration gate: {'passed' if gate.get('passed') else 'FAILED'}")
    lines.append(
        "  colour+shape accuracy % / trigger rate %   " + "  ".join(f"{lv:>11}" for lv in EVAL_LEVELS)
    )
    for field, label in MODELS:
        levels = (results.get(field) or {}).get("levels")
        if not levels:
            lines.append(f"    {label:<6} not run")
            continue
        cells = [
            f"{_fmt(levels[lv]['colour_shape_accuracy']):>5} / {_fmt(levels[lv]['trigger_rate']):>3}"
            for lv in EVAL_LEVELS
        ]
        lines.append(f"    {label:<38}" + "  ".join(f"{c:>11}" for c in cells))
    abl = results.get("ablations")
    if abl:
        lines.append(
            "  hard, by bridge mode (accuracy %): "
            + ", ".join(f"{m} {_fmt(r['accuracy'])}" for m, r in abl.items())
        )
    lines.append(f"  report: {out / 'report.md'}  results: {out / 'results.json'}")
    return "\n".join(lines)
