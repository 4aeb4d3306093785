"""Shared pieces of the GRPO tests: a tiny Bagel, a one-image dataset, a trainer over both."""

from __future__ import annotations

from typing import Any

from adapter_contract import photo
from bagel_helpers import tiny_adapter

from clear_plugins.rewards import RewardConfig, make_reward_functions
from clear_plugins.rewards.judge_rules import RuleJudge

QUESTION = "What colour is the car?"


def distinct_characters(completions: list[str], **kwargs: Any) -> list[float]:
    """A TRL-style reward that differs between random completions (so advantages are not all zero)."""
    return [len(set(c)) / 10.0 for c in completions]


def grpo_dataset(tmp_path, rows: int = 4):
    """``rows`` identical rows of the training-row schema (plus TRL's ``prompt``), the image saved as a PNG."""
    from datasets import Dataset

    path = tmp_path / "degraded.png"
    photo(32).save(path)
    row = {"prompt": QUESTION, "question": QUESTION, "answer": "red", "degraded_image": path.name}
    return Dataset.from_list([row] * rows)


def grpo_args(tmp_path, **overrides: Any):
    """A CPU configuration small enough for tests: G 2, 2 rows per step, 4-point restores, forced restores."""
    from clear_plugins.trl_ext.grpo_config import InterleavedGRPOConfig

    values: dict[str, Any] = {
        "output_dir": str(tmp_path / "out"),
        "image_root": str(tmp_path),
        "use_cpu": True,
        "bf16": False,
        "max_steps": 2,
        "per_device_train_batch_size": 2,
        "num_generations": 2,
        "max_completion_length": 6,
        "num_timesteps": 4,
        "force_restore": True,
        "learning_rate": 1e-3,
        "report_to": [],
        "logging_steps": 1,
        "activation_checkpointing": False,
        "save_strategy": "no",
        "seed": 0,
    }
    values.update(overrides)
    return InterleavedGRPOConfig(**values)


def build_trainer(tmp_path, *, adapter=None, reward_funcs="default", **overrides: Any):
    """An InterleavedGRPOTrainer on a tiny Bagel with the rule judge (+ a varying TRL-style reward)."""
    from clear_plugins.trl_ext.grpo import InterleavedGRPOTrainer

    adapter = adapter if adapter is not None else tiny_adapter()
    if reward_funcs == "default":
        reward_funcs = [*make_reward_functions(RewardConfig(), RuleJudge()), distinct_characters]
        overrides.setdefault("reward_weights", [*RewardConfig().reward_weights, 1.0])
    args = grpo_args(tmp_path, **overrides)
    return InterleavedGRPOTrainer(
        adapter.model,
        reward_funcs=reward_funcs,
        args=args,
        train_dataset=grpo_dataset(tmp_path),
        processing_class=adapter.tokenizer,
        adapter=adapter,
        judge=RuleJudge(),
    )
