"""Write the official BAGEL-7B-MoT key inventory (names and shapes) from the reference, not from our modules.

The inventory is the list of tensors the official files hold: every key of ``ema.safetensors`` (the Bagel
module: LLM with Mixture-of-Transformers, SigLIP-NaViT, connectors) and of ``ae.safetensors`` (the FLUX VAE
in BFL layout). It is built from the naming tables and shape formulas of
``shared/reference/bagel-checkpoint.md`` (§1 configs, §2 ema tables, §6.1 VAE tables) and the 7B config values,
and checked against the documented totals (1,223 / 14,607,260,128 and 244 / 83,819,683). Our model is tested
against this file; nothing here imports it.

Usage::

    python scripts/make_bagel_inventory.py                  # (re)write the committed resource file
    python scripts/make_bagel_inventory.py --output X.json  # write elsewhere (the test compares the bytes)

The output is deterministic: keys are sorted and the JSON layout is fixed, so rerunning gives identical bytes.
The formula functions take sizes as arguments so tests can write tiny checkpoints in the same layout.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

Shapes = dict[str, list[int]]

DEFAULT_OUTPUT = (
    Path(__file__).resolve().parents[1] / "adapters" / "bagel" / "resources" / "official_keys.json"
)

LLM_CONFIG_7B: dict = {
    "architectures": ["Qwen2ForCausalLM"],
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "hidden_act": "silu",
    "hidden_size": 3584,
    "initializer_range": 0.02,
    "intermediate_size": 18944,
    "max_position_embeddings": 32768,
    "max_window_layers": 28,
    "model_type": "qwen2",
    "num_attention_heads": 28,
    "num_hidden_layers": 28,
    "num_key_value_heads": 4,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "sliding_window": 131072,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "use_cache": True,
    "use_sliding_window": False,
    "vocab_size": 152064,
}
"""``llm_config.json`` of BAGEL-7B-MoT (reference §1.1; shape-bearing values confirmed by checkpoint shapes)."""

VIT_CONFIG_7B: dict = {
    "hidden_size": 1152,
    "image_size": 980,
    "intermediate_size": 4304,
    "model_type": "siglip_vision_model",
    "num_attention_heads": 16,
    "num_hidden_layers": 27,
    "patch_size": 14,
}
"""``vit_config.json`` of BAGEL-7B-MoT as stored in the file (reference §1.2: 27 layers in the file, 26 built)."""

BAGEL_OFFICIAL: dict = {
    "latent_patch_size": 2,
    "max_latent_size": 64,
    "vit_max_num_patch_per_side": 70,
    "timestep_embedding_dim": 256,
    "vit_layers_dropped": 1,
}
"""Bagel-level values of the official inference (reference §1.3, §1.2 "27 - 1", §5.5 "256 frequencies")."""

FLUX_VAE_BFL: dict = {
    "in_channels": 3,
    "out_ch": 3,
    "ch": 128,
    "ch_mult": [1, 2, 4, 4],
    "num_res_blocks": 2,
    "z_channels": 16,
}
"""The VAE hyper-parameters hard-coded in the official ``load_ae`` (reference §1.4)."""

DOCUMENTED_TOTALS: dict = {
    "ema": {"tensors": 1223, "parameters": 14_607_260_128},
    "ae": {"tensors": 244, "parameters": 83_819_683},
}
"""Totals stated in reference §2.6 and §6.1; the generated tables must reproduce them."""


def _linear(prefix: str, out_features: int, in_features: int, bias: bool = True) -> Shapes:
    shapes = {f"{prefix}.weight": [out_features, in_features]}
    if bias:
        shapes[f"{prefix}.bias"] = [out_features]
    return shapes


def _norm(prefix: str, width: int, bias: bool) -> Shapes:
    shapes = {f"{prefix}.weight": [width]}
    if bias:
        shapes[f"{prefix}.bias"] = [width]
    return shapes


def llm_layer_keys(prefix: str, llm: Mapping) -> Shapes:
    """The 28 tensors of one Qwen2MoTDecoderLayer: the *und* set and its ``_moe_gen`` twin (reference §2.3)."""
    hidden, inter = llm["hidden_size"], llm["intermediate_size"]
    head_dim = hidden // llm["num_attention_heads"]
    q_width, kv_width = llm["num_attention_heads"] * head_dim, llm["num_key_value_heads"] * head_dim
    shapes: Shapes = {}
    for sfx in ("", "_moe_gen"):
        attn = f"{prefix}.self_attn"
        shapes |= _linear(f"{attn}.q_proj{sfx}", q_width, hidden)
        shapes |= _linear(f"{attn}.k_proj{sfx}", kv_width, hidden)
        shapes |= _linear(f"{attn}.v_proj{sfx}", kv_width, hidden)
        shapes |= _linear(f"{attn}.o_proj{sfx}", hidden, q_width, bias=False)
        shapes |= _norm(f"{attn}.q_norm{sfx}", head_dim, bias=False)
        shapes |= _norm(f"{attn}.k_norm{sfx}", head_dim, bias=False)
        mlp = f"{prefix}.mlp{sfx}"
        shapes |= _linear(f"{mlp}.gate_proj", inter, hidden, bias=False)
        shapes |= _linear(f"{mlp}.up_proj", inter, hidden, bias=False)
        shapes |= _linear(f"{mlp}.down_proj", hidden, inter, bias=False)
        shapes |= _norm(f"{prefix}.input_layernorm{sfx}", hidden, bias=False)
        shapes |= _norm(f"{prefix}.post_attention_layernorm{sfx}", hidden, bias=False)
    return shapes


def llm_keys(llm: Mapping) -> Shapes:
    """``language_model.*``: globals (reference §2.2) and every decoder layer (§2.3)."""
    hidden, vocab = llm["hidden_size"], llm["vocab_size"]
    shapes: Shapes = {
        "language_model.model.embed_tokens.weight": [vocab, hidden],
        "language_model.model.norm.weight": [hidden],
        "language_model.model.norm_moe_gen.weight": [hidden],
        "language_model.lm_head.weight": [vocab, hidden],
    }
    for i in range(llm["num_hidden_layers"]):
        shapes |= llm_layer_keys(f"language_model.model.layers.{i}", llm)
    return shapes


def vit_keys(vit: Mapping, layers_dropped: int) -> Shapes:
    """``vit_model.vision_model.*`` (reference §2.4): 2-D Linear patch embedding, learned positions, no head."""
    width, inter, patch = vit["hidden_size"], vit["intermediate_size"], vit["patch_size"]
    channels = vit.get("num_channels", 3)
    prefix = "vit_model.vision_model"
    shapes: Shapes = _linear(f"{prefix}.embeddings.patch_embedding", width, channels * patch * patch)
    shapes[f"{prefix}.embeddings.position_embedding.weight"] = [(vit["image_size"] // patch) ** 2, width]
    for i in range(vit["num_hidden_layers"] - layers_dropped):
        layer = f"{prefix}.encoder.layers.{i}"
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            shapes |= _linear(f"{layer}.self_attn.{proj}", width, width)
        shapes |= _norm(f"{layer}.layer_norm1", width, bias=True)
        shapes |= _linear(f"{layer}.mlp.fc1", inter, width)
        shapes |= _linear(f"{layer}.mlp.fc2", width, inter)
        shapes |= _norm(f"{layer}.layer_norm2", width, bias=True)
    shapes |= _norm(f"{prefix}.post_layernorm", width, bias=True)
    return shapes


def top_level_keys(llm: Mapping, vit: Mapping, bagel: Mapping, z_channels: int) -> Shapes:
    """Connectors, time embedder and the two sin-cos tables outside the LLM and ViT (reference §2.1)."""
    hidden, latent_dim = llm["hidden_size"], bagel["latent_patch_size"] ** 2 * z_channels
    shapes: Shapes = {}
    shapes |= _linear("time_embedder.mlp.0", hidden, bagel["timestep_embedding_dim"])
    shapes |= _linear("time_embedder.mlp.2", hidden, hidden)
    shapes |= _linear("vae2llm", hidden, latent_dim)
    shapes |= _linear("llm2vae", latent_dim, hidden)
    shapes["latent_pos_embed.pos_embed"] = [bagel["max_latent_size"] ** 2, hidden]
    shapes |= _linear("connector.fc1", hidden, vit["hidden_size"])
    shapes |= _linear("connector.fc2", hidden, hidden)
    shapes["vit_pos_embed.pos_embed"] = [bagel["vit_max_num_patch_per_side"] ** 2, hidden]
    return shapes


def ema_inventory(llm: Mapping, vit: Mapping, bagel: Mapping, z_channels: int) -> Shapes:
    """Every key and shape of ``ema.safetensors`` for the given ``llm_config``/``vit_config`` file values."""
    shapes = top_level_keys(llm, vit, bagel, z_channels)
    shapes |= llm_keys(llm)
    shapes |= vit_keys(vit, bagel["vit_layers_dropped"])
    return dict(sorted(shapes.items()))


def _resnet(prefix: str, c_in: int, c_out: int) -> Shapes:
    shapes = _norm(f"{prefix}.norm1", c_in, bias=True)
    shapes[f"{prefix}.conv1.weight"], shapes[f"{prefix}.conv1.bias"] = [c_out, c_in, 3, 3], [c_out]
    shapes |= _norm(f"{prefix}.norm2", c_out, bias=True)
    shapes[f"{prefix}.conv2.weight"], shapes[f"{prefix}.conv2.bias"] = [c_out, c_out, 3, 3], [c_out]
    if c_in != c_out:
        shapes[f"{prefix}.nin_shortcut.weight"] = [c_out, c_in, 1, 1]
        shapes[f"{prefix}.nin_shortcut.bias"] = [c_out]
    return shapes


def _attn(prefix: str, c: int) -> Shapes:
    shapes = _norm(f"{prefix}.norm", c, bias=True)
    for name in ("q", "k", "v", "proj_out"):
        shapes[f"{prefix}.{name}.weight"], shapes[f"{prefix}.{name}.bias"] = [c, c, 1, 1], [c]
    return shapes


def _conv(prefix: str, c_out: int, c_in: int, kernel: int = 3) -> Shapes:
    return {f"{prefix}.weight": [c_out, c_in, kernel, kernel], f"{prefix}.bias": [c_out]}


def _mid(prefix: str, c: int) -> Shapes:
    return (
        _resnet(f"{prefix}.mid.block_1", c, c)
        | _attn(f"{prefix}.mid.attn_1", c)
        | _resnet(f"{prefix}.mid.block_2", c, c)
    )


def bfl_vae_inventory(vae: Mapping) -> Shapes:
    """Every key and shape of ``ae.safetensors`` (BFL layout, reference §6.1) for the given VAE sizes."""
    ch, mult, blocks, z = vae["ch"], vae["ch_mult"], vae["num_res_blocks"], vae["z_channels"]
    shapes: Shapes = _conv("encoder.conv_in", ch, vae["in_channels"])
    c_in = ch
    for i, m in enumerate(mult):
        for j in range(blocks):
            shapes |= _resnet(f"encoder.down.{i}.block.{j}", c_in, ch * m)
            c_in = ch * m
        if i != len(mult) - 1:
            shapes |= _conv(f"encoder.down.{i}.downsample.conv", c_in, c_in)
    shapes |= _mid("encoder", c_in)
    shapes |= _norm("encoder.norm_out", c_in, bias=True) | _conv("encoder.conv_out", 2 * z, c_in)
    c_in = ch * mult[-1]
    shapes |= _conv("decoder.conv_in", c_in, z) | _mid("decoder", c_in)
    for i in reversed(range(len(mult))):
        for j in range(blocks + 1):
            shapes |= _resnet(f"decoder.up.{i}.block.{j}", c_in, ch * mult[i])
            c_in = ch * mult[i]
        if i != 0:
            shapes |= _conv(f"decoder.up.{i}.upsample.conv", c_in, c_in)
    shapes |= _norm("decoder.norm_out", c_in, bias=True) | _conv("decoder.conv_out", vae["out_ch"], c_in)
    return dict(sorted(shapes.items()))


def totals(shapes: Mapping[str, Iterable[int]]) -> dict[str, int]:
    """Tensor count and parameter count of an inventory."""
    return {"tensors": len(shapes), "parameters": sum(math.prod(s) for s in shapes.values())}


def build_inventory() -> dict:
    """The 7B inventory; raises ``ValueError`` if the tables do not reproduce the documented totals."""
    ema = ema_inventory(LLM_CONFIG_7B, VIT_CONFIG_7B, BAGEL_OFFICIAL, FLUX_VAE_BFL["z_channels"])
    ae = bfl_vae_inventory(FLUX_VAE_BFL)
    for name, shapes in (("ema", ema), ("ae", ae)):
        if totals(shapes) != DOCUMENTED_TOTALS[name]:
            raise ValueError(
                f"{name}: generated totals {totals(shapes)} != documented {DOCUMENTED_TOTALS[name]}"
            )
    return {
        "source": "shared/reference/bagel-checkpoint.md sections 1, 2 and 6.1 (generated by scripts/make_bagel_inventory.py)",
        "model": "ByteDance-Seed/BAGEL-7B-MoT",
        "files": {"ema.safetensors": {"dtype": "bfloat16"}, "ae.safetensors": {"dtype": "float32"}},
        "llm_config": LLM_CONFIG_7B,
        "vit_config": VIT_CONFIG_7B,
        "bagel": BAGEL_OFFICIAL,
        "vae_bfl": FLUX_VAE_BFL,
        "totals": {"ema": totals(ema), "ae": totals(ae)},
        "ema": ema,
        "ae": ae,
    }


def render(inventory: Mapping) -> str:
    """Deterministic JSON text: one line per key for the two tables, compact values elsewhere."""
    lines = ["{"]
    items = list(inventory.items())
    for n, (name, value) in enumerate(items):
        comma = "," if n < len(items) - 1 else ""
        if name in ("ema", "ae"):
            rows = [f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in value.items()]
            lines.append(f" {json.dumps(name)}: {{\n" + ",\n".join(rows) + f"\n }}{comma}")
        else:
            lines.append(f" {json.dumps(name)}: {json.dumps(value, sort_keys=True)}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the inventory to ``--output`` (default: the committed resource file)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="where to write the JSON")
    args = parser.parse_args(argv)
    args.output.write_text(render(build_inventory()), encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
