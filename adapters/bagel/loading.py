"""Find and load a Bagel model folder for ``clear-plugins answer`` / ``serve`` (the ``clear_load_model`` hook).

Two layouts are read:

- an official BAGEL-7B-MoT folder (``llm_config.json`` + ``vit_config.json``), optionally with released weights on
  top (``weights=``: the CLEAR folder or a file), through :func:`.checkpoint.from_official_checkpoint`; a
  ``vae_config.json`` there describes a VAE other than FLUX.1's;
- a folder written by ``save_pretrained`` (``config.json`` with ``model_type`` ``clear_bagel``), through
  ``BagelForConditionalGeneration.from_pretrained``; its ``clear_tag_mode`` comes back with the config.

The tokenizer is read from the same folder by :func:`.checkpoint.load_official_tokenizer`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from clear_plugins.errors import CheckpointError

OFFICIAL_MARKERS: tuple[str, ...] = ("llm_config.json", "vit_config.json")
"""Files that make a folder an official Bagel folder."""
VAE_CONFIG_FILE = "vae_config.json"
"""Optional diffusers ``AutoencoderKL`` config next to ``ae.safetensors`` for a VAE other than FLUX.1's (the
official folder has none: FLUX.1 is assumed)."""


def folder_layout(path: Path) -> str | None:
    """``"official"``, ``"pretrained"`` or ``None`` (not a Bagel folder)."""
    if all((path / name).is_file() for name in OFFICIAL_MARKERS):
        return "official"
    config = path / "config.json"
    if config.is_file():
        try:
            model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
        except (json.JSONDecodeError, AttributeError):
            return None
        if model_type == "clear_bagel":
            return "pretrained"
    return None


def load_folder(path: Path, options: dict[str, Any]) -> tuple[Any, Any] | None:
    """``(model, tokenizer)`` from a Bagel folder, or ``None`` when ``path`` is not one (see the module)."""
    layout = folder_layout(path)
    if layout is None:
        return None
    from .checkpoint import from_official_checkpoint, load_official_tokenizer
    from .modeling_bagel import BagelForConditionalGeneration

    dtype, device = options.get("dtype"), options.get("device", "cpu")
    if layout == "official":
        kwargs: dict[str, Any] = {"dtype": dtype} if dtype is not None else {}
        if (path / VAE_CONFIG_FILE).is_file():
            kwargs["vae_config"] = path / VAE_CONFIG_FILE
        model = from_official_checkpoint(
            path, weights=options.get("weights"), ema=options.get("ema"), device=device, **kwargs
        )
    else:
        if options.get("weights") is not None:
            raise CheckpointError(
                f"{path} was written by save_pretrained and holds its own weights; drop --weights (it applies to "
                "an official BAGEL-7B-MoT folder)."
            )
        kwargs = {"dtype": dtype} if dtype is not None else {}
        model = BagelForConditionalGeneration.from_pretrained(str(path), **kwargs).to(device).eval()
    return model, load_official_tokenizer(path)
