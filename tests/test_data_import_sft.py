"""Rows imported from the authors' release, and a ``data build`` output, train one SFT step."""

from __future__ import annotations

import math

import torch
from bagel_helpers import build_tiny_bagel
from data_fixtures import fake_prober, write_source
from test_data_import import write_release

from clear_plugins.data.build import build_dataset
from clear_plugins.data.config import DataBuildConfig
from clear_plugins.data.release import import_release
from clear_plugins.rewards.judge_rules import RuleJudge
from clear_plugins.trl_ext import sft


def _one_step(rows_path, tmp_path, batch_size: int):
    """Train one step on ``rows_path`` with a tiny Bagel; return the log entry."""
    from clear_plugins.trl_ext.sft_config import ClearSFTConfig

    args = ClearSFTConfig(
        output_dir=str(tmp_path / "out"),
        max_steps=1,
        per_device_train_batch_size=batch_size,
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
        model=model, args=args, train_dataset=str(rows_path), processing_class=tokenizer
    )
    trainer.train()
    logs = [h for h in trainer.state.log_history if "ce" in h]
    assert len(logs) == 1 and all(math.isfinite(logs[0][k]) for k in ("ce", "mse", "kl", "loss"))
    assert not torch.equal(model.llm2vae.weight, before)
    return logs[0]


def test_one_sft_step_on_imported_release_rows(tmp_path):
    release = write_release(tmp_path / "release", size=32)
    report = import_release(release, tmp_path / "imported")
    assert report.converted == 3 and report.pathways["restore"] == 2
    log = _one_step(report.output, tmp_path, batch_size=3)
    assert log["mse"] > 0  # the restore rows' clean images were the flow-matching target


def test_one_sft_step_on_a_data_build_output(tmp_path):
    source = write_source(tmp_path / "src", 4, size=32)
    config = DataBuildConfig(sources=(str(source),), output_dir=str(tmp_path / "built"), writer="offline")
    report = build_dataset(config, prober=fake_prober(), judge=RuleJudge())
    assert report.status == "complete"
    log = _one_step(report.outputs["sft"], tmp_path, batch_size=2)
    assert log["mse"] > 0
