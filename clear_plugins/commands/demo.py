"""``clear-plugins demo``: the whole CLEAR method end to end on easy-vqa, on one CPU machine, offline."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "Run the whole method end to end on easy-vqa (offline, CPU): data, SFT, GRPO, eval, export, report."


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the demo's options."""
    parser.description = (
        "Stage 0 (the shipped small unified base, checksum-checked; --from-scratch retrains it), 1 data (App. C, "
        "offline trace writer), 2 SFT, 3 GRPO (rule judge), 4 evaluation at clean/low/mid/hard with bridge "
        "ablations, 5 export with a model card. Each stage is cached under --out: rerunning resumes. Writes "
        "OUT/report.md, OUT/results.json and PNG plots."
    )
    parser.add_argument(
        "--out", type=Path, default=Path("clear-demo"), help="Output folder (default: clear-demo)."
    )
    parser.add_argument(
        "--quick", action="store_true", help="Tiny sizes for CI, about 3 minutes (default: off)."
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of every stage (default: 0).")
    parser.add_argument(
        "--from-scratch",
        action="store_true",
        help="Retrain stage 0 instead of using the shipped base (default: off).",
    )
    parser.add_argument(
        "--pretrain-base",
        action="store_true",
        help="Only train stage 0 into --out (how the shipped base was made; default: off).",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1).")


def run(args: argparse.Namespace) -> int:
    """Run the demo; prints the one-screen summary."""
    if args.threads < 1:
        print(f"clear-plugins demo: error: --threads={args.threads} must be >= 1.", file=sys.stderr)
        return 2
    import logging

    import torch

    torch.set_num_threads(args.threads)
    if args.pretrain_base:
        from clear_plugins.demo.base import BaseTrainConfig, pretrain_base
        from clear_plugins.demo.run import sha256

        logging.basicConfig(level=logging.INFO, format="%(message)s")
        cfg = BaseTrainConfig.quick(args.seed) if args.quick else BaseTrainConfig(seed=args.seed)
        command = " ".join(["clear-plugins", *sys.argv[1:]]) if sys.argv[0].endswith("clear-plugins") else ""
        record = pretrain_base(
            args.out, cfg, command or f"clear-plugins demo --pretrain-base --seed {args.seed}"
        )
        digest = sha256(args.out / "model.safetensors")
        (args.out / "SHA256").write_text(f"{digest}  model.safetensors\n", encoding="utf-8")
        print(f"stage 0 written to {args.out} (gate {'passed' if record['gate']['passed'] else 'FAILED'})")
        return 0 if record["gate"]["passed"] else 1
    from clear_plugins.demo.run import DemoOptions, run_demo
    from clear_plugins.demo.summary import summary

    try:
        results = run_demo(DemoOptions(args.out, args.quick, args.seed, args.from_scratch, args.threads))
    except (ValueError, RuntimeError) as exc:
        print(f"clear-plugins demo: error: {exc}", file=sys.stderr)
        return 1
    print(summary(results, args.out))
    return 0
