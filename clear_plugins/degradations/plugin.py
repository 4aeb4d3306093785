"""Built-in degradations, registered through the same hook a third-party plugin uses."""

from __future__ import annotations

from collections.abc import Callable

from clear_plugins.hookspecs import hookimpl


@hookimpl
def clear_register_degradations(register: Callable[..., None]) -> None:
    """Register the 16 built-in degradations."""
