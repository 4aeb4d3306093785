"""Throughput of ``clear-plugins eval run`` at a tiny size: rows per second, batched vs one at a time.

Each case runs the whole runner (image decode, prompt, model, scoring, JSONL write with fsync per batch) over a
tiny MMD-Bench built here (``--questions`` MMBench-style questions x 3 rotations, sampled build, levels clean and
hard), once with ``--batch`` rows per batch and once with 1, in fresh run folders, and prints rows/s and the ratio:

* ``hf-llava``: a random tiny LLaVA (tests/eval_helpers.py) through transformers' ``image-text-to-text``
  pipeline; batches are real padded batches (left padding).
* ``clear-fake``: the fake flow backbone through ``ClearPipeline`` (restore-then-answer). The pipeline answers
  one question after another (each keeps its own KV cache), so batching only changes how often results are
  written; the ratio shows that cost, not a model speed-up.
* ``openai``: a loopback OpenAI-compatible server answering after ``--latency`` seconds; a batch is sent as
  concurrent requests, so the ratio approaches the batch size when latency dominates.

Usage: ``python benchmarks/eval_throughput.py [--questions N] [--batch N] [--latency S] [--threads N]``
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--questions", type=int, default=16, help="MMBench-style questions (x3 rotations; default 16)."
    )
    parser.add_argument(
        "--batch", type=int, default=8, help="Rows per batch of the batched runs (default 8)."
    )
    parser.add_argument(
        "--latency", type=float, default=0.02, help="Seconds the loopback server waits (default 0.02)."
    )
    parser.add_argument("--threads", type=int, default=1, help="Torch threads (default 1).")
    parser.add_argument("--cases", default="hf-llava,clear-fake,openai", help="Comma-separated cases.")
    return parser.parse_args()


def _timed(make_model, benches, out: Path, batch: int) -> tuple[float, int]:
    from clear_plugins.eval.config import EvalConfig
    from clear_plugins.eval.runner import run_eval

    config = EvalConfig(
        benchmarks=tuple(map(str, benches)),
        output_dir=str(out),
        levels=("clean", "hard"),
        batch_size=batch,
        progress=False,
    )
    model = make_model(batch)
    start = time.perf_counter()
    result = run_eval(model, config)
    return time.perf_counter() - start, result.evaluated


def main() -> int:
    args = _parse()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    from eval_helpers import build, make_circular_tsv, tiny_llava_pipeline, tiny_model
    from judge_server import JudgeServer, Reply

    from clear_plugins.eval.models import HFPipelineModel, OpenAIModel

    root = Path(tempfile.mkdtemp(prefix="eval-throughput-"))
    benches = [build(make_circular_tsv(root / "src", questions=args.questions), root / "MMBench_TOY")]
    pipe = tiny_llava_pipeline()
    print(
        f"machine: {platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, threads {args.threads}; "
        f"{args.questions * 3 * 2} rows (clean + hard), batch {args.batch}"
    )
    print(f"{'case':<12} {'batched rows/s':>15} {'one-at-a-time rows/s':>21} {'ratio':>7}")
    with JudgeServer(Reply(content="A", hang=args.latency)) as server:
        makers = {
            "hf-llava": lambda b: HFPipelineModel(pipe, name="tiny-llava", max_new_tokens=8, batch_size=b),
            "clear-fake": lambda b: tiny_model(),
            "openai": lambda b: OpenAIModel(server.base_url, "loopback", concurrency=b),
        }
        for case in args.cases.split(","):
            seconds_b, rows = _timed(makers[case], benches, root / f"{case}-b", args.batch)
            seconds_1, _ = _timed(makers[case], benches, root / f"{case}-1", 1)
            batched, single = rows / seconds_b, rows / seconds_1
            print(f"{case:<12} {batched:>15.1f} {single:>21.1f} {batched / single:>6.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
