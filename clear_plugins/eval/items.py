"""The rows to evaluate: a benchmark folder built by ``clear-plugins bench build``, level by level.

A build folder holds ``manifest.json`` (the source it was built from, its columns and one table per degraded
level). The ``clean`` level is the source table itself; ``low``, ``mid`` and ``hard`` are the degraded copies,
whose rows carry the ``clear_*`` columns (source row id, degradation type, level). Each row becomes an
:class:`EvalItem`; its image is decoded only when the model needs it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clear_plugins.bench.config import BenchBuildConfig
from clear_plugins.bench.sources import ImagePayload, SourceTable, read_source
from clear_plugins.errors import ClearConfigError, ImageInputError

LEVELS: tuple[str, ...] = ("clean", "low", "mid", "hard")
"""Evaluation levels: the clean source and the three MMD-Bench severities (App. B)."""

CLEAN_TYPE = "none"
"""Degradation type recorded for clean rows."""

CIRCULAR_OFFSET = 1_000_000
"""VLMEvalKit's MMBench stores circular copies of question ``i`` under indices ``i + k * 1e6``."""

SEVERITY_SUFFIXES: dict[str, str] = {
    "_LOW_LEVEL_HIGH": "hard",
    "_LOW_LEVEL_MID": "mid",
    "_LOW_LEVEL_LOW": "low",
}
"""File-name suffixes of the released MMD-Bench TSVs per severity (the CLEAR repository's VLMEvalKit configs)."""

CATEGORY_COLUMNS: tuple[str, ...] = ("category", "l2-category", "l2_category", "subject")
"""Columns read as a row's sub-category (MMBench, MMStar, ...)."""


@dataclass
class EvalItem:
    """One question to ask at one level.

    Attributes:
        benchmark: the benchmark's name (the build folder's name unless given).
        level: ``clean``, ``low``, ``mid`` or ``hard``.
        row_id: the row's id in its level table (unique within the level).
        source_id: the id of the clean row it was made from.
        type: the degradation type (``"none"`` when clean); ``corruption_category`` its Table 7 category.
        question, options, answer, hint: the VQA fields; ``options`` maps letters to texts (empty if open).
        category: the benchmark's own sub-category column, when it has one.
        circular_group: the id shared by circular copies of one MMBench question, else ``None``.
        payload: where the image is (decoded by :meth:`image`).
    """

    benchmark: str
    level: str
    row_id: str
    source_id: str
    type: str
    corruption_category: str
    question: str
    answer: str
    options: dict[str, str] = field(default_factory=dict)
    hint: str = ""
    category: str = ""
    circular_group: str | None = None
    payload: ImagePayload | None = None
    bench_dir: str = ""
    clean_payload: ImagePayload | None = None

    @property
    def key(self) -> str:
        """The cache key of this row: ``benchmark/level/row_id``."""
        return f"{self.benchmark}/{self.level}/{self.row_id}"

    def image(self) -> Any:
        """The row's image as an RGB PIL image. Raises :class:`ImageInputError` when it cannot be read."""
        return _decode(self.payload, self.key)

    def clean_image(self) -> Any:
        """The clean image this row was made from (itself when clean), or ``None`` when unknown."""
        return None if self.clean_payload is None else _decode(self.clean_payload, self.key)


def _decode(payload: ImagePayload | None, key: str) -> Any:
    from clear_plugins.bench.worker import decode_image

    if payload is None:
        raise ImageInputError(f"row {key} has no image; check the benchmark's image column.")
    try:
        return decode_image(payload).convert("RGB")
    except ValueError as exc:
        raise ImageInputError(f"row {key}: {exc}") from exc


@dataclass(frozen=True)
class Benchmark:
    """A benchmark to evaluate: a build folder (its manifest and the table of each level) or one table file."""

    name: str
    folder: Path
    manifest: dict[str, Any]
    fixed: tuple[str, str] | None = None
    """``(level, type)`` of a single pre-degraded table (see :meth:`open`); ``None`` for a build folder."""

    @classmethod
    def open(cls, path: str | Path, name: str | None = None) -> Benchmark:
        """Open a build folder (``manifest.json``) or a single table file, e.g. a released MMD-Bench TSV.

        A table file is one level of one benchmark: ``FILE@LEVEL`` names the level; otherwise it is read from
        the file name (``..._LOW_LEVEL_HIGH|MID|LOW`` is hard, mid or low; ``..._<type>`` is one of the 16 types,
        assumed at hard since Table 10 reports per-corruption accuracy under Hard: pass ``FILE@LEVEL`` when it is
        not) and is ``clean`` when the name says neither. The name
        without that suffix is the benchmark's name, so per-type files of one benchmark report together.

        Raises:
            ClearConfigError: the folder holds no readable manifest, or the level is unknown.
        """
        text = str(path)
        level = None
        if "@" in text and not Path(text).exists():
            text, level = text.rsplit("@", 1)
        path = Path(text)
        if path.is_file():
            return cls._table(path, level, name)
        manifest_path = path / "manifest.json"
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ClearConfigError(
                f"{path} is not a benchmark built by 'clear-plugins bench build' ({manifest_path} cannot be read: "
                f"{exc}); build it first, or pass the build's output folder or a table file."
            ) from exc
        return cls(name or path.resolve().name, path, manifest)

    @classmethod
    def _table(cls, path: Path, level: str | None, name: str | None) -> Benchmark:
        stem, kind = path.stem, CLEAN_TYPE
        upper = stem.upper()
        for suffix, named in SEVERITY_SUFFIXES.items():
            if upper.endswith(suffix):
                stem, level = stem[: -len(suffix)], level or named
                break
        else:
            from clear_plugins import degradations

            for type_name in degradations.names():
                if stem.endswith("_" + type_name):
                    stem, kind, level = stem[: -len(type_name) - 1], type_name, level or "hard"
                    break
        level = level or "clean"
        if level not in LEVELS:
            raise ClearConfigError(f"{path}@{level}: the level must be one of {', '.join(LEVELS)}.")
        manifest = {"source": {"path": str(path.resolve())}, "columns": {}, "outputs": {}}
        return cls(name or stem, path.parent, manifest, fixed=(level, kind))

    @property
    def levels(self) -> tuple[str, ...]:
        """The levels this build can evaluate: clean plus every degraded level it holds."""
        if self.fixed is not None:
            return (self.fixed[0],)
        return ("clean", *[level for level in LEVELS[1:] if level in self.manifest.get("outputs", {})])

    def table_path(self, level: str) -> Path:
        """The table of ``level`` (the source for ``clean``)."""
        if self.fixed is not None or level == "clean":
            source = Path(self.manifest["source"]["path"])
            if source.is_absolute() or source.exists():
                return source
            beside = self.folder.parent / source  # a relative path recorded from the build folder's parent
            if beside.exists():
                return beside
            raise ClearConfigError(
                f"the clean source {str(source)!r} of benchmark {self.name!r} is not found (relative to the current "
                f"folder or to {self.folder.parent}); run from the folder the build was made in, or leave 'clean' "
                f"out of the levels."
            )
        outputs = self.manifest.get("outputs", {})
        if level not in outputs:
            raise ClearConfigError(
                f"benchmark {self.name!r} has no level {level!r} (it has {', '.join(self.levels)}); drop it "
                f"from --levels or rebuild with that level."
            )
        return self.folder / outputs[level]["file"]

    def read(self, level: str) -> SourceTable:
        """Read the table of ``level`` with the build's resolved columns."""
        columns = self.manifest.get("columns", {})
        config = BenchBuildConfig(
            source=str(self.table_path(level)),
            output_dir=str(self.folder),
            id_column=columns.get("id"),
            image_column=columns.get("image"),
            question_column=columns.get("question"),
            answer_column=columns.get("answer"),
            split=self.manifest.get("settings", {}).get("split"),
        )
        return read_source(config)


def _text(value: Any) -> str:
    if value is None:
        return ""
    text = str(value).strip()
    return "" if text.lower() == "nan" else text


def row_options(row: dict[str, Any], option_columns: Sequence[str]) -> dict[str, str]:
    """``{letter: text}`` of a row: VLMEvalKit letter columns, or one ``options`` column (dict or list)."""
    if len(option_columns) == 1:
        value = row.get(option_columns[0])
        if isinstance(value, str) and value.strip().startswith(("{", "[")):
            value = json.loads(value)
        if isinstance(value, dict):
            return {str(k).strip().upper(): _text(v) for k, v in value.items() if _text(v)}
        if isinstance(value, list | tuple):
            return {chr(ord("A") + i): _text(v) for i, v in enumerate(value) if _text(v)}
        return {}
    return {letter: _text(row.get(letter)) for letter in option_columns if _text(row.get(letter))}


def _circular_groups(source_ids: Sequence[str], types: Sequence[str], per_type: bool) -> list[str | None]:
    """MMBench circular groups: present only when some index is at least :data:`CIRCULAR_OFFSET`.

    With ``per_type`` (a full build: every row under all 16 types) a group is one question under one type;
    otherwise (a sampled build, where rotations may draw different types) it is one question at one level.
    """
    numbers = [int(s) if s.isdigit() else None for s in source_ids]
    if None in numbers or not any(n >= CIRCULAR_OFFSET for n in numbers):
        return [None] * len(source_ids)
    groups = [str(n % CIRCULAR_OFFSET) for n in numbers]
    return [f"{g}/{t}" for g, t in zip(groups, types, strict=True)] if per_type else groups


def _category(row: dict[str, Any]) -> str:
    return next((_text(row[c]) for c in CATEGORY_COLUMNS if _text(row.get(c))), "")


def _corruption_category(kind: str) -> str:
    """Table 7's category of a degradation type; ``"none"`` for clean rows, ``"other"`` for plugin types."""
    from clear_plugins.degradations import category_of
    from clear_plugins.errors import UnknownNameError

    if kind == CLEAN_TYPE:
        return CLEAN_TYPE
    try:
        return category_of(kind)
    except UnknownNameError:
        return "other"


def iter_items(bench: Benchmark, level: str, types: Sequence[str] | None = None) -> Iterator[EvalItem]:
    """The :class:`EvalItem` of every readable row of ``level``, in table order, optionally only ``types``."""
    table = bench.read(level)
    clean = bench.read("clean") if level != "clean" and bench.fixed is None else table
    clean_by_id = dict(zip(clean.row_ids, clean.payloads, strict=True))
    columns = table.columns
    source_ids = [
        _text(row.get("clear_source_id")) or row_id
        for row, row_id in zip(table.rows, table.row_ids, strict=True)
    ]
    fixed_type = bench.fixed[1] if bench.fixed else CLEAN_TYPE
    kinds = [_text(row.get("clear_type")) or fixed_type for row in table.rows]
    full = bench.manifest.get("settings", {}).get("mode") == "full"
    groups = _circular_groups(source_ids, kinds, per_type=full)
    for position, row in enumerate(table.rows):
        kind = kinds[position]
        if types and kind != CLEAN_TYPE and kind not in types:
            continue
        payload = table.payloads[position]
        yield EvalItem(
            benchmark=bench.name,
            level=level,
            row_id=table.row_ids[position],
            source_id=source_ids[position],
            type=kind,
            corruption_category=_corruption_category(kind),
            question=_text(row.get(columns.question)) if columns.question else "",
            answer=_text(row.get(columns.answer)) if columns.answer else "",
            options=row_options(row, columns.options),
            hint=_text(row.get("hint")),
            category=_category(row),
            circular_group=groups[position],
            payload=payload,
            bench_dir=str(bench.folder.resolve()),
            clean_payload=clean_by_id.get(source_ids[position])
            if level == "clean" or clean is not table
            else None,
        )
