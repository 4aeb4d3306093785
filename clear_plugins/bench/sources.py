"""Read a VQA source into rows: JSONL/JSON, CSV, VLMEvalKit-style TSV, parquet, or a saved ``datasets`` folder.

Every reader returns a :class:`SourceTable`: the rows as dicts (all columns kept, so the degraded copy can be
written back in the same format), the resolved :class:`~clear_plugins.bench.columns.Columns`, and for each row
an :class:`ImagePayload` telling the worker where the image is (a path, base64 text, raw bytes) and how the
degraded image goes back into the row.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clear_plugins.bench.columns import Columns, resolve_columns
from clear_plugins.bench.config import BenchBuildConfig
from clear_plugins.errors import ClearConfigError, ClearError, ImageInputError

FORMATS: dict[str, str] = {
    ".jsonl": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
}
"""File suffix → source format; a folder is read as a ``datasets`` ``save_to_disk`` folder (``"hf"``)."""

VLMEVAL_REFERENCE_MAX_LEN = 64
"""VLMEvalKit TSVs store an image once: a row whose ``image`` is at most 64 characters names another row's index."""

_BASE64_RE = re.compile(r"^[A-Za-z0-9+/\s]+={0,2}\s*$")
_MAX_PATH_LEN = 4096


@dataclass(frozen=True)
class ImagePayload:
    """Where a row's image is and how it was stored.

    ``kind`` is ``"path"`` (``data`` is an absolute path), ``"base64"`` (``data`` is the text, ``prefix`` a
    ``data:`` URI head or ``""``), ``"bytes"`` (raw encoded bytes), ``"struct"`` (a ``{"bytes", "path"}`` dict as
    ``datasets`` stores images; ``data`` holds the bytes, or the path when there are none), or ``"invalid"``
    (``error`` says why; the row is reported and skipped).
    """

    kind: str
    data: str | bytes | None = None
    prefix: str = ""
    error: str | None = None


@dataclass
class SourceTable:
    """A VQA source held in memory: its rows, roles of its columns and image payloads."""

    path: Path
    format: str
    rows: list[dict[str, Any]]
    columns: Columns
    row_ids: list[str]
    payloads: list[ImagePayload]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """File (or folder) name the degraded copies are written under."""
        return self.path.name


def detect_format(path: Path) -> str:
    """The source format of ``path``: a key of :data:`FORMATS`' values, or ``"hf"`` for a folder.

    Raises:
        ImageInputError: the path does not exist or has an unknown suffix.
    """
    if path.is_dir():
        return "hf"
    if not path.is_file():
        raise ImageInputError(f"VQA source {str(path)!r} does not exist; pass an existing file or folder.")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ImageInputError(
            f"VQA source {str(path)!r} has an unknown suffix {path.suffix!r}; use one of "
            f"{', '.join(FORMATS)} or a folder saved with datasets' save_to_disk."
        )
    return fmt


def source_sha256(path: Path) -> str:
    """SHA-256 of a source file, or of a folder's files (sorted relative paths and their contents)."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with file.open("rb") as handle:
            for block in iter(lambda h=handle: h.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ImageInputError(
                    f"{path}:{number} is not valid JSON ({exc}); fix or remove that line."
                ) from exc
            if not isinstance(row, dict):
                raise ImageInputError(
                    f"{path}:{number} is not a JSON object; each line must be one row object."
                )
            rows.append(row)
    return rows


def _read_json(path: Path) -> list[dict[str, Any]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not (isinstance(data, list) and all(isinstance(row, dict) for row in data)):
        raise ImageInputError(f"{path} must hold a JSON list of row objects (or use JSON Lines, .jsonl).")
    return data


def _read_delimited(path: Path, delimiter: str) -> tuple[list[dict[str, Any]], list[str]]:
    csv.field_size_limit(sys.maxsize)
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        rows = [dict(row) for row in reader]
        return rows, list(reader.fieldnames or [])


def _read_parquet(path: Path) -> tuple[list[dict[str, Any]], Any]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    return table.to_pylist(), table.schema


def _read_hf(path: Path, split: str | None) -> tuple[list[dict[str, Any]], Any, str | None]:
    try:
        import datasets
    except ImportError as exc:
        raise ImageInputError(
            f"{path} is a folder, read as a Hugging Face datasets save_to_disk folder, but the 'datasets' "
            f"package is not installed; run 'pip install datasets' or export the data to JSONL/parquet."
        ) from exc
    loaded = datasets.load_from_disk(str(path))
    if isinstance(loaded, datasets.DatasetDict):
        names = list(loaded)
        if split is None and len(names) == 1:
            split = names[0]
        if split not in loaded:
            given = "no split was chosen" if split is None else f"--split {split!r} is not one of them"
            raise ClearConfigError(
                f"{path} holds several splits ({', '.join(names)}) and {given}; pass one with --split."
            )
        loaded = loaded[split]
    features = loaded.features
    for name, feature in features.items():
        if isinstance(feature, datasets.Image):
            loaded = loaded.cast_column(name, datasets.Image(decode=False))
    return loaded.to_list(), features, split


def _row_ids(rows: list[dict[str, Any]], columns: Columns, explicit: bool) -> tuple[list[str], Columns]:
    if columns.id is None:
        return [str(n) for n in range(len(rows))], columns
    ids = [str(row.get(columns.id)) for row in rows]
    if len(set(ids)) == len(ids):
        return ids, columns
    seen: dict[str, int] = {}
    for number, value in enumerate(ids):
        if value in seen and explicit:
            raise ClearConfigError(
                f"--id-column {columns.id!r} is not unique: value {value!r} is in rows {seen[value]} and {number}; "
                f"pass a column with unique values, or leave --id-column out to number the rows."
            )
        seen.setdefault(value, number)
    # An auto-detected id column that repeats is not an id: number the rows instead.
    return [str(n) for n in range(len(rows))], Columns(
        image=columns.image,
        question=columns.question,
        answer=columns.answer,
        options=columns.options,
    )


def _is_file(path: Path) -> bool:
    """Whether ``path`` is a file; ``False`` for strings no file system accepts (e.g. long base64 text)."""
    if len(str(path)) >= _MAX_PATH_LEN:
        return False
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def _looks_base64(text: str) -> bool:
    return len(text) > VLMEVAL_REFERENCE_MAX_LEN and bool(_BASE64_RE.match(text[:4096]))


def image_payload(value: Any, base_dir: Path) -> ImagePayload:
    """Interpret one image cell: raw bytes, a ``{"bytes", "path"}`` dict, a ``data:`` URI, base64 or a path."""
    if isinstance(value, bytes | bytearray | memoryview):
        return ImagePayload("bytes", bytes(value))
    if isinstance(value, dict) and ("bytes" in value or "path" in value):
        if value.get("bytes"):
            return ImagePayload("struct", bytes(value["bytes"]))
        if value.get("path"):
            return ImagePayload("struct", str(base_dir / str(value["path"])))
        return ImagePayload("invalid", error="the image cell holds neither bytes nor a path")
    if isinstance(value, list | tuple):
        return ImagePayload(
            "invalid", error="the image cell holds several images; multi-image rows are not supported"
        )
    if not isinstance(value, str) or not value.strip():
        return ImagePayload(
            "invalid", error=f"the image cell is empty or not an image ({type(value).__name__})"
        )
    text = value.strip()
    if text.startswith("data:") and "," in text:
        head, _, body = text.partition(",")
        return ImagePayload("base64", body, prefix=head + ",")
    if text.startswith("[") and text.endswith("]"):
        return ImagePayload(
            "invalid", error="the image cell holds a list of images; multi-image rows are not supported"
        )
    if _is_file(base_dir / text):
        return ImagePayload("path", str(base_dir / text))
    if _looks_base64(text):
        return ImagePayload("base64", text)
    return ImagePayload("path", str(base_dir / text))


def _payloads(
    table_rows: list[dict[str, Any]], columns: Columns, row_ids: list[str], fmt: str, base_dir: Path
):
    values = [row.get(columns.image) for row in table_rows]
    if fmt == "tsv":
        by_id = dict(zip(row_ids, values, strict=True))
        values = [_resolve_reference(value, by_id) for value in values]
    return [image_payload(value, base_dir) for value in values]


def _resolve_reference(value: Any, by_id: dict[str, Any]) -> Any:
    """VLMEvalKit: a short ``image`` cell is the index of the row that holds the base64 image."""
    if isinstance(value, str) and len(value) <= VLMEVAL_REFERENCE_MAX_LEN and value in by_id:
        target = by_id[value]
        if isinstance(target, str) and len(target) > VLMEVAL_REFERENCE_MAX_LEN:
            return target
    return value


def _read_rows(
    path: Path, fmt: str, split: str | None
) -> tuple[list[dict[str, Any]], list[str], dict[str, Any]]:
    """Rows, column names and format details (CSV field names, parquet schema, ``datasets`` features)."""
    if fmt in ("jsonl", "json"):
        rows = _read_jsonl(path) if fmt == "jsonl" else _read_json(path)
        return rows, list(dict.fromkeys(key for row in rows for key in row)), {}
    if fmt in ("csv", "tsv"):
        rows, names = _read_delimited(path, "\t" if fmt == "tsv" else ",")
        return rows, names, {"fieldnames": names}
    if fmt == "parquet":
        rows, schema = _read_parquet(path)
        return rows, list(schema.names), {"schema": schema}
    rows, features, split = _read_hf(path, split)
    return rows, list(features), {"features": features, "split": split}


def read_source(config: BenchBuildConfig) -> SourceTable:
    """Read ``config.source`` into a :class:`SourceTable` (all rows in memory).

    Raises:
        ImageInputError: the source is missing, unreadable or of an unknown format.
        ClearConfigError: a named column or split does not exist, or an explicit id column repeats.
    """
    path = Path(config.source)
    fmt = detect_format(path)
    try:
        rows, names, extra = _read_rows(path, fmt, config.split)
    except ClearError:
        raise
    except (OSError, UnicodeDecodeError, ValueError, csv.Error) as exc:
        raise ImageInputError(
            f"cannot read VQA source {str(path)!r} as {fmt} ({exc}); check that the file is complete and in "
            f"that format (UTF-8 text for JSON/CSV/TSV)."
        ) from exc
    if not rows:
        raise ImageInputError(f"VQA source {str(path)!r} has no rows; pass a source with at least one row.")
    columns = resolve_columns(
        names,
        id_column=config.id_column,
        image_column=config.image_column,
        question_column=config.question_column,
        answer_column=config.answer_column,
    )
    row_ids, columns = _row_ids(rows, columns, explicit=config.id_column is not None)
    base_dir = path if fmt == "hf" else path.parent
    payloads = _payloads(rows, columns, row_ids, fmt, base_dir.resolve())
    return SourceTable(path, fmt, rows, columns, row_ids, payloads, extra)
