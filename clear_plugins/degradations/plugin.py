"""Built-in degradations, registered through the same hook a third-party plugin uses."""

from __future__ import annotations

from collections.abc import Callable

from clear_plugins.hookspecs import hookimpl


@hookimpl
def clear_register_degradations(register: Callable[..., None]) -> None:
    """Register the 16 built-in degradations with their category (App. B, Table 7).

    The category modules (and OpenCV) are imported here, only when degradations are asked for.
    """
    import importlib

    from clear_plugins.degradations.registry import CATEGORY_TABLE

    for category, module_path, group in CATEGORY_TABLE:
        module = importlib.import_module(module_path)
        for name in group:
            register(name, getattr(module, name), category=category)
