"""Build the SFT and GRPO training sets of App. C, or import the authors' released training set.

  clear-plugins data build SOURCE [SOURCE ...] -o OUTDIR --probe-model PATH --model gpt-4.1 --base-url URL
  clear-plugins data build SOURCE -o OUTDIR --probe-model PATH --writer offline      (no endpoint needed)
  clear-plugins data import RELEASE_DIR -o OUTDIR [--copy-images]

build: sample N pairs (stratified by source; any format 'bench build' reads), degrade each with one (type, level)
of the training sampler, probe the base model (ClearPipeline, restoration off) and judge it (correct: direct
pathway, wrong: generate-then-answer), write a trace per sample with an LLM (Fig. 7 prompt or its direct
variant, clean and degraded image attached) or the offline templates, regenerate rejected traces (judge
disagrees with the ground truth, or the trace is malformed) up to --trace-attempts in all, then drop; balance
the pathways 1:1 and split into two disjoint halves. OUTDIR gets sft.jsonl, grpo.jsonl (the training-row
schema), images/, stats.json (Table 8 per set, type x level x pathway counts, pipeline counters, tokens and
cost) and distribution.png. Every stage is cached under OUTDIR/stages: rerunning the same command resumes,
after a crash, a SIGTERM (exit 143) or a spent --max-requests budget (exit 3), and writes what an uninterrupted
run writes. The API key is read from $CLEAR_TRACE_API_KEY, $OPENAI_API_KEY (see --api-key-env) or
--api-key-file, never from the command line; prompts and images are logged as hashes unless --log-payloads.

import: stream the authors' CLEAR_Train_Set (Hub dataset CUDAOUTOFMEMORY/MMD-Bench; the extracted folder, or
its .tar.gz.part.* files, read in one pass without joining them) into OUTDIR/train.jsonl in the training-row schema, and list every row it cannot convert, with
its file and line index, in OUTDIR/import_report.json.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from dataclasses import fields
from typing import Any

HELP = "Build the SFT/GRPO datasets of App. C, or import the authors' released training set."

USAGE_ERROR = 2
RUN_ERROR = 1
INCOMPLETE = 3


def _help(cls_name: str, name: str) -> str:
    """A config field's help text, with its default when it has a plain one."""
    from dataclasses import MISSING

    from clear_plugins.data import config

    field = next(f for f in fields(getattr(config, cls_name)) if f.name == name)
    text = field.metadata["help"].replace("%", "%%")
    if field.default is MISSING or field.default is None or isinstance(field.default, bool):
        return text
    return f"{text} (default: {field.default})"


def _add_build(parser: argparse.ArgumentParser) -> None:
    b, e = "DataBuildConfig", "TraceEndpointConfig"
    parser.add_argument("sources", metavar="SOURCE", nargs="+", help=_help(b, "sources"))
    parser.add_argument("-o", "--output", dest="output_dir", required=True, help=_help(b, "output_dir"))
    parser.add_argument("-n", "--num-samples", type=int, default=None, help=_help(b, "num_samples"))
    parser.add_argument("--seed", type=int, default=0, help=_help(b, "seed"))
    parser.add_argument(
        "--weighting",
        choices=("training", "uniform", "benchmark"),
        default="training",
        help=_help(b, "weighting"),
    )
    parser.add_argument("--writer", choices=("llm", "offline"), default="llm", help=_help(b, "writer"))
    parser.add_argument("--trace-attempts", type=int, default=3, help=_help(b, "trace_attempts"))
    parser.add_argument(
        "--probe-model",
        required=True,
        help="Local folder of the base model to probe, loaded with transformers' AutoModel/AutoTokenizer "
        "(local files only) and run through ClearPipeline by its registered adapter.",
    )
    parser.add_argument(
        "--probe-model-class",
        default=None,
        metavar="MODULE:CLASS",
        help="The PreTrainedModel class that loads --probe-model, as package.module:ClassName, for backbones "
        "that AutoModel does not know (default: transformers.AutoModel).",
    )
    parser.add_argument(
        "--trust-remote-code", action="store_true", help="Allow the probe model's remote code."
    )
    parser.add_argument("--probe-batch-size", type=int, default=8, help=_help(b, "probe_batch_size"))
    parser.add_argument(
        "--probe-max-new-tokens", type=int, default=256, help=_help(b, "probe_max_new_tokens")
    )
    parser.add_argument(
        "--probe-system-prompt-file",
        default=None,
        help="Text file with the probe's system prompt (default: the shipped CLEAR system prompt).",
    )
    parser.add_argument(
        "--balance", choices=("after", "before", "none"), default="after", help=_help(b, "balance")
    )
    for role in ("id", "image", "question", "answer"):
        parser.add_argument(f"--{role}-column", default=None, help=_help(b, f"{role}_column"))
    parser.add_argument("--base-url", default=None, help=_help(e, "base_url"))
    parser.add_argument("--model", default=None, help=_help(e, "model"))
    parser.add_argument("--api-key-env", default="OPENAI_API_KEY", help=_help(e, "api_key_env"))
    parser.add_argument("--api-key-file", default=None, help=_help(e, "api_key_file"))
    for name, kind in (
        ("concurrency", int),
        ("timeout", float),
        ("max_retries", int),
        ("backoff", float),
        ("backoff_max", float),
        ("max_requests", int),
        ("temperature", float),
        ("max_tokens", int),
        ("price_input", float),
        ("price_output", float),
    ):
        default = next(f.default for f in _endpoint_fields() if f.name == name)
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=default, help=_help(e, name))
    parser.add_argument("--log-payloads", action="store_true", help=_help(e, "log_payloads"))
    parser.add_argument(
        "--judge-base-url", default=None, help="Judge endpoint (else $CLEAR_JUDGE_BASE_URL; else rules)."
    )
    parser.add_argument("--judge-model", default=None, help="Judge model (else $CLEAR_JUDGE_MODEL).")
    parser.add_argument("--dry-run", action="store_true", help=_help(b, "dry_run"))
    parser.add_argument("--overwrite", action="store_true", help=_help(b, "overwrite"))
    parser.add_argument("--no-progress", action="store_true", help="Hide progress bars.")


def _endpoint_fields():
    from clear_plugins.data.config import TraceEndpointConfig

    return fields(TraceEndpointConfig)


def _add_import(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "release",
        metavar="RELEASE",
        help="The extracted CLEAR_Train_Set folder (searched for its JSONL files), one JSONL file, or the "
        "archive itself (a CLEAR_Train_Set.tar.gz.part.* file or a folder of them: streamed into OUTDIR/extracted).",
    )
    parser.add_argument(
        "-o",
        "--output",
        dest="output_dir",
        required=True,
        help="Folder for train.jsonl and import_report.json.",
    )
    parser.add_argument(
        "--clean-dir", default=None, help="Clean images (default: 'images' next to each JSONL file)."
    )
    parser.add_argument(
        "--corrupted-dir",
        default=None,
        help="Degraded images (default: 'corruption_images' next to each JSONL file).",
    )
    parser.add_argument(
        "--metadata-dir", default=None, help="Per-image '<image>.json' degradation metadata, if kept."
    )
    parser.add_argument(
        "--copy-images", action="store_true", help="Copy images under OUTDIR/images (default: link by path)."
    )
    parser.add_argument("--limit", type=int, default=None, help="Stop after this many converted rows.")


def configure(parser: argparse.ArgumentParser) -> None:
    """Add ``clear-plugins data build`` and ``clear-plugins data import``."""
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND", title="sub-commands")
    for name, adder, text in (
        ("build", _add_build, "Build the SFT and GRPO sets from VQA sources (App. C)."),
        ("import", _add_import, "Convert the authors' CLEAR_Train_Set into the training-row schema."),
    ):
        child = sub.add_parser(
            name, help=text, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        adder(child)
        child.set_defaults(_run=run_build_command if name == "build" else run_import_command)


def run(args: argparse.Namespace) -> int:
    """``clear-plugins data`` without a sub-command: say which exist."""
    print(
        "clear-plugins data: choose a sub-command: build or import (see 'clear-plugins data --help').",
        file=sys.stderr,
    )
    return USAGE_ERROR


def build_config(args: argparse.Namespace):
    """The :class:`DataBuildConfig` of parsed ``data build`` arguments."""
    from pathlib import Path

    from clear_plugins.data.config import DataBuildConfig, TraceEndpointConfig
    from clear_plugins.errors import ClearConfigError

    endpoint = TraceEndpointConfig(
        **{f.name: getattr(args, f.name) for f in _endpoint_fields() if hasattr(args, f.name)},
    )
    prompt = None
    if args.probe_system_prompt_file is not None:
        try:
            prompt = Path(args.probe_system_prompt_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise ClearConfigError(
                f"cannot read --probe-system-prompt-file {args.probe_system_prompt_file!r} ({exc.strerror})."
            ) from None
    return DataBuildConfig(
        sources=tuple(args.sources),
        probe_system_prompt=prompt,
        output_dir=args.output_dir,
        num_samples=args.num_samples,
        seed=args.seed,
        weighting=args.weighting,
        writer=args.writer,
        trace_attempts=args.trace_attempts,
        probe_batch_size=args.probe_batch_size,
        probe_max_new_tokens=args.probe_max_new_tokens,
        balance=args.balance,
        id_column=args.id_column,
        image_column=args.image_column,
        question_column=args.question_column,
        answer_column=args.answer_column,
        dry_run=args.dry_run,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        endpoint=endpoint,
    )


def _model_class(spec: str | None):
    import importlib

    from clear_plugins.errors import ClearConfigError

    if spec is None:
        from transformers import AutoModel

        return AutoModel
    module, _, name = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        raise ClearConfigError(
            f"--probe-model-class {spec!r} names no importable class; write it as package.module:ClassName."
        ) from None


def _prober(args: argparse.Namespace, config):
    from pathlib import Path

    from transformers import AutoTokenizer

    from clear_plugins.data.probe import PipelineProber
    from clear_plugins.errors import ClearConfigError
    from clear_plugins.pipeline import ClearPipeline

    if not Path(args.probe_model).is_dir():
        raise ClearConfigError(
            f"--probe-model {args.probe_model!r} is not a folder; pass a local model folder (nothing is downloaded)."
        )
    options = {"local_files_only": True, "trust_remote_code": args.trust_remote_code}
    model = _model_class(args.probe_model_class).from_pretrained(args.probe_model, **options).eval()
    tokenizer = AutoTokenizer.from_pretrained(args.probe_model, **options)
    return PipelineProber(
        ClearPipeline.from_model(model, tokenizer),
        max_new_tokens=config.probe_max_new_tokens,
        system_prompt=config.probe_system_prompt,
    )


def _judge(args: argparse.Namespace):
    from clear_plugins.rewards.judges import JudgeConfig, build_judge

    return build_judge(JudgeConfig(base_url=args.judge_base_url, model=args.judge_model))


def run_build(config, prober: Any, judge: Any) -> int:
    """Run a build that SIGTERM or Ctrl-C stops cleanly; print how it ended; return the exit status.

    0 when complete (or a dry run), 3 when the budget ran out or samples failed, 128 + signal number after a stop.
    """
    from clear_plugins.data.build import build_dataset

    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, frame: Any) -> None:
        received.append(signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        report = build_dataset(config, prober=prober, judge=judge, stop=stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    stream = sys.stdout if report.status != "incomplete" else sys.stderr
    print(f"clear-plugins data build: {report.message}", file=stream)
    if report.status != "incomplete":
        return 0
    return 128 + received[0] if received else INCOMPLETE


def run_build_command(args: argparse.Namespace) -> int:
    """``clear-plugins data build``."""
    from clear_plugins.errors import ClearError

    try:
        config = build_config(args)
        return run_build(config, _prober(args, config), _judge(args))
    except ClearError as exc:
        print(f"clear-plugins data build: error: {exc}", file=sys.stderr)
        return RUN_ERROR
    except OSError as exc:
        print(f"clear-plugins data build: error: {exc}", file=sys.stderr)
        return RUN_ERROR


def run_import_command(args: argparse.Namespace) -> int:
    """``clear-plugins data import``."""
    from clear_plugins.data.release import import_release
    from clear_plugins.errors import ClearError

    try:
        report = import_release(
            args.release,
            args.output_dir,
            limit=args.limit,
            clean_dir=args.clean_dir,
            corrupted_dir=args.corrupted_dir,
            metadata_dir=args.metadata_dir,
            copy_images=args.copy_images,
        )
    except (ClearError, OSError) as exc:
        print(f"clear-plugins data import: error: {exc}", file=sys.stderr)
        return RUN_ERROR
    print(
        f"clear-plugins data import: read {report.read} rows, converted {report.converted} "
        f"({dict(report.pathways)}) to {report.output}; {report.problem_count} unconvertible (see import_report.json)."
    )
    return 0
