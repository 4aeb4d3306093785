"""Trainer integration: our card instead of TRL's generic one, and the training record the card cites.

The trainers (``ClearSFTTrainer``, ``InterleavedGRPOTrainer``) wire two calls:

- when saving a model: :func:`record_trainer_stage` (writes ``clear_training.json`` into ``args.output_dir``:
  hyperparameters read from ``trainer.args``, the data's provenance, the stages of the starting model);
- ``create_model_card``: :func:`create_clear_model_card` (``transformers.Trainer.push_to_hub`` calls
  ``create_model_card`` before uploading ``output_dir``, so the pushed README is this card).

:class:`ClearModelCardMixin` does the second for a trainer class: ``class ClearSFTTrainer(ClearModelCardMixin,
SFTTrainer)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clear_plugins.hub_cards.metadata import (
    EVAL_FILE,
    TRAINING_FILE,
    record_training_stage,
    training_hyperparameters,
)


def record_trainer_stage(
    trainer: Any,
    stage: str,
    *,
    dataset: dict[str, Any] | None = None,
    base_model: str | None = None,
    previous: str | Path | None = None,
    preset: str | None = None,
) -> Path:
    """Write ``clear_training.json`` for ``trainer``'s run into ``trainer.args.output_dir``.

    Args:
        stage: ``"sft"`` or ``"grpo"``.
        dataset: ``name``, ``path``, ``num_rows``, ``trace_source`` (``"llm"`` | ``"offline"``), ``trace_model``.
        base_model: Hub id of the starting weights (default: the starting model's record, if any).
        previous: folder of the starting model (its ``clear_training.json`` stages come first).
        preset: the config preset (default: ``trainer.args.preset`` when the config has one).
    """
    args = trainer.args
    return record_training_stage(
        args.output_dir,
        stage=stage,
        trainer=type(trainer).__name__,
        hyperparameters=training_hyperparameters(args),
        dataset=dataset,
        preset=preset if preset is not None else getattr(args, "preset", None),
        base_model=base_model,
        run_id=getattr(args, "run_name", None),
        previous=previous,
    )


def create_clear_model_card(trainer: Any, model_name: str | None = None, **_ignored: Any) -> Path:
    """Render our card into ``trainer.args.output_dir/README.md`` (the body of ``create_model_card``).

    ``model_name`` (TRL's argument) becomes the quick start's id; default ``args.hub_model_id``. The card reads
    ``clear_training.json`` / ``trainer_state.json`` / ``clear_eval_report.json`` in ``output_dir`` when present.
    """
    from clear_plugins.hub_cards.cards import write_model_card

    output_dir = Path(trainer.args.output_dir)
    if not trainer.is_world_process_zero():
        return output_dir / "README.md"
    if not (output_dir / "config.json").is_file():
        trainer.model.config.save_pretrained(output_dir)
    model_id = getattr(trainer.args, "hub_model_id", None) or model_name or output_dir.name
    return write_model_card(output_dir, model_id=model_id)


class ClearModelCardMixin:
    """Put before TRL's trainer class: ``create_model_card`` writes the CLEAR card (see the module docstring).

    ``clear_stage`` names the training stage recorded when ``output_dir`` has no ``clear_training.json`` yet.
    """

    clear_stage: str = "unknown"

    def create_model_card(
        self, model_name: str | None = None, dataset_name: str | None = None, tags: Any = None, **kwargs: Any
    ) -> None:
        """Write the CLEAR model card into ``args.output_dir`` (called by ``push_to_hub``)."""
        if self.is_world_process_zero() and not (Path(self.args.output_dir) / TRAINING_FILE).is_file():
            record_trainer_stage(self, self.clear_stage)
        create_clear_model_card(self, model_name=model_name)


__all__ = ["EVAL_FILE", "ClearModelCardMixin", "create_clear_model_card", "record_trainer_stage"]
