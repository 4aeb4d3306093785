"""Cost of putting a restored image back into Bagel's reasoning context, and of continuing from the KV cache.

For each size it builds a random-weight Bagel, prefills the shipped system prompt + a degraded image + a question,
appends a first assistant segment ending in ``<image_restore><|im_end|>``, restores (a few ODE steps), then times
(median of ``--repeats``):

1. the post-restoration context update: ``bridge`` (one forward of the latent block on the cache) vs
   ``decode_reencode`` (VAE decode → uint8 pixels → ViT transform and encoder → one forward of the ViT block);
2. the first answer token after restoration: cached (the image block + ``<|im_start|>`` forwarded on the cache)
   vs a full re-prefill of the same context.

Sizes: ``tiny`` (the test model, CPU), ``mid`` (LLM hidden 512 × 4 layers, ViT 384 × 4, the real FLUX VAE
geometry, 256-px images; CPU-friendly, so the ratios mean something) and ``7b`` (BAGEL-7B-MoT shapes, random bf16
weights; only with CUDA). The text comes from the package's tiny tokenizer
(``clear_plugins.adapters.bagel.testing.tiny_tokenizer``, byte-level, 300 tokens), so the prompt is longer in tokens than Qwen2.5's tokenization of the same text.

Usage: ``python benchmarks/bridge.py [--sizes tiny mid 7b] [--repeats N] [--steps N] [--threads N]``
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from PIL import Image
from threads import add_threads_argument, pin  # this script's folder is on sys.path

from clear_plugins.adapters.bagel.adapter import BagelAdapter
from clear_plugins.adapters.bagel.configuration_bagel import BagelConfig, flux_vae_config
from clear_plugins.adapters.bagel.generation import open_segment
from clear_plugins.adapters.bagel.modeling_bagel import BagelForConditionalGeneration
from clear_plugins.adapters.bagel.testing import tiny_bagel_config, tiny_tokenizer
from clear_plugins.bridge import BridgeMode
from clear_plugins.injection import add_tags
from clear_plugins.trajectory import RESTORE_TAG, SPECIAL_TAGS, system_prompt

QUESTION = "What does the sign on the wall say?"
FIRST_SEGMENT = "<think> The image is heavily blurred, so the text on the sign is hard to read. </think>"


def _mid_config() -> BagelConfig:
    vit_side = 20
    return BagelConfig(
        llm_config={
            "vocab_size": 1024,
            "hidden_size": 512,
            "intermediate_size": 1408,
            "num_hidden_layers": 4,
            "num_attention_heads": 8,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            "rope_theta": 1000000.0,
            "rms_norm_eps": 1e-6,
            "tie_word_embeddings": False,
        },
        vit_config={
            "hidden_size": 384,
            "intermediate_size": 1536,
            "num_hidden_layers": 4,
            "num_attention_heads": 6,
            "patch_size": 14,
            "image_size": 14 * vit_side,
        },
        vae_config=flux_vae_config(),
        max_latent_size=16,
        vit_max_num_patch_per_side=vit_side,
        vit_transform={"max_size": 252, "min_size": 224, "stride": 14, "max_pixels": 252 * 252},
        vae_transform={"max_size": 256, "min_size": 256, "stride": 16, "max_pixels": 256 * 256},
    )


SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"config": tiny_bagel_config, "image": 64, "dtype": torch.float32, "cuda_only": False},
    "mid": {"config": _mid_config, "image": 256, "dtype": torch.float32, "cuda_only": False},
    "7b": {"config": BagelConfig, "image": 512, "dtype": torch.bfloat16, "cuda_only": True},
}
"""Model config factory, square image side (px), weight dtype, and whether the size needs a GPU."""


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn: Callable[[], Any], repeats: int, device: torch.device) -> float:
    """Median wall time of ``fn`` over ``repeats`` runs after one warm-up run."""
    fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def build(size: str, device: torch.device) -> BagelAdapter:
    """A random-weight Bagel of ``size`` on ``device`` with the tiny tokenizer and the trajectory tags."""
    spec = SIZES[size]
    torch.manual_seed(0)
    with torch.device(device):
        model = BagelForConditionalGeneration._from_config(spec["config"](), dtype=spec["dtype"]).eval()
    torch.nn.init.normal_(model.llm2vae.weight, std=0.02)
    tokenizer = tiny_tokenizer()
    add_tags(model, tokenizer, SPECIAL_TAGS)
    return BagelAdapter(model, tokenizer)


def restore_ready_context(adapter: BagelAdapter, image: Image.Image) -> Any:
    """System prompt + image + question, then ``<|im_start|> FIRST_SEGMENT <image_restore> <|im_end|>``."""
    context = adapter.start_context(image, QUESTION, system_prompt=system_prompt())
    tokenizer = adapter.tokenizer
    first = tokenizer.encode(FIRST_SEGMENT + RESTORE_TAG, add_special_tokens=False)
    opened = open_segment(adapter, context).push_text([*first, adapter.token_ids.eos])
    return replace(opened, segment_open=False)


def _decode_reencode_parts(adapter: BagelAdapter, latent: Any, repeats: int, device: torch.device) -> dict:
    pixels = adapter.decode_latent(latent)
    return {
        "vae_decode": median_seconds(lambda: adapter.decode_latent(latent), repeats, device),
        "vit_encode": median_seconds(lambda: adapter.encode_understanding(pixels), repeats, device),
    }


@torch.no_grad()
def run(size: str, device: torch.device, repeats: int, steps: int) -> dict:
    """Measure one size; returns the numbers printed by :func:`report`."""
    adapter = build(size, device)
    side = SIZES[size]["image"]
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8))
    start = time.perf_counter()
    context = restore_ready_context(adapter, image)
    adapter.runner.ensure_logits(open_segment(adapter, context))
    _sync(device)
    prefill = time.perf_counter() - start
    result = adapter.restore(context, image, num_steps=steps, generator=None)
    latent = result.latent
    bridged = adapter.bridge(latent, context, BridgeMode.BRIDGE)
    runner = adapter.runner
    numbers = {
        "context_tokens": context.num_tokens,
        "latent_grid": latent.grids[0],
        "vit_grid": context.degraded.vit.grids[0],
        "prefill": prefill,
        "restore_per_step": result.seconds / (steps - 1),
        "bridge": median_seconds(lambda: adapter.bridge(latent, context, BridgeMode.BRIDGE), repeats, device),
        "decode_reencode": median_seconds(
            lambda: adapter.bridge(latent, context, BridgeMode.DECODE_REENCODE), repeats, device
        ),
        "first_token_cached": median_seconds(
            lambda: runner.ensure_logits(open_segment(adapter, adapter.bridge(latent, context, "bridge"))),
            repeats,
            device,
        ),
        "first_token_reprefill": median_seconds(
            lambda: runner.replay(open_segment(adapter, bridged)), repeats, device
        ),
    }
    numbers.update(_decode_reencode_parts(adapter, latent, repeats, device))
    return numbers


def report(size: str, device: torch.device, n: dict) -> None:
    """Print one size's numbers and ratios."""
    ms = {k: v * 1e3 for k, v in n.items() if isinstance(v, float)}
    rows, cols = n["latent_grid"]
    print(
        f"[{size}] device={device} threads={torch.get_num_threads()} context={n['context_tokens']} tokens, "
        f"latent {rows}x{cols}={rows * cols} tokens, ViT {n['vit_grid'][0]}x{n['vit_grid'][1]} tokens"
    )
    print(
        f"  prefill (to first assistant logits): {ms['prefill']:.1f} ms; restore: {ms['restore_per_step']:.1f} ms/step"
    )
    print(
        f"  post-restoration update: bridge {ms['bridge']:.2f} ms | decode_reencode {ms['decode_reencode']:.2f} ms "
        f"(VAE decode {ms['vae_decode']:.2f} + ViT {ms['vit_encode']:.2f} + LLM) -> "
        f"decode_reencode/bridge = {n['decode_reencode'] / n['bridge']:.2f}x"
    )
    print(
        f"  first answer token after restore: cached {ms['first_token_cached']:.2f} ms | full re-prefill "
        f"{ms['first_token_reprefill']:.2f} ms -> re-prefill/cached = "
        f"{n['first_token_reprefill'] / n['first_token_cached']:.2f}x"
    )


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run each size the hardware allows, print the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["tiny", "mid", "7b"], choices=list(SIZES))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=4, help="restore grid points (the paper uses 30)")
    add_threads_argument(parser)
    args = parser.parse_args(argv)
    print(pin(args.threads))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    name = torch.cuda.get_device_name(device) if cuda else "no CUDA device"
    print(f"torch {torch.__version__}; running on {device} ({name})")
    for size in args.sizes:
        if SIZES[size]["cuda_only"] and not cuda:
            print(f"[{size}] skipped: 7B-shaped random weights need a CUDA GPU, none is available")
            continue
        report(size, device, run(size, device, args.repeats, args.steps))


if __name__ == "__main__":
    main()
