"""``--threads`` for every benchmark script: how many CPU threads torch, OpenMP/BLAS and OpenCV may use.

The default is 1: on the project's shared 2-core machines one thread per process gives stable, comparable
numbers (two threads on a busy machine made tiny-model runs up to 70x slower; see CONTRIBUTING.md). Every
script prints the count it ran with next to its numbers. The environment variables are set before NumPy or
torch is imported (scripts call :func:`pin_from_argv` first), since OpenMP reads them once at start-up.
"""

from __future__ import annotations

import argparse
import os
import sys

DEFAULT_THREADS = 1
_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--threads N`` (default 1)."""
    parser.add_argument(
        "--threads",
        type=int,
        default=DEFAULT_THREADS,
        help="CPU threads for torch, OpenMP/BLAS and OpenCV (default: 1, stable numbers on a shared machine).",
    )


def pin_from_argv(argv: list[str] | None = None) -> int:
    """Read ``--threads`` from the command line (before argparse runs) and set the environment variables."""
    args = sys.argv[1:] if argv is None else argv
    threads = DEFAULT_THREADS
    for position, arg in enumerate(args):
        if arg == "--threads" and position + 1 < len(args):
            threads = int(args[position + 1])
        elif arg.startswith("--threads="):
            threads = int(arg.split("=", 1)[1])
    for variable in _VARIABLES:
        os.environ[variable] = str(threads)
    return threads


def pin(threads: int) -> str:
    """Apply ``threads`` to the environment and to torch / OpenCV when imported; returns a line to print."""
    if threads < 1:
        raise SystemExit(f"--threads {threads}: pass 1 or more.")
    for variable in _VARIABLES:
        os.environ[variable] = str(threads)
    parts = [f"OMP_NUM_THREADS={threads}"]
    if "cv2" in sys.modules:
        sys.modules["cv2"].setNumThreads(threads)
        parts.append(f"cv2 threads {sys.modules['cv2'].getNumThreads()}")
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
        parts.append(f"torch threads {sys.modules['torch'].get_num_threads()}")
    return "threads: " + ", ".join(parts)
