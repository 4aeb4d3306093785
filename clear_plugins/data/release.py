"""``data import``: convert the authors' released training set (``CLEAR_Train_Set``) into :class:`TrainingRow` s.

The release (``CLEAR_Train_Set.tar.gz.part.*`` in the Hub dataset ``CUDAOUTOFMEMORY/MMD-Bench``; extracted as the
CLEAR README says, or streamed from the parts by :mod:`.release_archive`) is read by the reference's
``data/interleave_datasets/interleave_reason.py`` with the paths of its ``data/dataset_info.py``. Its layout,
as that code reads it:

* ``agent_interleave_data_filtered_tool.jsonl`` (generate-then-answer rows) and
  ``agent_interleave_data_filtered_no_tool.jsonl`` (direct rows), LLaVA-style JSON lines::

      {"id": "...", "subset": "...", "image": "<subset>_<id>.jpg", "split_type": "sft", "tool_used": true,
       "conversations": [{"from": "human", "value": "<image>\\nQuestion"},
                         {"from": "gpt", "value": "<think>…</think>\\n<image_restore>\\n<think>…</think><answer>…</answer>"}]}

* ``images/`` (clean images, the restore target) and ``corruption_images/`` (degraded inputs), both holding
  the file named by ``image``.

The release keeps no ground-truth answer (the reference's trace writer replaced the answer turn with the trace
after its judge accepted it), so ``answer`` is the trace's own ``<answer>``. Rows are streamed line by line; a
row that cannot be converted (not JSON, no image, no human/gpt pair, a malformed trace, a missing image file,
``tool_used`` contradicting the trace) is reported with its file and line index and left out.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clear_plugins.data.release_archive import archive_parts, extract_parts
from clear_plugins.data.schema import TrainingRow, read_jsonl, row_problem
from clear_plugins.errors import ClearConfigError
from clear_plugins.trajectory import parse

RELEASE_FILES: tuple[str, ...] = (
    "agent_interleave_data_filtered_tool.jsonl",
    "agent_interleave_data_filtered_no_tool.jsonl",
)
"""The release's JSONL files (generate-then-answer rows, direct rows), as the reference's dataset_info names them."""
CLEAN_DIR = "images"
"""Folder of the clean images, next to the JSONL files."""
CORRUPTED_DIR = "corruption_images"
"""Folder of the degraded images, next to the JSONL files."""
ORIGIN = "import:CUDAOUTOFMEMORY/MMD-Bench/CLEAR_Train_Set"
"""``trace_writer`` of imported rows (the authors' GPT-4.1 traces)."""
LEVEL_BY_INTENSITY = {0.23: "low", 0.45: "mid", 0.9: "hard"}
"""Intensity -> level name, for the optional per-image degradation metadata."""
EXTRACTED_DIR = "extracted"
"""Folder (under the output folder) that archive parts are extracted into."""
MAX_REPORTED = 10_000
"""Unconvertible rows listed one by one in the report (the count is always exact)."""


@dataclass
class ImportReport:
    """What an import read, wrote and could not convert."""

    output: Path
    read: int = 0
    converted: int = 0
    pathways: Counter = field(default_factory=Counter)
    problems: list[dict[str, Any]] = field(default_factory=list)
    problem_count: int = 0

    def add_problem(self, file: Path, index: int, reason: str) -> None:
        """Record one unconvertible row (line ``index``, 0-based, of ``file``)."""
        self.problem_count += 1
        if len(self.problems) < MAX_REPORTED:
            self.problems.append({"file": file.name, "index": index, "reason": reason})

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "output": str(self.output),
            "rows_read": self.read,
            "converted": self.converted,
            "pathways": dict(sorted(self.pathways.items())),
            "unconvertible": self.problem_count,
            "unconvertible_rows": self.problems,
        }


def find_release_files(root: Path) -> list[Path]:
    """The release JSONL files under ``root`` (a folder, searched recursively, or one JSONL file)."""
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise ClearConfigError(
            f"release path {str(root)!r} does not exist; pass the extracted CLEAR_Train_Set folder."
        )
    found = sorted(p for name in RELEASE_FILES for p in root.rglob(name))
    if not found:
        raise ClearConfigError(
            f"no {' or '.join(RELEASE_FILES)} under {str(root)!r}; extract CLEAR_Train_Set.tar.gz.part.* there "
            f"(cat the parts | tar xz), or pass a JSONL file of that format."
        )
    return found


def _turns(row: dict[str, Any]) -> tuple[str, str]:
    turns = row.get("conversations")
    if not isinstance(turns, list) or not all(isinstance(t, dict) for t in turns):
        raise ValueError("no 'conversations' list of turns")
    humans = [t for t in turns if t.get("from") == "human"]
    gpts = [t for t in turns if t.get("from") == "gpt"]
    if len(humans) != 1 or len(gpts) != 1:
        raise ValueError(f"expected one human and one gpt turn, found {len(humans)} and {len(gpts)}")
    question = str(humans[0].get("value") or "").replace("<image>", "").strip()
    return question, str(gpts[0].get("value") or "").strip()


def _degradation(metadata_dir: Path | None, image: str) -> tuple[str | None, str | float | None]:
    if metadata_dir is None:
        return None, None
    path = metadata_dir / f"{image}.json"
    if not path.is_file():
        return None, None
    meta = json.loads(path.read_text(encoding="utf-8"))
    intensity = meta.get("intensity")
    level = LEVEL_BY_INTENSITY.get(round(float(intensity), 2), intensity) if intensity is not None else None
    return meta.get("method"), level


@dataclass
class ReleaseImporter:
    """Converts release rows; image paths are written relative to the output folder (or copied into it)."""

    output_dir: Path
    clean_dir: Path | None = None
    corrupted_dir: Path | None = None
    metadata_dir: Path | None = None
    copy_images: bool = False

    def convert(self, row: dict[str, Any], folder: Path) -> TrainingRow:
        """One release row as a training row; ``ValueError`` saying why it cannot be converted."""
        image = row.get("image")
        if not isinstance(image, str) or not image.strip():
            raise ValueError("no 'image' file name")
        question, trace = _turns(row)
        parsed = parse(trace)
        pathway = "restore" if parsed.restore_requested else "direct"
        if isinstance(row.get("tool_used"), bool) and row["tool_used"] != parsed.restore_requested:
            raise ValueError(f"tool_used={row['tool_used']} but the trace follows the {pathway} pattern")
        degraded = (self.corrupted_dir or folder / CORRUPTED_DIR) / image
        clean = (self.clean_dir or folder / CLEAN_DIR) / image
        if not degraded.is_file():
            raise ValueError(f"degraded image {str(degraded)!r} is missing")
        if pathway == "restore" and not clean.is_file():
            raise ValueError(f"clean image {str(clean)!r} (the restore target) is missing")
        degradation, level = _degradation(self.metadata_dir, image)
        result = TrainingRow(
            id=Path(image).stem,
            question=question,
            answer=parsed.answer or "",
            degraded_image=self._place(degraded, "degraded"),
            clean_image=self._place(clean, "clean") if clean.is_file() else None,
            trajectory=trace,
            pathway=pathway,  # type: ignore[arg-type]
            degradation=degradation,
            level=level,
            source=str(row.get("subset") or "CLEAR_Train_Set"),
            trace_writer=ORIGIN,
        )
        problem = row_problem(result)
        if problem is not None:
            raise ValueError(problem)
        return result

    def _place(self, path: Path, kind: str) -> str:
        if not self.copy_images:
            return os.path.relpath(path.resolve(), self.output_dir.resolve())
        target = self.output_dir / "images" / kind / path.name
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        return target.relative_to(self.output_dir).as_posix()


def _rows(files: list[Path], report: ImportReport) -> Iterator[tuple[Path, int, dict[str, Any]]]:
    for file in files:
        for index, row, error in read_jsonl(file):
            report.read += 1
            if error is not None:
                report.add_problem(file, index, error)
                continue
            yield file, index, row


def _release_root(root: Path, out: Path) -> Path:
    """``root``, or the folder its archive parts are streamed into (``OUTPUT/extracted``) when it names parts."""
    extracted = root.is_dir() and any(next(root.rglob(name), None) for name in RELEASE_FILES)
    parts = None if extracted else archive_parts(root)
    if not parts:
        return root
    extract_parts(parts, out / EXTRACTED_DIR)
    return out / EXTRACTED_DIR


def import_release(
    root: str | Path, output_dir: str | Path, *, limit: int | None = None, **options: Any
) -> ImportReport:
    """Stream the release under ``root`` into ``OUTPUT/train.jsonl`` and ``OUTPUT/import_report.json``.

    ``root`` is the extracted folder, one JSONL file, or the archive itself (a ``*.tar.gz.part.*`` file, a
    folder of them, or a ``.tar.gz``), which is streamed into ``OUTPUT/extracted`` first.

    ``options`` are :class:`ReleaseImporter` fields (``clean_dir``, ``corrupted_dir``, ``metadata_dir``,
    ``copy_images``). ``limit`` stops after that many converted rows.
    """
    out = Path(output_dir)
    files = find_release_files(_release_root(Path(root), out))
    target = out / "train.jsonl"
    if any(target.resolve() == f.resolve() for f in files):
        raise ClearConfigError(
            f"the output {target} is one of the release files; choose another output folder."
        )
    out.mkdir(parents=True, exist_ok=True)
    importer = ReleaseImporter(out, **{k: Path(v) if isinstance(v, str) else v for k, v in options.items()})
    report = ImportReport(target)
    seen: set[str] = set()
    tmp = target.with_name(target.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for file, index, row in _rows(files, report):
            try:
                converted = importer.convert(row, file.parent)
            except (ValueError, TypeError, OSError) as exc:
                report.add_problem(file, index, str(exc))
                continue
            if converted.id in seen:
                report.add_problem(file, index, f"duplicate id {converted.id!r}")
                continue
            seen.add(converted.id)
            handle.write(json.dumps(converted.to_dict(), ensure_ascii=False, sort_keys=True) + "\n")
            report.converted += 1
            report.pathways[converted.pathway] += 1
            if limit is not None and report.converted >= limit:
                break
    os.replace(tmp, target)
    (out / "import_report.json").write_text(json.dumps(report.as_dict(), indent=2) + "\n", encoding="utf-8")
    return report
