"""Built-in rewards and judges, registered through the same hooks a third-party plugin uses."""

from __future__ import annotations

from collections.abc import Callable

from clear_plugins.hookspecs import hookimpl


@hookimpl
def clear_register_rewards(register: Callable[..., None]) -> None:
    """Register the built-in reward functions."""


@hookimpl
def clear_register_judges(register: Callable[..., None]) -> None:
    """Register the built-in judges."""
