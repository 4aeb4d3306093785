"""The restore loop's and the decoder's fast paths: no mask where none is needed, expert routing sorted once,
the cache adopting the attention's concatenation, per-restore key/value buffers that leave the caches untouched,
and gradients through the batched, buffered last step."""

from __future__ import annotations

import pytest
import torch
from adapter_contract import photo
from bagel_helpers import QUESTION, SYSTEM, ids, scripted, tiny_adapter

from clear_plugins.adapters.bagel import modeling_mot
from clear_plugins.adapters.bagel.cache import BagelKVCache
from clear_plugins.adapters.bagel.guidance import BagelGuidance
from clear_plugins.adapters.bagel.packing import LayoutBuilder, Routing, TokenKind
from clear_plugins.bridge import BridgeMode
from clear_plugins.errors import ClearConfigError


@pytest.fixture(scope="module")
def adapter():
    return tiny_adapter()


@pytest.fixture
def masks(monkeypatch):
    """Count the attention masks the MoT model builds."""
    built = []
    original = modeling_mot.attention_mask
    monkeypatch.setattr(modeling_mot, "attention_mask", lambda *a: built.append(1) or original(*a))
    return built


def _layout(*blocks, state=None):
    builder = LayoutBuilder(state)
    for kind, n, noised in blocks:
        builder.text(n) if kind is TokenKind.TEXT else builder.image(n, kind, noised=noised)
    return builder.build()


def test_cache_knows_when_every_query_sees_every_key():
    cache = BagelKVCache(1)
    prefix = _layout((TokenKind.TEXT, 3, False), (TokenKind.VIT, 4, False))
    cache.extend([torch.zeros(1, 1, len(prefix), 2)], [torch.zeros(1, 1, len(prefix), 2)], prefix)
    one = _layout((TokenKind.TEXT, 1, False), state=cache.state)
    noised = _layout((TokenKind.LATENT, 4, True), state=cache.state)
    text = _layout((TokenKind.TEXT, 2, False), state=cache.state)
    two_blocks = _layout((TokenKind.VIT, 2, False), (TokenKind.TEXT, 1, False), state=cache.state)
    assert cache.sees_everything(one) and cache.sees_everything(noised)
    assert not cache.sees_everything(text)  # causal within the block
    assert not cache.sees_everything(two_blocks)
    assert BagelKVCache(1).sees_everything(_layout((TokenKind.VIT, 3, False)))
    other = _layout((TokenKind.TEXT, 1, False), state=cache.state)
    other.sample[:] = 1
    assert not cache.sees_everything(other)  # samples never attend to each other
    with pytest.raises(ClearConfigError, match="cached tokens plus"):
        cache.extend([torch.zeros(1, 1, 2, 2)], [torch.zeros(1, 1, 2, 2)], one)


def test_routing_sorts_once_and_restores_the_order():
    gen = torch.tensor([False, True, True, False, True, False])
    routing = Routing(gen)
    x = torch.arange(6.0)[:, None].repeat(1, 3)
    ordered = routing.sort(x)
    assert ordered[:, 0].tolist() == [0, 3, 5, 1, 2, 4]
    out = routing.apply(ordered, lambda r: r + 100, lambda r: r - 100)
    assert routing.unsort(out)[:, 0].tolist() == [100, -99, -98, 103, -96, 105]
    assert Routing(torch.zeros(4, dtype=torch.bool)).order is None  # one expert: identity


@torch.no_grad()
def test_decoding_and_denoising_build_no_mask(adapter, masks):
    context = adapter.start_context(photo(48), QUESTION, system_prompt=SYSTEM)
    prefill = len(masks)
    assert prefill >= 1  # the prefill's text and image blocks need one
    result = adapter.generate_text(context, max_new_tokens=5)
    assert len(masks) == prefill  # every decoded token (and the opening "<|im_start|>") sees the whole cache
    before = len(masks)
    adapter.restore(result.context, num_steps=4, guidance=BagelGuidance())
    flushed = len(masks) - before  # forwarding the guidance branches' pending texts
    adapter.restore(result.context, num_steps=4, guidance=BagelGuidance())
    assert len(masks) == before + flushed  # the second restore's steps build none


@torch.no_grad()
def test_a_restore_leaves_every_branch_cache_untouched(adapter):
    context = adapter.start_context(photo(48), QUESTION, system_prompt=SYSTEM)
    adapter.restore(context, num_steps=2, guidance=BagelGuidance())  # forwards the branches
    branches = [context.main.cache, context.text_uncond.cache, context.image_uncond.cache]
    snapshot = [(len(c), [k.clone() for k in c.keys], [v.clone() for v in c.values]) for c in branches]
    adapter.restore(context, num_steps=4, guidance=BagelGuidance())
    for cache, (length, keys, values) in zip(branches, snapshot, strict=True):
        assert len(cache) == length and all(k.shape[2] == length for k in cache.keys)
        assert all(torch.equal(a, b) for a, b in zip(cache.keys + cache.values, keys + values, strict=True))


def test_guided_restore_after_a_differentiable_bridge_keeps_the_graph(adapter):
    """The buffers written in place each step must not break autograd through the last step or the bridge."""
    script = ids(adapter.tokenizer, "<think> blurred </think><image_restore>")
    with torch.no_grad(), scripted(adapter.model, script):
        start = adapter.start_context(photo(48), QUESTION, system_prompt=SYSTEM)
        context = adapter.generate_text(start, max_new_tokens=20, stop=["<image_restore>"]).context
    first = adapter.restore(context, num_steps=3, generator=torch.Generator().manual_seed(0)).latent
    bridged = adapter.bridge(first, context, BridgeMode.BRIDGE)
    guidance = BagelGuidance()
    second = adapter.restore(
        bridged, num_steps=3, guidance=guidance, generator=torch.Generator().manual_seed(1)
    )
    loss = second.latent.tokens[0].square().mean()
    (grad,) = torch.autograd.grad(loss, [first.tokens[0]])
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    with torch.no_grad():
        again = adapter.restore(
            bridged, num_steps=3, guidance=guidance, generator=torch.Generator().manual_seed(1)
        )
    torch.testing.assert_close(again.latent.tokens[0], second.latent.tokens[0].detach())
