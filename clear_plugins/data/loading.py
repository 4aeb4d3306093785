"""Load training rows (:mod:`clear_plugins.data.schema`) from a JSONL file or a ``datasets.Dataset``, checked.

Every row is validated before training starts (schema, trajectory pattern, pathway, clean image of restore rows,
and — for image paths — that the file exists); a bad row is reported with its index and either skipped or
rejected (``bad_rows``). Images stay paths (or undecoded ``datasets`` image dicts): the collator decodes them
lazily, batch by batch, so a dataset never sits in memory as pixels.

The returned ``datasets.Dataset`` has the schema's columns plus ``row_index`` (the row's index in the source,
named in later error messages); image columns hold absolute paths, ``{"path", "bytes"}`` dicts or ``None``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from clear_plugins.data.schema import TrainingRow, read_jsonl, resolve_image_path, row_problem
from clear_plugins.errors import ClearConfigError, ClearError

logger = logging.getLogger(__name__)

BadRows = Literal["skip", "error"]
IMAGE_COLUMNS: tuple[str, ...] = ("degraded_image", "clean_image")
ROW_INDEX = "row_index"
"""Column holding each row's index in its source."""


class BadRowError(ClearError, ValueError):
    """Rows that cannot be trained on, with ``bad_rows="error"``; ``reports`` lists every one."""

    def __init__(self, reports: list[RowReport]) -> None:
        self.reports = reports
        shown = "; ".join(str(r) for r in reports[:5])
        more = f" (and {len(reports) - 5} more)" if len(reports) > 5 else ""
        super().__init__(
            f"{len(reports)} bad training row(s): {shown}{more}. Fix them, or pass bad_rows='skip' to train "
            "without them."
        )


@dataclass(frozen=True)
class RowReport:
    """Why one row was dropped: its index in the source, its id (if readable) and the problem."""

    index: int
    id: str | None
    problem: str

    def __str__(self) -> str:
        return f"row {self.index} (id {self.id!r}): {self.problem}"


def _image_problem(value: Any, root: Path | None, column: str) -> tuple[Any, str | None]:
    """The stored form of an image field and why it is unusable (``None`` when fine)."""
    if value is None or value == "":
        return None, None
    if isinstance(value, dict):
        if value.get("bytes") is None and not value.get("path"):
            return value, f"{column} has neither bytes nor path"
        if value.get("bytes") is None and not Path(value["path"]).is_file():
            return value, f"{column} file {value['path']!r} does not exist"
        return value, None
    if isinstance(value, (str, Path)):
        path = resolve_image_path(value, root) if root is not None else Path(value)
        if not path.is_file():
            return str(path), f"{column} file {str(path)!r} does not exist"
        return str(path.resolve()), None
    return value, None  # an in-memory image (PIL); decoded already


def check_row(
    index: int,
    mapping: dict[str, Any],
    root: Path | None,
    *,
    max_restores: int = 1,
    verify_images: bool = False,
) -> tuple[dict[str, Any] | None, RowReport | None]:
    """Validate one row: ``(clean row dict with row_index, None)`` or ``(None, report)``.

    ``verify_images`` also opens each image and checks its file integrity (PIL ``verify``, no pixel decode).
    """
    row_id = mapping.get("id") if isinstance(mapping, dict) else None
    try:
        row = TrainingRow.from_mapping(mapping)
    except (ValueError, TypeError) as exc:
        return None, RowReport(index, row_id, str(exc))
    problem = row_problem(row, max_restores=max_restores)
    if problem is not None:
        return None, RowReport(index, row.id, problem)
    values = (
        row.to_dict() if not _has_memory_images(row) else {f.name: getattr(row, f.name) for f in fields(row)}
    )
    for column in IMAGE_COLUMNS:
        values[column], problem = _image_problem(values[column], root, column)
        if problem is None and verify_images and values[column] is not None:
            problem = _verify(values[column], column)
        if problem is not None:
            return None, RowReport(index, row.id, problem)
    values[ROW_INDEX] = index
    return values, None


def _verify(value: Any, column: str) -> str | None:
    import io

    from PIL import Image

    if isinstance(value, Image.Image):
        return None
    source = io.BytesIO(value["bytes"]) if isinstance(value, dict) and value.get("bytes") else value
    source = source["path"] if isinstance(source, dict) else source
    try:
        with Image.open(source) as image:
            image.verify()
    except Exception as exc:  # PIL raises many types for corrupt files
        return f"{column} is not a readable image: {type(exc).__name__}: {exc}"
    return None


def _has_memory_images(row: TrainingRow) -> bool:
    return any(not isinstance(getattr(row, c), (str, Path, dict, type(None))) for c in IMAGE_COLUMNS)


def _finish(rows: list[dict[str, Any]], reports: list[RowReport], bad_rows: BadRows, source: str) -> Any:
    import datasets

    if bad_rows not in ("skip", "error"):
        raise ClearConfigError(f"bad_rows={bad_rows!r} must be 'skip' or 'error'.")
    if reports and bad_rows == "error":
        raise BadRowError(reports)
    for report in reports:
        logger.warning("skipping training %s", report)
    if not rows:
        raise ClearConfigError(
            f"no usable training rows in {source} ({len(reports)} bad); see the warnings above."
        )
    for row in rows:
        row["level"] = None if row.get("level") is None else str(row["level"])
    return datasets.Dataset.from_list(rows)


def load_training_rows(
    source: str | Path | Any,
    *,
    image_root: str | Path | None = None,
    bad_rows: BadRows = "skip",
    max_restores: int = 1,
    verify_images: bool | None = None,
) -> tuple[Any, list[RowReport]]:
    """Load and check training rows; returns ``(datasets.Dataset, reports of dropped rows)``.

    Args:
        source: a JSONL path (image paths relative to ``image_root``, default: the file's folder) or a
            ``datasets.Dataset`` with the schema's columns (image columns as paths or ``datasets.Image``).
        bad_rows: ``"skip"`` drops bad rows with a logged warning naming each; ``"error"`` raises
            :class:`BadRowError` listing them.
        max_restores: restore blocks a trajectory may hold (K, SPEC: 1).
        verify_images: open every image once to check it (default: only with ``bad_rows="error"``, so a corrupt
            file is rejected before training; with ``"skip"`` the collator skips it when it fails to decode).
    """
    verify = bad_rows == "error" if verify_images is None else verify_images
    rows: list[dict[str, Any]] = []
    reports: list[RowReport] = []
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise ClearConfigError(
                f"training data {str(path)!r} is not a file; give a JSONL file of training rows."
            )
        root = Path(image_root) if image_root is not None else path.parent
        for index, mapping, error in read_jsonl(path):
            if error is not None:
                reports.append(RowReport(index, None, error))
                continue
            row, report = check_row(index, mapping, root, max_restores=max_restores, verify_images=verify)
            _keep(row, report, rows, reports)
        return _finish(rows, reports, bad_rows, str(path)), reports
    dataset = _undecoded(source)
    root = Path(image_root) if image_root is not None else None
    for index, mapping in enumerate(dataset):
        row, report = check_row(index, dict(mapping), root, max_restores=max_restores, verify_images=verify)
        _keep(row, report, rows, reports)
    return _finish(rows, reports, bad_rows, "the dataset"), reports


def _keep(row: dict | None, report: RowReport | None, rows: list, reports: list) -> None:
    if row is not None:
        rows.append(row)
    else:
        reports.append(report)


def _undecoded(dataset: Any) -> Any:
    """``dataset`` with ``datasets.Image`` columns left undecoded (``{"path", "bytes"}``), so checking is cheap."""
    import datasets

    if not isinstance(dataset, datasets.Dataset):
        raise ClearConfigError(
            f"training data must be a JSONL path or a datasets.Dataset, got {type(dataset).__name__}."
        )
    for column in IMAGE_COLUMNS:
        feature = dataset.features.get(column)
        if isinstance(feature, datasets.Image) and feature.decode:
            dataset = dataset.cast_column(column, datasets.Image(decode=False))
    return dataset


def open_image(value: Any) -> Any:
    """Decode one stored image field (path, ``{"path", "bytes"}`` dict or PIL image) to an RGB PIL image.

    Raises:
        ImageInputError: the image cannot be read, naming it.
    """
    import io

    from PIL import Image, UnidentifiedImageError

    from clear_plugins.errors import ImageInputError

    try:
        if isinstance(value, Image.Image):
            return value.convert("RGB")
        if isinstance(value, dict):
            source = io.BytesIO(value["bytes"]) if value.get("bytes") is not None else value["path"]
        else:
            source = value
        with Image.open(source) as image:
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError, KeyError, TypeError, ValueError) as exc:
        name = value.get("path") if isinstance(value, dict) else value
        raise ImageInputError(f"cannot read image {str(name)[:200]!r}: {exc}") from None


__all__ = ["BadRowError", "RowReport", "check_row", "load_training_rows", "open_image"]
