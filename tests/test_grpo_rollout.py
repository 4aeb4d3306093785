"""GRPO rollouts on a tiny Bagel: one shared prefill per group, distinct rollouts, SDE records, and the on-policy
ratio test — the training forward reproduces every rollout's token log-probs and chosen-step log-densities."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from adapter_contract import photo
from bagel_helpers import ids, scripted, tiny_adapter

from clear_plugins.flow import SDEConfig
from clear_plugins.tags import sampling_vocabulary, tag_mode
from clear_plugins.trl_ext import grpo_batch
from clear_plugins.trl_ext.grpo_losses import image_log_probs
from clear_plugins.trl_ext.rollout import RolloutOptions, rollout_group

QUESTION = "What does the sign say?"
SDE = SDEConfig(num_timesteps=5)


@pytest.fixture(scope="module")
def adapter():
    return tiny_adapter()


@pytest.fixture(scope="module")
def image():
    return photo(32)


def _options(**overrides) -> RolloutOptions:
    values = {"max_new_tokens": 8, "sde": SDE, "force_restore": True, "system_prompt": "Be brief."}
    return RolloutOptions(**{**values, **overrides})


def test_one_prefill_per_group_and_rollouts_differ(adapter, image, monkeypatch):
    calls = []
    original = type(adapter).start_context

    def counting(self, *args, **kwargs):
        calls.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(adapter), "start_context", counting)
    group = rollout_group(adapter, image, QUESTION, num_generations=3, options=_options(), seeds=[1, 2, 3])
    assert len(calls) == 1
    assert all(t.sample.prompt is group.trajectories[0].sample.prompt for t in group.trajectories)
    texts = {tuple(t.completion_ids) for t in group.trajectories}
    latents = [t.restore.latent.tokens[0] for t in group.trajectories]
    assert len(texts) == 3
    assert not torch.equal(latents[0], latents[1]) and not torch.equal(latents[1], latents[2])
    again = rollout_group(adapter, image, QUESTION, num_generations=1, options=_options(), seeds=[2])
    assert again.trajectories[0].completion_ids == group.trajectories[1].completion_ids  # seeded


def test_sde_records_without_graphs_and_bookkeeping(adapter, image):
    trajectory = rollout_group(
        adapter, image, QUESTION, num_generations=1, options=_options(), seeds=[7]
    ).trajectories[0]
    steps = trajectory.restore.steps
    assert len(steps) == SDE.num_timesteps - 1
    assert all(
        not s.x_t.requires_grad and not s.x_next.requires_grad and not s.log_prob.requires_grad for s in steps
    )
    assert torch.equal(steps[-1].x_next, trajectory.restore.latent.tokens[0])
    first, rest = trajectory.sample.segments
    placeholder = len(first)
    assert trajectory.completion_ids[placeholder] == 0 and trajectory.completion_mask[placeholder] == 0
    assert trajectory.token_positions == [
        *range(placeholder),
        *range(placeholder + 1, placeholder + 1 + len(rest)),
    ]
    assert trajectory.forced and trajectory.restored


def test_the_model_asking_for_restoration_triggers_it(adapter, image):
    script = ids(adapter.tokenizer, "<think> blurred </think><image_restore>")
    options = _options(force_restore=False, max_new_tokens=20)
    with scripted(adapter.model, script):
        trajectory = rollout_group(
            adapter, image, QUESTION, num_generations=1, options=options, seeds=[0]
        ).trajectories[0]
    assert trajectory.restored and not trajectory.forced
    assert trajectory.text.startswith("<think> blurred </think><image_restore>")
    first = trajectory.sample.segments[0]
    assert first[-1] == adapter.token_ids.eos and trajectory.completion_mask[len(first) - 1] == 0  # appended


def _replay(adapter, trajectories, samples):
    """Training-forward log-probs of every trajectory and the image log-densities of the injected steps."""
    inputs = grpo_batch.trl_inputs(trajectories, samples, torch.zeros(len(samples)), 0, "cpu")
    outputs = adapter.training_forward(adapter.pack_rollouts(samples))
    logps, _ = grpo_batch.token_logps(
        outputs,
        inputs["token_positions"],
        inputs["completion_ids"].shape[1],
        temperature=1.0,
        vocabulary=sampling_vocabulary(adapter.tokenizer, tag_mode(adapter.model.config)),
        compute_entropy=False,
    )
    steps, _ = grpo_batch.flat_steps(samples)
    image = None
    if steps:
        data = grpo_batch.step_tensors(steps, SDE, "cpu")
        image = (
            image_log_probs(
                data["x_t"],
                outputs.image_output.float(),
                data["x_next"],
                data["t"],
                data["t_next"],
                data["sigma"],
                data["index"],
            )
            - data["old"]
        )
    return (logps - inputs["old_per_token_logps"]) * inputs["completion_mask"], image


@pytest.mark.parametrize("mode", ["bridge", "decode_reencode"])
@pytest.mark.parametrize("which", ["one", "all"])
def test_on_policy_ratio_is_one_for_text_and_image(adapter, image, mode, which):
    group = rollout_group(
        adapter, image, QUESTION, num_generations=2, options=_options(bridge_mode=mode), seeds=[3, 4]
    )
    trajectories = group.trajectories
    samples = [
        replace(t.sample, steps=list(t.restore.steps) if which == "all" else [t.restore.steps[k + 1]])
        for k, t in enumerate(trajectories)
    ]
    with torch.no_grad():
        text, image_ratio = _replay(adapter, trajectories, samples)
    assert sum(t.completion_mask.count(1) for t in trajectories) > 10
    assert text.abs().max() < 1e-4
    assert image_ratio.numel() == (2 * (SDE.num_timesteps - 1) if which == "all" else 2)
    assert image_ratio.abs().max() < 1e-4


def test_on_policy_ratio_without_restoration_and_mixed_batches(adapter, image):
    plain = rollout_group(
        adapter, image, QUESTION, num_generations=2, options=_options(force_restore=False), seeds=[5, 6]
    ).trajectories
    restored = rollout_group(
        adapter, image, QUESTION, num_generations=1, options=_options(), seeds=[8]
    ).trajectories
    assert not any(t.restored for t in plain)
    trajectories = [*plain, *restored]
    samples = [t.sample for t in plain] + [replace(restored[0].sample, steps=[restored[0].restore.steps[0]])]
    with torch.no_grad():
        text, image_ratio = _replay(adapter, trajectories, samples)
    assert text.abs().max() < 1e-4 and image_ratio.abs().max() < 1e-4


def test_a_changed_model_moves_the_ratio(adapter, image):
    """The ratio test can fail: perturbing llm2vae and lm_head after the rollout changes both log-probs."""
    group = rollout_group(adapter, image, QUESTION, num_generations=1, options=_options(), seeds=[9])
    trajectory = group.trajectories[0]
    samples = [replace(trajectory.sample, steps=[trajectory.restore.steps[0]])]
    model = adapter.model
    saved = (model.llm2vae.weight.detach().clone(), model.language_model.lm_head.weight.detach().clone())
    try:
        with torch.no_grad():
            model.llm2vae.weight.add_(0.05)
            model.language_model.lm_head.weight.mul_(1.5)
            text, image_ratio = _replay(adapter, [trajectory], samples)
    finally:
        with torch.no_grad():
            model.llm2vae.weight.copy_(saved[0])
            model.language_model.lm_head.weight.copy_(saved[1])
    assert text.abs().max() > 1e-3 and image_ratio.abs().max() > 1e-3


def test_a_backbone_without_grpo_support_says_so():
    from fake_backbone import FakeAdapter, build_fake

    model, _ = build_fake()
    with pytest.raises(NotImplementedError, match="pack_rollouts"):
        FakeAdapter(model).pack_rollouts([])
