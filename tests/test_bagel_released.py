"""The released CLEAR layout: a weights folder (model.safetensors and/or ema.safetensors, Bagel keys) loaded on top
of the BAGEL-7B-MoT configs, VAE and tokenizer; position-table sizes read from the file (tiny checkpoints)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from adapter_contract import photo
from bagel_official_files import (
    TINY_BAGEL,
    TINY_LLM_CONFIG,
    TINY_VAE_CONFIG,
    TINY_VIT_CONFIG,
    _random_tensor,
    inventory_module,
    tiny_ema_shapes,
    write_official_checkpoint,
)
from safetensors.torch import save_file

from clear_plugins.adapters.bagel.adapter import BagelAdapter
from clear_plugins.adapters.bagel.checkpoint import (
    from_official_checkpoint,
    infer_table_sizes,
    load_official_tokenizer,
    resolve_weights,
)
from clear_plugins.errors import CheckpointError


def write_weights(file: Path, shapes: dict[str, list[int]], seed: int) -> dict[str, torch.Tensor]:
    """A Bagel-keyed weight file as the reference's FSDP save writes it (bf16 here)."""
    generator = torch.Generator().manual_seed(seed)
    tensors = {name: _random_tensor(name, shape, generator) for name, shape in shapes.items()}
    file.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(file))
    return tensors


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("released")
    write_official_checkpoint(root / "BAGEL-7B-MoT")
    model = write_weights(root / "CLEAR" / "model.safetensors", tiny_ema_shapes(), seed=1)
    ema = write_weights(root / "CLEAR" / "ema.safetensors", tiny_ema_shapes(), seed=2)
    return root, model, ema


def _equal(model, tensors) -> bool:
    state = model.state_dict()
    return all(torch.equal(state[k], v) for k, v in tensors.items())


def test_weights_folder_loads_model_safetensors_by_default_and_ema_on_request(folders):
    root, model_tensors, ema_tensors = folders
    base, clear = root / "BAGEL-7B-MoT", root / "CLEAR"
    raw = from_official_checkpoint(base, weights=clear, vae_config=TINY_VAE_CONFIG)
    assert _equal(raw, model_tensors) and not _equal(raw, ema_tensors)
    averaged = from_official_checkpoint(base, weights=clear, ema=True, vae_config=TINY_VAE_CONFIG)
    assert _equal(averaged, ema_tensors)
    single = from_official_checkpoint(base, weights=clear / "ema.safetensors", vae_config=TINY_VAE_CONFIG)
    assert _equal(single, ema_tensors)
    # the VAE still comes from the base folder's ae.safetensors, the bf16 views are memory-mapped as before
    assert not raw.training and {t.dtype for t in raw.state_dict().values()} == {torch.bfloat16}


def test_table_sizes_come_from_the_file_and_the_transforms_are_clipped(folders):
    root, *_ = folders
    model = from_official_checkpoint(
        root / "BAGEL-7B-MoT", weights=root / "CLEAR", vae_config=TINY_VAE_CONFIG
    )
    config = model.config
    assert (config.max_latent_size, config.vit_max_num_patch_per_side) == (8, 8)
    assert config.vit_transform["max_size"] == 112 and config.vit_transform["min_size"] == 112  # 980 → 8·14
    assert config.vae_transform["max_size"] == 128 and config.vae_transform["min_size"] == 128  # 1024 → 8·16
    tokenizer = load_official_tokenizer(root / "BAGEL-7B-MoT")
    context = BagelAdapter(model.float(), tokenizer).start_context(photo(200), "q", system_prompt="")
    assert context.degraded.latent_grid == (8, 8)


def test_a_derivative_with_other_table_sizes_loads_without_overrides(folders, tmp_path):
    root, *_ = folders
    shapes = inventory_module().ema_inventory(
        TINY_LLM_CONFIG,
        {**TINY_VIT_CONFIG, "image_size": 6 * 14},
        {**TINY_BAGEL, "max_latent_size": 6, "vit_max_num_patch_per_side": 6},
        TINY_VAE_CONFIG["latent_channels"],
    )
    tensors = write_weights(tmp_path / "derived" / "model.safetensors", shapes, seed=3)
    assert infer_table_sizes(tmp_path / "derived" / "model.safetensors") == {
        "max_latent_size": 6,
        "vit_max_num_patch_per_side": 6,
    }
    model = from_official_checkpoint(
        root / "BAGEL-7B-MoT", weights=tmp_path / "derived", vae_config=TINY_VAE_CONFIG
    )
    assert _equal(model, tensors) and model.config.vit_config.image_size == 84
    assert model.config.vit_transform["max_size"] == 84 and model.config.vae_transform["max_size"] == 96


def test_missing_or_odd_weights_are_reported(folders, tmp_path):
    root, *_ = folders
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"missing model\.safetensors and ema\.safetensors"):
        resolve_weights(root / "BAGEL-7B-MoT", tmp_path / "empty")
    with pytest.raises(CheckpointError, match=r"missing model\.safetensors"):
        resolve_weights(root / "BAGEL-7B-MoT", ema=False)
    odd = {**tiny_ema_shapes(), "latent_pos_embed.pos_embed": [65, 64]}
    write_weights(tmp_path / "odd" / "model.safetensors", odd, seed=4)
    with pytest.raises(CheckpointError, match="not a square number"):
        from_official_checkpoint(root / "BAGEL-7B-MoT", weights=tmp_path / "odd", vae_config=TINY_VAE_CONFIG)
