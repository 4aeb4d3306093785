"""Loading the official BAGEL-7B-MoT directory layout (on a tiny checkpoint written in that layout)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from bagel_official_files import (
    TINY_OVERRIDES,
    TINY_VAE_CONFIG,
    OfficialFiles,
    edit_safetensors,
    write_official_checkpoint,
)
from diffusers import AutoencoderKL
from tiny_tokenizer import tiny_tokenizer

from clear_plugins.adapters.bagel.checkpoint import (
    EMA_KEY_MAP,
    from_official_checkpoint,
    load_official_tokenizer,
    map_official_key,
    read_official_config,
)
from clear_plugins.adapters.bagel.configuration_bagel import flux_vae_config
from clear_plugins.adapters.bagel.embeddings import patchify, sincos_2d_table
from clear_plugins.adapters.bagel.modeling_bagel import BagelForConditionalGeneration
from clear_plugins.adapters.bagel.vae_conversion import load_vae_config
from clear_plugins.errors import CheckpointError

LOAD_KWARGS = {"vae_config": TINY_VAE_CONFIG, "config_overrides": TINY_OVERRIDES}
INVENTORY = Path(__file__).parents[1] / "adapters" / "bagel" / "resources" / "official_keys.json"


@pytest.fixture(scope="module")
def official(tmp_path_factory) -> OfficialFiles:
    return write_official_checkpoint(tmp_path_factory.mktemp("bagel") / "BAGEL-7B-MoT")


@pytest.fixture
def copy(official, tmp_path) -> Path:
    """A private copy of the official directory that a test may corrupt."""
    return Path(shutil.copytree(official.path, tmp_path / "ckpt"))


@pytest.fixture(scope="module")
def loaded(official) -> BagelForConditionalGeneration:
    return from_official_checkpoint(official.path, **LOAD_KWARGS)


def test_loads_the_directory_unchanged(official, loaded):
    state = loaded.state_dict()
    assert all(torch.equal(state[k], v) for k, v in official.ema.items())
    assert all(torch.equal(state[f"vae.{k}"], v.bfloat16()) for k, v in official.vae.state_dict().items())
    assert len(state) == len(official.ema) + len(official.vae.state_dict())
    assert {t.dtype for t in state.values()} == {torch.bfloat16}
    # the sin-cos tables come from the file (random here), not from recomputation
    table = sincos_2d_table(8, 64).bfloat16()
    assert not torch.equal(loaded.latent_pos_embed.pos_embed, table)
    assert not loaded.latent_pos_embed.pos_embed.requires_grad and loaded.llm2vae.weight.requires_grad
    assert not any(t.is_meta for t in (*loaded.parameters(), *loaded.buffers()))
    assert not loaded.training


def test_stale_config_json_is_ignored_and_official_overrides_apply(official, loaded):
    assert json.loads((official.path / "config.json").read_text())["max_latent_size"] == 32
    config = loaded.config
    assert config.model_type == "clear_bagel" and config.max_latent_size == 8
    assert config.vit_config.num_hidden_layers == 2  # vit_config.json says 3: the official loader drops one
    assert config.llm_config.qk_norm and not config.llm_config.tie_word_embeddings
    assert config.dtype == torch.bfloat16


def test_official_7b_json_gives_the_official_config(tmp_path):
    inventory = json.loads(INVENTORY.read_text(encoding="utf-8"))
    (tmp_path / "llm_config.json").write_text(json.dumps(inventory["llm_config"]))
    (tmp_path / "vit_config.json").write_text(json.dumps(inventory["vit_config"]))
    config = read_official_config(tmp_path)
    sizes = (config.max_latent_size, config.vit_config.num_hidden_layers, config.latent_channels)
    assert sizes == (64, 26, 16)
    assert config.vae_config["scaling_factor"] == 0.3611 and config.vae_config["shift_factor"] == 0.1159


def test_shipped_flux_vae_config_is_the_flux_vae():
    config = load_vae_config()
    assert config == flux_vae_config()
    expected = {
        "block_out_channels": [128, 256, 512, 512],
        "layers_per_block": 2,
        "latent_channels": 16,
        "norm_num_groups": 32,
        "scaling_factor": 0.3611,
        "shift_factor": 0.1159,
        "use_quant_conv": False,
        "use_post_quant_conv": False,
        "mid_block_add_attention": True,
    }
    assert {key: config[key] for key in expected} == expected
    with torch.device("meta"):
        vae = AutoencoderKL(**config)
    assert sum(p.numel() for p in vae.parameters()) == 83_819_683


def _outputs(model: BagelForConditionalGeneration) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    image = torch.rand(3, 28, 42, generator=g) * 2 - 1
    latent_tokens = torch.randn(6, 64, generator=g)
    with torch.no_grad():
        return {
            "logits": model(input_ids=torch.tensor([[5, 6, 7, 8, 9]])).logits,
            "vit": model.embed_vit(patchify(image, 14), [(2, 3)]),
            "latent": model.embed_latent(latent_tokens, torch.full((6,), 0.5), [(2, 3)]),
            "encode": model.vae_encode(torch.rand(1, 3, 32, 32, generator=g) * 2 - 1, sample=False),
            "decode": model.vae_decode(torch.randn(1, 16, 4, 4, generator=g)),
        }


def test_equals_a_model_built_normally_with_the_same_weights(official):
    loaded = from_official_checkpoint(official.path, dtype=torch.float32, **LOAD_KWARGS)
    config = read_official_config(official.path, vae_config=TINY_VAE_CONFIG, **TINY_OVERRIDES)
    reference = BagelForConditionalGeneration(config).eval()
    reference.load_state_dict(loaded.state_dict(), strict=True)
    ours, theirs = dict(loaded.named_buffers()), dict(reference.named_buffers())
    assert ours.keys() == theirs.keys() and ours  # includes the non-persistent rotary inv_freq
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    got, expected = _outputs(loaded), _outputs(reference)
    for name, value in got.items():
        assert torch.isfinite(value).all(), name
        assert torch.equal(value, expected[name]), name


def test_vae_dtype_can_keep_the_file_precision(official):
    model = from_official_checkpoint(official.path, vae_dtype=torch.float32, **LOAD_KWARGS)
    assert {p.dtype for p in model.vae.parameters()} == {torch.float32}
    assert model.vit_model.vision_model.post_layernorm.weight.dtype == torch.bfloat16
    assert torch.equal(model.vae.decoder.conv_out.weight, official.vae.decoder.conv_out.weight)


def test_save_pretrained_from_pretrained_round_trip(loaded, tmp_path):
    loaded.save_pretrained(tmp_path / "hf")
    again = BagelForConditionalGeneration.from_pretrained(tmp_path / "hf")
    before, after = loaded.state_dict(), again.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) and before[k].dtype == after[k].dtype for k in before)
    assert again.config.max_latent_size == 8 and again.config.vae_config == loaded.config.vae_config
    ids = torch.tensor([[3, 4, 5]])
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids).logits, again(input_ids=ids).logits)


def test_tokenizer_loads_offline_without_the_stale_config(official):
    tokenizer = load_official_tokenizer(official.path)
    assert type(tokenizer).__name__ == "Qwen2Tokenizer"
    reference = tiny_tokenizer()
    tokens = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>"]
    assert tokenizer.convert_tokens_to_ids(tokens) == reference.convert_tokens_to_ids(tokens)
    assert tokenizer.encode("The image is clear") == reference.encode("The image is clear")


def test_missing_tokenizer_files_are_named(tmp_path):
    with pytest.raises(CheckpointError, match=r"tokenizer\.json.*absent"):
        load_official_tokenizer(tmp_path)


def test_renamed_layout_is_a_key_map_edit(copy, official):
    edit_safetensors(
        copy / "ema.safetensors",
        lambda t: {
            k.replace("connector.", "vision_connector.", 1) if k.startswith("connector.") else k: v
            for k, v in t.items()
        },
    )
    with pytest.raises(CheckpointError, match=r"vision_connector\.fc1\.weight"):
        from_official_checkpoint(copy, **LOAD_KWARGS)
    table = (*EMA_KEY_MAP, (r"^vision_connector\.(.+)$", r"connector.\1"))
    model = from_official_checkpoint(copy, key_map=table, **LOAD_KWARGS)
    assert torch.equal(model.connector.fc1.weight, official.ema["connector.fc1.weight"])


def test_key_map_is_the_identity_on_every_official_7b_key():
    inventory = json.loads(INVENTORY.read_text(encoding="utf-8"))
    assert all(map_official_key(k) == k for k in inventory["ema"])
    assert map_official_key("module.language_model.lm_head.weight") is None


def _drop(*names):
    return lambda t: {k: v for k, v in t.items() if k not in names}


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            _drop("language_model.model.layers.1.mlp_moe_gen.up_proj.weight"),
            r"1 missing: language_model\.model\.layers\.1\.mlp_moe_gen\.up_proj\.weight",
        ),
        (
            lambda t: {**t, "vit_model.vision_model.rope.cos_h": torch.zeros(2)},
            r"1 unexpected: vit_model\.vision_model\.rope\.cos_h",
        ),
        (
            lambda t: {**t, "module.lm_head.weight": torch.zeros(2)},
            r"<no key_map row matches> module\.lm_head",
        ),
        (
            lambda t: {
                **t,
                "vit_model.vision_model.embeddings.patch_embedding.weight": torch.zeros(32, 3, 14, 14),
            },
            r"wrong shape: vit_model\.vision_model\.embeddings\.patch_embedding\.weight "
            r"\(file \[32, 3, 14, 14\], model \[32, 588\]\)",
        ),
        (lambda t: {k: v for k, v in t.items() if ".layers.1." not in k}, r"\d+ missing: .*… and \d+ more"),
    ],
    ids=["missing", "unexpected", "unmapped", "shape", "many"],
)
def test_wrong_ema_fails_naming_the_keys_and_the_fix(copy, edit, expected):
    edit_safetensors(copy / "ema.safetensors", edit)
    with pytest.raises(CheckpointError, match=expected) as info:
        from_official_checkpoint(copy, **LOAD_KWARGS)
    assert "ema.safetensors" in str(info.value) and "Expected layout" in str(info.value)
    assert "Fix:" in str(info.value)


def test_wrong_ae_keys_are_named_in_bfl_terms(copy):
    old, new = "decoder.up.1.block.0.nin_shortcut.weight", "decoder.up.1.block.0.shortcut.weight"
    edit_safetensors(copy / "ae.safetensors", lambda t: {(new if k == old else k): v for k, v in t.items()})
    with pytest.raises(CheckpointError, match=rf"1 missing: {old}\n.*1 unexpected: {new}") as info:
        from_official_checkpoint(copy, **LOAD_KWARGS)
    assert "ae.safetensors" in str(info.value) and "vae_config=" in str(info.value)


def test_ae_with_a_vae_prefix_still_loads(copy, official):
    edit_safetensors(copy / "ae.safetensors", lambda t: {f"vae.{k}": v for k, v in t.items()})
    model = from_official_checkpoint(copy, dtype=torch.float32, **LOAD_KWARGS)
    assert torch.equal(model.vae.encoder.conv_in.weight, official.vae.encoder.conv_in.weight)


@pytest.mark.parametrize("name", ["ema.safetensors", "ae.safetensors", "llm_config.json", "vit_config.json"])
def test_missing_file_is_named(copy, name):
    (copy / name).unlink()
    with pytest.raises(CheckpointError, match=rf"missing {name}.*BAGEL-7B-MoT"):
        from_official_checkpoint(copy, **LOAD_KWARGS)


def test_without_ae_the_vae_is_random_but_real(copy, caplog):
    (copy / "ae.safetensors").unlink()
    with caplog.at_level(logging.WARNING):
        model = from_official_checkpoint(copy, load_vae=False, **LOAD_KWARGS)
    assert "load_vae=False" in caplog.text
    assert not any(p.is_meta for p in model.vae.parameters())
    assert torch.isfinite(model.vae_decode(torch.randn(1, 16, 2, 2))).all()


def test_unreadable_files_are_reported(copy):
    (copy / "ema.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        from_official_checkpoint(copy, **LOAD_KWARGS)
    (copy / "llm_config.json").write_text("{broken")
    with pytest.raises(CheckpointError, match=r"llm_config\.json is not valid JSON"):
        from_official_checkpoint(copy, **LOAD_KWARGS)


def test_vit_config_with_the_built_layer_count_is_caught(copy):
    vit = json.loads((copy / "vit_config.json").read_text())
    (copy / "vit_config.json").write_text(json.dumps({**vit, "num_hidden_layers": 2}))
    with pytest.raises(CheckpointError, match=r"unexpected: vit_model\.vision_model\.encoder\.layers\.1\."):
        from_official_checkpoint(copy, **LOAD_KWARGS)
