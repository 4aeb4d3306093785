"""Shared pieces of the answer / serve tests: tiny model folders in both layouts and a scripted trajectory."""

from __future__ import annotations

import json
from pathlib import Path

from bagel_helpers import build_tiny_bagel, ids, scripted
from bagel_official_files import TINY_VAE_CONFIG, tiny_ema_shapes, write_official_checkpoint
from test_bagel_released import write_weights

from clear_plugins.injection import InjectionOptions, inject

FIRST = "<think> The sign is blurred. </think><image_restore>"
SECOND = "<think> Now it reads EXIT. </think><answer> EXIT </answer>"
DIRECT = "<think> The sign is clear. </think><answer> EXIT </answer>"


def model_folders(root: Path) -> dict[str, Path]:
    """An official BAGEL-layout folder, a released-weights folder for it, and a save_pretrained folder (token
    tag mode), all tiny."""
    official, released, pretrained = root / "BAGEL-7B-MoT", root / "CLEAR", root / "saved"
    write_official_checkpoint(official)
    (official / "vae_config.json").write_text(json.dumps(TINY_VAE_CONFIG), encoding="utf-8")  # not FLUX.1's
    write_weights(released / "model.safetensors", tiny_ema_shapes(), seed=1)
    model, tokenizer = build_tiny_bagel()
    inject(model, tokenizer, options=InjectionOptions(tag_mode="token"))
    model.save_pretrained(pretrained)
    tokenizer.save_pretrained(pretrained)
    return {"official": official, "released": released, "pretrained": pretrained}


def script_ids(tokenizer, *segments: str) -> list[int]:
    """Token ids of ``segments`` in order, closed by ``<|im_end|>``."""
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    return [i for segment in segments for i in ids(tokenizer, segment)] + [eos]


def force_trajectory(model, tokenizer, segments: tuple[str, ...] = (FIRST, SECOND)):
    """A context manager making greedy decoding write ``segments`` (cycling) while it is open."""
    return scripted(model, script_ids(tokenizer, *segments))
