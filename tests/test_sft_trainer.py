"""ClearSFTTrainer on a tiny Bagel on CPU: what trains, the three loss terms, gradient reach, GA, NaN skip."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from bagel_helpers import build_tiny_bagel
from sft_helpers import tiny_config, write_rows

from clear_plugins.trl_ext.sft import ClearSFTTrainer


def _frozen(name: str) -> bool:
    return name.startswith(("vit_model.", "vae.")) or "pos_embed" in name


def _trainer(tmp_path, rows=4, **overrides):
    model, tokenizer = build_tiny_bagel()
    data = write_rows(tmp_path / "data", rows)
    args = tiny_config(tmp_path / "out", **overrides)
    return ClearSFTTrainer(model=model, args=args, train_dataset=str(data), processing_class=tokenizer)


def test_three_steps_train_what_should_train_and_log_three_finite_terms(tmp_path):
    trainer = _trainer(
        tmp_path, per_device_train_batch_size=4, vit_drop_prob=0.0, gradient_checkpointing=True
    )
    model = trainer.model
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer.train()
    logs = [h for h in trainer.state.log_history if "ce" in h]
    assert len(logs) == 3
    for entry in logs:
        for key in ("ce", "mse", "kl", "loss"):
            assert math.isfinite(entry[key]), (key, entry)
        assert entry["mse"] > 0 and entry["kl"] > 0 and entry["ce"] > 0
    trainable = set(trainer.adapter.default_trainable_parameters())
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    frozen = [n for n, _ in model.named_parameters() if _frozen(n)]
    assert frozen and not changed & set(frozen), "frozen parameters moved"
    assert changed <= trainable
    for must in ("llm2vae.weight", "vae2llm.weight", "connector.fc1.weight", "language_model.lm_head.weight"):
        assert must in changed, must
    assert any("_moe_gen" in n for n in changed) and any("time_embedder" in n for n in changed)
    # frozen encoders stayed in eval mode while the rest trained
    assert not model.vit_model.training and not model.vae.training and model.language_model.training


def _grads(trainer, mse_weight, kl_weight):
    trainer.args.mse_weight, trainer.args.kl_weight = mse_weight, kl_weight
    model = trainer.model
    model.zero_grad(set_to_none=True)
    model.train()
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.compute_loss(model, batch).backward()
    return {
        n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p))
        for n, p in model.named_parameters()
    }


def test_mse_and_kl_reach_the_generation_side_gradients(tmp_path):
    """TRL patches model.forward for its fused LM head; the image terms must still reach the gradients."""
    trainer = _trainer(tmp_path, per_device_train_batch_size=4, vit_drop_prob=0.0)
    assert "forward" in vars(trainer.model), "TRL's fused-LM-head patch is installed on the instance"
    text_only = _grads(trainer, 0.0, 0.0)
    with_mse = _grads(trainer, 0.5, 0.0)
    with_kl = _grads(trainer, 0.0, 0.1)
    assert text_only["llm2vae.weight"].abs().sum() == 0
    assert with_mse["llm2vae.weight"].abs().sum() > 0
    gen = [n for n in text_only if "_moe_gen" in n and "layers.0" in n]
    assert any(not torch.allclose(with_mse[n], text_only[n]) for n in gen), (
        "MSE must move the generation expert"
    )
    assert any(not torch.allclose(with_kl[n], text_only[n]) for n in gen), (
        "KL must move the generation expert"
    )


def test_gradient_accumulation_logs_the_mean_not_the_sum(tmp_path):
    trainer = _trainer(
        tmp_path, per_device_train_batch_size=1, gradient_accumulation_steps=2, max_steps=1, learning_rate=0.0
    )
    model = trainer.model
    batches = list(trainer.get_train_dataloader())[:2]
    with torch.no_grad():
        model.train()
        expected = sum(float(trainer.compute_loss(model, b)) for b in batches) / 2
    trainer._metrics["train"].clear()
    trainer.train()
    logged = trainer.state.log_history[0]["loss"]
    assert logged == pytest.approx(expected, rel=1e-4)


def test_nan_loss_skips_the_step_with_a_warning(tmp_path, caplog):
    trainer = _trainer(tmp_path, max_steps=1)
    original = trainer.adapter.training_forward

    def poisoned(batch, **kwargs):
        out = original(batch, **kwargs)
        out.text_logits = out.text_logits * float("nan")
        return out

    trainer.adapter.training_forward = poisoned
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    with caplog.at_level(logging.WARNING):
        trainer.train()
    assert "non-finite loss" in caplog.text
    assert all(torch.equal(p, before[n]) for n, p in trainer.model.named_parameters())
    assert trainer.state.log_history[0]["nan_skipped"] == 1.0


def test_create_model_card_writes_the_clear_card(tmp_path):
    trainer = _trainer(tmp_path)
    trainer.create_model_card(model_name="me/clear-sft")  # what push_to_hub calls before uploading
    card = (tmp_path / "out" / "README.md").read_text()
    assert "me/clear-sft" in card and "ClearSFTTrainer" in card
    assert "generated from trainer" not in card.lower()  # not TRL's / transformers' generic card
