"""Cost of one ClearSFTTrainer step, next to a plain causal-LM SFT step, plus packing and long-row mask memory.

For each size (each measured in its own subprocess so peak memory is per size):

1. ``step``: one ``ClearSFTTrainer.training_step`` (pack on the device, forward, CE + MSE + KL, backward) on a
   mixed micro-batch of 4 rows (2 generate-then-answer, 2 direct) — median time and the process's peak RSS
   (CPU) or peak CUDA memory;
2. ``ratio``: our loss path (``training_forward`` on one packed text row + the loss functions) vs a plain SFT step
   on the *same* text-only tokens (``model(input_ids, labels=...)``, transformers' causal-LM loss, forward and
   backward) — goal ≤ 1.2×;
3. ``packing``: real tokens / padded tokens on the mixed batch — one sample per row padded to the longest sample,
   vs CLEAR's packing with a budget of twice the longest sample (rows padded to the longest row).

Then, once: the attention mask of one long packed row (many samples) at several lengths, dense ``[L, L]`` bool vs
the flex-attention BlockMask (bytes of the tensors actually built, and build time).

Sizes: ``tiny`` (the test model: LLM hidden 64 × 2 layers) and ``small`` (LLM hidden 256 × 4 layers, ViT 64 × 2).

Usage: ``python benchmarks/sft_step.py [--sizes tiny small] [--repeats N] [--threads N] [--lengths 2048 8192]``
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

SIZES: dict[str, dict[str, Any]] = {
    "tiny": {},
    "small": {
        "llm_config": {
            "hidden_size": 256,
            "intermediate_size": 512,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
        },
        "vit_config": {"hidden_size": 64, "intermediate_size": 128},
    },
}


def _model(size: str):
    from tiny_tokenizer import tiny_tokenizer

    from clear_plugins.adapters.bagel.modeling_bagel import BagelForConditionalGeneration
    from clear_plugins.adapters.bagel.testing import tiny_bagel_config

    torch.manual_seed(0)
    model = BagelForConditionalGeneration(tiny_bagel_config(**SIZES[size]))
    return model, tiny_tokenizer()


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _trainer_step(size: str, repeats: int, folder: Path) -> dict[str, float]:
    from sft_helpers import tiny_config, write_rows

    from clear_plugins.trl_ext.sft import ClearSFTTrainer

    model, tokenizer = _model(size)
    data = write_rows(folder / "data", 4, size=48)
    args = tiny_config(folder / "out", per_device_train_batch_size=4, vit_drop_prob=0.0)
    trainer = ClearSFTTrainer(model=model, args=args, train_dataset=str(data), processing_class=tokenizer)
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train(); the step is timed on its own
    trainer.create_optimizer()
    seconds = _median_seconds(lambda: trainer.training_step(trainer.model, batch), repeats)
    return {"step_s": seconds, "params": sum(p.numel() for p in model.parameters())}


def _ratio(size: str, repeats: int) -> dict[str, float]:
    from clear_plugins.adapters.bagel.adapter import BagelAdapter
    from clear_plugins.adapters.bagel.batch import TextSegment, build_packed_batch
    from clear_plugins.trl_ext.losses import text_cross_entropy

    model, tokenizer = _model(size)
    model.train()
    adapter = BagelAdapter(model, tokenizer)
    ids = torch.randint(5, 300, (384,))

    def plain() -> None:
        model.zero_grad(set_to_none=True)
        model(input_ids=ids[None], labels=ids[None]).loss.backward()

    row = build_packed_batch([[TextSegment(ids, loss=True)]], adapter.token_ids, 14)

    def ours() -> None:
        model.zero_grad(set_to_none=True)
        out = adapter.training_forward(row)
        text_cross_entropy(out.text_logits, out.text_labels).backward()

    plain_s, ours_s = _median_seconds(plain, repeats), _median_seconds(ours, repeats)
    return {"plain_s": plain_s, "ours_s": ours_s, "ratio": ours_s / plain_s, "text_tokens": len(ids)}


def _packing(size: str, folder: Path) -> dict[str, float]:
    from clear_plugins.adapters.bagel.adapter import BagelAdapter
    from clear_plugins.data.loading import load_training_rows
    from clear_plugins.training_sample import PackingOptions
    from clear_plugins.trl_ext.collators import SAMPLES_KEY, ClearSFTCollator

    model, tokenizer = _model(size)
    adapter = BagelAdapter(model, tokenizer)
    rows, _ = load_training_rows(folder / "data" / "rows.jsonl")
    samples = ClearSFTCollator()([rows[i] for i in range(len(rows))])[SAMPLES_KEY]
    with torch.no_grad():
        singles = [len(adapter.pack_training_samples([s])[0].inputs.layout) for s in samples]
        real = sum(singles)
        budget = 2 * max(singles)
        packed = adapter.pack_training_samples(samples, PackingOptions(max_tokens_per_row=budget))
    lengths = [len(r.inputs.layout) for r in packed]
    return {
        "real_tokens": real,
        "padded_per_sample": real / (len(singles) * max(singles)),
        "packed_rows": len(lengths),
        "packed_efficiency": real / (len(lengths) * max(lengths)),
    }


def measure(size: str, repeats: int) -> dict[str, Any]:
    """Every per-size number (run in a subprocess by :func:`main`)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        result: dict[str, Any] = {"size": size}
        result |= _trainer_step(size, repeats, folder)
        result |= _ratio(size, repeats)
        result |= _packing(size, folder)
    peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None
    result["peak_mb"] = (peak / 2**20) if peak else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def long_row_masks(lengths: list[int]) -> list[dict[str, float]]:
    """Dense mask vs BlockMask bytes and build time for one packed row of many 512-token samples."""
    from clear_plugins.adapters.bagel.flex_attention import packed_block_mask
    from clear_plugins.adapters.bagel.packing import LayoutBuilder, TokenKind, attention_mask

    rows = []
    for length in lengths:
        builder = LayoutBuilder()
        sample = 0
        while len(builder) < length:
            builder.text(200, sample)
            builder.image(64, TokenKind.LATENT, sample)
            builder.image(64, TokenKind.LATENT, sample, noised=True)
            builder.text(min(180, length - len(builder) + 1), sample)
            sample += 1
        layout = builder.build()
        start = time.perf_counter()
        dense = attention_mask(layout, layout)
        dense_s = time.perf_counter() - start
        dense_bytes = dense.numel() * dense.element_size()
        del dense
        start = time.perf_counter()
        block = packed_block_mask(layout)
        block_s = time.perf_counter() - start
        tensors = [t for t in block.as_tuple() if isinstance(t, torch.Tensor)]
        block_bytes = sum(t.numel() * t.element_size() for t in tensors)
        rows.append(
            {"L": len(layout), "dense_mb": dense_bytes / 2**20, "block_mb": block_bytes / 2**20,
             "dense_s": dense_s, "block_s": block_s}
        )  # fmt: skip
    return rows


def main() -> None:
    """Run every size in a subprocess, then the mask comparison; print a table with the machine."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed repeats per measurement (median; default 5)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument(
        "--lengths", nargs="+", type=int, default=[2048, 8192], help="long-row lengths (tokens)"
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(measure(args.one, args.repeats)))
        return
    import os
    import platform

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{args.threads} thread(s), cuda={torch.cuda.is_available()}")  # fmt: skip
    for size in args.sizes:
        command = [
            sys.executable,
            __file__,
            "--one",
            size,
            "--repeats",
            str(args.repeats),
            "--threads",
            str(args.threads),
        ]
        out = (
            subprocess.run(command, capture_output=True, text=True, check=True)
            .stdout.strip()
            .splitlines()[-1]
        )
        r = json.loads(out)
        print(
            f"[{size}] {r['params'] / 1e6:.2f}M params | SFT step (4 rows: 2 restore + 2 direct) {r['step_s'] * 1e3:.0f} ms, "
            f"peak {r['peak_mb']:.0f} MB | text-only {r['text_tokens']} tokens: ours {r['ours_s'] * 1e3:.1f} ms vs plain "
            f"{r['plain_s'] * 1e3:.1f} ms = {r['ratio']:.2f}x (goal <= 1.2) | packing: real/padded "
            f"{r['padded_per_sample']:.2f} one-per-row vs {r['packed_efficiency']:.2f} packed in {r['packed_rows']} rows"
        )
    for r in long_row_masks(args.lengths):
        print(
            f"[mask] L={r['L']}: dense bool {r['dense_mb']:.1f} MB ({r['dense_s'] * 1e3:.0f} ms) vs BlockMask "
            f"{r['block_mb']:.3f} MB ({r['block_s'] * 1e3:.0f} ms); dense at 32k would be {32768**2 / 2**20:.0f} MB"
        )


if __name__ == "__main__":
    main()
