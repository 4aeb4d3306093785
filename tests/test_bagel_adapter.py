"""BagelAdapter: registration, image encoding/decoding, parameter groups, packed training forward."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from clear_plugins.adapters.bagel.adapter import BagelAdapter
from clear_plugins.adapters.bagel.batch import (
    IGNORE_INDEX,
    LatentImageSegment,
    TextSegment,
    VitImageSegment,
    build_packed_batch,
    sample_timestep,
)
from clear_plugins.adapters.bagel.configuration_bagel import official_vae_transform, official_vit_transform
from clear_plugins.adapters.bagel.image_transforms import ImageTransform, ResizeSpec, matched_vit_size, to_rgb
from clear_plugins.adapters.bagel.modeling_bagel import BagelForConditionalGeneration
from clear_plugins.adapters.bagel.testing import TINY_TOKEN_IDS, tiny_bagel_config
from clear_plugins.adapters.base import PARAMETER_GROUPS
from clear_plugins.errors import ClearConfigError
from clear_plugins.plugins import load_plugins


@pytest.fixture(scope="module")
def adapter() -> BagelAdapter:
    torch.manual_seed(0)
    model = BagelForConditionalGeneration(tiny_bagel_config())
    torch.nn.init.normal_(
        model.llm2vae.weight, std=0.05
    )  # official init is zero; let gradients reach the LLM
    return BagelAdapter(model, token_ids=TINY_TOKEN_IDS)


def _image(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_registered_through_the_plugin_hook(adapter) -> None:
    plugins = load_plugins(env={"CLEAR_PLUGINS": ""})
    assert plugins.adapter_for(adapter.model) is BagelAdapter
    assert plugins.adapter_for("clear_bagel") is BagelAdapter
    assert BagelAdapter.matches(adapter.model) and BagelAdapter.image_policy == "flow"


def test_special_token_ids_come_from_the_tokenizer(adapter) -> None:
    from tiny_tokenizer import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    ids = BagelAdapter(adapter.model, tokenizer).token_ids
    assert ids.start_of_image == tokenizer.convert_tokens_to_ids("<|vision_start|>")
    assert ids.eos == tokenizer.convert_tokens_to_ids("<|im_end|>") != ids.bos
    with pytest.raises(ClearConfigError, match="vocabulary of 320"):
        BagelAdapter(adapter.model)  # the BAGEL-7B-MoT ids do not fit the tiny vocabulary


def test_official_resize_rule() -> None:
    vae = ResizeSpec.from_mapping(official_vae_transform())
    vit = ResizeSpec.from_mapping(official_vit_transform())
    assert vae.target_size(1920, 1080) == (1024, 576)  # long side capped at 1024, multiples of 16
    assert vit.target_size(1920, 1080) == (980, 546)  # 551.25 → 546 (39 patches of 14)
    assert vae.target_size(100, 50) == (1024, 512)  # short side raised to 512
    assert vae.target_size(4000, 4000) == (1024, 1024)
    assert ResizeSpec(64, 32, 16, 4096).target_size(60, 40) == (
        64,
        32,
    )  # Python's round(2.5) == 2, as official


def test_transform_normalises_and_flattens_alpha() -> None:
    rgba = Image.new("RGBA", (16, 16), (255, 0, 0, 0))
    assert to_rgb(rgba).getpixel((0, 0)) == (255, 255, 255)  # transparent → white
    pixels = ImageTransform({"max_size": 32, "min_size": 16, "stride": 16, "max_pixels": 1024})(
        _image(16, 16)
    )
    assert pixels.shape == (3, 16, 16) and pixels.min() >= -1 and pixels.max() <= 1


def test_encode_understanding_shapes(adapter) -> None:
    tokens = adapter.encode_understanding([_image(60, 40), _image(32, 32, 1)])
    assert tokens.grids == [(3, 4), (2, 2)]
    assert [e.shape for e in tokens.embeds] == [(12, 64), (4, 64)]
    assert tokens.extra["pixel_sizes"] == [(56, 42), (28, 28)]
    assert tokens.extra["position_ids"][0].tolist()[:5] == [0, 1, 2, 3, 8]


def test_encode_decode_latent_round_trip_shapes(adapter) -> None:
    latent = adapter.encode_latent([_image(60, 40), _image(64, 64, 1)])
    assert latent.kind == "flow" and latent.grids == [(2, 4), (4, 4)]
    assert [t.shape for t in latent.tokens] == [(8, 64), (16, 64)]
    images = adapter.decode_latent(latent)
    assert [im.size for im in images] == [(64, 32), (64, 64)] and images[0].mode == "RGB"


def test_posterior_sampling_and_mean(adapter) -> None:
    image = [_image(32, 32)]
    mean_a = adapter.encode_latent(image, sample=False).tokens[0]
    mean_b = adapter.encode_latent(image, sample=False).tokens[0]
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    s1 = adapter.encode_latent(image, generator=g1).tokens[0]  # config default: sample (official)
    s2 = adapter.encode_latent(image, generator=g2).tokens[0]
    assert torch.equal(mean_a, mean_b) and not torch.allclose(s1, s2)


def test_parameter_groups_partition_the_model(adapter) -> None:
    groups = adapter.parameter_groups()
    assert set(groups) == set(PARAMETER_GROUPS)
    names = [n for group in groups.values() for n in group]
    assert len(names) == len(set(names)) == len(list(adapter.model.named_parameters()))
    where = {n: g for g, group in groups.items() for n in group}
    assert where["language_model.model.embed_tokens.weight"] == "understanding"
    assert where["language_model.lm_head.weight"] == "understanding"
    assert where["language_model.model.layers.0.self_attn.q_norm.weight"] == "understanding"
    assert where["language_model.model.layers.0.mlp_moe_gen.up_proj.weight"] == "generation"
    assert where["language_model.model.norm_moe_gen.weight"] == "generation"
    assert where["latent_pos_embed.pos_embed"] == "bridge" and where["time_embedder.mlp.0.weight"] == "bridge"
    assert where["connector.fc1.weight"] == "vision" and where["vit_pos_embed.pos_embed"] == "vision"
    assert all(n.startswith("vae.") for n in groups["vae"]) and groups["vae"]
    wrapped = torch.nn.Module()
    wrapped.base_model = torch.nn.Module()
    wrapped.base_model.model = adapter.model
    prefixed = adapter.parameter_groups(wrapped)
    assert {g: len(v) for g, v in prefixed.items()} == {g: len(v) for g, v in groups.items()}


def _sft_batch(adapter, output_hidden_states: bool = True):
    degraded, clean = _image(48, 32, 3), _image(48, 32, 4)
    with torch.no_grad():
        x_degraded = adapter.encode_latent([degraded], sample=False)
        x_clean = adapter.encode_latent([clean], sample=False)
    grid = x_clean.grids[0]
    vit_clean = adapter.vit_transform(clean, matched_vit_size(grid, 14))
    noise = torch.randn(x_clean.tokens[0].shape, generator=torch.Generator().manual_seed(0))
    sample = [
        TextSegment([1, 20, 21, 2]),
        VitImageSegment(adapter.vit_transform(degraded)),
        LatentImageSegment(x_degraded.tokens[0], x_degraded.grids[0]),
        TextSegment([1, 30, 31, 32, 2], loss=[False, True, True, True, True]),
        LatentImageSegment(x_clean.tokens[0], grid, t=0.7, noise=noise),
        LatentImageSegment(x_clean.tokens[0], grid, key="restored"),
        VitImageSegment(vit_clean, key="restored"),
        TextSegment([1, 40, 41, 2], loss=True),
    ]
    other = [TextSegment([1, 50, 51, 2], loss=True)]
    batch = build_packed_batch([sample, other], TINY_TOKEN_IDS, 14, output_hidden_states=output_hidden_states)
    return batch, x_clean.tokens[0], noise


def test_packed_batch_labels_targets_and_maps(adapter) -> None:
    batch, x0, noise = _sft_batch(adapter)
    targets = batch.labels[batch.labels != IGNORE_INDEX].tolist()
    assert targets == [30, 31, 32, 2, 40, 41, 2, 50, 51, 2]
    assert torch.allclose(batch.velocity_target, noise - x0)
    assert batch.distill_vit_index.numel() == batch.distill_latent_index.numel() == x0.shape[0]
    with pytest.raises(ClearConfigError, match="matched_vit_size"):
        build_packed_batch(
            [[VitImageSegment(torch.zeros(3, 14, 14), key="k"), LatentImageSegment(x0, (2, 3), key="k")]],
            TINY_TOKEN_IDS,
            14,
        )
    assert 0.0 < sample_timestep(torch.Generator().manual_seed(0), shift=3.0) < 1.0


def test_training_forward_shapes_and_gradients(adapter) -> None:
    model = adapter.model.train()
    batch, x0, _ = _sft_batch(adapter)
    out = adapter.training_forward(batch)
    n_layers = model.config.llm_config.num_hidden_layers
    assert out.text_logits.shape == (10, 320) and out.text_labels.shape == (10,)
    assert out.image_output.shape == out.image_target.shape == x0.shape
    assert len(out.hidden_states) == n_layers + 1 and out.hidden_states[0].shape == (
        len(batch.inputs.layout),
        64,
    )
    times = out.extra["velocity_timesteps"]
    assert torch.allclose(times, torch.full_like(times, 0.7))
    vit_pos, lat_pos = out.extra["distill_vit_index"], out.extra["distill_latent_index"]
    assert torch.all(batch.inputs.layout.kind[vit_pos] == 1) and torch.all(
        batch.inputs.layout.kind[lat_pos] == 2
    )
    ce = torch.nn.functional.cross_entropy(out.text_logits, out.text_labels)
    mse = torch.nn.functional.mse_loss(out.image_output, out.image_target)
    kl = sum(
        (h[vit_pos].detach().softmax(-1) * h[lat_pos].log_softmax(-1)).sum() for h in out.hidden_states[1:]
    )
    model.zero_grad()
    (ce + 0.5 * mse - 0.1 * kl).backward()
    groups = adapter.parameter_groups()
    params = dict(model.named_parameters())
    for group in ("understanding", "generation", "bridge", "vision"):
        trainable = [params[n] for n in groups[group] if params[n].requires_grad]
        assert trainable and all(p.grad is not None and torch.isfinite(p.grad).all() for p in trainable), (
            group
        )
        assert any(p.grad.abs().sum() > 0 for p in trainable), group
    assert all(params[n].grad is None for n in groups["vae"])
    model.eval()


def test_gradient_checkpointing_matches(adapter) -> None:
    model = adapter.model.train()
    batch, _, _ = _sft_batch(adapter, output_hidden_states=False)

    def grads() -> torch.Tensor:
        model.zero_grad()
        out = adapter.training_forward(batch)
        torch.nn.functional.cross_entropy(out.text_logits, out.text_labels).backward()
        return model.language_model.model.layers[0].self_attn.q_proj.weight.grad.clone()

    plain = grads()
    model.activation_checkpointing_enable()
    assert model.language_model.model.layers[0].gradient_checkpointing
    try:
        checkpointed = grads()
    finally:
        model.activation_checkpointing_disable()
        model.eval()
    assert torch.allclose(plain, checkpointed, atol=1e-6)
