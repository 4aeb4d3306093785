"""The demo's report: ``results.json``, ``report.md`` and PNG plots, every number taken from this run's results."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .evaluate import EVAL_LEVELS

MODELS: tuple[tuple[str, str], ...] = (("eval_base", "base"), ("eval_sft", "SFT"), ("eval_rl", "RL"))


def _fmt(x: Any, pct: bool = True) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{100 * x:.1f}" if pct else f"{x:.2f}"


def accuracy_table(results: dict[str, Any], key: str) -> list[str]:
    """Markdown rows: one per model, one column per level, of accuracy ``key``."""
    lines = ["| model | " + " | ".join(EVAL_LEVELS) + " |", "|---|" + "---|" * len(EVAL_LEVELS)]
    for field, label in MODELS:
        levels = (results.get(field) or {}).get("levels")
        if levels:
            lines.append(f"| {label} | " + " | ".join(_fmt(levels[lv][key]) for lv in EVAL_LEVELS) + " |")
        else:
            lines.append(f"| {label} | " + " | ".join("not run" for _ in EVAL_LEVELS) + " |")
    return lines


def psnr_summary(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Mean degraded / restored PSNR per level over the final model's restores."""
    source = results.get("eval_rl") or results.get("eval_sft") or {}
    out: dict[str, dict[str, float]] = {}
    for level in EVAL_LEVELS[1:]:  # a clean input has no degraded PSNR
        rows = [r for r in source.get("psnr", []) if r["level"] == level]
        if rows:
            out[level] = {
                "n": len(rows),
                "degraded": sum(r["degraded"] for r in rows) / len(rows),
                "restored": sum(r["restored"] for r in rows) / len(rows),
            }
    return out


def plots(out: Path, results: dict[str, Any]) -> list[str]:
    """accuracy.png, trigger_rate.png, psnr.png; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, key, title in (
        (axes[0], "colour_shape_accuracy", "colour+shape accuracy"),
        (axes[1], "accuracy", "overall accuracy"),
    ):
        for field, label in MODELS:
            levels = (results.get(field) or {}).get("levels")
            if levels:
                ax.plot(EVAL_LEVELS, [levels[lv][key] for lv in EVAL_LEVELS], marker="o", label=label)
        ax.set_title(title)
        ax.set_ylim(0, 1)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "accuracy.png", dpi=80)
    written.append("accuracy.png")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    for field, label in MODELS[1:]:
        levels = (results.get(field) or {}).get("levels")
        if levels:
            ax.plot(EVAL_LEVELS, [levels[lv]["trigger_rate"] for lv in EVAL_LEVELS], marker="o", label=label)
    ax.set_title("restoration trigger rate")
    ax.set_ylim(0, 1)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "trigger_rate.png", dpi=80)
    written.append("trigger_rate.png")
    plt.close(fig)
    table = psnr_summary(results)
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    levels = list(table)
    ax.bar(
        [i - 0.2 for i in range(len(levels))], [table[lv]["degraded"] for lv in levels], 0.4, label="degraded"
    )
    ax.bar(
        [i + 0.2 for i in range(len(levels))], [table[lv]["restored"] for lv in levels], 0.4, label="restored"
    )
    ax.set_xticks(range(len(levels)), levels)
    ax.set_ylabel("PSNR vs clean (dB)")
    ax.set_title("restored images (final model)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "psnr.png", dpi=80)
    written.append("psnr.png")
    plt.close(fig)
    return written


def write_report(out: Path, results: dict[str, Any]) -> Path:
    """``results.json``, plots and ``report.md`` under ``out``; returns the report path."""
    results["psnr_summary"] = psnr_summary(results)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    figures = plots(out, results)
    triptychs = sorted(str(p.relative_to(out)) for p in out.glob("eval_*/triptych_*.png"))
    lines = render(results, figures, triptychs)
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def render(results: dict[str, Any], figures: list[str], triptychs: list[str]) -> list[str]:
    """The report's Markdown lines."""
    m = results["machine"]
    s0 = results["stage0"]
    gate = s0.get("gate", {})
    lines = [
        "# clear-plugins demo report",
        "",
        f"Seed {results['seed']}, {'--quick' if results['quick'] else 'default'} run, "
        f"{results.get('wall_seconds', 0):.0f} s wall; {m['platform']}, {m['cpu_count']} CPUs, "
        f"torch {m['torch']} with {m['torch_threads']} thread(s). Every number below was measured in this run.",
        "",
        "## Stages",
        "",
        "| stage | status | seconds |",
        "|---|---|---|",
    ]
    for name, st in results.get("stages", {}).items():
        secs = st.get("seconds")
        lines.append(
            f"| {name} | {st['status']}{': ' + st['reason'] if 'reason' in st else ''} | "
            f"{'' if secs is None else f'{secs:.0f}'} |"
        )
    lines += [
        "",
        f"Stage 0 base: {s0.get('source')} (SHA-256 {s0.get('sha256', '–')}).",
        f"Restoration gate (restored PSNR > degraded PSNR at hard, per type): "
        f"**{'passed' if gate.get('passed') else 'FAILED'}**; VAE round trip {_fmt(gate.get('vae_psnr'), False)} dB.",
        "",
    ]
    if not gate.get("passed"):
        lines += [
            "**The restoration gate failed**: on held-out images the base's restorer does not beat the degraded "
            "input at the hard level for every type, so restore-then-answer cannot be expected to help here; "
            "read the accuracy tables with that in mind.",
            "",
        ]
    lines += ["| gate | degraded dB | restored dB |", "|---|---|---|"]
    for key, row in gate.items():
        if isinstance(row, dict):
            lines.append(f"| {key} | {row['degraded_psnr']:.2f} | {row['restored_psnr']:.2f} |")
    lines += [
        "",
        "## Accuracy per level (%)",
        "",
        "Colour + shape questions (text alone cannot answer them):",
        "",
    ]
    lines += accuracy_table(results, "colour_shape_accuracy")
    lines += ["", "All questions (yes/no questions are mostly answered by the text alone):", ""]
    lines += accuracy_table(results, "accuracy")
    lines += ["", "Restoration trigger rate per level (%):", ""]
    lines += accuracy_table({k: v for k, v in results.items() if k != "eval_base"}, "trigger_rate")[:2] + [
        row for row in accuracy_table(results, "trigger_rate")[2:] if not row.startswith("| base")
    ]
    abl = results.get("ablations")
    lines += ["", "## Bridge ablation (final model, hard level)", ""]
    if abl:
        lines += ["| mode | accuracy | colour+shape | trigger rate |", "|---|---|---|---|"]
        lines += [
            f"| {mode} | {_fmt(r['accuracy'])} | {_fmt(r['colour_shape_accuracy'])} | "
            f"{_fmt(r['trigger_rate'])} |"
            for mode, r in abl.items()
        ]
    else:
        lines.append("not run (see Stages).")
    lines += [
        "",
        "## Restored images (final model)",
        "",
        "| level | restores | degraded dB | restored dB |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {lv} | {r['n']} | {r['degraded']:.2f} | {r['restored']:.2f} |"
        for lv, r in results["psnr_summary"].items()
    ]
    lines += [
        "",
        *[f"![{f}]({f})" for f in figures],
        "",
        "Hard-level triptychs (degraded | restored | clean):",
        "",
    ]
    lines += [f"![{t}]({t})" for t in triptychs] or ["none (no restore was triggered at hard)."]
    return lines


def readme_table(results: dict[str, Any], report_link: str) -> list[str]:
    """The README's demo block: where the run came from and its colour+shape / trigger-rate tables."""
    m = results["machine"]
    lines = [
        f"Latest default run ([full report]({report_link})): `clear-plugins demo --seed {results['seed']}` on "
        f"{m['cpu_count']} CPU cores, {m['torch_threads']} torch thread, {results.get('wall_seconds', 0) / 60:.0f} min.",
        "",
        "Colour+shape accuracy (%) on held-out easy-vqa questions:",
        "",
        *accuracy_table(results, "colour_shape_accuracy"),
        "",
        "Restoration trigger rate (%):",
        "",
        *[row for row in accuracy_table(results, "trigger_rate") if not row.startswith("| base")],
    ]
    abl = results.get("ablations")
    if abl:
        lines += [
            "",
            "Hard level, final model, by bridge mode (accuracy % / colour+shape %): "
            + "; ".join(
                f"`{k}` {_fmt(v['accuracy'])} / {_fmt(v['colour_shape_accuracy'])}" for k, v in abl.items()
            )
            + ".",
        ]
    return lines
