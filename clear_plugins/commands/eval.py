"""Evaluate a model on MMD-Bench and write the paper's tables (Tables 1/9, 2, 4, 10, 11; Fig. 5).

  clear-plugins eval run BENCH [BENCH ...] -o RUN --model-kind openai --model NAME --base-url URL
  clear-plugins eval run BENCH -o RUN --model-kind hf --model PATH           (transformers image-text-to-text)
  clear-plugins eval run BENCH -o RUN --model-kind clear --model PATH        (ClearPipeline over its adapter)
  clear-plugins eval report RUN [--iqa]
  clear-plugins eval compare RUN_A RUN_B [-o OUT]
  clear-plugins eval iqa IMAGE [--clean CLEAN]

BENCH is a folder written by 'clear-plugins bench build' (its manifest names the clean source, which is the
'clean' level). 'run' is resumable: RUN/predictions.jsonl gets one line per finished row after every batch, and
rerunning the same command skips them. Multiple-choice and yes/no answers are matched by rule; open-ended
answers are scored by the LLM judge at --judge-base-url (or $CLEAR_JUDGE_BASE_URL), else by the rule judge.
'report' writes RUN/report.md, report.json and PNGs (matplotlib, the 'eval' extra); with --iqa it adds Table 4
(BRISQUE, NIQE, PSNR, SSIM of restored images saved by 'run --save-restored'), computed offline. 'compare'
prints B - A per level, benchmark, corruption and category with paired bootstrap intervals and says when a
difference is within noise. API keys are read from environment variables only.
"""

from __future__ import annotations

import argparse
import sys

HELP = "Evaluate a model on MMD-Bench levels and write the paper's tables, plots, comparisons and IQA."
USAGE_ERROR = 2
RUN_ERROR = 1


def _add_run(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="Evaluate a model on built benchmarks x levels (resumable).")
    run.add_argument(
        "benchmarks", nargs="+", metavar="BENCH", help="Folders built by 'clear-plugins bench build'."
    )
    run.add_argument(
        "-o", "--output", required=True, metavar="RUN", help="Run folder (created; resumed if present)."
    )
    run.add_argument(
        "--model-kind", choices=("openai", "hf", "clear"), required=True, help="How to reach the model."
    )
    run.add_argument("--model", required=True, help="Model name (openai) or local folder (hf, clear).")
    run.add_argument("--base-url", help="OpenAI-compatible /v1 URL (--model-kind openai).")
    run.add_argument(
        "--api-key-env",
        default="OPENAI_API_KEY",
        help="Variable holding the endpoint's key (default: OPENAI_API_KEY).",
    )
    run.add_argument(
        "--concurrency", type=int, default=4, help="Parallel requests per batch (openai; default 4)."
    )
    run.add_argument(
        "--trust-remote-code", action="store_true", help="Allow the model folder's own code (hf, clear)."
    )
    run.add_argument(
        "--levels", default="clean,low,mid,hard", help="Comma-separated levels (default: clean,low,mid,hard)."
    )
    run.add_argument("--types", default="", help="Comma-separated degradation types to keep (default: all).")
    run.add_argument(
        "--batch-size", type=int, default=8, help="Rows per batch, and per write to disk (default 8)."
    )
    run.add_argument("--limit", type=int, help="At most this many rows per benchmark and level.")
    run.add_argument(
        "--max-new-tokens", type=int, default=512, help="Tokens generated per answer (default 512)."
    )
    run.add_argument(
        "--save-restored", action="store_true", help="Save restored images (for 'report --iqa')."
    )
    run.add_argument(
        "--judge-base-url",
        help="OpenAI-compatible judge for open-ended answers (default: $CLEAR_JUDGE_BASE_URL, else rules).",
    )
    run.add_argument("--judge-model", help="Judge model name (default: $CLEAR_JUDGE_MODEL).")
    run.add_argument(
        "--overwrite", action="store_true", help="Discard a run of another model/settings in RUN."
    )
    run.add_argument("--no-progress", action="store_true", help="Hide the progress bar.")


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``clear-plugins eval`` sub-commands."""
    sub = parser.add_subparsers(dest="eval_command", metavar="SUBCOMMAND", title="sub-commands")
    _add_run(sub)
    report = sub.add_parser("report", help="Tables (Markdown, JSON) and plots (PNG) of one run.")
    report.add_argument("run_dir", metavar="RUN")
    report.add_argument(
        "--iqa", action="store_true", help="Add Table 4: BRISQUE/NIQE/PSNR/SSIM of restored images."
    )
    compare = sub.add_parser("compare", help="B - A with paired bootstrap confidence intervals.")
    compare.add_argument("run_a", metavar="RUN_A")
    compare.add_argument("run_b", metavar="RUN_B")
    compare.add_argument(
        "-o", "--output", help="Folder for compare.md/json/png (default: RUN_B/compare-<RUN_A name>)."
    )
    compare.add_argument("--resamples", type=int, default=2000, help="Bootstrap resamples (default 2000).")
    compare.add_argument("--confidence", type=float, default=0.95, help="Interval level (default 0.95).")
    compare.add_argument("--seed", type=int, default=0, help="Resampling seed (default 0).")
    iqa = sub.add_parser("iqa", help="BRISQUE and NIQE of an image (and PSNR/SSIM against --clean), offline.")
    iqa.add_argument("image", metavar="IMAGE")
    iqa.add_argument("--clean", help="Clean reference image for PSNR/SSIM.")


def _model(args: argparse.Namespace):
    from clear_plugins.errors import ClearConfigError
    from clear_plugins.eval import models

    if args.model_kind == "openai":
        if not args.base_url:
            raise ClearConfigError("--model-kind openai needs --base-url (the endpoint's /v1 URL).")
        return models.OpenAIModel(
            args.base_url,
            args.model,
            api_key_env=args.api_key_env,
            max_tokens=args.max_new_tokens,
            concurrency=args.concurrency,
        )
    if args.model_kind == "hf":
        from transformers import pipeline

        pipe = pipeline("image-text-to-text", model=args.model, trust_remote_code=args.trust_remote_code)
        return models.HFPipelineModel(
            pipe, name=args.model, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size
        )
    return models.load_clear_model(
        args.model,
        trust_remote_code=args.trust_remote_code,
        keep_restored=args.save_restored,
        max_new_tokens=args.max_new_tokens,
    )


def _run(args: argparse.Namespace) -> int:
    from clear_plugins.eval.config import EvalConfig
    from clear_plugins.eval.runner import run_eval
    from clear_plugins.rewards.judges import JudgeConfig, build_judge

    config = EvalConfig(
        benchmarks=tuple(args.benchmarks),
        output_dir=args.output,
        levels=tuple(v.strip() for v in args.levels.split(",") if v.strip()),
        types=tuple(v.strip() for v in args.types.split(",") if v.strip()),
        batch_size=args.batch_size,
        limit=args.limit,
        save_restored=args.save_restored,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    judge = build_judge(JudgeConfig(base_url=args.judge_base_url, model=args.judge_model))
    result = run_eval(_model(args), config, judge)
    print(
        f"clear-plugins eval run: {result.evaluated} row(s) evaluated, {result.skipped} already done, "
        f"{result.errors} unreadable; records in {result.predictions}. Next: clear-plugins eval report {args.output}",
        file=sys.stderr,
    )
    return 0


def _report(args: argparse.Namespace) -> int:
    from clear_plugins.eval.report import write_report

    written = write_report(args.run_dir, iqa=args.iqa)
    print(written["markdown"].read_text(encoding="utf-8"))
    print(f"clear-plugins eval report: wrote {', '.join(str(p) for p in written.values())}", file=sys.stderr)
    return 0


def _compare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from clear_plugins.eval.compare import CompareConfig, write_comparison

    out = args.output or str(Path(args.run_b) / f"compare-{Path(args.run_a).resolve().name}")
    config = CompareConfig(resamples=args.resamples, confidence=args.confidence, seed=args.seed)
    written = write_comparison(args.run_a, args.run_b, out, config)
    print(written["markdown"].read_text(encoding="utf-8"))
    return 0


def _iqa(args: argparse.Namespace) -> int:
    import json

    from PIL import Image

    from clear_plugins.eval import iqa

    image = Image.open(args.image)
    clean = Image.open(args.clean) if args.clean else None
    print(json.dumps({**iqa.measure(image, clean), "implementations": iqa.IMPLEMENTATIONS}, indent=1))
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``clear-plugins eval``; returns the exit status."""
    from clear_plugins.errors import ClearConfigError, ClearError

    handlers = {"run": _run, "report": _report, "compare": _compare, "iqa": _iqa}
    handler = handlers.get(getattr(args, "eval_command", None))
    if handler is None:
        print(
            "clear-plugins eval: choose a sub-command: run, report, compare or iqa (see --help).",
            file=sys.stderr,
        )
        return USAGE_ERROR
    try:
        return handler(args)
    except ClearError as exc:
        print(f"clear-plugins eval {args.eval_command}: error: {exc}", file=sys.stderr)
        return USAGE_ERROR if isinstance(exc, ClearConfigError) else RUN_ERROR
    except OSError as exc:
        print(f"clear-plugins eval {args.eval_command}: error: {exc}", file=sys.stderr)
        return RUN_ERROR
