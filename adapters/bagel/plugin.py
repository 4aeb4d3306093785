"""Registers the Bagel adapter through the same hook a third-party backbone uses."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from clear_plugins.hookspecs import hookimpl


@hookimpl
def clear_register_adapters(register: Callable[[type], None]) -> None:
    """Register :class:`~clear_plugins.adapters.bagel.adapter.BagelAdapter` (imported only when asked for)."""
    from clear_plugins.adapters.bagel.adapter import BagelAdapter

    register(BagelAdapter)


@hookimpl
def clear_load_model(path: str, options: dict[str, Any]) -> tuple[Any, Any] | None:
    """Load an official BAGEL-7B-MoT folder (with released weights on top) or a ``save_pretrained`` folder."""
    from clear_plugins.adapters.bagel.loading import load_folder

    return load_folder(Path(path), options)
