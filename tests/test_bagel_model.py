"""Bagel model: embeddings golden values, packing semantics, MoT routing, KV cache, 7B inventory, save/load."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from clear_plugins.adapters.bagel.cache import BagelKVCache
from clear_plugins.adapters.bagel.configuration_bagel import BagelConfig
from clear_plugins.adapters.bagel.embeddings import (
    TimestepEmbedder,
    sincos_2d_table,
    timestep_features,
)
from clear_plugins.adapters.bagel.modeling_bagel import BagelForConditionalGeneration
from clear_plugins.adapters.bagel.packing import AttnMode, LayoutBuilder, TokenKind, attention_mask
from clear_plugins.adapters.bagel.sequence import SequenceBuilder
from clear_plugins.adapters.bagel.testing import TINY_TOKEN_IDS, tiny_bagel_config
from clear_plugins.errors import ClearConfigError

ATOL = 1e-5


@pytest.fixture(scope="module")
def model() -> BagelForConditionalGeneration:
    torch.manual_seed(0)
    m = BagelForConditionalGeneration(tiny_bagel_config()).eval()
    torch.nn.init.normal_(m.llm2vae.weight, std=0.05)  # official init is zero; make velocities informative
    return m


def _latent(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 64, generator=torch.Generator().manual_seed(seed))


def _pixels(h: int, w: int, seed: int) -> torch.Tensor:
    return torch.rand(3, h, w, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _run(model, inputs, **kwargs):
    with torch.no_grad():
        return model.forward_packed(model.embed_packed(inputs), inputs.layout, **kwargs)


# -- golden values (the numpy-based ones are in test_bagel_inventory.py) ----------------------------------------


def test_sincos_table_at_bagel_width() -> None:
    table = sincos_2d_table(2, 3584)
    cell = table[1]  # row 0, col 1
    assert cell[0] == pytest.approx(math.sin(1.0), abs=1e-7)
    assert cell[895] == pytest.approx(math.sin(10000 ** (-895 / 896)), abs=1e-7)
    assert cell[896] == pytest.approx(math.cos(1.0), abs=1e-7)
    assert torch.all(cell[1792 : 1792 + 896] == 0) and torch.all(cell[1792 + 896 :] == 1)


def test_timestep_embedding_cos_first_256_freqs_unscaled_t() -> None:
    t = torch.tensor([0.0, 0.5, 1.0])
    feats = timestep_features(t)
    assert feats.shape == (3, 256)
    f127 = math.exp(-math.log(10000) * 127 / 128)
    for i, tv in enumerate(t.tolist()):
        assert feats[i, 0] == pytest.approx(math.cos(tv), abs=1e-6)
        assert feats[i, 127] == pytest.approx(math.cos(tv * f127), abs=1e-6)
        assert feats[i, 128] == pytest.approx(math.sin(tv), abs=1e-6)
        assert feats[i, 255] == pytest.approx(math.sin(tv * f127), abs=1e-6)
    emb = TimestepEmbedder(16)
    assert emb.mlp[0].weight.shape == (16, 256) and emb.mlp[2].weight.shape == (16, 16)
    assert emb(t).shape == (3, 16)


# -- config and 7B inventory -------------------------------------------------------------------------------------


def test_7b_config_on_meta_matches_official_inventory() -> None:
    with torch.device("meta"):
        model = BagelForConditionalGeneration(BagelConfig())
    state = model.state_dict()
    official = {k: tuple(v.shape) for k, v in state.items() if not k.startswith("vae.")}
    assert len(official) == 1223
    assert sum(math.prod(s) for s in official.values()) == 14_607_260_128
    assert official["vit_model.vision_model.embeddings.patch_embedding.weight"] == (1152, 588)
    assert official["latent_pos_embed.pos_embed"] == (4096, 3584)
    assert official["language_model.model.layers.27.self_attn.k_proj_moe_gen.bias"] == (512,)
    assert official["language_model.model.norm_moe_gen.weight"] == (3584,)
    assert "vit_model.vision_model.encoder.layers.26.mlp.fc1.weight" not in official
    assert not any("rotary" in k or "inv_freq" in k for k in state)
    assert (
        not model.latent_pos_embed.pos_embed.requires_grad and not model.vit_pos_embed.pos_embed.requires_grad
    )


def test_from_official_applies_loader_overrides() -> None:
    llm = {"model_type": "qwen2", "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2,
           "num_hidden_layers": 2, "intermediate_size": 128, "vocab_size": 300, "rope_theta": 1e6,
           "tie_word_embeddings": True}  # fmt: skip
    vit = {"model_type": "siglip_vision_model", "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2,
           "num_hidden_layers": 3, "patch_size": 14, "image_size": 980}  # fmt: skip
    config = BagelConfig.from_official(llm, vit)
    assert config.llm_config.qk_norm is True and config.llm_config.tie_word_embeddings is False
    assert config.llm_config.layer_module == "Qwen2MoTDecoderLayer"
    assert config.llm_config.rope_parameters["rope_theta"] == 1e6
    assert config.vit_config.num_hidden_layers == 2 and config.vit_config.rope is False
    assert config.max_latent_size == 64 and config.model_type == "clear_bagel"


def test_config_validation_names_the_field() -> None:
    with pytest.raises(ClearConfigError, match=r"vae_transform\.stride"):
        tiny_bagel_config(vae_transform={"max_size": 64, "min_size": 32, "stride": 8, "max_pixels": 4096})
    with pytest.raises(ClearConfigError, match="vit_max_num_patch_per_side"):
        tiny_bagel_config(vit_max_num_patch_per_side=9)


# -- packing -----------------------------------------------------------------------------------------------------


def test_layout_positions_one_per_image_block_noised_does_not_advance() -> None:
    b = LayoutBuilder()
    b.text(3)
    vit = b.image(4, TokenKind.VIT)
    noised = b.image(2, TokenKind.LATENT, noised=True)
    b.text(2)
    layout = b.build()
    assert layout.position.tolist() == [0, 1, 2] + [3] * 6 + [4] * 4 + [4, 5]
    assert vit.position == 3 and noised.position == 4
    assert layout.gen_mask.tolist() == [False] * 10 + [True, True] + [False] * 3
    assert layout.mode[noised.tokens].tolist() == [int(AttnMode.NOISE)] * 2


def test_attention_mask_rules() -> None:
    b = LayoutBuilder()
    text = b.text(2)
    img = b.image(1, TokenKind.LATENT)  # 3 tokens, full
    noised = b.image(1, TokenKind.LATENT, noised=True)
    after = b.text(2)
    other = b.text(1, sample=1)
    layout = b.build()
    mask = attention_mask(layout, layout)
    assert mask[text.start, text.start + 1].item() is False  # text is causal
    assert mask[img.start_marker, img.end_marker].item() is True  # image blocks are bidirectional
    assert mask[img.start_marker, text.start].item() is True
    assert mask[noised.start_marker, img.start_marker].item() is True  # noised sees the earlier context
    assert not mask[after.start :, noised.start_marker : noised.end_marker + 1].any()  # ... nobody sees it
    assert mask[after.start + 1, img.tokens.start].item() is True
    assert not mask[other.start, : other.start].any()  # samples are isolated


# -- model behaviour ---------------------------------------------------------------------------------------------


def _interleaved(noised_latent: torch.Tensor | None = None):
    s = SequenceBuilder(TINY_TOKEN_IDS, 14)
    s.add_text([1, 5, 6, 7, 2])
    s.add_vit_image(_pixels(28, 42, 0))
    s.add_latent_image(_latent(6, 1), (2, 3))
    s.add_text([1, 8, 9, 2])
    if noised_latent is not None:
        s.add_latent_image(noised_latent, (2, 3), t=0.6)
        s.add_text([1, 10, 11, 2])
    return s


def test_packed_forward_shapes(model) -> None:
    inputs = _interleaved(_latent(6, 2)).build()
    out = _run(model, inputs, output_hidden_states=True)
    n = len(inputs.layout)
    assert n == 5 + (6 + 2) + (6 + 2) + 4 + (6 + 2) + 4
    assert out.last_hidden_state.shape == (n, 64)
    assert len(out.hidden_states) == 3 and all(h.shape == (n, 64) for h in out.hidden_states)
    assert out.past_key_values is None


def test_noised_latent_is_invisible_to_later_tokens(model) -> None:
    inputs_a = _interleaved(_latent(6, 2)).build()
    inputs_b = _interleaved(_latent(6, 3)).build()
    a, b = _run(model, inputs_a).last_hidden_state, _run(model, inputs_b).last_hidden_state
    noised = inputs_a.latent_spans[1]
    assert torch.allclose(a[: noised.start_marker], b[: noised.start_marker], atol=ATOL)
    assert torch.allclose(a[noised.end_marker + 1 :], b[noised.end_marker + 1 :], atol=ATOL)
    assert not torch.allclose(a[noised.tokens], b[noised.tokens], atol=1e-3)


def test_text_causal_and_image_bidirectional(model) -> None:
    inputs = _interleaved().build()
    base = _run(model, inputs).last_hidden_state
    changed = _interleaved().build()
    changed.text_ids[3] = 40  # a token inside the first text segment
    out = _run(model, changed).last_hidden_state
    assert torch.allclose(base[:3], out[:3], atol=ATOL) and not torch.allclose(base[3], out[3], atol=1e-3)
    span = inputs.latent_spans[0]
    last = span.tokens.stop - 1
    changed_latent = _interleaved().build()
    changed_latent.latent_tokens[last - span.tokens.start] += 1.0  # last token of the clean latent block
    out = _run(model, changed_latent).last_hidden_state
    assert not torch.allclose(base[span.start_marker], out[span.start_marker], atol=1e-4)  # earlier in block
    assert torch.allclose(base[: span.start_marker], out[: span.start_marker], atol=ATOL)  # earlier blocks


def test_generation_expert_routing(model) -> None:
    """Perturbing only ``*_moe_gen`` weights changes latent tokens (and what attends to clean ones), nothing else."""
    inputs = _interleaved(_latent(6, 2)).build()
    base = _run(model, inputs).last_hidden_state
    perturbed = BagelForConditionalGeneration(model.config).eval()
    perturbed.load_state_dict(model.state_dict())
    with torch.no_grad():
        for name, param in perturbed.named_parameters():
            if "_moe_gen" in name:
                param.add_(0.5)
    out = _run(perturbed, inputs).last_hidden_state
    clean = inputs.latent_spans[0]
    latent = inputs.layout.gen_mask
    assert torch.allclose(base[: clean.start_marker], out[: clean.start_marker], atol=ATOL)
    assert not torch.allclose(base[clean.start_marker], out[clean.start_marker], atol=1e-4)  # same block
    assert not torch.allclose(base[latent], out[latent], atol=1e-3)
    assert not torch.allclose(base[clean.end_marker + 1], out[clean.end_marker + 1], atol=1e-4)
    text_only = SequenceBuilder(TINY_TOKEN_IDS, 14)
    text_only.add_text([1, 5, 6, 7, 2])
    text_only.add_latent_image(_latent(6, 2), (2, 3), t=0.6)
    text_only.add_text([1, 10, 11, 2])
    plain = text_only.build()
    a, b = _run(model, plain).last_hidden_state, _run(perturbed, plain).last_hidden_state
    block = plain.layout.mode == int(AttnMode.NOISE)  # markers attend to the block's latent tokens
    assert torch.allclose(a[~block], b[~block], atol=ATOL)
    assert not torch.allclose(a[plain.layout.gen_mask], b[plain.layout.gen_mask], atol=1e-3)


def test_incremental_with_cache_equals_full_forward(model) -> None:
    full_builder = _interleaved(_latent(6, 2))
    full = full_builder.build()
    reference = _run(model, full).last_hidden_state
    cache = BagelKVCache(model.config.llm_config.num_hidden_layers)
    chunks = [
        lambda s: s.add_text([1, 5, 6, 7, 2]),
        lambda s: s.add_vit_image(_pixels(28, 42, 0)),
        lambda s: s.add_latent_image(_latent(6, 1), (2, 3)),
        lambda s: s.add_text([1, 8, 9, 2]),
    ]
    start = 0
    for add in chunks:
        step = SequenceBuilder(TINY_TOKEN_IDS, 14, state=cache.state)
        add(step)
        out = _run(model, step.build(), past_key_values=cache, use_cache=True)
        n = len(step)
        assert torch.allclose(out.last_hidden_state, reference[start : start + n], atol=ATOL)
        start += n
    assert len(cache) == start and cache.keys[0].shape == (1, 2, start, 16)
    noised = SequenceBuilder(TINY_TOKEN_IDS, 14, state=cache.state)
    noised.add_latent_image(_latent(6, 2), (2, 3), t=0.6)
    denoise = _run(model, noised.build(), past_key_values=cache, use_cache=False)  # read-only step
    assert len(cache) == start
    assert torch.allclose(denoise.last_hidden_state, reference[start : start + 8], atol=ATOL)
    tail = SequenceBuilder(TINY_TOKEN_IDS, 14, state=cache.state)
    tail.add_text([1, 10, 11, 2])
    out = _run(model, tail.build(), past_key_values=cache, use_cache=True)
    assert torch.allclose(out.last_hidden_state, reference[start + 8 :], atol=ATOL)


def test_cache_copy_forks_independently(model) -> None:
    cache = BagelKVCache(2)
    step = SequenceBuilder(TINY_TOKEN_IDS, 14)
    step.add_text([1, 5, 6])
    _run(model, step.build(), past_key_values=cache, use_cache=True)
    fork = cache.copy()
    more = SequenceBuilder(TINY_TOKEN_IDS, 14, state=fork.state)
    more.add_text([7, 8])
    _run(model, more.build(), past_key_values=fork, use_cache=True)
    assert len(cache) == 3 and len(fork) == 5 and cache.state.position(0) == 3


def test_text_forward_generate_and_eager_match(model) -> None:
    ids = torch.tensor([[1, 5, 6, 7, 8, 9]])
    out = model.generate(ids, max_new_tokens=4, do_sample=False)
    seq = ids
    with torch.no_grad():
        for _ in range(4):
            seq = torch.cat([seq, model(seq).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out, seq)
    lm = model(ids, labels=ids)
    assert lm.loss.item() == pytest.approx(
        torch.nn.functional.cross_entropy(lm.logits[0, :-1], ids[0, 1:]).item()
    )
    padded = model.generate(
        torch.tensor([[0, 0, 1, 5, 6, 7], [1, 5, 6, 7, 8, 9]]),
        attention_mask=torch.tensor([[0, 0, 1, 1, 1, 1], [1] * 6]),
        max_new_tokens=4,
        do_sample=False,
    )
    single = model.generate(torch.tensor([[1, 5, 6, 7]]), max_new_tokens=4, do_sample=False)
    assert torch.equal(padded[0, 2:], single[0]) and torch.equal(padded[1], out[0, :10])
    config = copy.deepcopy(model.config)
    eager = BagelForConditionalGeneration._from_config(config, attn_implementation="eager").eval()
    assert (
        eager.config.llm_config._attn_implementation
        == "eager"
        != model.config.llm_config._attn_implementation
    )
    eager.load_state_dict(model.state_dict())
    inputs = _interleaved(_latent(6, 2)).build()
    assert torch.allclose(
        _run(eager, inputs).last_hidden_state, _run(model, inputs).last_hidden_state, atol=ATOL
    )


def test_save_and_load_round_trip(model, tmp_path) -> None:
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    loaded = BagelForConditionalGeneration.from_pretrained(tmp_path).eval()
    assert loaded.config.model_type == "clear_bagel" and loaded.config.max_latent_size == 8
    ref, new = model.state_dict(), loaded.state_dict()
    assert ref.keys() == new.keys() and all(torch.equal(ref[k], new[k]) for k in ref)
    inputs = _interleaved(_latent(6, 2)).build()
    assert torch.allclose(
        _run(loaded, inputs).last_hidden_state, _run(model, inputs).last_hidden_state, atol=ATOL
    )


def test_fresh_init_fills_sincos_tables_and_zeroes_llm2vae() -> None:
    fresh = BagelForConditionalGeneration(tiny_bagel_config())
    assert torch.equal(fresh.latent_pos_embed.pos_embed, sincos_2d_table(8, 64))
    assert torch.equal(fresh.vit_pos_embed.pos_embed, sincos_2d_table(8, 64))
    assert torch.count_nonzero(fresh.llm2vae.weight) == 0
