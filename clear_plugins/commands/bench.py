"""Build MMD-Bench (App. B) from a VQA source; evaluate models on it and report with 'clear-plugins eval'.

  clear-plugins bench build SOURCE -o OUTDIR [--mode sampled|full] [--workers N] [--reference-jpeg] [--exact]
  clear-plugins bench build --sample -o OUTDIR        (the tiny VQA set shipped with the package)

SOURCE is a .jsonl/.json, .csv, .parquet or VLMEvalKit-style .tsv file (images as paths relative to the file,
bytes or base64), or a folder saved with datasets' save_to_disk. OUTDIR gets one folder per level (low, mid,
hard) holding the degraded copy in SOURCE's format and its images, and manifest.json (source SHA-256, and per
image the row id, type, level, intensity, seed and SHA-256). Rerunning the same command resumes: finished
shards are skipped; each shard is marked done as soon as it finishes, so Ctrl-C (or SIGTERM) stops at once,
keeps every finished shard and prints the command that resumes. Rows whose image cannot be read are reported,
listed under bad_rows in manifest.json and left out; the exit status is then 1 unless --skip-bad. --overwrite
deletes only the files the previous build's manifest and shard markers list; anything else stays (and is named).

--mode sampled (default) gives each row one type, drawn with --weighting and kept at every level; --mode full
repeats each row for all 16 types, and its id becomes '<id>_<type>'. Every row gets the columns
clear_source_id, clear_type, clear_level, clear_intensity and clear_seed; the image keeps the source's storage
(path, bytes or base64), as PNG, or JPEG with --reference-jpeg. --exact runs the reference algorithms where
the degradations default to a faster approximation (mean_shift, watermark_damage); it is recorded in the
manifest, and rebuilding into the same OUTDIR without it (or the other way round) needs --overwrite.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
from dataclasses import fields

from clear_plugins.commands import skipping

HELP = "Build MMD-Bench from a VQA source (evaluate on it with 'clear-plugins eval')."

USAGE_ERROR = 2
RUN_ERROR = 1
INTERRUPTED = 130
"""Exit status after Ctrl-C or SIGTERM (128 + SIGINT, the shell's convention)."""


def _help(name: str) -> str:
    from clear_plugins.bench.config import BenchBuildConfig

    text = next(f.metadata["help"] for f in fields(BenchBuildConfig) if f.name == name)
    return text.replace("%", "%%")


def _add_build_arguments(parser: argparse.ArgumentParser) -> None:
    from clear_plugins.bench.config import MODES, WEIGHTINGS

    parser.add_argument("source", metavar="SOURCE", nargs="?", help=_help("source"))
    parser.add_argument(
        "--sample",
        action="store_true",
        help="Use the tiny VQA set shipped with the package (6 questions, 4 photos) as SOURCE: an offline smoke test.",
    )
    parser.add_argument(
        "-o", "--output", dest="output_dir", metavar="OUTDIR", required=True, help=_help("output_dir")
    )
    default = " (default: %(default)s)"
    parser.add_argument("--mode", choices=MODES, default="sampled", help=_help("mode") + default)
    parser.add_argument(
        "--weighting", choices=WEIGHTINGS, default="benchmark", help=_help("weighting") + default
    )
    parser.add_argument(
        "--levels", default="low,mid,hard", help="Comma-separated. " + _help("levels") + default
    )
    parser.add_argument("--seed", type=int, default=0, help=_help("seed") + default)
    parser.add_argument("--reference-jpeg", action="store_true", help=_help("reference_jpeg"))
    parser.add_argument("--jpeg-quality", type=int, default=95, help=_help("jpeg_quality") + default)
    parser.add_argument("--exact", action="store_true", help=_help("exact"))
    parser.add_argument("--workers", type=int, default=1, help=_help("workers") + default)
    parser.add_argument("--shard-size", type=int, default=64, help=_help("shard_size") + default)
    for role in ("id", "image", "question", "answer"):
        parser.add_argument(f"--{role}-column", default=None, help=_help(f"{role}_column"))
    parser.add_argument("--split", default=None, help=_help("split"))
    parser.add_argument("--overwrite", action="store_true", help=_help("overwrite"))
    skipping.add_skip_bad_argument(parser)
    parser.add_argument("--no-progress", action="store_true", help="Hide the progress bar.")


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``clear-plugins bench`` sub-commands."""
    sub = parser.add_subparsers(dest="bench_command", metavar="SUBCOMMAND", title="sub-commands")
    build = sub.add_parser(
        "build",
        help="Degrade a VQA source per level and write a manifest.",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_build_arguments(build)


def _config(args: argparse.Namespace):
    from clear_plugins.bench.config import BenchBuildConfig

    return BenchBuildConfig(
        source=args.source,
        output_dir=args.output_dir,
        mode=args.mode,
        weighting=args.weighting,
        levels=tuple(level.strip() for level in args.levels.split(",") if level.strip()),
        seed=args.seed,
        reference_jpeg=args.reference_jpeg,
        jpeg_quality=args.jpeg_quality,
        exact=args.exact,
        workers=args.workers,
        shard_size=args.shard_size,
        id_column=args.id_column,
        image_column=args.image_column,
        question_column=args.question_column,
        answer_column=args.answer_column,
        split=args.split,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _run_build(config):
    """Build with SIGTERM handled like Ctrl-C (the builder then keeps finished shards and stops its workers)."""
    from clear_plugins.bench.builder import build_benchmark

    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        return build_benchmark(config)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _report(result) -> None:
    for bad in result.bad_rows:
        print(
            f"clear-plugins bench build: skipped row {bad['position']} (id {bad['row_id']!r}): {bad['reason']}",
            file=sys.stderr,
        )
    if result.kept_files:
        names = ", ".join(str(path) for path in result.kept_files)
        print(
            f"clear-plugins bench build: warning: --overwrite kept {len(result.kept_files)} file(s) the previous "
            f"build did not write: {names}",
            file=sys.stderr,
        )
    print(
        f"clear-plugins bench build: {result.images} images in {result.output_dir} "
        f"({result.shards_run} shard(s) built, {result.shards_skipped} already done); manifest {result.manifest_path}",
        file=sys.stderr,
    )
    for level, path in result.outputs.items():
        print(f"  {level}: {path}", file=sys.stderr)


def _build(args: argparse.Namespace, argv: list[str]) -> int:
    from clear_plugins.bench.builder import BuildInterrupted
    from clear_plugins.errors import ClearConfigError, ClearError

    if (args.source is None) == (not args.sample):
        print("clear-plugins bench build: error: give either SOURCE or --sample (not both).", file=sys.stderr)
        return USAGE_ERROR
    if args.sample:
        from clear_plugins.bench.sample import sample_source

        args.source = str(sample_source())
    try:
        result = _run_build(_config(args))
    except BuildInterrupted as stop:
        print(
            f"clear-plugins bench build: interrupted; {stop.shards_done} of {stop.shards_total} shard(s) are done "
            f"and kept. Resume with: {shlex.join(['clear-plugins', *argv])}",
            file=sys.stderr,
        )
        return INTERRUPTED
    except ClearError as exc:
        print(f"clear-plugins bench build: error: {exc}", file=sys.stderr)
        return USAGE_ERROR if isinstance(exc, ClearConfigError) else RUN_ERROR
    _report(result)
    listed_in = f"{result.manifest_path} (bad_rows)"
    return skipping.finish("bench build", len(result.bad_rows), "row(s)", listed_in, args.skip_bad)


def run(args: argparse.Namespace) -> int:
    """Run ``clear-plugins bench``; returns the exit status."""
    if getattr(args, "bench_command", None) == "build":
        return _build(args, getattr(args, "_argv", None) or sys.argv[1:])
    print(
        "clear-plugins bench: choose a sub-command: build (see 'clear-plugins bench --help'); evaluate and report "
        "with 'clear-plugins eval run' and 'clear-plugins eval report'.",
        file=sys.stderr,
    )
    return USAGE_ERROR
