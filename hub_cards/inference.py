"""The CLEAR inference API of a saved model: ``model.generate(images=..., questions=...)`` after a plain load.

:class:`ClearInferenceMixin` is mixed into a backbone's model class (Bagel: ``ClearBagelForConditionalGeneration``,
the class ``AutoModel`` maps ``clear_bagel`` to). On the first call with ``images`` it loads the tokenizer saved
next to the weights, calls :func:`clear_plugins.injection.inject` with the pipeline settings the export recorded
in ``config.clear_inference`` (:data:`INFERENCE_ATTRIBUTE`), and answers through
:class:`~clear_plugins.pipeline.ClearPipeline` — the one restore-then-answer loop. Calls without ``images`` are the
model's own ``generate``. Backbone-blind: nothing here names a backbone.
"""

from __future__ import annotations

import dataclasses
from typing import Any

INFERENCE_ATTRIBUTE = "clear_inference"
"""Config attribute (a JSON dict) holding the exported pipeline settings (see :func:`pipeline_settings`)."""

TAG_MODE_ATTRIBUTE = "clear_tag_mode"
"""Config attribute of the tag mode (``"text"`` or ``"token"``), owned by the tag-mode feature."""

DEFAULT_TAG_MODE = "token"
"""Tag mode of a config that records none (the behaviour before the attribute existed)."""

PIPELINE_KEYS = ("num_steps", "bridge_mode", "max_restores", "max_new_tokens", "system_prompt", "sampling")
""":class:`~clear_plugins.pipeline.PipelineConfig` fields an export records (JSON-serialisable ones)."""


def pipeline_settings(pipeline: Any, *, guidance_preset: str | None) -> dict[str, Any]:
    """The JSON dict an export stores in ``config.clear_inference`` for ``pipeline`` (a ``PipelineConfig``).

    The system prompt is stored as its full text (the shipped one resolved), so a later release that rewords the
    shipped prompt does not change how an exported model is prompted. ``guidance_preset`` is recorded by name.
    """
    from clear_plugins.trajectory import system_prompt

    settings: dict[str, Any] = {}
    for key in PIPELINE_KEYS:
        value = getattr(pipeline, key)
        if dataclasses.is_dataclass(value):
            value = dataclasses.asdict(value)
        settings[key] = value
    settings["system_prompt"] = system_prompt(pipeline.system_prompt)
    settings["guidance_preset"] = guidance_preset
    return settings


def pipeline_config_from(config: Any, **overrides: Any) -> Any:
    """A :class:`~clear_plugins.pipeline.PipelineConfig` from ``config.clear_inference`` plus ``overrides``.

    Keys that ``PipelineConfig`` does not have are ignored (e.g. ``guidance_preset`` while the installed version
    has no preset field), so a folder exported by a newer release still loads.
    """
    from clear_plugins.adapters.base import TextSampling
    from clear_plugins.pipeline import PipelineConfig

    stored = dict(getattr(config, INFERENCE_ATTRIBUTE, None) or {})
    stored.update(overrides)
    names = {f.name for f in dataclasses.fields(PipelineConfig)}
    kwargs = {key: value for key, value in stored.items() if key in names}
    if isinstance(kwargs.get("sampling"), dict):
        kwargs["sampling"] = TextSampling(**kwargs["sampling"])
    return PipelineConfig(**kwargs)


def load_saved_tokenizer(source: str) -> Any:
    """The tokenizer saved with a model (a folder or a Hub repository id), through ``AutoTokenizer``."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(source)


class ClearInferenceMixin:
    """Gives a transformers model class the CLEAR inference API (put it before the model class in the bases).

    ``model.generate(images=..., questions=..., **pipeline_overrides)`` answers with restore-then-answer and returns
    :class:`~clear_plugins.pipeline.PipelineOutput` (a list for lists); without ``images`` it is the model's own
    ``generate``. :meth:`clear_setup` sets the tokenizer or pipeline settings explicitly.
    """

    def clear_setup(self, tokenizer: Any = None, **pipeline_overrides: Any) -> Any:
        """Inject CLEAR (once) and return the :class:`~clear_plugins.injection.Injection`.

        Args:
            tokenizer: the tokenizer; default: the one saved next to the weights (``name_or_path``).
            **pipeline_overrides: ``PipelineConfig`` fields replacing the exported settings.
        """
        from clear_plugins.injection import INJECTION_ATTRIBUTE, InjectionOptions, eject, inject

        existing = self.__dict__.get(INJECTION_ATTRIBUTE)
        if existing is not None and tokenizer is None and not pipeline_overrides:
            return existing
        if existing is not None:
            tokenizer = tokenizer or existing.tokenizer
            eject(self)
        if tokenizer is None:
            tokenizer = load_saved_tokenizer(self.name_or_path)
        options = InjectionOptions(pipeline=pipeline_config_from(self.config, **pipeline_overrides))
        return inject(self, tokenizer, options=options)

    @classmethod
    def register_for_auto_class(cls, auto_class: str = "AutoModel") -> None:
        """Leave the class unmarked: it is installed clear-plugins code, not code to copy into saved folders
        (transformers marks classes it loads as remote code; :meth:`save_pretrained` writes the small modules)."""

    def save_pretrained(self, save_directory: Any, *args: Any, **kwargs: Any) -> None:
        """``save_pretrained``, writing the small remote-code modules when ``config.auto_map`` names them.

        A config loaded with ``trust_remote_code=True`` is marked for auto-class saving, which would copy
        clear-plugins' own module files into the folder (a stale fork of the library); it is unmarked for the
        save, and the folder gets the same modules an export writes.
        """
        from pathlib import Path

        from clear_plugins.hub_cards.remote_code import names_remote_modules, write_remote_code

        self.config.__dict__["_auto_class"] = None
        try:
            super().save_pretrained(save_directory, *args, **kwargs)
        finally:
            self.config.__dict__.pop("_auto_class", None)
        if kwargs.get("is_main_process", True) and names_remote_modules(
            getattr(self.config, "auto_map", None)
        ):
            write_remote_code(self.config, Path(save_directory))

    def generate(self, *args: Any, images: Any = None, questions: Any = None, **kwargs: Any) -> Any:
        """With ``images``: restore-then-answer through ``ClearPipeline`` (keyword arguments override
        ``PipelineConfig`` fields for this call); otherwise the model's own ``generate``."""
        if images is None:
            return super().generate(*args, **kwargs)
        from clear_plugins.pipeline import ClearPipeline

        pipeline = ClearPipeline.from_injection(self.clear_setup())
        return pipeline(images=images, questions=questions, **kwargs)
