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


def _level_dirs(output_dir: Path) -> list[Path]:
    return [output_dir / level for level in ("low", "mid", "hard")]


def prepare_output(output_dir: Path, build_key: dict[str, Any], *, overwrite: bool) -> None:
    """Check ``output_dir`` against a previous build and record this build's settings.

    Raises:
        ClearConfigError: ``output_dir`` holds a build made with other settings or another source, and
            ``overwrite`` is false.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    build_path = output_dir / BUILD_NAME
    if build_path.is_file():
        previous = json.loads(build_path.read_text(encoding="utf-8"))
        if previous != build_key:
            if not overwrite:
                changed = sorted(k for k in build_key if previous.get(k) != build_key[k])
                raise ClearConfigError(
                    f"{output_dir} holds a build made with other settings (changed: {', '.join(changed)}); "
                    f"pass another output folder, or --overwrite to discard that build."
                )
            for stale in [output_dir / SHARDS_DIR, *_level_dirs(output_dir)]:
                if stale.is_dir():
                    shutil.rmtree(stale)
            (output_dir / MANIFEST_NAME).unlink(missing_ok=True)
    write_json(build_path, build_key)
