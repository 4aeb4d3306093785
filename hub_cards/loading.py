"""Load the checkpoint an export starts from: a ``save_pretrained`` folder or a backbone's official layout.

Formats are data (:data:`OFFICIAL_LAYOUTS`, :data:`AUTO_CLASS_MODULES`), not branches on a backbone name:

- a ``save_pretrained`` folder (``config.json`` whose ``model_type`` some backbone registers with ``AutoConfig``,
  e.g. a trainer's output or an earlier export) loads with ``AutoModel`` and ``AutoTokenizer``;
- an official download layout (files listed in :data:`OFFICIAL_LAYOUTS`) loads with that backbone's loader.

Optimizer, scheduler and RNG state files of a trainer checkpoint (pickles) are never read.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clear_plugins.errors import ClearConfigError

AUTO_CLASS_MODULES: tuple[str, ...] = ("clear_plugins.adapters.bagel.modeling_bagel",)
"""Modules whose import registers a backbone with ``AutoConfig`` / ``AutoModel`` (the built-in backbones)."""


@dataclass(frozen=True)
class OfficialLayout:
    """A backbone's official download layout: the files that identify it and the loaders to call."""

    name: str
    files: tuple[str, ...]
    model_loader: str
    tokenizer_loader: str


OFFICIAL_LAYOUTS: tuple[OfficialLayout, ...] = (
    OfficialLayout(
        name="BAGEL-7B-MoT (official layout)",
        files=("llm_config.json", "vit_config.json", "ema.safetensors"),
        model_loader="clear_plugins.adapters.bagel.checkpoint:from_official_checkpoint",
        tokenizer_loader="clear_plugins.adapters.bagel.checkpoint:load_official_tokenizer",
    ),
)
"""Official layouts an export reads, identified by the presence of all their ``files``."""


@dataclass
class LoadedCheckpoint:
    """A loaded model, its tokenizer, and which format the folder had."""

    model: Any
    tokenizer: Any
    path: Path
    layout: str


def register_auto_classes() -> None:
    """Import the built-in backbones' model modules, which register them with ``AutoConfig`` / ``AutoModel``."""
    for module in AUTO_CLASS_MODULES:
        importlib.import_module(module)


def _resolve(reference: str) -> Any:
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


def official_layout(path: Path) -> OfficialLayout | None:
    """The official layout ``path`` follows, or ``None``."""
    return next((lay for lay in OFFICIAL_LAYOUTS if all((path / f).is_file() for f in lay.files)), None)


def _explain_unknown(path: Path) -> str:
    if not path.is_dir():
        return f"{path} is not a directory; pass the folder of a saved model."
    if (path / "adapter_config.json").is_file():
        return (
            f"{path} holds a LoRA adapter (adapter_config.json), not a whole model; merge it first "
            "(peft: PeftModel.from_pretrained(base, path).merge_and_unload().save_pretrained(merged)) and export "
            "the merged folder."
        )
    checkpoints = sorted(path.glob("checkpoint-*"), key=lambda p: p.name)
    if checkpoints:
        return (
            f"{path} is a training output folder without a final model; export one of its checkpoints, e.g. "
            f"{checkpoints[-1]}, or save the final model with trainer.save_model()."
        )
    layouts = "; ".join(f"{lay.name}: {', '.join(lay.files)}" for lay in OFFICIAL_LAYOUTS)
    found = ", ".join(sorted(p.name for p in path.iterdir())[:12]) or "nothing"
    return (
        f"{path} is neither a save_pretrained folder (config.json) nor an official layout ({layouts}); it holds "
        f"{found}."
    )


def load_checkpoint(path: str | Path, **official_kwargs: Any) -> LoadedCheckpoint:
    """Load the model and tokenizer in ``path`` (see the module docstring for the formats).

    Args:
        path: the checkpoint folder.
        **official_kwargs: passed to an official layout's model loader (e.g. ``config_overrides``, ``dtype``).

    Raises:
        ClearConfigError: the folder has no recognised format (the message says what it holds and what to do).
    """
    path = Path(path)
    layout = official_layout(path) if path.is_dir() else None
    if layout is not None:
        model = _resolve(layout.model_loader)(path, **official_kwargs)
        tokenizer = _resolve(layout.tokenizer_loader)(path)
        return LoadedCheckpoint(model=model, tokenizer=tokenizer, path=path, layout=layout.name)
    if official_kwargs:
        raise ClearConfigError(
            f"loader options {sorted(official_kwargs)} apply to official layouts only, and {path} is not one."
        )
    if not (path / "config.json").is_file():
        raise ClearConfigError(_explain_unknown(path))
    return _load_pretrained(path)


def _load_pretrained(path: Path) -> LoadedCheckpoint:
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    register_auto_classes()
    try:
        model_type = json.loads((path / "config.json").read_text(encoding="utf-8")).get("model_type")
    except json.JSONDecodeError as err:
        raise ClearConfigError(f"{path / 'config.json'} is not valid JSON ({err}).") from err
    try:
        config = AutoConfig.from_pretrained(path)
    except (ValueError, KeyError) as err:
        raise ClearConfigError(
            f"{path}: model_type {model_type!r} is not registered by any installed backbone ({err})."
        ) from err
    model = AutoModel.from_pretrained(path, config=config).eval()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise ClearConfigError(
            f"{path} has no loadable tokenizer ({err}); save it next to the model with "
            "tokenizer.save_pretrained(path)."
        ) from err
    return LoadedCheckpoint(model=model, tokenizer=tokenizer, path=path, layout="save_pretrained")
