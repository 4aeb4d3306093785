"""Restore-then-answer on a tiny Bagel: context layout, text generation from the cache, the injected generate()."""

from __future__ import annotations

import pytest
import torch
from adapter_contract import photo
from bagel_helpers import QUESTION, SYSTEM, build_tiny_bagel, forward_lengths, ids, scripted, tiny_adapter

from clear_plugins.adapters.bagel.adapter import BagelAdapter
from clear_plugins.adapters.bagel.context import LatentItem, TextItem, VitItem
from clear_plugins.adapters.bagel.packing import TokenKind
from clear_plugins.adapters.bagel.testing import TINY_TOKEN_IDS
from clear_plugins.adapters.base import TextSampling
from clear_plugins.bridge import BridgeMode
from clear_plugins.errors import ClearConfigError
from clear_plugins.injection import InjectionOptions, inject
from clear_plugins.pipeline import PipelineConfig
from clear_plugins.trajectory import SPECIAL_TAGS

FIRST = "<think> The sign is blurred. </think><image_restore>"
SECOND = "<think> Now it reads EXIT. </think><answer> EXIT </answer>"
DIRECT = "<think> The car is clearly red. </think><answer> red </answer>"


@pytest.fixture(scope="module")
def adapter():
    return tiny_adapter()


@pytest.fixture(scope="module")
def image():
    return photo(48)


def _injected(**options):
    model, tokenizer = build_tiny_bagel()
    injection = inject(
        model,
        tokenizer,
        options=InjectionOptions(pipeline=PipelineConfig(num_steps=3, system_prompt=SYSTEM, **options)),
    )
    return model, tokenizer, injection


def _script(tokenizer, *segments: str) -> list[int]:
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    return [i for segment in segments for i in ids(tokenizer, segment)] + [eos]


@torch.no_grad()
def test_start_context_layout(adapter, image):
    context = adapter.start_context(image, QUESTION, system_prompt=SYSTEM)
    kinds = [type(item) for item in context.items]
    assert kinds == [TextItem, LatentItem, VitItem, TextItem]
    bos, eos = adapter.token_ids.bos, adapter.token_ids.eos
    system, question = context.items[0].ids, context.items[3].ids
    assert system == (bos, *ids(adapter.tokenizer, SYSTEM), eos)
    assert question == (bos, *ids(adapter.tokenizer, QUESTION), eos)
    layout = context.main.cache.layout
    p = len(system)
    vae = layout.kind == int(TokenKind.LATENT)
    vit = layout.kind == int(TokenKind.VIT)
    assert set(layout.position[vae].tolist()) == {p} and set(layout.position[vit].tolist()) == {p + 1}
    assert layout.position[-len(question)] == p + 2
    assert context.degraded.latent.grids == [(3, 3)] and context.degraded.vit.grids == [(3, 3)]
    assert len(context.text_uncond.cache) == len(context.main.cache) - len(question)
    assert len(context.image_uncond.cache) == 0 and context.image_uncond.num_tokens == len(system) + len(
        question
    )


@torch.no_grad()
def test_generate_text_continues_from_the_cache_and_closes_on_a_stop(adapter, image):
    context = adapter.start_context(image, QUESTION, system_prompt=SYSTEM)
    script = ids(adapter.tokenizer, FIRST)
    with forward_lengths(adapter.model) as seen, scripted(adapter.model, script):
        result = adapter.generate_text(context, max_new_tokens=50, stop=["<image_restore>"])
    assert result.text == FIRST and result.stopped_on == "<image_restore>"
    assert result.token_ids == [*script, adapter.token_ids.eos]
    assert [n for n, _ in seen] == [1] * len(script)  # <|im_start|>, then one new token per step
    assert not result.context.segment_open and result.context.main.pending[-1].ids[-2:] == (
        script[-1],
        adapter.token_ids.eos,
    )
    with scripted(adapter.model, script[:3]):
        budget = adapter.generate_text(context, max_new_tokens=3)
    assert budget.stopped_on is None and budget.context.segment_open and len(budget.token_ids) == 3


@torch.no_grad()
def test_sampling_is_seeded_and_greedy_by_default(adapter, image):
    context = adapter.start_context(image, QUESTION, system_prompt=SYSTEM)

    def run(sampling=None):
        return adapter.generate_text(context, max_new_tokens=8, sampling=sampling).token_ids

    greedy = run()
    assert run() == greedy and run(TextSampling(do_sample=True, top_p=1e-6, seed=0)) == greedy
    seeded = run(TextSampling(do_sample=True, temperature=2.0, seed=1))
    assert run(TextSampling(do_sample=True, temperature=2.0, seed=1)) == seeded
    assert run(TextSampling(do_sample=True, temperature=2.0, seed=2)) != seeded
    assert max(seeded) < len(adapter.tokenizer)  # spare embedding rows are never sampled
    with pytest.raises(ClearConfigError, match="temperature=0"):
        run(TextSampling(do_sample=True, temperature=0.0))


@pytest.mark.parametrize("mode", list(BridgeMode))
def test_injected_generate_restores_then_answers(image, mode, monkeypatch):
    model, tokenizer, injection = _injected(bridge_mode=mode.value)
    placed = []
    bridge = injection.adapter.bridge
    monkeypatch.setattr(injection.adapter, "bridge", lambda *a: placed.append(bridge(*a)) or placed[-1])
    with scripted(model, _script(tokenizer, FIRST, SECOND)):
        out = model.generate(images=image, questions=QUESTION, decode_restored=True)
    assert out.answer == "EXIT" and out.parsed.well_formed and out.num_restores == 1
    assert out.text == FIRST + SECOND
    assert set(out.seconds) == {"prefill", "text", "restore", "bridge", "total"}
    assert out.seconds["total"] >= out.seconds["prefill"] + out.seconds["text"] + out.seconds["bridge"]
    expected = VitItem if mode is BridgeMode.DECODE_REENCODE else LatentItem
    assert len(placed) == 1 and isinstance(placed[0].items[-1], expected)
    if mode is BridgeMode.DEGRADED_LATENT:
        assert out.restore_results == [] and out.restored_images == []
    else:
        assert len(out.restore_results) == 1 and len(out.restore_results[0].timesteps) == 3
        assert out.seconds["restore"] > 0 and out.restored_images[0].size == (48, 48)


def test_at_most_k_restores_and_direct_answers(image):
    model, tokenizer, _ = _injected()
    twice = _script(tokenizer, FIRST, FIRST, SECOND)
    with scripted(model, twice):
        once = model.generate(images=image, questions=QUESTION)
    assert once.num_restores == 1 and not once.parsed.well_formed  # the second tag is plain text at K = 1
    with scripted(model, twice):
        out = model.generate(images=image, questions=QUESTION, max_restores=2)
    assert out.num_restores == 2 and out.parsed.well_formed and out.answer == "EXIT"
    with scripted(model, _script(tokenizer, DIRECT)):
        direct = model.generate(images=image, questions=QUESTION)
    assert direct.answer == "red" and not direct.triggered and direct.seconds["restore"] == 0


def test_inference_guides_and_rollouts_do_not(image):
    model, tokenizer, _ = _injected()
    counts = []
    for guidance in ("default", None):
        with scripted(model, _script(tokenizer, FIRST, SECOND)), forward_lengths(model) as seen:
            out = model.generate(images=image, questions=QUESTION, guidance=guidance)
        assert out.num_restores == 1
        counts.append(sum(noised for _, noised in seen))
    assert counts == [3 * 2, 2]  # 3 grid points: 2 velocity evaluations, three branches with CFG


def test_batched_questions_and_an_unforced_model(image):
    model, tokenizer, _ = _injected()
    with scripted(model, _script(tokenizer, FIRST, SECOND)):
        outs = model.generate(images=[image, photo(32)], questions=[QUESTION, "And now?"])
    assert [o.answer for o in outs] == ["EXIT", "EXIT"] and all(o.num_restores == 1 for o in outs)
    free = model.generate(images=image, questions=QUESTION, max_new_tokens=6)  # the random model's own text
    assert isinstance(free.text, str) and free.num_restores <= 1 and not free.parsed.well_formed


def test_text_needs_a_tokenizer(image):
    model, _ = build_tiny_bagel()
    with pytest.raises(ClearConfigError, match="no tokenizer"):
        BagelAdapter(model, token_ids=TINY_TOKEN_IDS).start_context(image, QUESTION, system_prompt=SYSTEM)


@torch.no_grad()
def test_tags_registered_as_special_tokens_still_reach_the_text(image):
    adapter = tiny_adapter(tags=False)
    adapter.tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TAGS)})
    adapter.model.config.clear_tag_mode = "token"  # the tags are tokens here, so their rows may be sampled
    assert all(tag in adapter.tokenizer.all_special_tokens for tag in SPECIAL_TAGS)
    context = adapter.start_context(image, QUESTION, system_prompt=SYSTEM)
    script = ids(adapter.tokenizer, FIRST)
    with scripted(adapter.model, script):
        result = adapter.generate_text(context, max_new_tokens=50, stop=["<image_restore>"])
    assert result.text == FIRST and result.stopped_on == "<image_restore>"
