"""``clear-plugins eval report``: the paper's tables from one run folder, as Markdown, JSON and PNG.

Tables: 1/9 (benchmark x level accuracy), 2 (clean, hard, drop), 10 (per corruption type and category at each
degraded level), 11 (time per level), trigger rates (Fig. 5), and with ``iqa=True`` Table 4 (BRISQUE, NIQE,
PSNR, SSIM of the restored images of rows that triggered restoration, next to their degraded inputs).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from statistics import fmean
from typing import Any

from clear_plugins.eval import metrics, plots
from clear_plugins.eval.runner import RUN_NAME, read_predictions

REPORT_MD = "report.md"
REPORT_JSON = "report.json"
FIG_TRIGGER = "fig5_trigger_time.png"
FIG_CURVE = "clean_to_hard.png"
IQA_CACHE = "iqa.jsonl"


def _fmt(value: Any, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown_table(
    rows: dict[str, dict[str, Any]], columns: Sequence[str], first: str, digits: int = 2
) -> str:
    """A Markdown table: one line per key of ``rows``, one column per name in ``columns``."""
    lines = [f"| {first} | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(row.get(c), digits) for c in columns) + " |")
    return "\n".join(lines)


def _transpose(table: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """``{benchmark: {level: v}}`` to ``{level: {benchmark: v}}`` (the paper puts levels in rows)."""
    result: dict[str, dict[str, float]] = {}
    for bench, row in table.items():
        for level, value in row.items():
            result.setdefault(level, {})[bench] = value
    return result


def _iqa_rows(run_dir: Path, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """IQA of every restored image and its degraded input (cached in ``iqa.jsonl`` by image)."""
    from PIL import Image

    from clear_plugins.eval import iqa
    from clear_plugins.eval.items import Benchmark, iter_items

    cache_path = run_dir / IQA_CACHE
    cache = {}
    if cache_path.is_file():
        for line in cache_path.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            cache[entry["id"]] = entry
    items: dict[tuple[str, str], dict[str, Any]] = {}
    rows = []
    with cache_path.open("a", encoding="utf-8") as handle:
        for record in metrics.valid(records):
            for image_path in record.get("restored_images", []):
                if image_path not in cache:
                    key = (record["bench_dir"], record["level"])
                    if key not in items:
                        bench = Benchmark.open(record["bench_dir"], name=record["benchmark"])
                        items[key] = {i.row_id: i for i in iter_items(bench, record["level"])}
                    item = items[key][record["row_id"]]
                    restored = Image.open(run_dir / image_path).convert("RGB")
                    clean = item.clean_image()
                    entry = {
                        "id": image_path,
                        "restored": iqa.measure(restored, clean),
                        "input": iqa.measure(item.image(), clean),
                    }
                    cache[image_path] = entry
                    handle.write(json.dumps(entry) + "\n")
                rows.append({**cache[image_path], "level": record["level"], "benchmark": record["benchmark"]})
    return rows


def iqa_table(rows: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Table 4: mean metrics per level, for the restored images and their degraded inputs."""
    table: dict[str, dict[str, float | None]] = {}
    for level in metrics.levels(rows):
        for state in ("restored", "input"):
            cell = [r[state] for r in rows if r["level"] == level]
            summary: dict[str, float | None] = {"images": float(len(cell))}
            for metric in ("brisque", "niqe", "psnr", "ssim"):
                values = [c[metric] for c in cell if c[metric] is not None and c[metric] != float("inf")]
                summary[metric] = fmean(values) if values else None
            table[f"{level} / {state}"] = summary
    return table


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Every table of one run as plain data."""
    accuracy = metrics.accuracy_table(records)
    return {
        "rows": len(records),
        "errors": len(records) - len(metrics.valid(records)),
        "accuracy": accuracy,
        "robustness": metrics.robustness(accuracy),
        "per_type": metrics.per_corruption(records, "type"),
        "per_corruption_category": metrics.per_corruption(records, "corruption_category"),
        "trigger_rate": metrics.trigger_rates(records),
        "time": metrics.times(records),
    }


def _markdown(name: str, summary: dict[str, Any], figures: list[str]) -> str:
    levels = [
        lv for lv in ("clean", "low", "mid", "hard") if any(lv in r for r in summary["accuracy"].values())
    ]
    benches = list(summary["accuracy"])
    time_rows = {b: {lv: c["total_s"] for lv, c in row.items()} for b, row in summary["time"].items()}
    parts = [
        f"# Evaluation report: {name}",
        f"{summary['rows']} rows, {summary['errors']} unreadable (left out). Accuracy in %; MMBench-style circular "
        "groups count once, correct only if every rotation is.",
        "## Accuracy per level (Table 1 / Table 9)",
        markdown_table(_transpose(summary["accuracy"]), benches, "level"),
        "## Robustness (Table 2): drop = clean - hard",
        markdown_table(summary["robustness"], ["clean", "hard", "drop", "relative_drop"], "benchmark"),
        "## Per corruption (Table 10), mean over benchmarks",
        markdown_table(summary["per_type"], levels[1:], "corruption"),
        markdown_table(summary["per_corruption_category"], levels[1:], "category"),
        "## Restoration trigger rate, % of rows (Fig. 5)",
        markdown_table(_transpose(summary["trigger_rate"]), benches, "level", 1),
        "## Inference time per level, seconds (Table 11)",
        markdown_table(time_rows, levels, "benchmark", 3),
    ]
    if "iqa" in summary:
        parts += [
            "## Quality of restored images (Table 4): BRISQUE, NIQE lower is better; PSNR, SSIM vs clean",
            markdown_table(summary["iqa"], ["images", "brisque", "niqe", "psnr", "ssim"], "level / state"),
            "Implementations: " + "; ".join(f"{k}: {v}" for k, v in summary["iqa_implementations"].items()),
        ]
    parts += [f"![{f}]({f})" for f in figures] or ["(No pictures: install matplotlib, the 'eval' extra.)"]
    return "\n\n".join(parts) + "\n"


def write_report(run_dir: str | Path, *, iqa: bool = False) -> dict[str, Path]:
    """Write ``report.md``, ``report.json`` and the PNGs into ``run_dir``; returns their paths by name."""
    run_dir = Path(run_dir)
    records = read_predictions(run_dir)
    summary = summarize(records)
    if iqa:
        from clear_plugins.eval.iqa import IMPLEMENTATIONS

        summary["iqa"] = iqa_table(_iqa_rows(run_dir, records))
        summary["iqa_implementations"] = IMPLEMENTATIONS
    header = json.loads((run_dir / RUN_NAME).read_text(encoding="utf-8"))
    name = str(header.get("model", {}).get("name", run_dir.name))
    written = {"json": run_dir / REPORT_JSON, "markdown": run_dir / REPORT_MD}
    figures = []
    if plots.available():
        written["fig5"] = plots.trigger_figure(
            summary["trigger_rate"], summary["time"], run_dir / FIG_TRIGGER
        )
        written["curve"] = plots.curve_figure({name: summary["accuracy"]}, run_dir / FIG_CURVE)
        figures = [FIG_TRIGGER, FIG_CURVE]
    written["json"].write_text(json.dumps({"model": header.get("model"), **summary}, indent=1) + "\n")
    written["markdown"].write_text(_markdown(name, summary, figures), encoding="utf-8")
    return written
