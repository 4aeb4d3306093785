"""ClearSFTConfig: paper defaults, the reference preset, validation naming field and fix; LoRA through peft."""

from __future__ import annotations

import pytest
import torch
from bagel_helpers import build_tiny_bagel
from sft_helpers import tiny_config, write_rows

from clear_plugins.errors import ClearConfigError
from clear_plugins.trl_ext.model_utils import lora_target_modules
from clear_plugins.trl_ext.sft import ClearSFTTrainer, find_adapter
from clear_plugins.trl_ext.sft_config import ClearSFTConfig


def test_paper_defaults(tmp_path):
    config = ClearSFTConfig(output_dir=str(tmp_path), use_cpu=True)
    assert (config.mse_weight, config.kl_weight, config.learning_rate) == (0.5, 0.1, 2e-5)
    assert (config.num_train_epochs, config.vit_drop_prob, config.text_dropout_prob) == (3.0, 0.4, 0.0)
    assert config.bf16 is False and config.remove_unused_columns is False  # no CUDA here


def test_reference_preset_and_explicit_values_win(tmp_path):
    config = ClearSFTConfig(output_dir=str(tmp_path), use_cpu=True, preset="reference")
    assert (config.mse_weight, config.kl_weight, config.learning_rate) == (1.0, 0.4, 1e-5)
    assert (config.adam_beta1, config.adam_beta2, config.adam_epsilon) == (0.9, 0.95, 1e-15)
    assert (config.text_dropout_prob, config.weight_decay, config.warmup_steps) == (0.1, 0.01, 500)
    assert config.max_tokens_per_row == 32768 and config.lr_scheduler_kwargs == {"min_lr": 1e-7}
    mine = ClearSFTConfig(output_dir=str(tmp_path), use_cpu=True, preset="reference", kl_weight=0.2)
    assert mine.kl_weight == 0.2 and mine.mse_weight == 1.0


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("preset", "paperz", "preset='paperz'"),
        ("mse_weight", -1.0, "mse_weight=-1.0"),
        ("vit_drop_prob", 1.5, "vit_drop_prob=1.5"),
        ("packed_attention", "fast", "packed_attention='fast'"),
        ("trainable_groups", ["llm"], "unknown group"),
        ("bad_rows", "ignore", "bad_rows='ignore'"),
        ("kl_layer_stride", 0, "kl_layer_stride=0"),
    ],
)
def test_validation_names_the_field(tmp_path, field, value, match):
    with pytest.raises(ClearConfigError, match=match):
        ClearSFTConfig(output_dir=str(tmp_path), use_cpu=True, **{field: value})


def test_trainable_groups_override_the_adapter_default(tmp_path):
    model, tokenizer = build_tiny_bagel()
    data = write_rows(tmp_path / "data", 2)
    args = tiny_config(tmp_path / "out", trainable_groups=["generation"], max_steps=1)
    ClearSFTTrainer(model=model, args=args, train_dataset=str(data), processing_class=tokenizer)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("_moe_gen" in n for n in trainable)


def test_lora_trains_adapters_on_both_experts_only(tmp_path):
    from peft import LoraConfig

    model, tokenizer = build_tiny_bagel()
    targets = lora_target_modules(find_adapter(model, tokenizer), model)
    assert any("_moe_gen" in t for t in targets) and not any("vit_model" in t for t in targets)
    data = write_rows(tmp_path / "data", 2)
    args = tiny_config(tmp_path / "out", max_steps=2, gradient_checkpointing=True)
    trainer = ClearSFTTrainer(
        model=model,
        args=args,
        train_dataset=str(data),
        processing_class=tokenizer,
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights="gaussian"),
    )
    wrapped = trainer.model
    before = {n: p.detach().clone() for n, p in wrapped.named_parameters()}
    trainer.train()
    changed = {n for n, p in wrapped.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("lora_" in n for n in changed)
    assert any("_moe_gen" in n for n in changed)
    trainer.save_model(str(tmp_path / "lora"))
    assert (tmp_path / "lora" / "adapter_model.safetensors").is_file()
