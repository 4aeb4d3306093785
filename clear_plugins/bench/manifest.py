"""The build's records on disk: ``build.json`` (settings), one marker per finished shard, and ``manifest.json``.

A shard counts as finished when its marker exists, was written with the current settings, and every image it
lists is on disk; anything else (no marker, other settings, a missing image) is redone. ``manifest.json`` lists,
for every degraded image, the row id, type, level, intensity, seed and SHA-256, plus the source's SHA-256, the
build settings (:meth:`~clear_plugins.bench.config.BenchBuildConfig.fingerprint`: mode, weighting, levels,
seed, image format, ``exact``, ...) and the rows that could not be read, so the benchmark can be rebuilt and
checked bit for bit.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from clear_plugins.bench.config import LEVEL_NAMES
from clear_plugins.errors import ClearConfigError

MANIFEST_NAME = "manifest.json"
BUILD_NAME = "build.json"
SHARDS_DIR = "shards"
FORMAT_VERSION = 1


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON atomically (a temporary file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def marker_path(output_dir: Path, index: int) -> Path:
    """Where shard ``index``'s marker lives."""
    return output_dir / SHARDS_DIR / f"shard-{index:05d}.json"


def write_marker(
    output_dir: Path, index: int, build_key: dict[str, Any], entries: list, bad_rows: list
) -> None:
    """Record a finished shard (written last, after all its images)."""
    write_json(marker_path(output_dir, index), {"build": build_key, "entries": entries, "bad_rows": bad_rows})


def read_marker(output_dir: Path, index: int, build_key: dict[str, Any]) -> dict[str, Any] | None:
    """A finished shard's record, or ``None`` when the shard must be (re)done."""
    path = marker_path(output_dir, index)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("build") != build_key:
        return None
    if not all((output_dir / entry["file"]).is_file() for entry in record.get("entries", [])):
        return None
    return record


def _listed_files(output_dir: Path) -> set[Path]:
    """The files a previous build in ``output_dir`` says it wrote: its records and every file they list."""
    root = output_dir.resolve()
    listed = {output_dir / MANIFEST_NAME, output_dir / BUILD_NAME}
    records = [output_dir / MANIFEST_NAME, *sorted((output_dir / SHARDS_DIR).glob("shard-*.json"))]
    for path in records:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(record, dict):
            continue
        listed.add(path)
        outputs = record.get("outputs") if isinstance(record.get("outputs"), dict) else {}
        named = [entry.get("file") for entry in record.get("entries") or [] if isinstance(entry, dict)]
        named += [item.get("file") for item in outputs.values() if isinstance(item, dict)]
        for name in named:
            if isinstance(name, str) and (output_dir / name).resolve().is_relative_to(root):
                listed.add(output_dir / name)
    return listed


def _file_or_tree(path: Path) -> list[Path]:
    """``path`` itself, or every file under it when it is a folder (a ``datasets`` table is a folder)."""
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]


def discard_previous_build(output_dir: Path) -> list[Path]:
    """Delete what the previous build in ``output_dir`` wrote, per its manifest and shard markers.

    Only listed files (and their half-written ``.tmp`` twins) are deleted, and folders left empty by that;
    anything else stays. Returns the files that stay inside the build's folders (``shards/`` and the level
    folders), for the caller to name in a warning.
    """
    listed = _listed_files(output_dir)
    for path in sorted(listed):
        for file in _file_or_tree(path) if path.exists() else []:
            file.unlink()
        path.with_name(path.name + ".tmp").unlink(missing_ok=True)
        if path.is_dir() and not any(path.rglob("*")):
            shutil.rmtree(path)
    kept = []
    for folder in [output_dir / SHARDS_DIR, *(output_dir / level for level in LEVEL_NAMES)]:
        if not folder.is_dir():
            continue
        kept += [p for p in sorted(folder.rglob("*")) if p.is_file()]
        for sub in sorted((p for p in folder.rglob("*") if p.is_dir()), reverse=True):
            if not any(sub.iterdir()):
                sub.rmdir()
        if not any(folder.iterdir()):
            folder.rmdir()
    return kept


def prepare_output(output_dir: Path, build_key: dict[str, Any], *, overwrite: bool) -> list[Path]:
    """Check ``output_dir`` against a previous build and record this build's settings.

    With ``overwrite``, a previous build with other settings is discarded by :func:`discard_previous_build`;
    returns the files it kept (not written by that build), else ``[]``.

    Raises:
        ClearConfigError: ``output_dir`` holds a build made with other settings or another source, and
            ``overwrite`` is false.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    build_path = output_dir / BUILD_NAME
    kept: list[Path] = []
    if build_path.is_file():
        previous = json.loads(build_path.read_text(encoding="utf-8"))
        if previous != build_key:
            if not overwrite:
                changed = sorted(k for k in build_key if previous.get(k) != build_key[k])
                raise ClearConfigError(
                    f"{output_dir} holds a build made with other settings (changed: {', '.join(changed)}); "
                    f"pass another output folder, or --overwrite to discard that build."
                )
            kept = discard_previous_build(output_dir)
    write_json(build_path, build_key)
    return kept
