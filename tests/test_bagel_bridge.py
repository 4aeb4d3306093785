"""The Latent Representation Bridge on Bagel: gradient path (Sec. 3.3), placement per mode, KV-cache reuse."""

from __future__ import annotations

import pytest
import torch
from adapter_contract import photo
from bagel_helpers import QUESTION, SYSTEM, build_tiny_bagel, forward_lengths, ids, scripted, tiny_adapter

from clear_plugins.adapters.bagel.context import LatentItem, VitItem
from clear_plugins.adapters.bagel.generation import score_text
from clear_plugins.adapters.bagel.packing import TokenKind
from clear_plugins.bridge import BridgeMode
from clear_plugins.injection import inject

ANSWER = "<think> It reads EXIT. </think><answer> EXIT </answer>"


@pytest.fixture(scope="module")
def adapter():
    return tiny_adapter()


@pytest.fixture(scope="module")
def image():
    return photo(48)


def _restore_context(adapter, image):
    script = ids(adapter.tokenizer, "<think> blurred </think><image_restore>")
    with torch.no_grad(), scripted(adapter.model, script):
        ctx = adapter.start_context(image, QUESTION, system_prompt=SYSTEM)
        return adapter.generate_text(ctx, max_new_tokens=20, stop=["<image_restore>"]).context


@pytest.mark.parametrize("mode", [BridgeMode.BRIDGE, BridgeMode.DECODE_REENCODE])
def test_answer_loss_reaches_the_generated_latent_only_through_the_bridge(adapter, image, mode):
    context = _restore_context(adapter, image)
    llm2vae = adapter.model.llm2vae.weight
    result = adapter.restore(context, image, num_steps=3, generator=torch.Generator().manual_seed(0))
    latent = result.latent.tokens[0]
    assert latent.requires_grad  # the last denoising step stays in the graph
    answer = ids(adapter.tokenizer, ANSWER)
    logits, _ = score_text(adapter, adapter.bridge(result.latent, context, mode), answer)
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor(answer))
    grad_latent, grad_llm2vae = torch.autograd.grad(loss, [latent, llm2vae], allow_unused=True)
    if mode is BridgeMode.BRIDGE:
        assert grad_latent is not None and grad_latent.abs().sum() > 0
        assert grad_llm2vae is not None and grad_llm2vae.abs().sum() > 0
    else:  # uint8 pixels cut the path
        assert grad_latent is None or not grad_latent.any()
        assert grad_llm2vae is None or not grad_llm2vae.any()


def test_inject_adds_no_parameters():
    model, tokenizer = build_tiny_bagel()
    before = {name: p.shape for name, p in model.named_parameters()}
    injection = inject(model, tokenizer)
    assert {name: p.shape for name, p in model.named_parameters()} == before
    assert not injection.grew_embeddings and len(tokenizer) <= model.config.llm_config.vocab_size
    assert all(len(tokenizer.encode(tag, add_special_tokens=False)) == 1 for tag in injection.tag_ids)


@torch.no_grad()
def test_post_restoration_step_reads_the_cache_and_matches_a_full_reprefill(adapter, image):
    context = _restore_context(adapter, image)
    latent = adapter.restore(context, image, num_steps=3).latent
    prefix = context.num_tokens
    with forward_lengths(adapter.model) as seen:
        bridged = adapter.bridge(latent, context, BridgeMode.BRIDGE)
        result = adapter.generate_text(bridged, max_new_tokens=6)
        cached = adapter.runner.ensure_logits(result.context) if result.context.segment_open else None
    block = latent.tokens[0].shape[0] + 2
    generated = len(result.token_ids)
    fed = (
        generated if cached is not None else generated - 1
    )  # the <|im_start|> opener + chosen tokens but the last
    assert [n for n, _ in seen] == [block] + [1] * (fed + (cached is not None))
    assert max(n for n, _ in seen) < prefix  # nothing before the new image block is re-read
    target = cached if cached is not None else result.context
    replayed = adapter.runner.replay(target)
    assert len(replayed.main.cache) == target.num_tokens == prefix + block + 1 + generated
    if cached is not None:
        torch.testing.assert_close(cached.next_logits, replayed.next_logits, rtol=0, atol=1e-5)
    probe = ids(adapter.tokenizer, ANSWER)
    fast, _ = score_text(adapter, target, probe)
    slow, _ = score_text(adapter, replayed, probe)
    torch.testing.assert_close(fast, slow, rtol=0, atol=1e-5)


@torch.no_grad()
@pytest.mark.parametrize("mode", list(BridgeMode))
def test_each_mode_appends_one_image_block(adapter, image, mode):
    context = _restore_context(adapter, image)
    latent = (
        context.degraded.latent
        if mode is BridgeMode.DEGRADED_LATENT
        else adapter.restore(context, image, num_steps=2).latent
    )
    before, cached_before = context.num_tokens, len(context.main.cache)
    bridged = adapter.bridge(latent, context, mode)
    item = bridged.items[-1]
    kind = TokenKind.VIT if mode is BridgeMode.DECODE_REENCODE else TokenKind.LATENT
    assert isinstance(item, VitItem if kind is TokenKind.VIT else LatentItem)
    added = bridged.main.cache.layout.kind[before:]
    assert len(bridged.main.cache) == before + 9 + 2 and (added[1:-1] == int(kind)).all()
    assert len(set(bridged.main.cache.layout.position[before:].tolist())) == 1  # one RoPE position per block
    if mode is BridgeMode.DECODE_REENCODE:
        pixels = adapter.decode_latent(latent)
        torch.testing.assert_close(item.embeds, adapter.encode_understanding(pixels).embeds[0])
    else:
        assert torch.equal(item.tokens, latent.tokens[0])
    assert (
        context.num_tokens == before and len(context.main.cache) == cached_before
    )  # the old one is untouched
    assert bridged.text_uncond is bridged.main and not bridged.segment_open
    if mode is BridgeMode.DECODE_REENCODE:  # CLEAR's image-uncond branch gains the ViT block ...
        assert bridged.image_uncond.pending[-1].num_tokens == item.num_tokens
    else:  # ... and becomes the whole context after a latent block (the reference's deepcopy(gen_context))
        assert len(bridged.image_uncond.cache) == len(bridged.main.cache) and not bridged.image_uncond.pending


@torch.no_grad()
def test_bridged_text_continues_in_a_new_segment(adapter, image):
    context = _restore_context(adapter, image)
    bos, eos = adapter.token_ids.bos, adapter.token_ids.eos
    restore_id = adapter.tokenizer.convert_tokens_to_ids("<image_restore>")
    assert context.text_ids[-2:] == [restore_id, eos] and not context.segment_open
    bridged = adapter.bridge(adapter.restore(context, image, num_steps=2).latent, context, "bridge")
    result = adapter.generate_text(bridged, max_new_tokens=3)
    kinds = [type(item).__name__ for item in result.context.items]
    assert kinds == ["TextItem", "LatentItem", "VitItem", "TextItem", "LatentItem", "TextItem"]
    assert result.context.items[-1].ids[0] == bos and result.context.items[3].ids[-1] == eos
