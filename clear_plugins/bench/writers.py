"""Write a level's degraded rows back in the source's format (JSONL/JSON, CSV, TSV, parquet, ``datasets`` folder).

Rows are streamed (parquet in row groups), so a level never has to fit in memory as one table, except for the
``datasets`` writer which builds the dataset from a generator.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from clear_plugins.bench.sources import ImagePayload, SourceTable

CLEAR_COLUMNS: tuple[str, ...] = (
    "clear_source_id",
    "clear_type",
    "clear_level",
    "clear_intensity",
    "clear_seed",
)
"""Columns added to every degraded row: the source row id, type, level, intensity and seed of its image."""

BINARY_FORMATS: tuple[str, ...] = ("parquet", "hf")
"""Source formats that can hold raw image bytes in a cell."""

PARQUET_BATCH_ROWS = 256
_MIME = {"png": "image/png", "jpeg": "image/jpeg"}


def image_cell(
    payload: ImagePayload, data: bytes | None, file: str, image_format: str, *, binary: bool
) -> Any:
    """The degraded image's cell, stored the way the source stored it (``file`` is relative to the table).

    ``binary`` says whether the format holds raw bytes (parquet, ``datasets``); a ``{"bytes", "path"}`` cell in
    a text format (JSON) keeps only the path.
    """
    if payload.kind == "path":
        return file
    if payload.kind == "struct" and not binary:
        return {"bytes": None, "path": file}
    if data is None:
        raise ValueError(f"image bytes are needed for an image stored as {payload.kind}")
    if payload.kind == "base64":
        text = base64.b64encode(data).decode("ascii")
        prefix = f"data:{_MIME[image_format]};base64," if payload.prefix else ""
        return prefix + text
    if payload.kind == "struct":
        return {"bytes": data, "path": Path(file).name}
    return data


def _atomic_target(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(path.name + ".tmp")


def _write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    tmp = _atomic_target(path)
    with tmp.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def _write_json(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    tmp = _atomic_target(path)
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write("[")
        for number, row in enumerate(rows):
            handle.write(("\n" if number == 0 else ",\n") + json.dumps(row, ensure_ascii=False))
        handle.write("\n]\n")
    os.replace(tmp, path)


def _write_delimited(
    path: Path, rows: Iterable[dict[str, Any]], fieldnames: list[str], delimiter: str
) -> None:
    tmp = _atomic_target(path)
    with tmp.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fieldnames, delimiter=delimiter, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def _parquet_schema(source: SourceTable, full_mode: bool):
    import pyarrow as pa

    schema = source.extra["schema"]
    if full_mode and source.columns.id is not None:
        position = schema.get_field_index(source.columns.id)
        schema = schema.set(position, pa.field(source.columns.id, pa.string()))
    clear_types = (pa.string(), pa.string(), pa.string(), pa.float64(), pa.int64())
    for name, kind in zip(CLEAR_COLUMNS, clear_types, strict=True):
        schema = schema.append(pa.field(name, kind))
    return schema.remove_metadata()


def _write_parquet(path: Path, rows: Iterable[dict[str, Any]], schema) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    tmp = _atomic_target(path)
    with pq.ParquetWriter(tmp, schema) as writer:
        batch: list[dict[str, Any]] = []
        for row in rows:
            batch.append(row)
            if len(batch) == PARQUET_BATCH_ROWS:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                batch = []
        if batch:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
    os.replace(tmp, path)


def _hf_features(source: SourceTable, full_mode: bool):
    import datasets

    features = datasets.Features(source.extra["features"].copy())
    if full_mode and source.columns.id is not None:
        features[source.columns.id] = datasets.Value("string")
    kinds = ("string", "string", "string", "float64", "int64")
    for name, kind in zip(CLEAR_COLUMNS, kinds, strict=True):
        features[name] = datasets.Value(kind)
    return features


def _write_hf(path: Path, rows: Iterable[dict[str, Any]], features, fingerprint: str) -> None:
    import tempfile

    import datasets

    rows = list(rows)
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    bars_were_on = not datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        with tempfile.TemporaryDirectory(dir=path.parent) as cache:
            dataset = datasets.Dataset.from_generator(
                _yield_rows,
                features=features,
                gen_kwargs={"rows": rows},
                cache_dir=cache,
                fingerprint=fingerprint,
            )
            dataset.save_to_disk(str(tmp))
            del dataset
    finally:
        if bars_were_on:
            datasets.enable_progress_bars()
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)


def _yield_rows(rows: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    yield from rows


def write_table(
    source: SourceTable, path: Path, rows: Iterable[dict[str, Any]], *, full_mode: bool, fingerprint: str
) -> None:
    """Write ``rows`` to ``path`` in ``source``'s format (a folder for ``datasets``), atomically."""
    if source.format == "jsonl":
        _write_jsonl(path, rows)
    elif source.format == "json":
        _write_json(path, rows)
    elif source.format in ("csv", "tsv"):
        fieldnames = [*source.extra["fieldnames"], *CLEAR_COLUMNS]
        _write_delimited(path, rows, fieldnames, "\t" if source.format == "tsv" else ",")
    elif source.format == "parquet":
        _write_parquet(path, rows, _parquet_schema(source, full_mode))
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_hf(path, rows, _hf_features(source, full_mode), fingerprint)
