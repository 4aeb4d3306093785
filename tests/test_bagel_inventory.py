"""The official BAGEL-7B-MoT key inventory vs our model, and golden values of Bagel's fixed embeddings.

The inventory (``adapters/bagel/resources/official_keys.json``) is generated from the reference tables by
``scripts/make_bagel_inventory.py``, independently of our modules. Golden values are recomputed here with
numpy from the documented formulas (reference §5.2–§5.5).
"""

from __future__ import annotations

import json
import math
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
from bagel_official_files import TINY_VAE_BFL, TINY_VAE_CONFIG, inventory_module
from diffusers import AutoencoderKL

from clear_plugins.adapters.bagel.vae_conversion import (
    bfl_to_diffusers,
    diffusers_to_bfl_state_dict,
    expected_bfl_shapes,
    load_vae_config,
)


@pytest.fixture(scope="module")
def inventory() -> dict:
    text = resources.files("clear_plugins.adapters.bagel").joinpath("resources", "official_keys.json")
    return json.loads(text.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def meta_7b(inventory):
    """Our model at the full 7B configuration, on the meta device (no memory, no init cost)."""
    from clear_plugins.adapters.bagel.configuration_bagel import BagelConfig
    from clear_plugins.adapters.bagel.modeling_bagel import BagelForConditionalGeneration

    config = BagelConfig.from_official(inventory["llm_config"], inventory["vit_config"])
    with torch.device("meta"):
        model = BagelForConditionalGeneration(config)
    return model


def test_generator_reproduces_the_committed_file(tmp_path: Path):
    out = tmp_path / "official_keys.json"
    assert inventory_module().main(["--output", str(out)]) == 0
    committed = Path(inventory_module().DEFAULT_OUTPUT)
    assert out.read_bytes() == committed.read_bytes()


def test_inventory_totals_match_the_reference(inventory):
    ema, ae = inventory["ema"], inventory["ae"]
    assert len(ema) == 1223 and sum(math.prod(s) for s in ema.values()) == 14_607_260_128
    assert len(ae) == 244 and sum(math.prod(s) for s in ae.values()) == 83_819_683
    assert ema["vit_model.vision_model.embeddings.patch_embedding.weight"] == [1152, 588]
    assert ema["latent_pos_embed.pos_embed"] == [4096, 3584]
    assert "vit_model.vision_model.encoder.layers.25.mlp.fc2.bias" in ema
    assert "vit_model.vision_model.encoder.layers.26.mlp.fc2.bias" not in ema


def test_7b_model_on_meta_matches_the_inventory_exactly(inventory, meta_7b):
    model = meta_7b
    ours = {k: list(v.shape) for k, v in model.state_dict().items() if not k.startswith("vae.")}
    missing = sorted(set(inventory["ema"]) - set(ours))
    extra = sorted(set(ours) - set(inventory["ema"]))
    assert not missing and not extra, f"missing {missing[:10]}, extra {extra[:10]}"
    wrong = {k: (ours[k], s) for k, s in inventory["ema"].items() if ours[k] != s}
    assert not wrong


def test_7b_vae_takes_the_244_bfl_keys_strictly(inventory, meta_7b):
    model = meta_7b
    bfl = {k: torch.zeros(s) for k, s in inventory["ae"].items()}
    converted = bfl_to_diffusers(bfl, load_vae_config())
    assert len(converted) == 244
    result = model.vae.load_state_dict(converted, strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert not any(p.is_meta for p in model.vae.parameters())


def test_diffusers_to_bfl_names_are_the_documented_ones(inventory):
    config = load_vae_config()
    with torch.device("meta"):
        vae = AutoencoderKL(**config)
    shapes = expected_bfl_shapes(vae, len(config["block_out_channels"]))
    assert shapes == {k: tuple(s) for k, s in inventory["ae"].items()}


def test_tiny_bfl_file_layout_follows_the_reference_formulas():
    torch.manual_seed(0)
    vae = AutoencoderKL(**TINY_VAE_CONFIG)
    bfl = diffusers_to_bfl_state_dict(vae.state_dict(), len(TINY_VAE_CONFIG["block_out_channels"]))
    expected = inventory_module().bfl_vae_inventory(TINY_VAE_BFL)
    assert {k: list(v.shape) for k, v in bfl.items()} == expected
    back = bfl_to_diffusers(bfl, TINY_VAE_CONFIG)
    assert all(torch.equal(back[k], v) for k, v in vae.state_dict().items())


# ---- golden values (reference §5.2–§5.5), recomputed with numpy ----


def _numpy_sincos_table(side: int, dim: int) -> np.ndarray:
    quarter = dim // 4
    omega = 1.0 / 10000.0 ** (np.arange(quarter, dtype=np.float64) / quarter)
    table = np.zeros((side * side, dim))
    for k in range(side * side):
        row, col = divmod(k, side)
        table[k] = np.concatenate(
            [np.sin(col * omega), np.cos(col * omega), np.sin(row * omega), np.cos(row * omega)]
        )
    return table.astype(np.float32)


def test_sincos_table_sin_first_and_column_in_first_half():
    from clear_plugins.adapters.bagel.embeddings import PositionEmbedding, sincos_2d_table

    expected = _numpy_sincos_table(5, 16)
    np.testing.assert_allclose(sincos_2d_table(5, 16).numpy(), expected, atol=1e-7)
    module = PositionEmbedding(5, 16)
    module.reset_parameters()
    np.testing.assert_allclose(module.pos_embed.detach().numpy(), expected, atol=1e-7)
    # cell (row 0, col 1) differs from (row 0, col 0) only in the first half; sin(0) = 0 starts each half.
    assert np.allclose(expected[1, 8:], expected[0, 8:]) and not np.allclose(expected[1, :8], expected[0, :8])
    assert expected[0, 0] == 0.0 and expected[0, 4] == 1.0


def test_timestep_embedding_cos_first_256_unscaled():
    from clear_plugins.adapters.bagel.embeddings import timestep_features

    t = np.array([0.0, 0.25, 1.0])
    freqs = np.exp(-np.log(10000.0) * np.arange(128) / 128)
    expected = np.concatenate([np.cos(t[:, None] * freqs), np.sin(t[:, None] * freqs)], axis=1)
    got = timestep_features(torch.tensor(t, dtype=torch.float32)).numpy()
    assert got.shape == (3, 256)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def _numpy_patchify(x: np.ndarray, p: int) -> np.ndarray:
    c, h, w = x.shape
    out = np.zeros(((h // p) * (w // p), p * p * c), dtype=x.dtype)
    for r in range(h // p):
        for col in range(w // p):
            for py in range(p):
                for px in range(p):
                    for ch in range(c):
                        out[r * (w // p) + col, (py * p + px) * c + ch] = x[ch, r * p + py, col * p + px]
    return out


def test_vit_patch_order_and_linear_equals_permuted_conv():
    from clear_plugins.adapters.bagel.embeddings import patchify

    g = torch.Generator().manual_seed(0)
    image, weight, bias = (
        torch.randn(3, 28, 42, generator=g),
        torch.randn(5, 588, generator=g),
        torch.randn(5),
    )
    tokens = patchify(image, 14)
    np.testing.assert_array_equal(tokens.numpy(), _numpy_patchify(image.numpy(), 14))
    linear = tokens @ weight.T + bias
    conv_weight = weight.reshape(5, 14, 14, 3).permute(0, 3, 1, 2)
    conv = torch.nn.functional.conv2d(image[None], conv_weight, bias, stride=14)[0]
    torch.testing.assert_close(linear, conv.flatten(1).T, rtol=1e-5, atol=1e-4)


def test_latent_patchify_py_px_c_order_and_inverse():
    from clear_plugins.adapters.bagel.embeddings import patchify, unpatchify

    latent = torch.randn(16, 4, 6)
    tokens = patchify(latent, 2)
    assert tokens.shape == (6, 64)
    np.testing.assert_array_equal(tokens.numpy(), _numpy_patchify(latent.numpy(), 2))
    assert torch.equal(tokens[1, :16], latent[:, 0, 2])  # token (0, 1), (py, px) = (0, 0): channels fastest
    assert torch.equal(unpatchify(tokens, (2, 3), 2, 16), latent)
