"""Stage 1 of CLEAR: supervised fine-tuning on generate-then-answer trajectories (Sec. 3.2) with ClearSFTTrainer.

  clear-plugins train sft --model DIR --data rows.jsonl --output_dir runs/sft
  clear-plugins train sft --model DIR --data rows.jsonl --output_dir runs/sft --preset reference --max_steps 8000
  clear-plugins train sft ... --resume                 # continue from the newest checkpoint in --output_dir

Every field of ClearSFTConfig (CLEAR's settings and all of TRL's SFTConfig / transformers' TrainingArguments) is
a flag with its TRL-style name (--learning_rate, --per_device_train_batch_size, ...). Rows follow the training-row
schema (README, "Training data"). Checkpoints are safetensors; a loss plot (loss.png) is written next to them.
Multi-GPU: run the same command under `accelerate launch` (see examples/accelerate/).
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import sys
from functools import cache
from typing import Any

HELP = "Stage 1: ClearSFTTrainer on generate-then-answer trajectories (Sec. 3.2)."
FIELDS_RESOURCE = "resources/sft_config_fields.json"
"""The field table of ClearSFTConfig (name, kind, default, help), so --help needs no TRL import."""
CONFIG_PREFIX = "cfg__"
COMMAND_FLAGS: tuple[str, ...] = ("model", "weights", "ema", "dtype", "device", "data", "eval_data", "lora_r")
"""Flags of this command that are not ClearSFTConfig fields."""


@cache
def field_table() -> list[dict[str, Any]]:
    """The shipped ClearSFTConfig field table (regenerate with ``python -m clear_plugins.trl_ext.config_fields``)."""
    text = importlib.resources.files("clear_plugins").joinpath(FIELDS_RESOURCE).read_text(encoding="utf-8")
    return json.loads(text)


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model and data")
    group.add_argument(
        "--model",
        required=True,
        metavar="DIR",
        help="An official BAGEL-7B-MoT folder or a folder written by save_pretrained (any installed backbone).",
    )
    group.add_argument(
        "--weights", metavar="DIR_OR_FILE", help="Weights on top of an official --model folder."
    )
    group.add_argument(
        "--ema",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="With --weights: ema.safetensors (--ema) or model.safetensors (--no-ema).",
    )
    group.add_argument(
        "--dtype", default="auto", help="auto (bfloat16 on a GPU, float32 on CPU), bfloat16, float32."
    )
    group.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:N.")
    group.add_argument(
        "--data", required=True, metavar="JSONL", help="Training rows (JSONL next to its images)."
    )
    group.add_argument(
        "--eval-data", "--eval_data", dest="eval_data", metavar="JSONL", help="Evaluation rows (optional)."
    )
    group.add_argument(
        "--lora-r",
        "--lora_r",
        dest="lora_r",
        type=int,
        default=0,
        help="Train LoRA adapters of this rank on both LLM experts instead of the full weights (default 0: full).",
    )
    group.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=None,
        metavar="CHECKPOINT",
        help="Resume: from the newest checkpoint in --output_dir (no value) or from the given checkpoint folder.",
    )


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the model/data flags and one flag per ClearSFTConfig field (help from the field's metadata)."""
    _add_model_arguments(parser)
    group = parser.add_argument_group("training (ClearSFTConfig: CLEAR's fields, then TRL's SFTConfig)")
    for spec in field_table():
        name = spec["name"]
        kwargs: dict[str, Any] = {"dest": CONFIG_PREFIX + name, "default": argparse.SUPPRESS}
        if spec["kind"] == "bool":
            kwargs.update(nargs="?", const="true", metavar="BOOL")
        elif spec["kind"] == "list":
            kwargs.update(nargs="*", metavar="VALUE")
        else:
            kwargs.update(metavar=spec["kind"].upper())
        text = (spec["help"] or "").replace("%", "%%")
        flags = [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else [])
        group.add_argument(*flags, help=f"{text} (default: {spec['default']})", **kwargs)


def config_argv(args: argparse.Namespace) -> list[str]:
    """The ClearSFTConfig flags the user gave, as an argv for transformers' ``HfArgumentParser``."""
    argv: list[str] = []
    for key, value in vars(args).items():
        if not key.startswith(CONFIG_PREFIX):
            continue
        argv.append("--" + key[len(CONFIG_PREFIX) :])
        argv.extend(str(v) for v in (value if isinstance(value, list) else [value]))
    return argv


def run(args: argparse.Namespace) -> int:
    """Load the model and the rows, train, save, plot the losses; clear errors without tracebacks."""
    from clear_plugins.errors import ClearError

    try:
        return _train(args)
    except ClearError as err:
        print(f"clear-plugins train sft: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("clear-plugins train sft: interrupted; resume with --resume.", file=sys.stderr)
        return 130


def _train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from transformers import HfArgumentParser

    from clear_plugins.loading import LoadOptions, load_model
    from clear_plugins.trl_ext.plots import plot_training_log
    from clear_plugins.trl_ext.sft import ClearSFTTrainer
    from clear_plugins.trl_ext.sft_config import ClearSFTConfig

    (config,) = HfArgumentParser(ClearSFTConfig).parse_args_into_dataclasses(
        config_argv(args), look_for_args_file=False
    )
    options = LoadOptions(
        model=args.model, weights=args.weights, ema=args.ema, dtype=args.dtype, device=args.device
    )
    model, tokenizer = load_model(options)
    peft_config = _lora(model, tokenizer, args.lora_r) if args.lora_r else None
    trainer = ClearSFTTrainer(
        model=model,
        args=config,
        train_dataset=args.data,
        eval_dataset=args.eval_data,
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    for report in trainer.load_reports:
        print(f"skipped {report}", file=sys.stderr)
    trainer.train(resume_from_checkpoint=args.resume)
    trainer.save_model()
    plot = plot_training_log(trainer.state.log_history, Path(config.output_dir) / "loss.png")
    print(f"saved the model to {config.output_dir} and the loss plot to {plot}")
    return 0


def _lora(model: Any, tokenizer: Any, rank: int) -> Any:
    from peft import LoraConfig

    from clear_plugins.trl_ext.model_utils import lora_target_modules
    from clear_plugins.trl_ext.sft import find_adapter

    targets = lora_target_modules(find_adapter(model, tokenizer), model)
    return LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=targets)
