"""Stage 2 of CLEAR: Interleaved GRPO (Sec. 3.4) with InterleavedGRPOTrainer.

  clear-plugins train grpo --model DIR --data rows.jsonl --output-dir runs/grpo [--preset reference] ...

Reads training rows (clear_plugins.data.schema: question, answer, degraded_image relative to the JSONL file),
samples G interleaved trajectories per prompt (the restore as an SDE, the bridge into the context), scores them
with accuracy/format/decision rewards (the LLM judge of $CLEAR_JUDGE_BASE_URL with the rule judge as fallback,
else the rule judge) and trains text and image together. Checkpoints are safetensors; --resume continues the
latest one. At the end, grpo_curves.png (reward and trigger rate per step) is written to the output folder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

OK, FAILED, USAGE_ERROR = 0, 1, 2

CONFIG_FLAGS: tuple[str, ...] = (
    "num_generations",
    "learning_rate",
    "beta",
    "epsilon",
    "loss_type",
    "image_loss_weight",
    "num_timesteps",
    "sde_sigma_schedule",
    "sde_sigma",
    "step_selection",
    "image_loss_steps",
    "bridge_mode",
    "max_completion_length",
    "temperature",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "max_steps",
    "num_train_epochs",
    "save_steps",
    "logging_steps",
    "seed",
)
"""InterleavedGRPOConfig fields offered as flags (default: the preset's value; help from the field)."""

PAPER_DEFAULTS: dict[str, Any] = {
    "num_generations": 4,
    "learning_rate": 1e-6,
    "beta": 0.0,
    "epsilon": 0.2,
    "loss_type": "grpo",
    "image_loss_weight": 0.3,
    "num_timesteps": 30,
    "sde_sigma_schedule": "constant",
    "sde_sigma": 0.3,
    "step_selection": "uniform",
    "image_loss_steps": "one",
    "bridge_mode": "bridge",
    "max_completion_length": 512,
    "temperature": 1.0,
    "per_device_train_batch_size": 8,
    "gradient_accumulation_steps": 1,
    "max_steps": -1,
    "num_train_epochs": 3.0,
    "save_steps": 500,
    "logging_steps": 10,
    "seed": 42,
}
"""Defaults shown in --help (the paper preset; --preset reference changes some, see the README)."""

FLAG_HELP: dict[str, str] = {
    "num_generations": "G, trajectories per prompt",
    "learning_rate": "learning rate",
    "beta": "KL weight to the frozen start model (0: no reference)",
    "epsilon": "clip range of the text (and image) ratio",
    "loss_type": "TRL text loss: grpo (Eq. 8), dr_grpo, dapo, bnpo, ...",
    "image_loss_weight": "lambda of the Flow-GRPO image loss (0: text only)",
    "num_timesteps": "restore grid points in rollouts",
    "sde_sigma_schedule": "constant or flow_grpo",
    "sde_sigma": "constant SDE sigma",
    "step_selection": "uniform, round_robin or weighted",
    "image_loss_steps": "one (the method) or all (ablation)",
    "bridge_mode": "bridge or decode_reencode (ablation)",
    "max_completion_length": "text tokens per trajectory",
    "temperature": "text sampling temperature",
    "per_device_train_batch_size": "trajectories per device and step (a multiple of G overall)",
    "gradient_accumulation_steps": "micro-steps per optimizer step",
    "max_steps": "stop after this many steps (-1: epochs decide)",
    "num_train_epochs": "passes over the rows",
    "save_steps": "checkpoint every N steps",
    "logging_steps": "log every N steps",
    "seed": "seed of rollouts and step selection",
}


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``clear-plugins train grpo`` arguments."""
    parser.add_argument(
        "--model", required=True, metavar="DIR", help="Model folder (official or save_pretrained)."
    )
    parser.add_argument("--weights", metavar="PATH", help="Weights on top of an official --model folder.")
    parser.add_argument(
        "--data", required=True, type=Path, metavar="JSONL", help="Training rows (one JSON each)."
    )
    parser.add_argument(
        "--output-dir",
        "--output_dir",
        required=True,
        type=Path,
        metavar="DIR",
        help="Checkpoints, logs, plot.",
    )
    parser.add_argument(
        "--preset",
        choices=("paper", "reference"),
        default="paper",
        help="Defaults to start from (default paper).",
    )
    parser.add_argument(
        "--force-restore",
        "--force_restore",
        action="store_true",
        help="Restore in every rollout (warm-up, ablation).",
    )
    parser.add_argument(
        "--no-decision-reward",
        "--no_decision_reward",
        action="store_true",
        help="Drop R_dec (the reference script's).",
    )
    parser.add_argument(
        "--resume", nargs="?", const="auto", metavar="CHECKPOINT", help="Resume (default: latest)."
    )
    parser.add_argument(
        "--dtype", default="auto", help="auto (bf16 on a GPU, fp32 on the CPU), bfloat16, float32."
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default auto).")
    group = parser.add_argument_group("training (InterleavedGRPOConfig fields)")
    for name in CONFIG_FLAGS:
        default = PAPER_DEFAULTS[name]
        kind = type(default) if not isinstance(default, bool) else str
        group.add_argument(
            f"--{name.replace('_', '-')}",
            *([f"--{name}"] if "_" in name else []),
            type=kind,
            default=None,
            help=f"{FLAG_HELP[name]} (default {default})",
        )


def read_rows(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """GRPO rows from a JSONL file of training rows, and one report per skipped line (index and why)."""
    from clear_plugins.data.schema import TrainingRow, read_jsonl, resolve_image_path

    rows, reports = [], []
    for index, value, problem in read_jsonl(path):
        if problem is None:
            try:
                row = TrainingRow.from_mapping(value)
                image = resolve_image_path(row.degraded_image, path.parent)
                if not image.is_file():
                    raise ValueError(f"degraded_image {str(image)!r} does not exist")
            except ValueError as exc:
                problem = f"line {index + 1}: {exc}"
        if problem is not None:
            reports.append(problem)
            continue
        rows.append(
            {
                "prompt": row.question,
                "question": row.question,
                "answer": row.answer,
                "degraded_image": str(image),
                "system_prompt": row.system_prompt,
            }
        )
    return rows, reports


def plot_curves(log_history: list[dict[str, Any]], path: Path) -> Path | None:
    """Reward and trigger rate per logged step as a PNG; ``None`` when nothing was logged."""
    points = [
        (e["step"], e["reward"], e.get("trigger_rate")) for e in log_history if "reward" in e and "step" in e
    ]
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [p[0] for p in points]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6, 5), sharex=True)
    top.plot(steps, [p[1] for p in points], marker="o")
    top.set_ylabel("reward")
    bottom.plot(
        steps, [p[2] if p[2] is not None else float("nan") for p in points], marker="o", color="tab:red"
    )
    bottom.set_ylabel("trigger rate")
    bottom.set_xlabel("step")
    fig.suptitle("Interleaved GRPO")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _config(args: argparse.Namespace, device: Any) -> Any:
    from clear_plugins.trl_ext.grpo_config import InterleavedGRPOConfig

    values = {name: getattr(args, name) for name in CONFIG_FLAGS if getattr(args, name) is not None}
    return InterleavedGRPOConfig(
        output_dir=str(args.output_dir),
        preset=args.preset,
        force_restore=args.force_restore,
        decision_reward=not args.no_decision_reward,
        use_cpu=str(device) == "cpu",
        bf16=str(device) != "cpu",
        report_to=[],
        save_strategy="steps",
        **values,
    )


def _train(args: argparse.Namespace) -> int:
    from datasets import Dataset

    from clear_plugins.errors import ClearConfigError
    from clear_plugins.injection import inject
    from clear_plugins.loading import LoadOptions, load_model, resolve_device_and_dtype
    from clear_plugins.trl_ext.grpo import InterleavedGRPOTrainer

    if not args.data.is_file():
        raise ClearConfigError(f"--data {str(args.data)!r} is not a file; pass a JSONL of training rows.")
    if args.output_dir.resolve() == args.data.resolve():
        raise ClearConfigError("--output-dir must not be the --data file.")
    rows, reports = read_rows(args.data)
    for report in reports:
        print(f"clear-plugins train grpo: skipped {report}", file=sys.stderr)
    if not rows:
        raise ClearConfigError(f"{args.data} holds no usable training row ({len(reports)} skipped).")
    options = LoadOptions(model=args.model, weights=args.weights, dtype=args.dtype, device=args.device)
    device, _ = resolve_device_and_dtype(options)
    config = _config(args, device)
    model, tokenizer = load_model(options)
    adapter = inject(model, tokenizer).adapter
    trainer = InterleavedGRPOTrainer(
        model, args=config, train_dataset=Dataset.from_list(rows), processing_class=tokenizer, adapter=adapter
    )
    resume = args.resume
    if resume == "auto":
        from transformers.trainer_utils import get_last_checkpoint

        resume = get_last_checkpoint(str(args.output_dir)) if args.output_dir.is_dir() else None
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(str(args.output_dir))
    plot = plot_curves(trainer.state.log_history, args.output_dir / "grpo_curves.png")
    print(f"clear-plugins train grpo: {trainer.state.global_step} steps; model in {args.output_dir}")
    if plot is not None:
        print(f"reward and trigger-rate plot: {plot}")
    return OK


def run(args: argparse.Namespace) -> int:
    """Run ``clear-plugins train grpo``; errors are printed without a traceback."""
    from clear_plugins.errors import ClearError

    try:
        return _train(args)
    except ClearError as err:
        print(f"clear-plugins train grpo: {err}", file=sys.stderr)
        return FAILED
