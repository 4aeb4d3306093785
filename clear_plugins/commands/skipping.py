"""The one rule for inputs that cannot be read, shared by ``clear-plugins degrade`` and ``clear-plugins bench build``.

Unreadable inputs (an image file Pillow cannot open, a row whose image is missing or broken) are left out and the
rest is written, so no work is lost. The command then exits :data:`BAD_INPUT_EXIT` unless ``--skip-bad`` was given,
and in both cases prints how many inputs were left out and where their list is written.
"""

from __future__ import annotations

import argparse
import sys

BAD_INPUT_EXIT = 1
"""Exit status when inputs were left out and ``--skip-bad`` was not given."""

SKIP_BAD_HELP = "Exit 0 even when some inputs cannot be read (default: they are left out, listed, and the command exits 1)."


def add_skip_bad_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--skip-bad`` with the shared help text."""
    parser.add_argument("--skip-bad", action="store_true", help=SKIP_BAD_HELP)


def finish(command: str, count: int, what: str, listed_in: str, skip_bad: bool) -> int:
    """Report ``count`` left-out inputs (listed in ``listed_in``) and return the exit status of the rule."""
    if not count:
        return 0
    print(
        f"clear-plugins {command}: {count} {what} could not be read and were left out; listed in {listed_in}.",
        file=sys.stderr,
    )
    if skip_bad:
        return 0
    print(
        f"clear-plugins {command}: exiting with status {BAD_INPUT_EXIT}; pass --skip-bad to accept the left-out "
        f"inputs and exit 0 (everything readable is already written).",
        file=sys.stderr,
    )
    return BAD_INPUT_EXIT
