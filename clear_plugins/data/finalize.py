"""Stage 4 of ``data build``: balance the pathways 1:1, split into two disjoint halves, write the sets and stats.

App. C.1: the larger pathway is subsampled to the size of the smaller one, and the result is split into two
non-overlapping halves, one for SFT and one for Interleaved GRPO. Both halves keep the 1:1 ratio (each pathway
is split in half). Outputs, all under the build folder: ``sft.jsonl`` and ``grpo.jsonl`` (one
:class:`~clear_plugins.data.schema.TrainingRow` per line, image paths relative to the folder), ``stats.json``
(Table 8's rows for each set, the per type x level x pathway counts, the pipeline's counters and the endpoint
usage) and ``distribution.png`` (when matplotlib is installed).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from clear_plugins.data.schema import PATHWAYS, TrainingRow

T = TypeVar("T")

SETS: tuple[str, ...] = ("sft", "grpo")
"""The two halves, in split order: the first half of each pathway goes to SFT."""
BALANCE_STAGES: tuple[str, ...] = ("after", "before", "none")
"""When the pathways are balanced: after the trace filter (exact 1:1), before trace writing, or never."""


def _pathway(row: TrainingRow) -> str:
    return row.pathway


def balance(rows: list[T], seed: int, pathway_of: Callable[[T], str] = _pathway) -> tuple[list[T], int]:
    """Subsample the larger pathway to the smaller one's size (seeded; order kept); return rows and how many left.

    ``pathway_of`` reads an item's pathway (default: a :class:`TrainingRow`'s ``pathway``).
    """
    groups = {p: [i for i, r in enumerate(rows) if pathway_of(r) == p] for p in PATHWAYS}
    size = min(len(g) for g in groups.values())
    keep: set[int] = set()
    for number, (_, group) in enumerate(sorted(groups.items())):
        chosen = np.random.default_rng([seed, 1, number]).choice(len(group), size=size, replace=False)
        keep.update(group[int(i)] for i in chosen)
    return [r for i, r in enumerate(rows) if i in keep], len(rows) - len(keep)


def split(rows: list[TrainingRow], seed: int) -> dict[str, list[TrainingRow]]:
    """Two disjoint halves; each pathway is shuffled (seeded) and its first ceil(n/2) rows go to SFT."""
    to_sft: set[str] = set()
    for number, pathway in enumerate(PATHWAYS):
        ids = [r.id for r in rows if r.pathway == pathway]
        order = np.random.default_rng([seed, 2, number]).permutation(len(ids))
        to_sft.update(ids[int(i)] for i in order[: (len(ids) + 1) // 2])
    return {"sft": [r for r in rows if r.id in to_sft], "grpo": [r for r in rows if r.id not in to_sft]}


def _mean(values: list[int]) -> float | None:
    return round(sum(values) / len(values), 1) if values else None


def set_stats(rows: list[TrainingRow]) -> dict[str, Any]:
    """Table 8's properties of one set, plus per type, level and type x level x pathway counts."""
    lengths = {p: [len(r.trajectory) for r in rows if r.pathway == p] for p in PATHWAYS}
    words = {p: [len(r.trajectory.split()) for r in rows if r.pathway == p] for p in PATHWAYS}
    grid: dict[str, dict[str, dict[str, int]]] = {}
    for r in rows:
        cell = grid.setdefault(str(r.degradation), {}).setdefault(str(r.level), dict.fromkeys(PATHWAYS, 0))
        cell[r.pathway] += 1
    return {
        "total_samples": len(rows),
        "direct_samples": len(lengths["direct"]),
        "generate_then_answer_samples": len(lengths["restore"]),
        "mean_trace_chars_direct": _mean(lengths["direct"]),
        "mean_trace_chars_generate": _mean(lengths["restore"]),
        "mean_trace_words_direct": _mean(words["direct"]),
        "mean_trace_words_generate": _mean(words["restore"]),
        "corruption_types_used": len({r.degradation for r in rows}),
        "severity_levels": len({r.level for r in rows}),
        "sources": dict(sorted(Counter(str(r.source) for r in rows).items())),
        "per_type": dict(sorted(Counter(str(r.degradation) for r in rows).items())),
        "per_level": dict(sorted(Counter(str(r.level) for r in rows).items())),
        "type_level_pathway": {t: dict(sorted(v.items())) for t, v in sorted(grid.items())},
    }


def write_jsonl(path: Path, rows: list[TrainingRow]) -> None:
    """Write rows atomically (a temporary file renamed into place)."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row.to_dict(), ensure_ascii=False, sort_keys=True) + "\n")
    os.replace(tmp, path)


def write_json(path: Path, value: Any) -> None:
    """Write JSON atomically, keys sorted, indented."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def plot_distribution(sets: dict[str, list[TrainingRow]], path: Path) -> str | None:
    """A PNG of type x level counts, one panel per pathway, over both sets; returns why not when it cannot."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib) so no distribution.png was drawn"
    rows = [r for name in SETS for r in sets[name]]
    types = sorted({str(r.degradation) for r in rows})
    levels = [lv for lv in ("low", "mid", "hard") if any(str(r.level) == lv for r in rows)]
    levels += sorted({str(r.level) for r in rows} - set(levels))
    fig, axes = plt.subplots(1, 2, figsize=(8, max(3.0, 0.35 * len(types) + 1.5)), squeeze=False)
    for ax, pathway in zip(axes[0], PATHWAYS, strict=True):
        counts = np.zeros((len(types), len(levels)), dtype=int)
        for r in rows:
            if r.pathway == pathway:
                counts[types.index(str(r.degradation)), levels.index(str(r.level))] += 1
        ax.imshow(counts if counts.size else np.zeros((1, 1)), cmap="Blues", aspect="auto")
        ax.set_xticks(range(len(levels)), levels)
        ax.set_yticks(range(len(types)), types, fontsize=7)
        ax.set_title("direct" if pathway == "direct" else "generate-then-answer")
        for (i, j), value in np.ndenumerate(counts):
            ax.text(j, i, str(value), ha="center", va="center", fontsize=7)
    fig.suptitle("Samples per degradation type x level x pathway (SFT + GRPO sets)")
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)
    return None
