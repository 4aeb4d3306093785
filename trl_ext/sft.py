"""``ClearSFTTrainer``: Stage 1 of CLEAR (Sec. 3.2) as a thin subclass of TRL's ``SFTTrainer``.

    trainer = ClearSFTTrainer(model=model, args=ClearSFTConfig(output_dir="out"), train_dataset="rows.jsonl",
                              processing_class=tokenizer)
    trainer.train()

What it changes in ``SFTTrainer`` (see ``shared/reference/trl-subclassing.md`` for why):

- data: rows of :mod:`clear_plugins.data.schema` (a JSONL path or a ``datasets.Dataset``), checked up front;
  the collator decodes images lazily; the adapter packs samples into the backbone's rows on the model's device;
- ``compute_loss``: ``CE + λ_mse·MSE + λ_kl·KL`` (:mod:`.losses`) from ``adapter.training_forward``, routed
  through the wrapped model (DDP/FSDP/PEFT) and never through TRL's fused-LM-head ``forward``; each term is logged;
- the loss is a per-micro-batch mean, so ``loss_is_scaled_for_ga = False`` (Trainer divides by the accumulation);
- a non-finite loss (on any process) skips the optimizer step with a warning; frozen encoders stay in eval mode;
- checkpoints (safetensors, by ``Trainer``) carry ``clear_training.json`` with the tag mode and the loss setup.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from transformers import TrainerCallback
from trl import SFTTrainer

from clear_plugins.adapters.base import BackboneAdapter, TrainingOutputs
from clear_plugins.data.loading import load_training_rows
from clear_plugins.errors import ClearConfigError
from clear_plugins.hub_cards.trainer import ClearModelCardMixin
from clear_plugins.training_sample import PackingOptions, TrainingSample

from .collators import SAMPLES_KEY, SKIPPED_KEY, ClearSFTCollator
from .losses import clear_sft_loss, layer_weighted_kl, text_cross_entropy, velocity_mse
from .model_utils import (
    frozen_modules,
    routed_forward,
    select_trainable,
    set_frozen_eval,
    trainable_names,
    zero_loss,
)
from .sft_config import ClearSFTConfig

logger = logging.getLogger(__name__)

METADATA_FILE = "clear_training.json"
"""Written into every checkpoint and the final output folder."""


def find_adapter(model: Any, tokenizer: Any) -> BackboneAdapter:
    """The registered adapter for ``model`` (built-ins and installed plugins)."""
    from clear_plugins.plugins import load_plugins

    return load_plugins().adapter_for(model)(model, tokenizer)


def sft_terms(outputs: Sequence[TrainingOutputs], kl_stride: int, want_kl: bool) -> dict[str, torch.Tensor]:
    """CE, MSE and KL over the packed rows of one micro-batch, each a mean over the whole micro-batch."""
    n_text = sum(o.text_labels.numel() for o in outputs)
    with_target = [o for o in outputs if o.image_target is not None and o.image_output.shape[0] > 0]
    n_latent = sum(o.image_output.shape[0] for o in with_target)
    pairs = [
        int(o.extra["distill_pair"].max()) + 1 if o.extra["distill_pair"].numel() else 0 for o in outputs
    ]
    ce = sum(text_cross_entropy(o.text_logits, o.text_labels, normalizer=n_text) for o in outputs)
    mse = sum(
        (velocity_mse(o.image_output, o.image_target, normalizer=n_latent) for o in with_target), ce * 0
    )
    kl = ce * 0
    if want_kl and sum(pairs):
        kl = sum(
            layer_weighted_kl(
                o.hidden_states,
                o.extra["distill_a"],
                o.extra["distill_b"],
                o.extra["distill_pair"],
                stride=kl_stride,
                normalizer=sum(pairs),
            )
            for o, n in zip(outputs, pairs, strict=True)
            if n
        )
    return {"ce": ce, "mse": mse, "kl": kl}


def batch_seed(seed: int, step: int, samples: Sequence[TrainingSample]) -> int:
    """A seed for one micro-batch's flow times, noise and dropouts, fixed by (seed, optimizer step, row indices),
    so a resumed run draws exactly what the uninterrupted run drew."""
    key = f"{seed}:{step}:{[s.index for s in samples]}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little") & ((1 << 63) - 1)


class _StepGuard(TrainerCallback):
    """Drops the gradients of an optimizer step whose window saw a non-finite loss (the step does nothing)."""

    def __init__(self, trainer: ClearSFTTrainer) -> None:
        self.trainer = trainer

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        """Set every gradient to ``None`` (AdamW then skips the parameter) when the window had a NaN."""
        if self.trainer._nonfinite_in_window:
            logger.warning(
                "step %d: non-finite loss in this step; the optimizer step is skipped.", state.global_step
            )
            self.trainer.model.zero_grad(set_to_none=True)
        self.trainer._nonfinite_in_window = False
        return control

    def on_save(self, args, state, control, **kwargs):
        """Write the training metadata into the checkpoint just saved."""
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and folder.is_dir():
            self.trainer.write_metadata(folder)
        return control


class ClearSFTTrainer(ClearModelCardMixin, SFTTrainer):
    """TRL ``SFTTrainer`` for CLEAR's generate-then-answer trajectories (module docstring).

    Args:
        model: a loaded backbone (``PreTrainedModel``) a registered adapter drives.
        args: a :class:`ClearSFTConfig`.
        train_dataset: a JSONL path of training rows, or a ``datasets.Dataset`` with the schema's columns.
        processing_class: the tokenizer.
        adapter: the backbone adapter (default: found through the plugins).
        peft_config: a ``peft`` config (LoRA); see :func:`~.model_utils.lora_target_modules` for targets.
    """

    clear_stage = "sft"

    loss_is_scaled_for_ga = False
    _tag_names: ClassVar[list[str]] = ["trl", "sft", "clear"]
    _name = "CLEAR SFT"

    def __init__(
        self,
        model: Any,
        args: ClearSFTConfig | None = None,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        processing_class: Any = None,
        *,
        adapter: BackboneAdapter | None = None,
        peft_config: Any = None,
        data_collator: Any = None,
        callbacks: list | None = None,
        optimizers: tuple = (None, None),
    ) -> None:
        if isinstance(model, (str, os.PathLike)):
            raise ClearConfigError(
                "pass a loaded model object (e.g. from clear_plugins.loading.load_model), not a path."
            )
        args = args if args is not None else ClearSFTConfig(output_dir="clear-sft")
        if not isinstance(args, ClearSFTConfig):
            raise ClearConfigError(f"args must be a ClearSFTConfig, got {type(args).__name__}.")
        if train_dataset is None:
            raise ClearConfigError(
                "train_dataset is required: a JSONL path of training rows or a datasets.Dataset."
            )
        self.adapter = adapter if adapter is not None else find_adapter(model, processing_class)
        self.load_reports: list = []
        train_dataset = self._rows(train_dataset, args)
        if eval_dataset is not None:
            eval_dataset = self._rows(eval_dataset, args)
        if peft_config is None:
            select_trainable(model, trainable_names(self.adapter, model, args.trainable_groups))
        self._frozen = frozen_modules(self.adapter, model)
        self._nonfinite_in_window = False
        self.tag_mode = getattr(model.config, "clear_tag_mode", "token")
        model.config.clear_tag_mode = self.tag_mode  # config.json of every checkpoint records the mode
        super().__init__(
            model=model,
            args=args,
            data_collator=data_collator or ClearSFTCollator(args.system_prompt),
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            peft_config=peft_config,
            callbacks=callbacks,
            optimizers=optimizers,
        )
        self.add_callback(_StepGuard(self))

    def _rows(self, source: Any, args: ClearSFTConfig) -> Any:
        dataset, reports = load_training_rows(
            source, image_root=args.image_root, bad_rows=args.bad_rows, max_restores=args.max_restores
        )
        self.load_reports.extend(reports)
        return dataset

    # -- loss --------------------------------------------------------------------------------------------------
    def packing_options(self, samples: Sequence[TrainingSample]) -> PackingOptions:
        """How this micro-batch is packed: the config's settings and a generator seeded by :func:`batch_seed`."""
        args = self.args
        return PackingOptions(
            max_tokens_per_row=args.max_tokens_per_row,
            vit_drop_prob=args.vit_drop_prob,
            text_dropout_prob=args.text_dropout_prob,
            timestep_shift=args.timestep_shift,
            output_hidden_states=args.kl_weight > 0,
            attention=args.packed_attention,
            generator=torch.Generator().manual_seed(batch_seed(args.seed, self.state.global_step, samples)),
        )

    def micro_batch_loss(self, rows: Sequence[Any]) -> dict[str, torch.Tensor]:
        """The routed forward: ``training_forward`` on every packed row, then the loss.

        Runs as the wrapped model's ``forward`` so DDP sees one output per step, and that output holds only the loss
        (the terms are detached): parameters reached by outputs the loss does not use (e.g. ``llm2vae`` on a rank
        whose rows have no restore block) would leave DDP waiting for gradients that never come.
        """
        args = self.args
        outputs = [self.adapter.training_forward(row) for row in rows]
        terms = sft_terms(outputs, args.kl_layer_stride, args.kl_weight > 0)
        loss = clear_sft_loss(
            terms["ce"], terms["mse"], terms["kl"], mse_weight=args.mse_weight, kl_weight=args.kl_weight
        )
        return {"loss": loss, **{name: value.detach() for name, value in terms.items()}}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """``CE + λ_mse·MSE + λ_kl·KL`` over the micro-batch; logs ``ce``, ``mse``, ``kl``, ``skipped_rows``."""
        mode = "train" if self.model.training else "eval"
        if mode == "train":
            set_frozen_eval(self._frozen)
        samples = inputs[SAMPLES_KEY]
        self._metrics[mode]["skipped_rows"].append(float(len(inputs[SKIPPED_KEY])))
        result: dict[str, torch.Tensor] = {}
        if samples:
            rows = self.adapter.pack_training_samples(samples, self.packing_options(samples))
            with routed_forward(model, self.micro_batch_loss), self.accelerator.autocast():
                result = dict(model(rows))
        loss = result.pop("loss") if result else zero_loss(model)
        finite = torch.isfinite(loss.detach()).float()
        if self.accelerator.num_processes > 1:
            finite = self.accelerator.reduce(finite, reduction="mean")
        if float(finite) < 1.0:
            logger.warning(
                "non-finite loss %s at step %d (rows %s); skipping this step.",
                float(loss.detach()),
                self.state.global_step,
                [s.index for s in samples],
            )
            self._nonfinite_in_window = True
            self._metrics[mode]["nan_skipped"].append(1.0)
            loss = zero_loss(model)
        elif result:
            for name, value in result.items():
                self._metrics[mode][name].append(float(self.accelerator.gather(value).mean()))
        return (loss, result) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Evaluation: the same loss without gradients (no logits are returned)."""
        with torch.no_grad():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    # -- metadata --------------------------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        """What a checkpoint records about this training run."""
        args = self.args
        return {
            "stage": "sft",
            "clear_tag_mode": self.tag_mode,
            "adapter": type(self.adapter).__name__,
            "model_type": getattr(self.model.config, "model_type", None),
            "preset": args.preset,
            "mse_weight": args.mse_weight,
            "kl_weight": args.kl_weight,
            "kl_layer_stride": args.kl_layer_stride,
            "vit_drop_prob": args.vit_drop_prob,
            "text_dropout_prob": args.text_dropout_prob,
            "trainable_groups": args.trainable_groups,
            "peft": hasattr(self.model, "peft_config"),
        }

    def write_metadata(self, folder: str | Path) -> Path:
        """Write :meth:`metadata` as ``clear_training.json`` into ``folder``."""
        path = Path(folder) / METADATA_FILE
        path.write_text(json.dumps(self.metadata(), indent=2) + "\n", encoding="utf-8")
        return path

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Save as ``Trainer`` does (safetensors) and record the training metadata next to the weights."""
        super().save_model(output_dir, _internal_call)
        folder = Path(output_dir or self.args.output_dir)
        if self.accelerator.is_main_process and folder.is_dir():
            self.write_metadata(folder)


__all__ = ["METADATA_FILE", "ClearSFTConfig", "ClearSFTTrainer", "batch_seed", "find_adapter", "sft_terms"]
