"""Export a CLEAR model as a Hub folder that ``AutoModel.from_pretrained(folder, trust_remote_code=True)`` loads.

The folder holds (and nothing else; no pickles):

- ``model.safetensors`` (or shards + ``model.safetensors.index.json`` above ``max_shard_size``);
- ``config.json`` with ``auto_map`` → the remote-code modules (:mod:`.remote_code`), the tag mode
  (``clear_tag_mode``) and the inference settings (``clear_inference``: steps, bridge mode, K, token budget,
  sampling, the full system prompt text and the guidance preset name);
- the tokenizer files and ``generation_config.json``;
- the run's metadata files when the checkpoint has them (:data:`~.metadata.COPIED_FILES`), and ``README.md``,
  the model card rendered from them (:mod:`.cards`).

It is written into a temporary sibling folder and moved into place once complete, so an interrupted export
leaves no half folder under the output name and never touches the checkpoint.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clear_plugins.errors import ClearConfigError
from clear_plugins.hub_cards.checks import export_problems, pickle_files
from clear_plugins.hub_cards.inference import (
    DEFAULT_TAG_MODE,
    INFERENCE_ATTRIBUTE,
    TAG_MODE_ATTRIBUTE,
    pipeline_settings,
)
from clear_plugins.hub_cards.remote_code import auto_model_class, write_remote_code

_MISSING = object()

DEFAULT_GUIDANCE_PRESET = "clear_eval"
"""Guidance preset recorded when none is given (the release issue's default: the reference's evaluation settings)."""


@dataclass
class ExportOptions:
    """What :func:`export_model` writes besides the weights."""

    max_shard_size: str | int = field(
        default="5GB",
        metadata={"help": "Largest weight file; bigger models are sharded (transformers' max_shard_size)."},
    )
    guidance_preset: str | None = field(
        default=None,
        metadata={
            "help": "Guidance preset name recorded for inference; None keeps the checkpoint's, else 'clear_eval'."
        },
    )
    system_prompt: str | None = field(
        default=None,
        metadata={
            "help": "System prompt text recorded for inference; None keeps the pipeline's (or shipped) one."
        },
    )
    base_model: str | None = field(
        default=None,
        metadata={"help": "Hub id of the base weights for the card; None reads it from clear_training.json."},
    )
    repo_id: str | None = field(
        default=None,
        metadata={"help": "Hub repo id the card's quick start loads from; None names the output folder."},
    )
    eval_report: str | Path | None = field(
        default=None, metadata={"help": "Eval report JSON (clear_eval_report.json format) to copy and cite."}
    )
    overwrite: bool = field(
        default=False,
        metadata={"help": "Replace an earlier export at the output path (never other folders)."},
    )

    def __post_init__(self) -> None:
        """Check fields; errors name the field, the value and the fix."""
        if self.system_prompt is not None and not str(self.system_prompt).strip():
            raise ClearConfigError("system_prompt='' is empty; pass None to keep the pipeline's prompt.")
        if self.guidance_preset is not None and not str(self.guidance_preset).strip():
            raise ClearConfigError("guidance_preset='' is empty; pass a preset name or None.")


@dataclass
class ExportResult:
    """Where the export went and what it holds."""

    path: Path
    files: list[str]
    auto_map: dict[str, str]
    sharded: bool


def _prepare_output(out: Path, sources: list[Path], overwrite: bool) -> None:
    resolved = out.resolve()
    for source in sources:
        source = source.resolve()
        if resolved == source or source in resolved.parents or resolved in source.parents:
            raise ClearConfigError(
                f"output {out} overlaps the checkpoint {source}; export to a separate folder."
            )
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        config = out / "config.json"
        earlier = config.is_file() and INFERENCE_ATTRIBUTE in config.read_text(encoding="utf-8")
        if not overwrite or not earlier:
            hint = " (pass overwrite=True / --overwrite to replace it)" if earlier else ""
            raise ClearConfigError(
                f"output {out} exists and is not empty{hint}; choose a new folder. Only an earlier export is "
                "ever replaced."
            )


def _generation_config(model: Any, tokenizer: Any, settings: dict[str, Any]) -> Any:
    from transformers import GenerationConfig

    generation = GenerationConfig.from_model_config(model.config)
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        value = getattr(tokenizer, name, None)
        if value is not None:
            setattr(generation, name, value)
    generation.max_new_tokens = settings["max_new_tokens"]
    return generation


def _record_settings(model: Any, pipeline: Any, options: ExportOptions) -> dict[str, Any]:
    """Settings to store in the config: the pipeline's, with the options' prompt and preset."""
    from dataclasses import replace

    from clear_plugins.pipeline import PipelineConfig

    if pipeline is None:
        pipeline = _pipeline_of(model)
    pipeline = pipeline or PipelineConfig()
    if options.system_prompt is not None:
        pipeline = replace(pipeline, system_prompt=options.system_prompt)
    recorded = getattr(model.config, INFERENCE_ATTRIBUTE, None) or {}
    preset = options.guidance_preset or recorded.get("guidance_preset") or DEFAULT_GUIDANCE_PRESET
    return pipeline_settings(pipeline, guidance_preset=preset)


def _pipeline_of(model: Any) -> Any:
    """The pipeline settings of an injected model, or of an earlier export's config, or ``None``."""
    from clear_plugins.hub_cards.inference import pipeline_config_from
    from clear_plugins.injection import INJECTION_ATTRIBUTE

    injection = model.__dict__.get(INJECTION_ATTRIBUTE)
    if injection is not None and injection.options.pipeline is not None:
        return injection.options.pipeline
    if getattr(model.config, INFERENCE_ATTRIBUTE, None):
        return pipeline_config_from(model.config)
    return None


def _save(model: Any, tokenizer: Any, folder: Path, settings: dict[str, Any], max_shard_size: str | int):
    config = model.config
    auto_model_class(config)  # fails early, naming the fix, when no AutoModel class carries the CLEAR API
    previous = {
        key: config.__dict__.get(key, _MISSING)
        for key in (INFERENCE_ATTRIBUTE, TAG_MODE_ATTRIBUTE, "auto_map")
    }
    try:
        config.clear_inference = settings
        config.clear_tag_mode = getattr(config, TAG_MODE_ATTRIBUTE, None) or DEFAULT_TAG_MODE
        config.auto_map = write_remote_code(config, folder)
        # A config that transformers loaded as remote code is marked for auto-class saving, which would copy
        # the installed module files; the export writes its own small modules instead.
        config.__dict__["_auto_class"] = None
        model.save_pretrained(folder, max_shard_size=max_shard_size)
        auto_map = dict(config.auto_map)
    finally:
        for key, value in previous.items():
            if value is _MISSING:
                config.__dict__.pop(key, None)
            else:
                setattr(config, key, value)
        config.__dict__.pop("_auto_class", None)
    tokenizer.save_pretrained(folder)
    _generation_config(model, tokenizer, settings).save_pretrained(folder)
    return auto_map


def export_model(
    model: Any,
    tokenizer: Any,
    out: str | Path,
    *,
    pipeline: Any = None,
    options: ExportOptions | None = None,
    source: str | Path | None = None,
) -> ExportResult:
    """Export a loaded model and its tokenizer to ``out`` (see the module docstring).

    Args:
        model: the model; ``AutoModel`` must map its config to a class with the CLEAR inference API.
        tokenizer: its tokenizer (saved as is, including tags added by an injection).
        out: the output folder (must not exist, be empty, or be an earlier export with ``overwrite``).
        pipeline: the inference settings to record (a ``PipelineConfig``); default: the injected model's, the
            config's earlier export settings, or the paper's defaults.
        options: see :class:`ExportOptions`.
        source: the checkpoint folder the model came from; its metadata files are copied and cited in the card.

    Raises:
        ClearConfigError: bad output path, unregistered model class, or an export that fails its completeness
            check (nothing is left under ``out`` then).
    """
    from clear_plugins.hub_cards.cards import write_model_card
    from clear_plugins.hub_cards.metadata import copy_run_files

    options = options or ExportOptions()
    out = Path(out)
    sources = [Path(source)] if source is not None else []
    _prepare_output(out, sources, options.overwrite)
    settings = _record_settings(model, pipeline, options)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        auto_map = _save(model, tokenizer, partial, settings, options.max_shard_size)
        copy_run_files(Path(source) if source is not None else None, partial, eval_report=options.eval_report)
        write_model_card(partial, base_model=options.base_model, model_id=options.repo_id or out.name)
        problems = export_problems(partial)
        if problems:
            raise ClearConfigError("the export is incomplete:\n  " + "\n  ".join(problems))
        if out.exists():
            shutil.rmtree(out)
        os.replace(partial, out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    return ExportResult(
        path=out, files=files, auto_map=auto_map, sharded=(out / "model.safetensors.index.json").is_file()
    )


def export_checkpoint(
    checkpoint: str | Path, out: str | Path, *, options: ExportOptions | None = None, **loader_kwargs: Any
) -> ExportResult:
    """Load ``checkpoint`` (a ``save_pretrained`` folder or an official layout, :mod:`.loading`) and export it.

    ``loader_kwargs`` go to an official layout's loader (e.g. ``config_overrides``, ``dtype``).
    """
    from clear_plugins.hub_cards.loading import load_checkpoint

    checkpoint = Path(checkpoint)
    _prepare_output(Path(out), [checkpoint], (options or ExportOptions()).overwrite)
    loaded = load_checkpoint(checkpoint, **loader_kwargs)
    return export_model(loaded.model, loaded.tokenizer, out, options=options, source=checkpoint)


__all__ = [
    "DEFAULT_GUIDANCE_PRESET",
    "ExportOptions",
    "ExportResult",
    "export_checkpoint",
    "export_model",
    "pickle_files",
]
