"""Stage 1 of ``data build``: sample VQA pairs stratified by source, degrade each with one seeded (type, level).

Sources are read with :func:`clear_plugins.bench.sources.read_source`, so any format ``bench build`` reads works.
The draw is deterministic: each source's rows are shuffled with a seed derived from (seed, source index), the
quota of a source is its share of ``num_samples`` (largest remainder), a row whose image cannot be read is
reported with its index and replaced by the next one, and the (type, level) stream of the training sampler is
consumed in sample order. Clean and degraded images are written as PNG under ``images/``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clear_plugins.bench.config import BenchBuildConfig
from clear_plugins.bench.plan import derive_seed
from clear_plugins.bench.sources import SourceTable, read_source
from clear_plugins.bench.worker import decode_image
from clear_plugins.data.cache import StageCache
from clear_plugins.data.config import DataBuildConfig
from clear_plugins.degradations import LEVELS, DegradationSampler, apply
from clear_plugins.errors import ClearConfigError

CLEAN_DIR = "images/clean"
"""Folder (under the output folder) of the clean images."""
DEGRADED_DIR = "images/degraded"
"""Folder (under the output folder) of the degraded images."""

_UNSAFE = re.compile(r"[^0-9A-Za-z._-]+")
_ADDRESS = re.compile(r" (?:object )?at 0x[0-9a-fA-F]+")


@dataclass(frozen=True)
class Candidate:
    """A source row chosen for sampling, before its image is read."""

    source_index: int
    position: int


def allocate(sizes: list[int], total: int | None) -> list[int]:
    """Split ``total`` among sources in proportion to ``sizes`` (largest remainder; ties to the earlier source)."""
    available = sum(sizes)
    if total is None or total >= available:
        return list(sizes)
    exact = [total * size / available for size in sizes]
    quotas = [int(value) for value in exact]
    order = sorted(range(len(sizes)), key=lambda i: (-(exact[i] - quotas[i]), i))
    for i in order[: total - sum(quotas)]:
        quotas[i] += 1
    return quotas


def question_text(row: dict[str, Any], table: SourceTable) -> str:
    """The question with its options as ``A. …`` lines (dict, list or VLMEvalKit letter columns)."""
    columns = table.columns
    question = str(row.get(columns.question) or "").strip()
    lines: list[str] = []
    if len(columns.options) > 1:
        lines = [
            f"{c}. {row[c]}" for c in columns.options if row.get(c) not in (None, "") and row[c] == row[c]
        ]
    elif columns.options:
        options = row.get(columns.options[0])
        if isinstance(options, dict):
            lines = [f"{key}. {value}" for key, value in options.items()]
        elif isinstance(options, list | tuple):
            lines = [f"{chr(ord('A') + i)}. {value}" for i, value in enumerate(options)]
    return "\n".join([question, *lines]) if lines else question


def _safe_id(text: str, taken: set[str]) -> str:
    base = _UNSAFE.sub("_", text).strip("_")[:120] or "row"
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    taken.add(name)
    return name


def read_sources(config: DataBuildConfig) -> list[SourceTable]:
    """Every source as a table; a source without question or answer column is a config error."""
    tables = []
    for source in config.sources:
        table = read_source(
            BenchBuildConfig(
                source=source,
                output_dir=config.output_dir,
                id_column=config.id_column,
                image_column=config.image_column,
                question_column=config.question_column,
                answer_column=config.answer_column,
                progress=False,
            )
        )
        for role in ("question", "answer"):
            if getattr(table.columns, role) is None:
                raise ClearConfigError(
                    f"VQA source {source!r} has no {role} column (columns: {', '.join(table.rows[0])}); name it "
                    f"with --{role}-column."
                )
        tables.append(table)
    return tables


def _orders(tables: list[SourceTable], seed: int) -> list[list[int]]:
    return [
        [int(i) for i in np.random.default_rng([seed, index]).permutation(len(table.rows))]
        for index, table in enumerate(tables)
    ]


def sample_stage(
    config: DataBuildConfig,
    cache: StageCache,
    *,
    on_row: Callable[[], None] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Sample, degrade and write images; return ``(samples in order, unreadable rows)`` (both also cached).

    Unreadable rows are cached too, so a rerun skips them without reading their image again.
    """
    tables = read_sources(config)
    quotas = allocate([len(t.rows) for t in tables], config.num_samples)
    sampler = DegradationSampler(config.weighting, seed=config.seed)
    out = Path(config.output_dir)
    samples: list[dict[str, Any]] = []
    bad: list[dict[str, Any]] = []
    taken: set[str] = set()
    for index, (table, order, quota) in enumerate(
        zip(tables, _orders(tables, config.seed), quotas, strict=True)
    ):
        kept = 0
        for position in order:
            if kept >= quota:
                break
            row_id = _safe_id(f"{Path(table.path).stem}-{table.row_ids[position]}", taken)
            record = cache.get(row_id)
            if record is None:
                draw = sampler.sample()
                record = _make(config, table, index, position, row_id, draw, out)
                cache.append(record)
            else:
                sampler.sample()  # keep the (type, level) stream aligned with an uninterrupted run
            if on_row is not None:
                on_row()
            if record.get("error"):
                bad.append(record)
                continue
            kept += 1
            samples.append(record)
    return samples, bad


def _make(
    config: DataBuildConfig, table: SourceTable, index: int, position: int, row_id: str, draw: Any, out: Path
) -> dict[str, Any]:
    """Read one row's image, degrade it and write both images; an unreadable image gives an error record."""
    row = table.rows[position]
    record: dict[str, Any] = {
        "id": row_id,
        "source": table.name,
        "source_index": index,
        "source_row": position,
        "source_id": table.row_ids[position],
        "question": question_text(row, table),
        "answer": str(row.get(table.columns.answer) if row.get(table.columns.answer) is not None else ""),
        "degradation": draw.name,
        "level": draw.level,
        "intensity": LEVELS[draw.level],
    }
    try:
        clean = decode_image(table.payloads[position]).convert("RGB")
    except ValueError as exc:
        why = _ADDRESS.sub("", str(exc))  # object addresses would make reruns differ
        return {**record, "error": f"{table.name} row {position}: {why}"}
    if not record["answer"].strip() or not record["question"].strip():
        return {**record, "error": f"{table.name} row {position}: empty question or answer"}
    seed = derive_seed(config.seed, row_id, draw.name, draw.level)
    degraded = apply(clean, draw.name, draw.level, seed=seed)
    for folder, image, key in ((CLEAN_DIR, clean, "clean_image"), (DEGRADED_DIR, degraded, "degraded_image")):
        path = out / folder / f"{row_id}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        image.save(tmp, format="PNG")
        tmp.replace(path)
        record[key] = f"{folder}/{row_id}.png"
    record["degradation_seed"] = seed
    return record
