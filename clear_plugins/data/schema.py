"""The training-row schema: one row = one sample, shared by ``ClearSFTTrainer``, ``InterleavedGRPOTrainer``,
``clear-plugins data build`` and ``clear-plugins data import``.

A dataset is a JSONL file (one :class:`TrainingRow` per line) next to the images it names, or a
``datasets.Dataset`` with the same columns. Image fields hold a path (relative to the JSONL file's folder, or
absolute); images are decoded lazily by whoever needs the pixels, never all at once.

Columns (App. C; Table 8 counts rows per ``pathway``):

==================  ========================================================================================
``id``              unique row id (str)
``question``        the question about the image
``answer``          the ground-truth answer (GRPO's accuracy reward and the trace filter read it)
``degraded_image``  the degraded input image the model sees
``clean_image``     the clean image; required for ``restore`` rows (the SFT restore block's target)
``trajectory``      the target text: :func:`~clear_plugins.trajectory.format_direct` or ``format_restore`` output
``pathway``         ``"direct"`` or ``"restore"`` (generate-then-answer); must match ``trajectory``'s pattern
``system_prompt``   the system prompt text; ``None`` uses the shipped one
``degradation``     degradation type name (e.g. ``"motion_blur"``), ``None`` for clean inputs
``level``           degradation level name or intensity (``"low"``/``"mid"``/``"hard"`` or a float)
``source``          where the VQA pair came from (dataset name)
``trace_writer``    who wrote the trajectory: ``"llm:<model>"``, ``"offline-template"``, ``"import:<origin>"``
==================  ========================================================================================
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

from clear_plugins.trajectory import parse

Pathway = Literal["direct", "restore"]
PATHWAYS: tuple[str, ...] = ("direct", "restore")
REQUIRED_COLUMNS: tuple[str, ...] = ("id", "question", "answer", "degraded_image", "trajectory", "pathway")


@dataclass
class TrainingRow:
    """One training sample (see the module docstring for each column)."""

    id: str
    question: str
    answer: str
    degraded_image: Any
    trajectory: str
    pathway: Pathway
    clean_image: Any = None
    system_prompt: str | None = None
    degradation: str | None = None
    level: str | float | None = None
    source: str | None = None
    trace_writer: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The row as a JSON-ready dict (image fields must already be paths)."""
        return asdict(self)

    @classmethod
    def from_mapping(cls, row: Mapping[str, Any]) -> TrainingRow:
        """Build a row from a mapping (a JSONL line, a ``datasets`` row); unknown keys are ignored.

        Raises:
            ValueError: a required column is missing, naming it.
        """
        missing = [name for name in REQUIRED_COLUMNS if row.get(name) is None]
        if missing:
            raise ValueError(
                f"row {row.get('id', '?')!r} lacks required column(s) {missing}; every row needs "
                f"{list(REQUIRED_COLUMNS)} (see clear_plugins.data.schema)."
            )
        names = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in row.items() if key in names})


def row_problem(row: TrainingRow, *, max_restores: int = 1) -> str | None:
    """Why ``row`` cannot be trained on, or ``None`` when it can.

    Checks the pathway label, that the trajectory is well formed and follows the pattern its pathway names, and
    that a restore row has a clean image.
    """
    if row.pathway not in PATHWAYS:
        return f"pathway {row.pathway!r} is not one of {PATHWAYS}"
    parsed = parse(row.trajectory, max_restores=max_restores)
    if not parsed.well_formed:
        return f"trajectory is malformed: {parsed.problem}"
    if parsed.restore_requested != (row.pathway == "restore"):
        pattern = "generate-then-answer" if parsed.restore_requested else "direct"
        return f"pathway {row.pathway!r} but the trajectory follows the {pattern} pattern"
    if row.pathway == "restore" and row.clean_image in (None, ""):
        return "restore row without a clean_image (the SFT restore block needs the clean image)"
    if not isinstance(row.question, str) or not row.question.strip():
        return "empty question"
    return None


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """Stream ``(line_index, row_dict, error)`` from a JSONL file; a bad line gives ``(i, None, why)``.

    Never raises for a bad line (the caller decides to skip or stop); blank lines are skipped.
    """
    with open(path, encoding="utf-8") as handle:
        for index, line in enumerate(handle):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                yield index, None, f"line {index + 1} is not JSON: {exc}"
                continue
            if not isinstance(value, dict):
                yield index, None, f"line {index + 1} is a JSON {type(value).__name__}, not an object"
                continue
            yield index, value, None


def resolve_image_path(reference: str | Path, root: str | Path) -> Path:
    """The file an image field names: absolute paths as they are, relative ones under ``root``."""
    path = Path(reference)
    return path if path.is_absolute() else Path(root) / path
