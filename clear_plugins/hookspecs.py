"""Every hook of clear-plugins.

A plugin is any object or module with functions marked ``@hookimpl`` whose names match these specs. Built-in
backbones, degradations, rewards and judges are registered through the very same hooks a third-party package
uses (see :mod:`clear_plugins.plugins`). Third-party packages expose their plugin module under the
``clear_plugins`` entry-point group::

    [project.entry-points.clear_plugins]
    my_backbone = "my_package.clear_plugin"

Registration hooks follow simonw/llm's callback style: the hook receives a ``register`` function and calls it
once per thing it provides. Hook functions should import heavy modules (torch, transformers) inside the
function body, so that commands which never ask for, say, adapters never import them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from clear_plugins.adapters.base import BackboneAdapter
    from clear_plugins.injection import Injection

PROJECT_NAME = "clear_plugins"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def clear_register_adapters(register: Callable[[type[BackboneAdapter]], None]) -> None:
    """Register backbone adapter classes.

    Call ``register(AdapterClass)`` for each :class:`~clear_plugins.adapters.base.BackboneAdapter` subclass the
    plugin provides. The spine finds an adapter for a model by ``model_type`` first, then by
    ``AdapterClass.matches(model)``.
    """


@hookspec
def clear_register_degradations(register: Callable[..., None]) -> None:
    """Register image degradations.

    Call ``register(name, fn, category="...")`` for each degradation. ``fn(image, intensity, rng)`` takes a
    ``uint8`` RGB array of shape ``(H, W, 3)``, an intensity in ``[0, 1]`` and a :class:`numpy.random.Generator`,
    and returns a ``uint8`` array of the same shape. It must not modify its input.
    """


@hookspec
def clear_register_rewards(register: Callable[..., None]) -> None:
    """Register reward functions.

    Call ``register(name, factory)``, where ``factory(config, judge=None)`` returns a TRL-style reward function
    ``f(prompts, completions, **dataset_columns) -> list[float | None]``. Factories given the same
    :class:`~clear_plugins.rewards.functions.JudgeCache` as ``judge`` share one judge call per completion.
    """


@hookspec
def clear_register_judges(register: Callable[..., None]) -> None:
    """Register accuracy judges.

    Call ``register(name, factory)``, where ``factory(**options)`` returns an object with
    ``score(question: str, answer: str, ground_truth: str) -> float`` (a number in ``[0, 1]``).
    """


@hookspec(firstresult=True)
def clear_inject_model(
    model: Any, tokenizer: Any, adapter: BackboneAdapter, options: Any
) -> Injection | None:
    """Inject CLEAR into a loaded model and tokenizer; return the :class:`~clear_plugins.injection.Injection`.

    The first implementation that returns a value wins, so a backbone plugin can take over injection for its
    model (return ``None`` to decline). The built-in implementation adds the trajectory tags to the tokenizer
    (reusing spare embedding rows before growing, never shrinking) and routes ``model.generate`` through
    :class:`~clear_plugins.pipeline.ClearPipeline`.
    """


@hookspec(firstresult=True)
def clear_load_model(path: str, options: dict[str, Any]) -> tuple[Any, Any] | None:
    """Load a model and its tokenizer from the directory ``path``; return ``(model, tokenizer)``.

    Return ``None`` when the directory is not in a layout this plugin reads, so the next plugin may try.
    ``options`` holds ``weights`` (a weights folder or file to load on top of ``path``, or ``None``), ``ema``
    (``True``/``False``/``None``: which file of a weights folder), ``dtype`` (a torch dtype or ``None`` for the
    plugin's default) and ``device``. Used by ``clear-plugins answer`` and ``serve``.
    """
