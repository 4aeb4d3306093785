"""Stages 1, 2, 3 and 5 of the demo, each a thin call of the project's public API for that stage.

Stage 1 is ``data build`` (App. C) with the base model as the probe (:class:`~.scoring.DirectProber`), the rule
judge and the offline trace writer; stage 2 is ``ClearSFTTrainer``; stage 3 is ``InterleavedGRPOTrainer`` with the
rule judge; stage 5 is ``export_model`` with its model card. A stage whose API is missing from this installation
raises :class:`StageUnavailable`, which the demo reports instead of inventing numbers.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .world import DEMO_SYSTEM_PROMPT, image_paths, sample_questions


class StageUnavailable(RuntimeError):
    """A stage's API is not part of this installation (the message says which import failed)."""


@dataclass
class StageSizes:
    """How much each stage does (default run vs ``--quick``)."""

    data_samples: int = 480
    sft_steps: int = 500
    sft_batch: int = 8
    sft_lr: float = 3e-3
    grpo_steps: int = 12
    grpo_prompts: int = 4
    grpo_generations: int = 4
    grpo_lr: float = 1e-4
    grpo_max_completion: int = 96
    eval_questions: int = 32
    restore_steps: int = 10

    @classmethod
    def quick(cls) -> StageSizes:
        """The ``--quick`` sizes (CI): every stage runs, on little data."""
        return cls(
            data_samples=24,
            sft_steps=4,
            sft_batch=4,
            grpo_steps=1,
            grpo_prompts=2,
            grpo_generations=2,
            grpo_max_completion=24,
            eval_questions=6,
            restore_steps=3,
        )


def _need(module: str, what: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise StageUnavailable(f"{what} is not available in this installation ({module}: {exc})") from exc


def write_source(path: Path, n: int, seed: int) -> Path:
    """An easy-vqa train source JSONL (``id``, ``image``, ``question``, ``answer``); colour/shape weighted 3×."""
    rows = sample_questions("train", n, seed, oversample_kinds=3)
    paths = image_paths("train")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for k, q in enumerate(rows):
            record = {"id": f"q{k}", "image": paths[q.image_id], "question": q.question, "answer": q.answer}
            fh.write(json.dumps(record) + "\n")
    return path


def build_data(adapter: Any, out: Path, sizes: StageSizes, seed: int) -> dict[str, Any]:
    """Stage 1: App. C on easy-vqa with the base model as the probe; returns ``data build``'s stats."""
    build = _need("clear_plugins.data.build", "data build (App. C pipeline)")
    from clear_plugins.data.config import DataBuildConfig
    from clear_plugins.rewards.judge_rules import RuleJudge

    from .scoring import DirectProber

    source = write_source(out / "source" / "easyvqa_train.jsonl", sizes.data_samples, seed)
    config = DataBuildConfig(
        sources=(str(source),),
        output_dir=str(out / "build"),
        num_samples=sizes.data_samples,
        seed=seed,
        writer="offline",
        probe_system_prompt=DEMO_SYSTEM_PROMPT,
        progress=False,
    )
    report = build.build_dataset(config, prober=DirectProber(adapter), judge=RuleJudge())
    if report.status != "complete":
        raise RuntimeError(f"data build stopped: {report.status}: {report.message}")
    stats = report.stats or json.loads((out / "build" / "stats.json").read_text(encoding="utf-8"))
    return {
        "sft": str(out / "build" / "sft.jsonl"),
        "grpo": str(out / "build" / "grpo.jsonl"),
        "stats": stats,
    }


def train_sft(adapter: Any, rows: str, out: Path, sizes: StageSizes, seed: int) -> dict[str, Any]:
    """Stage 2: ``ClearSFTTrainer`` on the SFT rows; saves the model under ``out/model``."""
    sft = _need("clear_plugins.trl_ext.sft", "ClearSFTTrainer")
    from clear_plugins.trl_ext.sft_config import ClearSFTConfig

    args = ClearSFTConfig(
        output_dir=str(out),
        max_steps=sizes.sft_steps,
        per_device_train_batch_size=sizes.sft_batch,
        learning_rate=sizes.sft_lr,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        logging_steps=10,
        seed=seed,
        disable_tqdm=True,
        gradient_checkpointing=False,
        dataloader_num_workers=0,
        system_prompt=DEMO_SYSTEM_PROMPT,
        timestep_shift=3.0,
        kl_weight=0.0,
    )
    trainer = sft.ClearSFTTrainer(
        adapter.model, args=args, train_dataset=rows, processing_class=adapter.tokenizer, adapter=adapter
    )
    result = trainer.train()
    trainer.save_model(str(out / "model"))
    adapter.model.eval()
    return {
        "train_loss": float(result.training_loss),
        "steps": int(result.global_step),
        "log": [h for h in trainer.state.log_history if "loss" in h],
    }


def grpo_rows(path: str) -> list[dict[str, Any]]:
    """GRPO rows (TRL ``prompt`` + schema columns) from the training-row JSONL of stage 1."""
    from clear_plugins.data.schema import TrainingRow, read_jsonl, resolve_image_path

    rows = []
    for _index, value, problem in read_jsonl(Path(path)):
        if problem is not None:
            continue
        row = TrainingRow.from_mapping(value)
        image = resolve_image_path(row.degraded_image, Path(path).parent)
        rows.append(
            {
                "prompt": row.question,
                "question": row.question,
                "answer": row.answer,
                "degraded_image": str(image),
                "system_prompt": DEMO_SYSTEM_PROMPT,
            }
        )
    return rows


def train_grpo(adapter: Any, rows_path: str, out: Path, sizes: StageSizes, seed: int) -> dict[str, Any]:
    """Stage 3: ``InterleavedGRPOTrainer`` with the rule judge; saves the model under ``out/model``."""
    grpo = _need("clear_plugins.trl_ext.grpo", "InterleavedGRPOTrainer")
    from datasets import Dataset

    from clear_plugins.rewards.judge_rules import RuleJudge
    from clear_plugins.trl_ext.grpo_config import InterleavedGRPOConfig

    rows = grpo_rows(rows_path)
    random.Random(seed).shuffle(rows)
    need = sizes.grpo_steps * sizes.grpo_prompts
    rows = (rows * (need // max(len(rows), 1) + 1))[: max(need, 1)]
    args = InterleavedGRPOConfig(
        output_dir=str(out),
        use_cpu=True,
        bf16=False,
        max_steps=sizes.grpo_steps,
        per_device_train_batch_size=sizes.grpo_prompts * sizes.grpo_generations,
        num_generations=sizes.grpo_generations,
        max_completion_length=sizes.grpo_max_completion,
        num_timesteps=sizes.restore_steps + 1,
        learning_rate=sizes.grpo_lr,
        report_to=[],
        logging_steps=1,
        activation_checkpointing=False,
        save_strategy="no",
        seed=seed,
        system_prompt=DEMO_SYSTEM_PROMPT,
        timestep_shift=3.0,
        disable_tqdm=True,
    )
    trainer = grpo.InterleavedGRPOTrainer(
        adapter.model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=adapter.tokenizer,
        adapter=adapter,
        judge=RuleJudge(),
    )
    result = trainer.train()
    trainer.save_model(str(out / "model"))
    adapter.model.eval()
    keep = ("reward", "loss", "step")
    log = [{k: v for k, v in h.items() if any(w in k for w in keep)} for h in trainer.state.log_history]
    return {"train_loss": float(result.training_loss), "steps": int(result.global_step), "log": log}


def export(adapter: Any, out: Path, eval_report: Path | None) -> dict[str, Any]:
    """Stage 5: export the final model with its model card (``AutoModel.from_pretrained(…,
    trust_remote_code=True)`` loads it)."""
    hub = _need("clear_plugins.hub_cards.export", "export_model (model cards)")
    options = hub.ExportOptions(
        overwrite=True,
        system_prompt=DEMO_SYSTEM_PROMPT,
        repo_id="clear-plugins-demo",
        eval_report=eval_report,
    )
    result = hub.export_model(adapter.model, adapter.tokenizer, out, options=options)
    return {"path": str(result.path), "files": result.files}
