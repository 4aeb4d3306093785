"""Checkpoints (safetensors + CLEAR metadata) and resume: a resumed run continues exactly as an uninterrupted one."""

from __future__ import annotations

import json

import torch
from bagel_helpers import build_tiny_bagel
from sft_helpers import tiny_config, write_rows
from transformers import TrainerCallback

from clear_plugins.trl_ext.sft import METADATA_FILE, ClearSFTTrainer


class _CountSteps(TrainerCallback):
    def __init__(self):
        self.steps = []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)


def _run(tmp_path, data, out, resume=None, max_steps=4):
    model, tokenizer = build_tiny_bagel()
    args = tiny_config(
        out, max_steps=max_steps, save_strategy="steps", save_steps=2, per_device_train_batch_size=2
    )
    counter = _CountSteps()
    trainer = ClearSFTTrainer(
        model=model, args=args, train_dataset=str(data), processing_class=tokenizer, callbacks=[counter]
    )
    trainer.train(resume_from_checkpoint=resume)
    trainer.steps_run = counter.steps
    losses = {
        h["step"]: (h["loss"], h["ce"], h["mse"], h["kl"]) for h in trainer.state.log_history if "ce" in h
    }
    return trainer, losses


def test_checkpoint_files_and_resume_equivalence(tmp_path):
    data = write_rows(tmp_path / "data", 6)
    full, full_losses = _run(tmp_path, data, tmp_path / "full")
    checkpoint = tmp_path / "full" / "checkpoint-2"
    assert (checkpoint / "model.safetensors").is_file()
    assert not list(checkpoint.glob("pytorch_model*")), "weights are saved as safetensors only"
    meta = json.loads((checkpoint / METADATA_FILE).read_text())
    mode = getattr(full.model.config, "clear_tag_mode", "token")
    assert meta["stage"] == "sft" and meta["clear_tag_mode"] == mode and meta["mse_weight"] == 0.5
    config = json.loads((checkpoint / "config.json").read_text())
    assert config["clear_tag_mode"] == mode

    resumed, resumed_losses = _run(tmp_path, data, tmp_path / "resumed", resume=str(checkpoint))
    assert resumed.steps_run == [3, 4], "the resumed run trains only the steps after the checkpoint"
    for step in (3, 4):
        assert resumed_losses[step] == full_losses[step], step  # same data order, same draws, same loss
    for (name, a), (_, b) in zip(
        full.model.named_parameters(), resumed.model.named_parameters(), strict=True
    ):
        assert torch.allclose(a, b, atol=1e-7), name
