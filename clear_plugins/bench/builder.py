"""Build MMD-Bench from a VQA source (App. B): degraded copies per level, in the source's format, plus a manifest.

The rows are split into shards of ``shard_size``; each shard is degraded in-process or in a worker process,
its images written under ``OUTDIR/<level>/images/`` and a marker under ``OUTDIR/shards/`` written as soon as that
shard finishes (whatever the worker count), so an interrupted build keeps every finished shard. A rerun
skips finished shards and redoes the rest, then writes each level's table ``OUTDIR/<level>/<source name>`` and
``OUTDIR/manifest.json``. A row whose image cannot be read is reported and left out of every level.
"""

from __future__ import annotations

import hashlib
import multiprocessing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clear_plugins.bench import manifest as records
from clear_plugins.bench.config import BenchBuildConfig
from clear_plugins.bench.plan import row_jobs
from clear_plugins.bench.sources import SourceTable, read_source, source_sha256
from clear_plugins.bench.worker import RowTask, ShardResult, ShardTask, init_worker, run_shard
from clear_plugins.bench.writers import BINARY_FORMATS, CLEAR_COLUMNS, image_cell, write_table
from clear_plugins.errors import ClearConfigError


@dataclass
class BuildResult:
    """What a build wrote and did."""

    output_dir: Path
    manifest_path: Path
    outputs: dict[str, Path]
    shards_total: int
    shards_run: int
    shards_skipped: int
    images: int
    bad_rows: list[dict[str, Any]] = field(default_factory=list)
    kept_files: list[Path] = field(default_factory=list)
    """Files in the build's folders that ``overwrite`` did not delete, because no previous record listed them."""


def _versions() -> dict[str, str]:
    """Library versions that determine the output bytes (recorded so a rebuild can be checked)."""
    import cv2
    import numpy
    import PIL

    from clear_plugins import __version__

    return {
        "clear_plugins": __version__,
        "numpy": numpy.__version__,
        "opencv": cv2.__version__,
        "pillow": PIL.__version__,
    }


def _shard_tasks(source: SourceTable, config: BenchBuildConfig, indices: list[int]) -> list[ShardTask]:
    extension = "jpg" if config.reference_jpeg else "png"
    tasks = []
    for index in indices:
        start = index * config.shard_size
        stop = min(start + config.shard_size, len(source.rows))
        rows = tuple(
            RowTask(
                position,
                source.row_ids[position],
                source.payloads[position],
                tuple(
                    row_jobs(
                        position,
                        source.row_ids[position],
                        mode=config.mode,
                        weighting=config.weighting,
                        levels=config.levels,
                        global_seed=config.seed,
                        extension=extension,
                    )
                ),
            )
            for position in range(start, stop)
        )
        tasks.append(
            ShardTask(
                index,
                rows,
                str(config.output_dir),
                config.image_format,
                config.jpeg_quality,
                exact=config.exact,
            )
        )
    return tasks


class BuildInterrupted(Exception):
    """The build stopped on Ctrl-C (or SIGTERM turned into ``KeyboardInterrupt``); finished shards are kept.

    ``shards_done`` of ``shards_total`` shards have their markers on disk, so rerunning the same build resumes.
    """

    def __init__(self, shards_done: int, shards_total: int) -> None:
        super().__init__(f"interrupted with {shards_done} of {shards_total} shard(s) done")
        self.shards_done = shards_done
        self.shards_total = shards_total


def _run_pending(tasks: list[ShardTask], workers: int, on_done: Callable[[ShardResult, int], None]) -> None:
    """Run shard tasks in-process (one worker) or on a spawn-context process pool (never inherits torch).

    Each shard is handed to ``on_done`` (which writes its marker) as soon as it finishes, in completion order.
    On an error or Ctrl-C the workers are terminated at once; finished shards keep their markers.
    """
    if workers == 1 or len(tasks) <= 1:
        for task in tasks:
            on_done(run_shard(task), len(task.rows))
        return
    sizes = {task.index: len(task.rows) for task in tasks}
    pool = multiprocessing.get_context("spawn").Pool(min(workers, len(tasks)), initializer=init_worker)
    try:
        for result in pool.imap_unordered(run_shard, tasks, chunksize=1):
            on_done(result, sizes[result.index])
    except BaseException:
        pool.terminate()
        pool.join()
        raise
    pool.close()
    pool.join()


def _progress(config: BenchBuildConfig, total: int, initial: int):
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        unit="row",
        desc="bench build",
        disable=None if config.progress else True,
    )


def _level_rows(
    source: SourceTable,
    level: str,
    entries: dict[tuple[str, int], list[dict[str, Any]]],
    config: BenchBuildConfig,
) -> Iterator[dict[str, Any]]:
    """The degraded rows of one level, in source order (and type order in full mode)."""
    output_dir = Path(config.output_dir)
    id_column, image_column = source.columns.id, source.columns.image
    binary = source.format in BINARY_FORMATS
    for position, original in enumerate(source.rows):
        payload = source.payloads[position]
        for entry in entries.get((level, position), []):
            embed = payload.kind != "path" and (binary or payload.kind != "struct")
            data = (output_dir / entry["file"]).read_bytes() if embed else None
            row = dict(original)
            relative = entry["file"].split("/", 1)[1]
            row[image_column] = image_cell(payload, data, relative, config.image_format, binary=binary)
            if config.mode == "full" and id_column is not None:
                row[id_column] = f"{source.row_ids[position]}_{entry['type']}"
            values = (entry["row_id"], entry["type"], entry["level"], entry["intensity"], entry["seed"])
            row.update(zip(CLEAR_COLUMNS, values, strict=True))
            yield row


def _file_sha256(path: Path) -> str:
    if path.is_dir():
        return source_sha256(path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _check_source_columns(source: SourceTable) -> None:
    names = source.extra.get("fieldnames") or list(dict.fromkeys(k for row in source.rows for k in row))
    clash = [name for name in CLEAR_COLUMNS if name in names]
    if clash:
        raise ClearConfigError(
            f"{source.path} already has the column(s) {', '.join(clash)}, which the builder adds: it looks like a "
            f"degraded copy. Build from the clean source instead."
        )


def _run_shards(
    source: SourceTable, config: BenchBuildConfig, build_key: dict[str, Any]
) -> tuple[dict[int, dict[str, Any]], int]:
    """Run every unfinished shard; returns every shard's record (by index) and how many shards ran now."""
    output_dir = Path(config.output_dir)
    shard_count = -(-len(source.rows) // config.shard_size)
    finished = {i: rec for i in range(shard_count) if (rec := records.read_marker(output_dir, i, build_key))}
    todo = [i for i in range(shard_count) if i not in finished]
    done_rows = sum(min(config.shard_size, len(source.rows) - i * config.shard_size) for i in finished)
    with _progress(config, len(source.rows), done_rows) as bar:

        def on_done(result: ShardResult, rows: int) -> None:
            records.write_marker(output_dir, result.index, build_key, result.entries, result.bad_rows)
            finished[result.index] = {"entries": result.entries, "bad_rows": result.bad_rows}
            bar.update(rows)

        try:
            _run_pending(_shard_tasks(source, config, todo), config.workers, on_done)
        except KeyboardInterrupt:
            raise BuildInterrupted(len(finished), shard_count) from None
    return dict(sorted(finished.items())), len(todo)


def _write_levels(
    source: SourceTable, config: BenchBuildConfig, entries: list[dict[str, Any]], source_hash: str
) -> dict[str, dict[str, Any]]:
    """Write each level's table; returns ``{level: {file, sha256, rows}}`` for the manifest."""
    output_dir = Path(config.output_dir)
    by_level: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for entry in entries:
        by_level.setdefault((entry["level"], entry["position"]), []).append(entry)
    written = {}
    for level in config.levels:
        target = output_dir / level / source.name
        rows = _level_rows(source, level, by_level, config)
        fingerprint = f"{source_hash[:16]}-{level}"
        write_table(source, target, rows, full_mode=config.mode == "full", fingerprint=fingerprint)
        count = sum(1 for entry in entries if entry["level"] == level)
        written[level] = {"file": f"{level}/{source.name}", "sha256": _file_sha256(target), "rows": count}
    return written


def build_benchmark(config: BenchBuildConfig) -> BuildResult:
    """Build (or resume) MMD-Bench for ``config.source`` into ``config.output_dir``.

    Raises:
        BuildInterrupted: Ctrl-C (``KeyboardInterrupt``) during the shards; finished shards are marked.
        ImageInputError: the source cannot be read.
        ClearConfigError: a column or split is missing, or the output folder holds a build with other settings.
    """
    source = read_source(config)
    _check_source_columns(source)
    output_dir = Path(config.output_dir)
    source_hash = source_sha256(source.path)
    build_key = {
        "format_version": records.FORMAT_VERSION,
        "source_sha256": source_hash,
        "shard_size": config.shard_size,
        **config.fingerprint(),
    }
    kept = records.prepare_output(output_dir, build_key, overwrite=config.overwrite)
    shards, ran = _run_shards(source, config, build_key)
    entries = [entry for record in shards.values() for entry in record["entries"]]
    bad_rows = [bad for record in shards.values() for bad in record["bad_rows"]]
    outputs = _write_levels(source, config, entries, source_hash)
    manifest = {
        "format_version": records.FORMAT_VERSION,
        "source": {
            "path": str(config.source),
            "format": source.format,
            "sha256": source_hash,
            "rows": len(source.rows),
        },
        "settings": config.fingerprint(),
        "columns": source.columns.as_dict(),
        "created_with": _versions(),
        "outputs": outputs,
        "bad_rows": bad_rows,
        "entries": entries,
    }
    manifest_path = output_dir / records.MANIFEST_NAME
    records.write_json(manifest_path, manifest)
    return BuildResult(
        output_dir=output_dir,
        manifest_path=manifest_path,
        outputs={level: output_dir / record["file"] for level, record in outputs.items()},
        shards_total=len(shards),
        shards_run=ran,
        shards_skipped=len(shards) - ran,
        images=len(entries),
        bad_rows=bad_rows,
        kept_files=kept,
    )
