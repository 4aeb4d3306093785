"""What each classifier-free-guidance branch holds (CLEAR's inferencer vs official Bagel), before and after a
bridge, and the restore's explicit initial noise and the degraded-latent ablation's reuse of the context's latent."""

from __future__ import annotations

import pytest
import torch
from adapter_contract import photo
from bagel_helpers import QUESTION, SYSTEM, build_tiny_bagel, ids, scripted, tiny_adapter

from clear_plugins.adapters.bagel.guidance import BagelGuidance
from clear_plugins.adapters.bagel.packing import TokenKind
from clear_plugins.bridge import BridgeMode
from clear_plugins.errors import ClearConfigError
from clear_plugins.injection import InjectionOptions, inject
from clear_plugins.pipeline import PipelineConfig

FIRST = "<think> blurred </think><image_restore>"
AGAIN = "<think> still soft </think><image_restore>"
IMAGE_KINDS = torch.tensor([int(TokenKind.VIT), int(TokenKind.LATENT)])


@pytest.fixture(scope="module")
def adapter():
    return tiny_adapter()


@pytest.fixture(scope="module")
def image():
    return photo(48)


def _think(adapter, context, text):
    with scripted(adapter.model, ids(adapter.tokenizer, text)):
        result = adapter.generate_text(context, max_new_tokens=30, stop=["<image_restore>"])
    assert result.stopped_on == "<image_restore>"
    return result.context


def _segment(adapter, text):
    return [adapter.token_ids.bos, *ids(adapter.tokenizer, text), adapter.token_ids.eos]


def _kinds(cache, kind):
    return int((cache.layout.kind == int(kind)).sum())


def _restore_both(adapter, context, steps=2):
    """Guided restores with each branch choice (forwards the branches); their latents, same seed."""
    return [
        adapter.restore(
            context,
            num_steps=steps,
            guidance=BagelGuidance(uncond_contexts=which),
            generator=torch.Generator().manual_seed(0),
        ).latent.tokens[0]
        for which in ("clear", "official")
    ]


@torch.no_grad()
def test_first_restore_branches_clear_and_official(adapter, image):
    start = adapter.start_context(image, QUESTION, system_prompt=SYSTEM)
    context = _think(adapter, start, FIRST)
    clear, official = _restore_both(adapter, context)
    assert not torch.allclose(clear, official)
    system, question = len(_segment(adapter, SYSTEM)), len(_segment(adapter, QUESTION))
    think = len(_segment(adapter, FIRST))
    images = _kinds(context.main.cache, TokenKind.VIT) + _kinds(context.main.cache, TokenKind.LATENT) + 4
    main = context.main.cache
    assert len(main) == system + images + question + think
    # CLEAR: text-uncond drops only the model's own think segment; image-uncond every image block
    assert len(context.text_uncond.cache) == len(main) - think
    image_u = context.image_uncond.cache
    assert (
        len(image_u) == system + question + think and not torch.isin(image_u.layout.kind, IMAGE_KINDS).any()
    )
    # official Bagel: text-uncond = system prompt + images; image-uncond = system prompt + question
    off_text, off_image = context.official_text_uncond.cache, context.official_image_uncond.cache
    assert len(off_text) == system + images and torch.isin(off_text.layout.kind, IMAGE_KINDS).any()
    assert len(off_image) == system + question and not torch.isin(off_image.layout.kind, IMAGE_KINDS).any()


@torch.no_grad()
def test_after_a_latent_bridge_image_uncond_is_the_whole_context_like_the_reference(adapter, image):
    """K = 2 with the latent bridge: the reference sets edit_cfg_img_context = deepcopy(gen_context) after
    update_context_vae_from_packed_latent, then appends the next think text to it."""
    context = _think(adapter, adapter.start_context(image, QUESTION, system_prompt=SYSTEM), FIRST)
    restored = adapter.restore(context, num_steps=2, guidance=BagelGuidance()).latent
    bridged = adapter.bridge(restored, context, BridgeMode.BRIDGE)
    again = _think(adapter, bridged, AGAIN)
    _restore_both(adapter, again)
    main, think = again.main.cache, len(_segment(adapter, AGAIN))
    image_u = again.image_uncond.cache
    assert len(image_u) == len(main) and torch.equal(image_u.layout.kind, main.layout.kind)
    assert _kinds(image_u, TokenKind.LATENT) == 2 * 9  # the degraded and the restored latent blocks
    assert len(again.text_uncond.cache) == len(main) - think
    assert len(again.official_text_uncond.cache) == len(main) - think
    texts = len(_segment(adapter, SYSTEM)) + len(_segment(adapter, QUESTION))
    assert len(again.official_image_uncond.cache) == context.official_image_uncond.num_tokens == texts
    assert not image_u.keys[0].requires_grad


@torch.no_grad()
def test_after_a_vit_bridge_image_uncond_gains_only_the_restored_vit_block(adapter, image):
    context = _think(adapter, adapter.start_context(image, QUESTION, system_prompt=SYSTEM), FIRST)
    restored = adapter.restore(context, num_steps=2).latent
    again = _think(adapter, adapter.bridge(restored, context, BridgeMode.DECODE_REENCODE), AGAIN)
    _restore_both(adapter, again)
    image_u, vit_tokens = again.image_uncond.cache, again.items[-2].embeds.shape[0]
    assert _kinds(image_u, TokenKind.LATENT) == 0 and _kinds(image_u, TokenKind.VIT) == vit_tokens
    texts = len(again.text_ids)
    assert len(image_u) == texts + vit_tokens + 2


def test_uncond_contexts_is_validated():
    with pytest.raises(ClearConfigError, match="uncond_contexts='bagel'"):
        BagelGuidance(uncond_contexts="bagel")


@torch.no_grad()
def test_restore_takes_an_explicit_initial_noise(adapter, image):
    context = adapter.start_context(image, QUESTION, system_prompt=SYSTEM)
    drawn = adapter.restore(context, num_steps=3, generator=torch.Generator().manual_seed(7)).latent.tokens[0]
    noise = torch.randn(9, 64, generator=torch.Generator().manual_seed(7))
    given = adapter.restore(context, num_steps=3, noise=noise).latent.tokens[0]
    assert torch.equal(drawn, given)
    other = adapter.restore(context, num_steps=3, noise=noise + 1).latent.tokens[0]
    assert not torch.allclose(other, given)
    with pytest.raises(ClearConfigError, match=r"noise of shape \(4, 64\)"):
        adapter.restore(context, num_steps=3, noise=torch.zeros(4, 64))
    with pytest.raises(ClearConfigError, match="finite"):
        adapter.restore(context, num_steps=3, noise=torch.full((9, 64), float("nan")))


def test_degraded_latent_mode_bridges_the_latent_already_in_the_context(image, monkeypatch):
    model, tokenizer = build_tiny_bagel()
    config = PipelineConfig(num_steps=3, system_prompt=SYSTEM, bridge_mode="degraded_latent")
    adapter = inject(model, tokenizer, options=InjectionOptions(pipeline=config)).adapter
    encoded, bridged = [], []
    encode, bridge = adapter.encoders.encode_latent, adapter.bridge
    monkeypatch.setattr(
        adapter.encoders, "encode_latent", lambda *a, **k: encoded.append(1) or encode(*a, **k)
    )
    monkeypatch.setattr(adapter, "bridge", lambda *a: bridged.append(a) or bridge(*a))
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    script = [*ids(tokenizer, FIRST, "<answer> EXIT </answer>"), eos]
    with scripted(model, script):
        out = model.generate(images=image, questions=QUESTION)
    assert out.num_restores == 1 and len(bridged) == 1 and len(encoded) == 1  # the prefill's encoding only
    latent, context, _ = bridged[0]
    assert latent.tokens[0] is context.degraded.latent.tokens[0]
