"""Bagel presets: the reference values as data, applied to an adapter with sizes clipped to the model's tables."""

from __future__ import annotations

from pathlib import Path

import pytest
from adapter_contract import photo
from bagel_helpers import build_tiny_bagel

from clear_plugins.adapters.bagel.adapter import BagelAdapter
from clear_plugins.adapters.bagel.guidance import BagelGuidance
from clear_plugins.adapters.bagel.presets import DEFAULT_PRESET, PRESETS, clipped_spec, get_preset
from clear_plugins.adapters.bagel.testing import tiny_bagel_config
from clear_plugins.errors import ClearConfigError

README = Path(__file__).resolve().parents[1] / "README.md"


def test_reference_values():
    evaluation, demo, edit = (get_preset(n) for n in ("clear_eval", "clear_demo", "bagel_edit"))
    assert DEFAULT_PRESET == "clear_eval" and evaluation.num_steps == 30 and evaluation.source_num_steps == 50
    assert (evaluation.text_scale, evaluation.image_scale, evaluation.interval) == (3.0, 1.5, (0.4, 1.0))
    assert evaluation.renorm_type == "text_channel" and evaluation.vit_max_size == 518
    assert (evaluation.vae_max_size, evaluation.vae_min_size, evaluation.vit_min_size) == (1024, 512, 224)
    assert (demo.text_scale, demo.image_scale, demo.interval, demo.renorm_type) == (
        4.0,
        2.0,
        (0.4, 1.0),
        "global",
    )
    assert (edit.interval, edit.renorm_type, edit.num_steps, edit.vit_max_size) == (
        (0.0, 1.0),
        "text_channel",
        50,
        980,
    )
    assert all(p.timestep_shift == 3.0 and p.renorm_min == 0.0 for p in PRESETS.values())


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ClearConfigError, match="clear_eval, clear_demo, bagel_edit"):
        get_preset("fast")


def test_the_adapter_guides_with_the_default_preset():
    model, tokenizer = build_tiny_bagel()
    assert BagelAdapter(model, tokenizer).default_guidance == get_preset(DEFAULT_PRESET).guidance()


@pytest.mark.parametrize("name", list(PRESETS))
def test_apply_sets_guidance_grid_and_clipped_sizes(name):
    model, tokenizer = build_tiny_bagel()
    adapter = BagelAdapter(model, tokenizer)
    fields = adapter.apply_preset(name)
    preset = get_preset(name)
    assert fields["num_steps"] == preset.num_steps == adapter.restore_config.num_timesteps
    assert (
        isinstance(fields["guidance"], BagelGuidance) and fields["guidance"].text_scale == preset.text_scale
    )
    assert adapter.restore_config.timestep_shift == preset.timestep_shift
    # the tiny tables hold 8 tokens per side: 112 px for the ViT, 128 px for the VAE
    assert adapter.vit_transform.spec.max_size == 112 and adapter.vae_transform.spec.max_size == 128
    context = adapter.start_context(photo(300), "q", system_prompt="")
    assert context.degraded.latent_grid == (8, 8)
    assert adapter.describe_preset(name)["source"] == preset.source


def test_a_large_table_keeps_the_preset_sizes():
    config = tiny_bagel_config(
        max_latent_size=64,
        vit_max_num_patch_per_side=70,
        vit_config={"image_size": 980},
    )
    from clear_plugins.adapters.bagel.modeling_bagel import BagelForConditionalGeneration

    adapter = BagelAdapter(BagelForConditionalGeneration(config), build_tiny_bagel()[1])
    adapter.apply_preset("clear_eval")
    assert adapter.vit_transform.spec.max_size == 518 and adapter.vae_transform.spec.max_size == 1024
    assert adapter.vit_transform.spec.min_size == 224 and adapter.vae_transform.spec.min_size == 512


def test_clipping_keeps_the_stride():
    spec = clipped_spec(518, 224, 14, 10**6, largest=100)
    assert spec.max_size == 98 and spec.min_size == 98 and spec.max_size % 14 == 0


def test_readme_table_lists_every_preset_and_its_source():
    text = README.read_text(encoding="utf-8")
    for preset in PRESETS.values():
        row = next((line for line in text.splitlines() if line.startswith(f"| `{preset.name}`")), None)
        assert row is not None, f"README has no table row for {preset.name}"
        path = preset.source.split(": ", 1)[1].split(" ")[0]
        assert path in row and f"{preset.text_scale:g}" in row and preset.renorm_type in row
