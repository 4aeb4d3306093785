"""The FLUX VAE file of BAGEL (``ae.safetensors``, BFL/LDM layout) ↔ diffusers ``AutoencoderKL`` names.

The BFL → diffusers direction is diffusers' own converter,
``diffusers.loaders.single_file_utils.convert_ldm_vae_checkpoint`` (the function ``from_single_file`` uses),
called with a local config so nothing touches the Hub. The diffusers → BFL direction is the documented mapping
(reference ``bagel-checkpoint.md`` §6.2) written as a rule table; the loader uses it to name missing or
unexpected keys in the file's own terms, and it writes BFL files (tests, exports).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from diffusers.loaders.single_file_utils import LDM_VAE_KEYS, convert_ldm_vae_checkpoint

from .configuration_bagel import flux_vae_config

_ATTENTION_LINEARS = ("to_q", "to_k", "to_v", "to_out.0")

DIFFUSERS_TO_BFL_RULES: tuple[tuple[str, str], ...] = (
    (r"^(encoder|decoder)\.conv_norm_out\.", r"\1.norm_out."),
    (r"^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.", r"encoder.down.\1.block.\2."),
    (r"^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.", r"encoder.down.\1.downsample.conv."),
    (r"^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.", r"decoder.up.{rev1}.block.\2."),
    (r"^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.", r"decoder.up.{rev1}.upsample.conv."),
    (r"^(encoder|decoder)\.mid_block\.resnets\.0\.", r"\1.mid.block_1."),
    (r"^(encoder|decoder)\.mid_block\.resnets\.1\.", r"\1.mid.block_2."),
    (r"^(encoder|decoder)\.mid_block\.attentions\.0\.group_norm\.", r"\1.mid.attn_1.norm."),
    (r"^(encoder|decoder)\.mid_block\.attentions\.0\.to_([qkv])\.", r"\1.mid.attn_1.\2."),
    (r"^(encoder|decoder)\.mid_block\.attentions\.0\.to_out\.0\.", r"\1.mid.attn_1.proj_out."),
    (r"\.conv_shortcut\.", r".nin_shortcut."),
)
"""diffusers → BFL key rules (reference §6.2), applied in order; every matching rule applies.

``{rev1}`` is the decoder block index reversed: diffusers' ``up_blocks.i`` is BFL's ``up.(n-1-i)``.
"""


def load_vae_config(vae_config: Mapping[str, Any] | str | Path | None = None) -> dict[str, Any]:
    """The diffusers ``AutoencoderKL`` kwargs to build the VAE with.

    Args:
        vae_config: ``None`` for the shipped FLUX config, a mapping of kwargs, a JSON file, or a directory
            holding ``config.json`` (diffusers' layout).

    Raises:
        FileNotFoundError: the path does not exist.
    """
    if vae_config is None:
        return flux_vae_config()
    if isinstance(vae_config, Mapping):
        data = dict(vae_config)
    else:
        path = Path(vae_config)
        path = path / "config.json" if path.is_dir() else path
        if not path.is_file():
            raise FileNotFoundError(
                f"VAE config {path} does not exist; pass a diffusers config.json or a dict"
            )
        data = json.loads(path.read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if not k.startswith("_")}


def strip_vae_prefix(keys: list[str]) -> tuple[str, list[str]]:
    """Remove the prefix diffusers' converter strips (``first_stage_model.``/``vae.``); ``ae.safetensors`` has none."""
    for prefix in LDM_VAE_KEYS:
        if any(k.startswith(prefix) for k in keys):
            return prefix, [k.removeprefix(prefix) for k in keys]
    return "", list(keys)


def diffusers_to_bfl_key(name: str, num_blocks: int) -> str:
    """The BFL name of one diffusers ``AutoencoderKL`` parameter name (``num_blocks`` = len(block_out_channels))."""
    for pattern, template in DIFFUSERS_TO_BFL_RULES:
        match = re.search(pattern, name)
        if match is None:
            continue
        replacement = template
        if "{rev1}" in template:
            replacement = template.replace("{rev1}", str(num_blocks - 1 - int(match.group(1))))
        name = name[: match.start()] + match.expand(replacement) + name[match.end() :]
    return name


def bfl_shape(diffusers_name: str, shape: torch.Size | tuple[int, ...]) -> tuple[int, ...]:
    """The BFL shape of a diffusers tensor: mid-block attention projections are 1×1 convs ``[c, c, 1, 1]``."""
    is_attention = ".attentions." in diffusers_name and diffusers_name.endswith(".weight")
    if is_attention and any(f".{lin}." in diffusers_name for lin in _ATTENTION_LINEARS):
        return (*tuple(shape), 1, 1)
    return tuple(shape)


def diffusers_to_bfl_state_dict(
    state_dict: Mapping[str, torch.Tensor], num_blocks: int
) -> dict[str, torch.Tensor]:
    """Rename (and reshape) a diffusers ``AutoencoderKL`` state dict into the BFL layout of ``ae.safetensors``."""
    return {
        diffusers_to_bfl_key(name, num_blocks): tensor.reshape(bfl_shape(name, tensor.shape))
        for name, tensor in state_dict.items()
    }


def expected_bfl_shapes(vae: torch.nn.Module, num_blocks: int) -> dict[str, tuple[int, ...]]:
    """BFL key → shape that a file must hold to fill ``vae`` (an ``AutoencoderKL``, possibly on meta)."""
    return {
        diffusers_to_bfl_key(name, num_blocks): bfl_shape(name, tensor.shape)
        for name, tensor in vae.state_dict().items()
    }


def bfl_to_diffusers(
    state_dict: Mapping[str, torch.Tensor], vae_config: Mapping[str, Any]
) -> dict[str, torch.Tensor]:
    """Convert a BFL-layout VAE state dict with diffusers' converter (no Hub, config given locally)."""
    return convert_ldm_vae_checkpoint(dict(state_dict), dict(vae_config))
