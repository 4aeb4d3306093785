"""Write a tiny checkpoint directory in the official BAGEL-7B-MoT layout, for the loader tests.

The layout follows the reference, not our model: ``ema.safetensors`` keys and shapes come from the inventory
generator's formulas (``scripts/make_bagel_inventory.py``) at tiny sizes, bf16, unprefixed, 2-D patch embedding;
``ae.safetensors`` is a tiny diffusers ``AutoencoderKL`` renamed into the BFL layout (fp32, no prefix);
``vit_config.json`` stores one more layer than is built (27-style); a stale ``config.json`` that must be
ignored; and the tokenizer files of a tiny in-memory BPE. Sizes follow the geometry of ``tiny_bagel_config``
(14-px patches, an 8× VAE with 16 latent channels, 8-token position tables).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType

import torch
from diffusers import AutoencoderKL
from safetensors import safe_open
from safetensors.torch import save_file
from tiny_tokenizer import tiny_tokenizer

from clear_plugins.adapters.bagel.testing import TINY_VAE_CONFIG, tiny_bagel_config
from clear_plugins.adapters.bagel.vae_conversion import diffusers_to_bfl_state_dict

REPO = Path(__file__).resolve().parents[1]

TINY_LLM_CONFIG = {
    "architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 320,
    "hidden_act": "silu",
    "rms_norm_eps": 1e-06,
    "rope_theta": 10000.0,
    "max_position_embeddings": 512,
    "tie_word_embeddings": False,
    "bos_token_id": 0,
    "eos_token_id": 1,
    "torch_dtype": "bfloat16",
}
TINY_VIT_CONFIG = {
    "model_type": "siglip_vision_model",
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_attention_heads": 2,
    "num_hidden_layers": 3,
    "patch_size": 14,
    "image_size": 112,
}
TINY_BAGEL = {
    "latent_patch_size": 2,
    "max_latent_size": 8,
    "vit_max_num_patch_per_side": 8,
    "timestep_embedding_dim": 256,
    "vit_layers_dropped": 1,
}
_TINY = tiny_bagel_config()
TINY_OVERRIDES = {
    "max_latent_size": TINY_BAGEL["max_latent_size"],
    "vit_max_num_patch_per_side": TINY_BAGEL["vit_max_num_patch_per_side"],
    "vit_transform": _TINY.vit_transform,
    "vae_transform": _TINY.vae_transform,
}
"""``config_overrides`` the loader needs for the tiny tables and image sizes (official: 64, 70, 224–980 px…)."""
TINY_VAE_BFL = {
    "in_channels": 3,
    "out_ch": 3,
    "ch": 8,
    "ch_mult": [1, 1, 2, 2],
    "num_res_blocks": 1,
    "z_channels": 16,
}
"""The same tiny VAE in the official ``load_ae`` parameters (for the generator's BFL formulas)."""
STALE_CONFIG = {"model_type": "bagel", "architectures": ["Bagel"], "max_latent_size": 32, "visual_gen": True}


@cache
def inventory_module() -> ModuleType:
    """``scripts/make_bagel_inventory.py`` imported as a module (its formulas define the official layout)."""
    spec = importlib.util.spec_from_file_location(
        "make_bagel_inventory", REPO / "scripts" / "make_bagel_inventory.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


@dataclass
class OfficialFiles:
    """A written tiny official directory and the tensors in it."""

    path: Path
    ema: dict[str, torch.Tensor]
    vae: AutoencoderKL


def tiny_ema_shapes() -> dict[str, list[int]]:
    """Keys and shapes of the tiny ``ema.safetensors`` (the generator's formulas at tiny sizes)."""
    inv = inventory_module()
    return inv.ema_inventory(TINY_LLM_CONFIG, TINY_VIT_CONFIG, TINY_BAGEL, TINY_VAE_CONFIG["latent_channels"])


def _random_tensor(name: str, shape: list[int], generator: torch.Generator) -> torch.Tensor:
    values = torch.randn(shape, generator=generator) * 0.05
    if "norm" in name and name.endswith("weight"):
        values = values + 1.0
    return values.to(torch.bfloat16)


def write_official_checkpoint(path: Path, seed: int = 0, tokenizer: bool = True) -> OfficialFiles:
    """Write the tiny official directory under ``path`` and return what was written."""
    path.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    ema = {name: _random_tensor(name, shape, generator) for name, shape in tiny_ema_shapes().items()}
    save_file(ema, str(path / "ema.safetensors"))
    torch.manual_seed(seed)
    vae = AutoencoderKL(**TINY_VAE_CONFIG).eval()
    bfl = diffusers_to_bfl_state_dict(vae.state_dict(), len(TINY_VAE_CONFIG["block_out_channels"]))
    save_file({k: v.contiguous() for k, v in bfl.items()}, str(path / "ae.safetensors"))
    for name, data in (
        ("llm_config.json", TINY_LLM_CONFIG),
        ("vit_config.json", TINY_VIT_CONFIG),
        ("config.json", STALE_CONFIG),
    ):
        (path / name).write_text(json.dumps(data, indent=2), encoding="utf-8")
    if tokenizer:
        tiny_tokenizer().save_pretrained(str(path))
        config_file = path / "tokenizer_config.json"
        tokenizer_config = json.loads(config_file.read_text(encoding="utf-8"))
        tokenizer_config["tokenizer_class"] = "Qwen2Tokenizer"  # as in the official tokenizer_config.json
        config_file.write_text(json.dumps(tokenizer_config, indent=2), encoding="utf-8")
    return OfficialFiles(path=path, ema=ema, vae=vae)


def edit_safetensors(
    file: Path, edit: Callable[[dict[str, torch.Tensor]], Mapping[str, torch.Tensor]]
) -> None:
    """Rewrite a safetensors file with ``edit(tensors)`` (used to corrupt checkpoints in tests)."""
    with safe_open(str(file), framework="pt") as handle:
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    save_file({k: v.contiguous() for k, v in edit(tensors).items()}, str(file))
