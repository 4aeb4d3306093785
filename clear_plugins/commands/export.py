"""Export a checkpoint as a Hub folder: safetensors weights, remote code, tokenizer, card.

  clear-plugins export CKPT OUT [--repo-id USER/NAME] [--eval-report REPORT.json] [--system-prompt-file F]

CKPT is a save_pretrained folder (a trainer's output, an earlier export) or an official download layout
(BAGEL-7B-MoT). OUT then loads anywhere clear-plugins is installed with
AutoModel.from_pretrained(OUT, trust_remote_code=True), and model.generate(images=..., questions=...) answers with
restore-then-answer. The card (OUT/README.md) states only what the run's files say: clear_training.json and
trainer_state.json from CKPT, and the eval report given. Upload with 'clear-plugins upload OUT USER/NAME'.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HELP = "Save a trained model with remote code so AutoModel.from_pretrained(trust_remote_code=True) works."


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``export`` arguments."""
    parser.add_argument(
        "checkpoint", type=Path, help="checkpoint folder (save_pretrained or official layout)"
    )
    parser.add_argument("out", type=Path, help="output folder (must not exist, or be empty)")
    parser.add_argument(
        "--max-shard-size",
        default="5GB",
        help="largest weight file; larger models are sharded (default: 5GB)",
    )
    parser.add_argument(
        "--repo-id", help="Hub repo id the card's quick start names (default: the folder name)"
    )
    parser.add_argument("--base-model", help="Hub id of the base weights (default: from clear_training.json)")
    parser.add_argument(
        "--eval-report", type=Path, help="clear_eval_report.json to include and cite in the card"
    )
    parser.add_argument(
        "--guidance-preset",
        help="guidance preset name recorded for inference (default: the checkpoint's, else clear_eval)",
    )
    parser.add_argument(
        "--system-prompt-file",
        type=Path,
        help="text file with the system prompt (default: the shipped prompt)",
    )
    parser.add_argument(
        "--config-overrides",
        type=json.loads,
        help="JSON object of model-config fields for an official layout with non-official sizes (default: none)",
    )
    parser.add_argument(
        "--vae-config",
        type=Path,
        help="diffusers AutoencoderKL config JSON for an official layout with another VAE (default: FLUX.1's)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an earlier export at OUT (default: refuse)"
    )


def run(args: argparse.Namespace) -> int:
    """Export; print where and what, or one error line (exit 1)."""
    from clear_plugins.errors import ClearError
    from clear_plugins.hub_cards.export import ExportOptions, export_checkpoint

    try:
        prompt = args.system_prompt_file.read_text(encoding="utf-8") if args.system_prompt_file else None
        options = ExportOptions(
            max_shard_size=args.max_shard_size,
            guidance_preset=args.guidance_preset,
            system_prompt=prompt,
            base_model=args.base_model,
            repo_id=args.repo_id,
            eval_report=args.eval_report,
            overwrite=args.overwrite,
        )
        loader = {"config_overrides": args.config_overrides} if args.config_overrides else {}
        if args.vae_config:
            loader["vae_config"] = args.vae_config
        result = export_checkpoint(args.checkpoint, args.out, options=options, **loader)
    except (ClearError, OSError) as err:
        print(f"clear-plugins export: {err}", file=sys.stderr)
        return 1
    shards = "sharded weights" if result.sharded else "one weight file"
    print(f"exported {args.checkpoint} to {result.path} ({len(result.files)} files, {shards}, no pickles)")
    print(f"load it with AutoModel.from_pretrained({str(result.path)!r}, trust_remote_code=True)")
    return 0
