"""ClearPipeline over the fake backbone: the loop, K, modes, batching, timings, injection routing."""

from __future__ import annotations

import pytest
from adapter_contract import photo
from fake_backbone import FakeAdapter, FakePlugin, build_fake
from tiny_tokenizer import tiny_tokenizer

from clear_plugins.bridge import BridgeMode
from clear_plugins.errors import ClearConfigError
from clear_plugins.injection import InjectionOptions, inject
from clear_plugins.pipeline import ClearPipeline, PipelineConfig
from clear_plugins.plugins import load_plugins

RESTORE_SCRIPT = (
    "<think> The sign is blurred. </think> <image_restore>",
    " <think> Now it reads EXIT. </think> <answer> EXIT </answer>",
)
DIRECT_SCRIPT = ("<think> Noise, but the car is clearly red. </think> <answer> red </answer>",)


def _pipeline(script, **config):
    model, _ = build_fake(script=script)
    return ClearPipeline(FakeAdapter(model), PipelineConfig(num_steps=4, **config)), model


def test_restore_then_answer():
    pipeline, _ = _pipeline(RESTORE_SCRIPT, decode_restored=True)
    out = pipeline(photo(8), "What does the sign say?")
    assert out.answer == "EXIT" and out.parsed.well_formed
    assert out.triggered and out.num_restores == 1
    assert len(out.restored_images) == 1 and out.restored_images[0].size == (8, 8)
    assert len(out.restore_results) == 1 and len(out.restore_results[0].timesteps) == 4
    assert set(out.seconds) == {"prefill", "text", "restore", "bridge", "total"}
    assert out.seconds["total"] >= out.seconds["restore"] > 0


def test_direct_answer_does_not_restore():
    pipeline, _ = _pipeline(DIRECT_SCRIPT)
    out = pipeline(photo(8), "What colour is the car?")
    assert out.answer == "red" and not out.triggered and out.restore_results == []


def test_the_bridge_puts_the_latent_into_the_context_before_continuing():
    pipeline, model = _pipeline(RESTORE_SCRIPT)
    image = photo(8)
    context = pipeline.adapter.start_context(image, "q", system_prompt="s")
    before = len(context["embeds"])
    seen = []
    original = pipeline.adapter.generate_text

    def spy(context, **kwargs):
        seen.append(len(context["embeds"]))
        return original(context, **kwargs)

    pipeline.adapter.generate_text = spy
    pipeline(image, "q", system_prompt="s")
    tokens = model.config.image_size // model.config.patch
    assert seen == [before, before + tokens * tokens]


def test_at_most_k_restores():
    script = (
        "<think> a </think> <image_restore>",
        " <think> b </think> <image_restore>",
        " <answer> x </answer>",
    )
    pipeline, _ = _pipeline(script)
    out = pipeline(photo(8), "q")
    assert out.num_restores == 1 and not out.parsed.well_formed
    assert pipeline(photo(8), "q", max_restores=2).num_restores == 2
    assert pipeline(photo(8), "q", max_restores=0).num_restores == 0


def test_degraded_latent_mode_skips_denoising():
    pipeline, _ = _pipeline(RESTORE_SCRIPT, bridge_mode="degraded_latent")
    calls = []
    pipeline.adapter.restore = lambda *a, **k: calls.append(1)
    out = pipeline(photo(8), "q")
    assert out.num_restores == 1 and calls == [] and out.answer == "EXIT"


@pytest.mark.parametrize("mode", [BridgeMode.BRIDGE, BridgeMode.DECODE_REENCODE])
def test_modes_run_end_to_end(mode):
    pipeline, _ = _pipeline(RESTORE_SCRIPT, bridge_mode=mode)
    assert pipeline(photo(8), "q").answer == "EXIT"


def test_batched_questions():
    pipeline, _ = _pipeline(DIRECT_SCRIPT)
    outs = pipeline([photo(8), photo(8)], ["q1", "q2"])
    assert [o.answer for o in outs] == ["red", "red"]
    with pytest.raises(ClearConfigError, match="2 images for 1 questions"):
        pipeline([photo(8), photo(8)], ["q1"])


def test_config_is_validated():
    with pytest.raises(ClearConfigError, match="bridge mode 'nope'"):
        PipelineConfig(bridge_mode="nope")
    with pytest.raises(ClearConfigError, match="num_steps=1"):
        PipelineConfig(num_steps=1)


def test_injected_generate_routes_images_through_the_pipeline():
    model, _ = build_fake(script=RESTORE_SCRIPT, vocab_size=320)
    plugins = load_plugins(extra=[FakePlugin()])
    model.generate = lambda *args, **kwargs: ("original", args, kwargs)
    inject(
        model,
        tiny_tokenizer(),
        plugins=plugins,
        options=InjectionOptions(pipeline=PipelineConfig(num_steps=3)),
    )
    out = model.generate(images=photo(8), questions="What does the sign say?")
    assert out.answer == "EXIT" and out.num_restores == 1
    assert len(out.restore_results[0].timesteps) == 3
    assert model.generate(input_ids=[[1, 2]], max_new_tokens=2) == (
        "original",
        (),
        {"input_ids": [[1, 2]], "max_new_tokens": 2},
    )


def test_default_guidance_comes_from_the_adapter():
    pipeline, _ = _pipeline(RESTORE_SCRIPT)
    seen = []
    restore = pipeline.adapter.restore

    def spy(*args, guidance=None, **kwargs):
        seen.append(guidance)
        return restore(*args, guidance=guidance, **kwargs)

    pipeline.adapter.restore = spy
    pipeline(photo(8), "q")  # the fake adapter has no default_guidance: none
    pipeline.adapter.default_guidance = "cfg"
    pipeline(photo(8), "q")
    pipeline(photo(8), "q", guidance=None)  # RL rollouts
    assert seen == [None, "cfg", None]


def test_stochastic_rollouts_default_to_no_guidance_and_matching_grids():
    from clear_plugins.flow import SDEConfig

    assert PipelineConfig(num_steps=5, sde=SDEConfig(num_timesteps=5)).guidance is None
    assert PipelineConfig(num_steps=5).guidance == "default"
    with pytest.raises(ClearConfigError, match=r"num_steps=4 but sde.num_timesteps=30"):
        PipelineConfig(num_steps=4, sde=SDEConfig())
