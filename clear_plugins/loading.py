"""Load a CLEAR model from a directory for the ``answer`` and ``serve`` commands, through the backbone plugins.

:func:`load_model` asks the ``clear_load_model`` hook (each backbone recognises its own layouts: for Bagel an
official BAGEL-7B-MoT folder, optionally with released weights on top, or a ``save_pretrained`` folder);
:func:`build_pipeline` injects CLEAR in the tag mode the model records, applies a restore preset and returns a
:class:`~clear_plugins.pipeline.ClearPipeline` together with the settings to record in outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clear_plugins.errors import ClearConfigError

DTYPES: tuple[str, ...] = ("auto", "bfloat16", "float32")
"""``--dtype`` choices: ``auto`` is bfloat16 on a GPU and float32 on the CPU."""


@dataclass
class LoadOptions:
    """Where the model comes from and how to hold it."""

    model: str = field(metadata={"help": "Model directory (official layout or save_pretrained)."})
    weights: str | None = field(default=None, metadata={"help": "Weights folder or file on top of `model`."})
    ema: bool | None = field(
        default=None, metadata={"help": "Pick ema.safetensors (True) or model.safetensors."}
    )
    dtype: str = field(
        default="auto", metadata={"help": "auto (bf16 on GPU, fp32 on CPU), bfloat16 or float32."}
    )
    device: str = field(default="auto", metadata={"help": "auto (cuda when available), cpu, cuda, cuda:N."})

    def __post_init__(self) -> None:
        """Check the paths and choices; errors name the field, its value and the fix."""
        if not Path(self.model).is_dir():
            raise ClearConfigError(f"--model {self.model!r} is not a directory; pass the model's folder.")
        if self.weights is not None and not Path(self.weights).exists():
            raise ClearConfigError(
                f"--weights {self.weights!r} does not exist; pass a folder or .safetensors file."
            )
        if self.dtype not in DTYPES:
            raise ClearConfigError(f"--dtype {self.dtype!r} is not one of {', '.join(DTYPES)}.")


def resolve_device_and_dtype(options: LoadOptions) -> tuple[Any, Any]:
    """The torch device and dtype ``options`` ask for (``auto`` decided here)."""
    import torch

    device = options.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = options.dtype
    if dtype == "auto":
        dtype = "bfloat16" if str(device).startswith("cuda") else "float32"
    return torch.device(device), getattr(torch, dtype)


def load_model(options: LoadOptions, *, plugins: Any = None) -> tuple[Any, Any]:
    """``(model, tokenizer)`` from ``options.model`` via the first backbone plugin that reads its layout."""
    if plugins is None:
        from clear_plugins.plugins import load_plugins

        plugins = load_plugins()
    device, dtype = resolve_device_and_dtype(options)
    hook_options = {"weights": options.weights, "ema": options.ema, "dtype": dtype, "device": device}
    loaded = plugins.pm.hook.clear_load_model(path=str(options.model), options=hook_options)
    if loaded is None:
        raise ClearConfigError(
            f"no installed backbone reads the folder {options.model!r}; pass an official BAGEL-7B-MoT folder "
            "(llm_config.json, vit_config.json, ae.safetensors, tokenizer) or a folder written by save_pretrained "
            "(config.json, model.safetensors, tokenizer files)."
        )
    return loaded


@dataclass
class ServingSetup:
    """A ready pipeline and the settings it answers with (recorded in every output)."""

    pipeline: Any
    settings: dict[str, Any]


def build_pipeline(
    model: Any,
    tokenizer: Any,
    *,
    preset: str | None = None,
    plugins: Any = None,
    **pipeline_fields: Any,
) -> ServingSetup:
    """Inject CLEAR (tag mode as the model records it), apply ``preset`` (default: the adapter's ``default_preset``,
    if any) and build the pipeline; ``pipeline_fields`` override :class:`~clear_plugins.pipeline.PipelineConfig`
    fields (``None`` values are ignored)."""
    from clear_plugins.injection import inject
    from clear_plugins.pipeline import ClearPipeline, PipelineConfig

    injection = inject(model, tokenizer, plugins=plugins)
    adapter = injection.adapter
    chosen = preset if preset is not None else getattr(adapter, "default_preset", None)
    fields: dict[str, Any] = adapter.apply_preset(chosen) if chosen is not None else {}
    fields.update({k: v for k, v in pipeline_fields.items() if v is not None})
    config = PipelineConfig(**fields)
    settings = {
        "preset": chosen,
        "preset_values": adapter.describe_preset(chosen) if chosen is not None else {},
        "tag_mode": injection.tag_mode,
        "num_steps": config.num_steps,
        "bridge_mode": config.bridge_mode,
        "max_restores": config.max_restores,
        "max_new_tokens": config.max_new_tokens,
        "system_prompt": "custom" if config.system_prompt is not None else "shipped",
    }
    return ServingSetup(pipeline=ClearPipeline(adapter, config), settings=settings)
