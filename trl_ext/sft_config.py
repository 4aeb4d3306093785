"""``ClearSFTConfig``: TRL's ``SFTConfig`` plus CLEAR's Stage-1 settings (Sec. 3.2, 4.1; SPEC "Stage 1").

Defaults are the paper's: ``λ_mse = 0.5``, ``λ_kl = 0.1``, lr ``2e-5``, 3 epochs, ViT-block drop 0.4.
``preset="reference"`` switches to the authors' published script (``scripts/train_mix.sh`` with
``train/pretrain_unified_corruption.py`` of the CLEAR repository): MSE weight 1, KL weight 0.4, lr ``1e-5``, AdamW
betas (0.9, 0.95) and eps ``1e-15``, weight decay 0.01, 500 warm-up steps, cosine schedule down to ``1e-7``,
text-segment dropout 0.1 and 32,768-token packed rows. A preset only replaces fields still at their paper value,
so explicit settings win.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trl import SFTConfig

from clear_plugins.errors import ClearConfigError

PRESETS: tuple[str, ...] = ("paper", "reference")
ATTENTION_CHOICES: tuple[str, ...] = ("auto", "flex", "dense")
TRAINABLE_GROUPS: tuple[str, ...] = ("understanding", "generation", "bridge", "vision", "vae")

PAPER_VALUES: dict[str, Any] = {
    "mse_weight": 0.5,
    "kl_weight": 0.1,
    "learning_rate": 2e-5,
    "num_train_epochs": 3.0,
    "vit_drop_prob": 0.4,
    "text_dropout_prob": 0.0,
    "adam_beta2": 0.999,
    "adam_epsilon": 1e-8,
    "weight_decay": 0.0,
    "warmup_steps": 0,
    "lr_scheduler_type": "linear",
    "lr_scheduler_kwargs": None,
    "max_tokens_per_row": None,
}
"""The paper's values (Sec. 4.1; TrainingArguments defaults where the paper is silent)."""

REFERENCE_VALUES: dict[str, Any] = {
    "mse_weight": 1.0,
    "kl_weight": 0.4,
    "learning_rate": 1e-5,
    "adam_beta2": 0.95,
    "adam_epsilon": 1e-15,
    "weight_decay": 0.01,
    "warmup_steps": 500,
    "lr_scheduler_type": "cosine_with_min_lr",
    "lr_scheduler_kwargs": {"min_lr": 1e-7},
    "text_dropout_prob": 0.1,
    "vit_drop_prob": 0.4,
    "max_tokens_per_row": 32768,
}
"""The published script's values (scripts/train_mix.sh; defaults of train/pretrain_unified_corruption.py)."""


@dataclass
class ClearSFTConfig(SFTConfig):
    """Configuration of :class:`~clear_plugins.trl_ext.sft.ClearSFTTrainer` (module docstring).

    Differences from ``SFTConfig``'s defaults: ``bf16`` only when CUDA is available (so CPU runs work as is),
    ``remove_unused_columns=False`` and ``skip_prepare_dataset`` (rows carry images and trajectories, packed by the
    backbone's adapter), ``ddp_find_unused_parameters=True`` (frozen encoders), ``logging_steps=1``.
    """

    preset: str = field(
        default="paper",
        metadata={"help": "'paper' (Sec. 4.1 defaults) or 'reference' (the authors' train_mix.sh values)."},
    )
    mse_weight: float = field(
        default=0.5, metadata={"help": "λ_mse: weight of the velocity (flow-matching) MSE (Sec. 4.1: 0.5)."}
    )
    kl_weight: float = field(
        default=0.1, metadata={"help": "λ_kl: weight of the layer-weighted ViT→latent KL (Sec. 4.1: 0.1)."}
    )
    kl_layer_stride: int = field(
        default=1, metadata={"help": "Distil every k-th decoder layer (and always the last); reference: 1."}
    )
    vit_drop_prob: float = field(
        default=0.4,
        metadata={
            "help": "Probability of dropping the clean image's ViT block in a restore row (SPEC: 0.4)."
        },
    )
    text_dropout_prob: float = field(
        default=0.0,
        metadata={
            "help": "Probability of dropping each text segment (the reference's text-cond dropout, 0.1)."
        },
    )
    timestep_shift: float = field(
        default=1.0, metadata={"help": "Shift of the sampled flow time t = sigmoid(N(0,1)) (reference: 1.0)."}
    )
    max_tokens_per_row: int | None = field(
        default=None,
        metadata={
            "help": "Token budget of one packed row; a batch is packed into as many rows as needed (reference: "
            "32768). None packs each batch into one row."
        },
    )
    packed_attention: str = field(
        default="auto",
        metadata={
            "help": "Attention over packed rows: 'flex' (a flex_attention BlockMask, no dense L×L mask), 'dense' "
            "(a boolean mask with SDPA) or 'auto' (flex when torch provides it)."
        },
    )
    trainable_groups: list[str] | None = field(
        default=None,
        metadata={
            "help": "Parameter groups to train (understanding, generation, bridge, vision, vae); None: the "
            "adapter's default (SPEC: LLM experts + connectors; SigLIP, VAE and position tables frozen)."
        },
    )
    bad_rows: str = field(
        default="skip",
        metadata={"help": "'skip' bad rows with a warning naming each, or 'error' to reject the dataset."},
    )
    system_prompt: str | None = field(
        default=None, metadata={"help": "System prompt for rows without one; None uses the shipped prompt."}
    )
    image_root: str | None = field(
        default=None, metadata={"help": "Folder of relative image paths (default: the JSONL file's folder)."}
    )
    max_restores: int = field(
        default=1, metadata={"help": "Restore blocks a trajectory may hold (K; SPEC: 1)."}
    )
    bf16: bool | None = field(
        default=None,
        metadata={"help": "bf16 mixed precision; None: on when CUDA is available (off on CPU)."},
    )
    logging_steps: float = field(default=1, metadata={"help": "Log every X optimizer steps."})
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Keep every dataset column (the collator reads them); leave False."}
    )
    dataset_kwargs: dict[str, Any] | str | None = field(
        default_factory=lambda: {"skip_prepare_dataset": True},
        metadata={"help": "TRL dataset preparation is skipped: rows are packed by the backbone's adapter."},
    )
    ddp_find_unused_parameters: bool | None = field(
        default=True,
        metadata={
            "help": "DDP: allow parameters without gradient (frozen encoders, batches without images)."
        },
    )

    def __post_init__(self) -> None:
        """Apply the preset, pick bf16 by device, then check CLEAR's fields (errors name field, value and fix)."""
        if self.preset not in PRESETS:
            raise ClearConfigError(f"preset={self.preset!r} must be one of {PRESETS}.")
        if self.preset == "reference":
            for name, value in REFERENCE_VALUES.items():
                if _same(getattr(self, name), PAPER_VALUES[name]):
                    setattr(self, name, value)
        if self.bf16 is None:
            import torch

            self.bf16 = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported() and not self.fp16)
        self._check()
        super().__post_init__()

    def _check(self) -> None:
        for name in ("mse_weight", "kl_weight"):
            if getattr(self, name) < 0:
                raise ClearConfigError(f"{name}={getattr(self, name)!r} must be >= 0 (0 turns the term off).")
        for name in ("vit_drop_prob", "text_dropout_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ClearConfigError(f"{name}={getattr(self, name)!r} must be a probability in [0, 1].")
        if self.kl_layer_stride < 1:
            raise ClearConfigError(f"kl_layer_stride={self.kl_layer_stride!r} must be >= 1 (1: every layer).")
        if self.packed_attention not in ATTENTION_CHOICES:
            raise ClearConfigError(
                f"packed_attention={self.packed_attention!r} must be one of {ATTENTION_CHOICES}."
            )
        if self.bad_rows not in ("skip", "error"):
            raise ClearConfigError(f"bad_rows={self.bad_rows!r} must be 'skip' or 'error'.")
        if self.max_tokens_per_row is not None and self.max_tokens_per_row < 1:
            raise ClearConfigError(f"max_tokens_per_row={self.max_tokens_per_row!r} must be >= 1 or None.")
        unknown = [g for g in self.trainable_groups or () if g not in TRAINABLE_GROUPS]
        if unknown:
            raise ClearConfigError(
                f"trainable_groups has unknown group(s) {unknown}; use {TRAINABLE_GROUPS}."
            )
        if self.max_restores < 1:
            raise ClearConfigError(f"max_restores={self.max_restores!r} must be >= 1.")
        if isinstance(self.dataset_kwargs, dict) and not self.dataset_kwargs.get("skip_prepare_dataset"):
            raise ClearConfigError(
                "dataset_kwargs must keep skip_prepare_dataset=True: CLEAR rows are packed by the adapter, not "
                "tokenised by TRL."
            )


def _same(a: Any, b: Any) -> bool:
    """Whether a field still holds its paper value (enums compare by value)."""
    return getattr(a, "value", a) == getattr(b, "value", b)


__all__ = ["PAPER_VALUES", "PRESETS", "REFERENCE_VALUES", "ClearSFTConfig"]
