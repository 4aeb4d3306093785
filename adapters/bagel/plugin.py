"""Registers the Bagel adapter through the same hook a third-party backbone uses."""

from __future__ import annotations

from collections.abc import Callable

from clear_plugins.hookspecs import hookimpl


@hookimpl
def clear_register_adapters(register: Callable[[type], None]) -> None:
    """Register :class:`~clear_plugins.adapters.bagel.adapter.BagelAdapter` (imported only when asked for)."""
    from clear_plugins.adapters.bagel.adapter import BagelAdapter

    register(BagelAdapter)
