"""Rows imported from the authors' release train one SFT step (runs where ``ClearSFTTrainer`` is present)."""

from __future__ import annotations

import math

import pytest
import torch
from bagel_helpers import build_tiny_bagel
from test_data_import import write_release

from clear_plugins.data.release import import_release

sft = pytest.importorskip("clear_plugins.trl_ext.sft", reason="ClearSFTTrainer is not in this build")


def test_one_sft_step_on_imported_release_rows(tmp_path):
    release = write_release(tmp_path / "release", size=32)
    report = import_release(release, tmp_path / "imported")
    assert report.converted == 3 and report.pathways["restore"] == 2
    from clear_plugins.trl_ext.sft_config import ClearSFTConfig

    args = ClearSFTConfig(
        output_dir=str(tmp_path / "out"),
        max_steps=1,
        per_device_train_batch_size=3,
        learning_rate=1e-3,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    model, tokenizer = build_tiny_bagel(0)
    before = model.llm2vae.weight.detach().clone()
    trainer = sft.ClearSFTTrainer(
        model=model, args=args, train_dataset=str(report.output), processing_class=tokenizer
    )
    trainer.train()
    logs = [h for h in trainer.state.log_history if "ce" in h]
    assert len(logs) == 1 and all(math.isfinite(logs[0][k]) for k in ("ce", "mse", "kl", "loss"))
    assert logs[0]["mse"] > 0  # the restore rows' clean images were the flow-matching target
    assert not torch.equal(model.llm2vae.weight, before)
