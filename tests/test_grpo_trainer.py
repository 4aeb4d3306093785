"""InterleavedGRPOTrainer on a tiny Bagel on CPU with the rule judge: training steps, the optimisation claim,
β > 0 with an in-memory model, NaN skipping, judge outages, presets and config checks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from bagel_helpers import tiny_adapter
from grpo_helpers import build_trainer, grpo_args, grpo_dataset

from clear_plugins.errors import ClearConfigError, JudgeError
from clear_plugins.trl_ext.grpo import InterleavedGRPOTrainer
from clear_plugins.trl_ext.grpo_config import REFERENCE_PRESET, InterleavedGRPOConfig


def _snapshot(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _changed(model, before) -> set[str]:
    return {name for name, p in model.named_parameters() if not torch.equal(before[name], p.detach())}


def _logged(trainer, key: str) -> list[float]:
    return [entry[key] for entry in trainer.state.log_history if key in entry]


def test_two_steps_train_text_and_image(tmp_path):
    adapter = tiny_adapter()
    trainer = build_trainer(tmp_path, adapter=adapter)
    before = _snapshot(adapter.model)
    trainer.train()
    assert trainer.state.global_step == 2
    for key in (
        "text/loss",
        "image/loss",
        "trigger_rate",
        "image/ratio_mean",
        "image/clip_fraction",
        "clip_ratio/region_mean",
        "text/ratio_mean",
        "sde/log_prob_mean",
        "time/rollout",
        "time/training_forward",
        "rewards/accuracy_reward/mean",
        "rewards/decision_reward/mean",
    ):
        values = _logged(trainer, key)
        assert len(values) == 2 and all(math.isfinite(v) for v in values), key
    assert _logged(trainer, "trigger_rate") == [1.0, 1.0]
    assert any(v != 0 for v in _logged(trainer, "image/loss"))
    changed = _changed(adapter.model, before)
    groups = adapter.parameter_groups()
    assert "llm2vae.weight" in changed  # only the image loss reaches the velocity head
    assert "language_model.lm_head.weight" in changed
    assert any(name in changed for name in groups["generation"])
    assert _logged(trainer, "text/log_ratio_abs_max")[0] < 1e-4  # first micro-step: on-policy


def _claim_gradients(tmp_path, mode: str):
    """λ = 0: gradients of the text loss alone, and the gradient reaching each latent row of the forward."""
    adapter = tiny_adapter()
    trainer = build_trainer(tmp_path, adapter=adapter, image_loss_weight=0.0, bridge_mode=mode)
    rows = [dict(row) for row in trainer.train_dataset.select([0, 0])]
    inputs = trainer._generate_and_score_completions(rows)
    assert inputs["advantages"].abs().sum() > 0
    latent_rows = []

    def keep(_module, _args, output):
        output.retain_grad()
        latent_rows.append(output)

    handle = adapter.model.vae2llm.register_forward_hook(keep)
    try:
        trainer._compute_loss(adapter.model, inputs).backward()
    finally:
        handle.remove()
    grads = {n: p.grad for n, p in adapter.model.named_parameters()}
    return adapter, grads, latent_rows[0]


def test_optimisation_claim_text_loss_reaches_generation_only_through_the_bridge(tmp_path):
    """λ = 0. Bridge: the text loss reaches the generation expert and vae2llm, and through them every bridged
    block. decode_reencode: the restored image enters as ViT tokens of uint8 pixels, so the only latent rows left
    are the prompt's degraded-image blocks (Bagel's prompt layout): no generation-pathway gradient comes from the
    restored image."""
    adapter, grads, rows = _claim_gradients(tmp_path, "bridge")
    groups = adapter.parameter_groups()
    gen_norm = sum(float(grads[n].norm()) for n in groups["generation"] if grads[n] is not None)
    assert gen_norm > 0 and float(grads["vae2llm.weight"].norm()) > 0
    assert grads["llm2vae.weight"] is None or float(grads["llm2vae.weight"].abs().sum()) == 0  # λ = 0
    blocks = rows.grad.abs().sum(-1).view(4, -1).sum(-1)  # [prompt 0, restored 0, prompt 1, restored 1]
    assert (blocks > 0).all()

    _, grads, reencoded_rows = _claim_gradients(tmp_path, "decode_reencode")
    assert reencoded_rows.shape[0] * 2 == rows.shape[0]  # the prompt blocks only
    assert grads["llm2vae.weight"] is None or float(grads["llm2vae.weight"].abs().sum()) == 0


def test_beta_with_an_in_memory_model_uses_a_frozen_copy(tmp_path):
    adapter = tiny_adapter()
    assert adapter.model.config._name_or_path == ""  # TRL alone would fail to rebuild the reference
    trainer = build_trainer(tmp_path, adapter=adapter, beta=0.04, max_steps=2)
    reference = _snapshot(trainer.ref_model)
    before = _snapshot(adapter.model)
    trainer.train()
    kl = _logged(trainer, "kl")
    assert len(kl) == 2 and kl[0] == pytest.approx(0.0, abs=1e-6) and kl[1] > 0  # the policy moved away
    assert not _changed(trainer.ref_model, reference) and _changed(adapter.model, before)
    assert trainer.ref_model is not adapter.model


def test_a_nan_loss_skips_the_step_with_a_warning(tmp_path, caplog):
    adapter = tiny_adapter()
    trainer = build_trainer(tmp_path, adapter=adapter, max_steps=1)
    trainer._image_loss = lambda inputs, advantages: torch.tensor(float("nan"), requires_grad=True)
    before = _snapshot(adapter.model)
    with caplog.at_level("WARNING", logger="clear_plugins.trl_ext.grpo"):
        trainer.train()
    assert trainer.state.global_step == 1
    assert "non-finite GRPO loss" in caplog.text
    assert _logged(trainer, "skipped_nonfinite") == [1.0]
    assert not _changed(adapter.model, before)


class DownJudge:
    """An LLM judge whose endpoint is down."""

    calls = 0

    def score(self, question: str, answer: str, ground_truth: str) -> float:
        DownJudge.calls += 1
        raise JudgeError("judge endpoint unreachable (connection refused)")


def test_a_judge_outage_falls_back_to_the_rule_judge(tmp_path):
    adapter = tiny_adapter()
    args = grpo_args(tmp_path, max_steps=1)
    trainer = InterleavedGRPOTrainer(
        adapter.model,
        args=args,
        train_dataset=grpo_dataset(tmp_path),
        processing_class=adapter.tokenizer,
        adapter=adapter,
        judge=DownJudge(),
    )
    assert [f.__name__ for f in trainer.reward_funcs] == [
        "accuracy_reward",
        "format_reward",
        "decision_reward",
    ]
    assert args.reward_weights == [0.75, 0.1, 0.15]
    trainer.train()
    assert trainer.state.global_step == 1
    assert len(_logged(trainer, "rewards/accuracy_reward/mean")) == 1
    # random tiny-model text has no <answer>, so check the wrapped judge on an answered completion too
    accuracy = trainer.reward_funcs[0]
    completion = "<think> blurred </think><answer>red</answer>"
    scores = accuracy(
        prompts=["q"], completions=[completion], question=["What colour is the car?"], answer=["red"]
    )
    assert scores == [1.0] and DownJudge.calls > 0


def test_reference_preset_takes_the_published_script_values(tmp_path):
    args = InterleavedGRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, preset="reference")
    for name, value in REFERENCE_PRESET.items():
        assert getattr(args, name) == value, name
    assert args.sde_config().num_timesteps == 20 and args.sde_config().sigma == 0.3
    paper = InterleavedGRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False)
    assert (paper.num_generations, paper.learning_rate, paper.epsilon, paper.loss_type) == (
        4,
        1e-6,
        0.2,
        "grpo",
    )
    assert (paper.image_loss_weight, paper.num_timesteps, paper.beta) == (0.3, 30, 0.0)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("bridge_mode", "degraded_latent", "bridge_mode"),
        ("step_selection", "first", "step_selection"),
        ("image_loss_steps", "some", "image_loss_steps"),
        ("image_loss_weight", -1.0, "image_loss_weight"),
        ("num_timesteps", 1, "num_timesteps"),
        ("sde_sigma_schedule", "cosine", "sigma_schedule"),
        ("preset", "paper2", "preset"),
    ],
)
def test_config_errors_name_the_field(tmp_path, field, value, match):
    with pytest.raises(ClearConfigError, match=match):
        InterleavedGRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, **{field: value})


def test_checkpoints_are_safetensors_and_resume_continues_the_same_run(tmp_path):
    adapter = tiny_adapter()
    (tmp_path / "a").mkdir()
    full = build_trainer(tmp_path / "a", adapter=adapter, save_strategy="steps", save_steps=1)
    full.train()
    checkpoint = tmp_path / "a" / "out" / "checkpoint-1"
    assert (checkpoint / "model.safetensors").is_file() and (checkpoint / "clear_grpo_state.json").is_file()
    assert not list(checkpoint.glob("pytorch_model*.bin"))  # weights in safetensors only

    resumed_adapter = tiny_adapter(seed=1)  # different initial weights: the checkpoint must replace them
    resumed = build_trainer(tmp_path / "a", adapter=resumed_adapter, save_strategy="no")
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.state.global_step == 2
    final = dict(adapter.model.named_parameters())
    for name, p in resumed_adapter.model.named_parameters():
        assert torch.allclose(p, final[name], atol=1e-6), name
    assert _logged(resumed, "reward")[-1] == pytest.approx(_logged(full, "reward")[-1])


def test_an_unreadable_image_is_a_clear_error_naming_it(tmp_path):
    from clear_plugins.errors import ImageInputError

    trainer = build_trainer(tmp_path, max_steps=1)
    (tmp_path / "degraded.png").write_bytes(b"not a png")
    with pytest.raises(ImageInputError, match=r"degraded\.png"):
        trainer.train()


def test_ablation_switches_and_gradient_accumulation_train(tmp_path):
    """All steps injected, weighted selection, Flow-GRPO's σ schedule, decode_reencode and GA = 2 together."""
    adapter = tiny_adapter()
    trainer = build_trainer(
        tmp_path,
        adapter=adapter,
        max_steps=1,
        gradient_accumulation_steps=2,
        image_loss_steps="all",
        step_selection="weighted",
        sde_sigma_schedule="flow_grpo",
        bridge_mode="decode_reencode",
    )
    before = _snapshot(adapter.model)
    trainer.train()
    assert trainer.state.global_step == 1
    assert all(math.isfinite(v) for v in _logged(trainer, "image/loss") + _logged(trainer, "text/loss"))
    assert _logged(trainer, "image/log_ratio_abs_max")[0] < 1e-4  # on-policy within the accumulation window
    assert "llm2vae.weight" in _changed(adapter.model, before)


def test_create_model_card_writes_the_clear_card_with_the_run_record(tmp_path):
    trainer = build_trainer(tmp_path)
    trainer.create_model_card(model_name="me/clear-tiny")  # what push_to_hub calls before uploading
    out = Path(trainer.args.output_dir)
    card = (out / "README.md").read_text()
    record = (out / "clear_training.json").read_text()
    assert "InterleavedGRPOTrainer" in record and '"grpo"' in record
    assert "me/clear-tiny" in card and "CLEAR" in card
    assert "grpo" in card.lower()
    assert json.loads(record)["stages"][-1]["hyperparameters"]["learning_rate"] == trainer.args.learning_rate


def test_reference_preset_keeps_values_set_explicitly(tmp_path):
    args = InterleavedGRPOConfig(
        output_dir=str(tmp_path), preset="reference", learning_rate=1e-5, use_cpu=True, bf16=False
    )
    assert args.learning_rate == 1e-5  # set by the user: the preset does not overwrite it
    assert args.num_generations == REFERENCE_PRESET["num_generations"]  # left at the paper value: replaced
