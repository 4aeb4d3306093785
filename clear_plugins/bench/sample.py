"""A tiny VQA set shipped with the package, so the builder runs offline with no data of the user's.

Six questions (four multiple choice, two open) about four photos from scikit-image's sample data (astronaut and
rocket: NASA, public domain; chelsea and coffee: CC0), shrunk to a 192-pixel long side. It is a smoke-test
input, not a benchmark.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

SAMPLE_RESOURCE = "resources/sample_vqa/sample.jsonl"
"""Location of the sample's JSONL file inside the ``clear_plugins`` package (images sit beside it)."""


def sample_source() -> Path:
    """Path of the shipped sample VQA JSONL file (image paths in it are relative to it)."""
    path = Path(str(importlib.resources.files("clear_plugins").joinpath(SAMPLE_RESOURCE)))
    if not path.is_file():
        from clear_plugins.errors import ClearConfigError

        raise ClearConfigError(
            f"the packaged sample VQA set is missing at {path}; reinstall clear-plugins (it ships as package data)."
        )
    return path
