"""Trainer integration: a trainer with ClearModelCardMixin writes our card, and records its stage from its args."""

from __future__ import annotations

import json

from bagel_helpers import build_tiny_bagel
from huggingface_hub import ModelCard
from transformers import Trainer, TrainingArguments

from clear_plugins.hub_cards.metadata import read_training
from clear_plugins.hub_cards.trainer import ClearModelCardMixin, record_trainer_stage


class CardTrainer(ClearModelCardMixin, Trainer):
    """A transformers Trainer with our card (what ClearSFTTrainer / InterleavedGRPOTrainer do)."""


def test_trainer_writes_clear_card_with_its_recorded_stage(tmp_path):
    model, _ = build_tiny_bagel()
    args = TrainingArguments(
        output_dir=str(tmp_path / "run"),
        learning_rate=3e-5,
        num_train_epochs=2,
        report_to=[],
        use_cpu=True,
        run_name="sft-tiny-9",
        hub_model_id="me/tiny-clear",
    )
    trainer = CardTrainer(model=model, args=args)
    sft_dir = tmp_path / "sft"
    sft_dir.mkdir()
    (sft_dir / "clear_training.json").write_text(
        json.dumps(
            {
                "format": "clear-training/1",
                "run_id": "base",
                "base_model": "ByteDance-Seed/BAGEL-7B-MoT",
                "stages": [{"stage": "sft", "hyperparameters": {"learning_rate": 2e-05}}],
            }
        )
    )
    record_trainer_stage(
        trainer,
        "grpo",
        dataset={"num_rows": 8, "trace_source": "llm", "trace_model": "gpt-4.1"},
        previous=sft_dir,
    )
    record = read_training(tmp_path / "run")
    assert [s["stage"] for s in record.stages] == ["sft", "grpo"] and record.run_id == "sft-tiny-9"
    assert record.stages[1]["hyperparameters"]["learning_rate"] == 3e-5
    assert record.stages[1]["hyperparameters"]["num_train_epochs"] == 2
    assert record.base_model == "ByteDance-Seed/BAGEL-7B-MoT"
    trainer.create_model_card(model_name="ignored-when-hub-model-id-is-set")
    card = ModelCard.load(tmp_path / "run" / "README.md")
    assert card.data.base_model == "ByteDance-Seed/BAGEL-7B-MoT" and "clear" in card.data.tags
    assert 'from_pretrained("me/tiny-clear"' in card.text and "| `learning_rate` | 3e-05 |" in card.text
    assert "written by an LLM (gpt-4.1)" in card.text and "generated_from_trainer" not in card.content
