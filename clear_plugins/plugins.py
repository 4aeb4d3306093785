"""Build a plugin manager and read what plugins registered.

There is no module-global plugin manager: :func:`get_plugin_manager` builds a fresh one each call, and
:class:`Plugins` wraps one with typed accessors. Built-in plugins are plain modules with ``@hookimpl``
functions, registered exactly as a third-party plugin is; third-party plugins come from the ``clear_plugins``
entry-point group.

The environment variable ``CLEAR_PLUGINS`` restricts which entry-point plugins load: a comma-separated
allow-list of entry-point names (an empty value loads none). Built-ins always load.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

import pluggy

from clear_plugins import hookspecs
from clear_plugins.errors import AdapterNotFoundError, PluginError, UnknownNameError

if TYPE_CHECKING:
    from clear_plugins.adapters.base import BackboneAdapter

ENV_ALLOW_LIST = "CLEAR_PLUGINS"

BUILTIN_PLUGINS: tuple[str, ...] = (
    "clear_plugins.injection",
    "clear_plugins.degradations.plugin",
    "clear_plugins.rewards.plugin",
    "clear_plugins.adapters.bagel.plugin",
)
"""Import paths of the built-in plugin modules, registered like any third-party plugin."""


def _allowed_entry_points(env: Mapping[str, str]) -> set[str] | None:
    raw = env.get(ENV_ALLOW_LIST)
    if raw is None:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


def get_plugin_manager(
    *,
    builtins: bool = True,
    entry_point_group: str | None = hookspecs.PROJECT_NAME,
    extra: Iterable[object] = (),
    env: Mapping[str, str] | None = None,
) -> pluggy.PluginManager:
    """Build a new :class:`pluggy.PluginManager` with the clear-plugins hooks.

    Args:
        builtins: register the built-in plugins (degradations, rewards, judges, the Bagel adapter).
        entry_point_group: load third-party plugins from this entry-point group (``None`` to skip).
        extra: plugin objects or modules to register in-process (tests, notebooks).
        env: environment used for the ``CLEAR_PLUGINS`` allow-list (defaults to ``os.environ``).

    Raises:
        PluginError: a plugin fails to import, or implements a hook that does not exist (a typo).
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    if builtins:
        for path in BUILTIN_PLUGINS:
            pm.register(importlib.import_module(path), name=path)
    if entry_point_group:
        _load_entry_points(pm, entry_point_group, _allowed_entry_points(os.environ if env is None else env))
    for plugin in extra:
        pm.register(plugin)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(
            f"{exc}. Hook implementations must be named after a hook in clear_plugins.hookspecs "
            f"({', '.join(sorted(_hook_names()))})."
        ) from exc
    return pm


def _hook_names() -> list[str]:
    return [name for name in dir(hookspecs) if name.startswith("clear_")]


def _load_entry_points(pm: pluggy.PluginManager, group: str, allowed: set[str] | None) -> None:
    for ep in entry_points(group=group):
        if allowed is not None and ep.name not in allowed:
            continue
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        try:
            plugin = ep.load()
        except Exception as exc:
            raise PluginError(
                f"could not load plugin {ep.name!r} ({ep.value}) from entry-point group {group!r}: {exc}. "
                f"Fix or uninstall that package, or leave it out of the {ENV_ALLOW_LIST} allow-list."
            ) from exc
        pm.register(plugin, name=ep.name)


@dataclass(frozen=True)
class DegradationSpec:
    """A registered degradation: its name, function and category."""

    name: str
    fn: Callable[..., Any]
    category: str


def _collect(hook: Callable[..., Any], what: str) -> dict[str, Any]:
    """Call a ``register``-style hook and return ``{name: value}``, rejecting duplicate names."""
    found: dict[str, Any] = {}

    def register(name: str, value: Any, **extra: Any) -> None:
        if not isinstance(name, str) or not name:
            raise PluginError(
                f"a {what} was registered with an invalid name {name!r}; use a non-empty string."
            )
        if name in found:
            raise PluginError(f"two plugins registered a {what} named {name!r}; rename one of them.")
        found[name] = (value, extra) if extra else value

    hook(register=register)
    return found


class Plugins:
    """Typed, read-only view of what the plugins of one plugin manager registered.

    Each collection is gathered on first access, so asking for degradations never imports a backbone.
    """

    def __init__(self, pm: pluggy.PluginManager | None = None) -> None:
        self.pm = pm if pm is not None else get_plugin_manager()

    @cached_property
    def adapters(self) -> list[type[BackboneAdapter]]:
        """Adapter classes, in registration order."""
        from clear_plugins.adapters.base import BackboneAdapter

        found: list[type[BackboneAdapter]] = []

        def register(cls: type[BackboneAdapter]) -> None:
            if not (isinstance(cls, type) and issubclass(cls, BackboneAdapter)):
                raise PluginError(
                    f"{cls!r} was registered as an adapter but is not a BackboneAdapter subclass."
                )
            if cls not in found:
                found.append(cls)

        self.pm.hook.clear_register_adapters(register=register)
        return found

    @cached_property
    def degradations(self) -> dict[str, DegradationSpec]:
        """Degradations by name."""
        found: dict[str, DegradationSpec] = {}

        def register(name: str, fn: Callable[..., Any], category: str = "other") -> None:
            if name in found:
                raise PluginError(f"two plugins registered a degradation named {name!r}; rename one of them.")
            if not callable(fn):
                raise PluginError(f"degradation {name!r} was registered with a non-callable {fn!r}.")
            found[name] = DegradationSpec(name=name, fn=fn, category=category)

        self.pm.hook.clear_register_degradations(register=register)
        return found

    @cached_property
    def rewards(self) -> dict[str, Callable[..., Any]]:
        """Reward-function factories by name."""
        return _collect(self.pm.hook.clear_register_rewards, "reward")

    @cached_property
    def judges(self) -> dict[str, Callable[..., Any]]:
        """Judge factories by name."""
        return _collect(self.pm.hook.clear_register_judges, "judge")

    def degradation(self, name: str) -> DegradationSpec:
        """The degradation called ``name``; :class:`UnknownNameError` lists the registered ones."""
        return _lookup(self.degradations, name, "degradation")

    def reward(self, name: str) -> Callable[..., Any]:
        """The reward-function factory called ``name``."""
        return _lookup(self.rewards, name, "reward")

    def judge(self, name: str) -> Callable[..., Any]:
        """The judge factory called ``name``."""
        return _lookup(self.judges, name, "judge")

    def adapter_for(self, model_or_type: Any) -> type[BackboneAdapter]:
        """The adapter class for a model instance, a config, or a ``model_type`` string.

        Matching order: an adapter listing the ``model_type`` in ``model_types``, then the first adapter whose
        ``matches(model)`` returns true.
        """
        model_type = _model_type_of(model_or_type)
        for cls in self.adapters:
            if model_type is not None and model_type in cls.model_types:
                return cls
        if not isinstance(model_or_type, str):
            for cls in self.adapters:
                if cls.matches(model_or_type):
                    return cls
        known = sorted({t for cls in self.adapters for t in cls.model_types})
        raise AdapterNotFoundError(
            f"no registered backbone adapter handles model_type {model_type!r}. Registered model types: "
            f"{known}. Install a plugin for this backbone, or write one (see CONTRIBUTING.md, 'Writing an "
            f"adapter')."
        )


def _model_type_of(obj: Any) -> str | None:
    if isinstance(obj, str):
        return obj
    config = getattr(obj, "config", obj)
    return getattr(config, "model_type", None)


def _lookup(table: Mapping[str, Any], name: str, what: str) -> Any:
    try:
        return table[name]
    except KeyError:
        raise UnknownNameError(
            f"unknown {what} {name!r}; registered {what}s: {', '.join(sorted(table)) or '(none)'}."
        ) from None


def load_plugins(*, extra: Iterable[object] = (), env: Mapping[str, str] | None = None) -> Plugins:
    """Build a plugin manager (built-ins, entry points, ``extra``) and return its :class:`Plugins` view."""
    return Plugins(get_plugin_manager(extra=extra, env=env))
