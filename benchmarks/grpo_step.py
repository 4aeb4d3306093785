"""Cost of Interleaved GRPO's training forward, and of sharing the prompt prefill across a group's rollouts.

For each size it builds a random-weight Bagel, samples G forced-restore rollouts of one prompt (SDE over
``--timesteps`` grid points, ``--tokens`` text tokens), then times (median of ``--repeats``) one training
forward + backward of the loss over the G trajectories, and measures its peak memory, for:

(a) text-only GRPO — the rollout context replayed, no noise block (``image_loss_weight = 0``);
(b) interleaved — one chosen step's ``x_t`` injected as a noise block, text + image loss (the paper's method);
(c) all N steps injected (the naive baseline the paper avoids, App. H.1).

Goals: (b)/(a) ≤ 1.25 and (c)/(b) ≥ N/2. Then the rollout time of the group with one shared prompt prefill vs G
separate prefills. Peak memory is the increase of the process's peak RSS over the RSS before the measured step,
measured over the first training step, each variant in a fresh subprocess (CPU); on CUDA it is
``torch.cuda.max_memory_allocated`` over that step. A short system prompt is used (the shipped one is ~1,300
tokens of the tiny tokenizer and would dominate every size).

Sizes: ``tiny`` (the test model, 64-px images: 4×4 latent tokens) and ``small`` (LLM hidden 256 × 4 layers,
128-px images: 8×8 latent tokens). Text uses the repository's tiny test tokenizer.

Usage: ``python benchmarks/grpo_step.py [--sizes tiny small] [--repeats N] [--threads N] [--device cpu|cuda]``
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"image": 64, "config": {}},
    "small": {
        "image": 128,
        "config": {
            "llm_config": {
                "hidden_size": 256,
                "intermediate_size": 512,
                "num_hidden_layers": 4,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
            },
            "vae_transform": {"max_size": 128, "min_size": 32, "stride": 16, "max_pixels": 128 * 128},
        },
    },
}
VARIANTS = ("text", "one", "all")
SYSTEM_PROMPT = "Answer the question about the image. Restore it first if it is degraded."
"""A short system prompt: the shipped one is ~1,300 tiny-tokenizer tokens and would hide the image blocks."""


def _build(size: str, device: str):
    from adapter_contract import photo
    from tiny_tokenizer import tiny_tokenizer

    from clear_plugins.adapters.bagel.adapter import BagelAdapter
    from clear_plugins.adapters.bagel.modeling_bagel import BagelForConditionalGeneration
    from clear_plugins.adapters.bagel.testing import tiny_bagel_config
    from clear_plugins.injection import add_tags
    from clear_plugins.trajectory import SPECIAL_TAGS

    torch.manual_seed(0)
    spec = SIZES[size]
    model = BagelForConditionalGeneration(tiny_bagel_config(**spec["config"])).to(device)
    torch.nn.init.normal_(model.llm2vae.weight, std=0.05)
    tokenizer = tiny_tokenizer()
    add_tags(model, tokenizer, SPECIAL_TAGS)
    return BagelAdapter(model.eval(), tokenizer), photo(spec["image"])


def _options(args: argparse.Namespace):
    from clear_plugins.flow import SDEConfig
    from clear_plugins.trl_ext.rollout import RolloutOptions

    return RolloutOptions(
        max_new_tokens=args.tokens,
        sde=SDEConfig(num_timesteps=args.timesteps),
        force_restore=True,
        system_prompt=SYSTEM_PROMPT,
    )


def _loss(adapter, trajectories, samples, image: bool) -> torch.Tensor:
    """The trainer's loss pieces: packed replay, token log-probs, the clipped text and image surrogates."""
    from clear_plugins.flow import SDEConfig
    from clear_plugins.tags import sampling_vocabulary, tag_mode
    from clear_plugins.trl_ext import grpo_batch
    from clear_plugins.trl_ext.grpo_losses import clipped_surrogate, flow_grpo_loss, image_log_probs

    advantages = torch.linspace(-1, 1, len(samples))
    inputs = grpo_batch.trl_inputs(trajectories, samples, advantages, 0, adapter.runner.device)
    outputs = adapter.training_forward(adapter.pack_rollouts(samples))
    logps, _ = grpo_batch.token_logps(
        outputs,
        inputs["token_positions"],
        inputs["completion_ids"].shape[1],
        temperature=1.0,
        vocabulary=sampling_vocabulary(adapter.tokenizer, tag_mode(adapter.model.config)),
        compute_entropy=False,
    )
    mask = inputs["completion_mask"]
    text = clipped_surrogate(logps - inputs["old_per_token_logps"], inputs["advantages"][:, None], 0.2, 0.2)
    loss = ((text.loss * mask).sum(-1) / mask.sum(-1).clamp(min=1)).mean()
    if not image:
        return loss
    steps, rows = grpo_batch.flat_steps(samples)
    data = grpo_batch.step_tensors(steps, SDEConfig(), outputs.image_output.device)  # constant σ = 0.3
    new = image_log_probs(
        data["x_t"],
        outputs.image_output.float(),
        data["x_next"],
        data["t"],
        data["t_next"],
        data["sigma"],
        data["index"],
    )
    weights = grpo_batch.step_weights(rows, new.device)
    adv = inputs["advantages"][torch.tensor(rows, device=new.device)]
    return loss + 0.3 * flow_grpo_loss(new, data["old"], adv, weights, 0.2, 0.2).loss


def _samples(trajectories, variant: str):
    if variant == "text":
        return [t.sample for t in trajectories]
    if variant == "one":
        return [replace(t.sample, steps=[t.restore.steps[len(t.restore.steps) // 2]]) for t in trajectories]
    return [replace(t.sample, steps=list(t.restore.steps)) for t in trajectories]


def measure_variant(args: argparse.Namespace) -> dict[str, Any]:
    """One variant in this process: median step time and peak memory increase."""
    from clear_plugins.trl_ext.rollout import rollout_group

    adapter, image = _build(args.size, args.device)
    group = rollout_group(
        adapter,
        image,
        "What colour is the car?",
        num_generations=args.g,
        options=_options(args),
        seeds=list(range(args.g)),
    )
    samples = _samples(group.trajectories, args.variant)
    cuda = args.device == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _loss(adapter, group.trajectories, samples, args.variant != "text").backward()  # first step: the peak
    peak = (
        (torch.cuda.max_memory_allocated() - base) / 2**20
        if cuda
        else (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    )
    adapter.model.zero_grad(set_to_none=True)
    times = []
    for _ in range(args.repeats):
        tick = time.perf_counter()
        _loss(adapter, group.trajectories, samples, args.variant != "text").backward()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - tick)
        adapter.model.zero_grad(set_to_none=True)
    tokens = len(adapter.pack_rollouts(samples).labels)
    return {"seconds": statistics.median(times), "peak_mib": peak, "tokens": tokens}


def measure_prefill(args: argparse.Namespace) -> dict[str, float]:
    """Rollout time of G trajectories with one shared prefill vs one prefill each."""
    from clear_plugins.trl_ext.rollout import rollout_group

    adapter, image = _build(args.size, args.device)
    options, seeds = _options(args), list(range(args.g))
    rollout_group(adapter, image, "warm-up", num_generations=1, options=options, seeds=[0])
    shared, separate = [], []
    for _ in range(args.repeats):
        tick = time.perf_counter()
        rollout_group(
            adapter, image, "What colour is the car?", num_generations=args.g, options=options, seeds=seeds
        )
        shared.append(time.perf_counter() - tick)
        tick = time.perf_counter()
        for seed in seeds:
            rollout_group(
                adapter, image, "What colour is the car?", num_generations=1, options=options, seeds=[seed]
            )
        separate.append(time.perf_counter() - tick)
    return {"shared": statistics.median(shared), "separate": statistics.median(separate)}


def _child(args: argparse.Namespace, variant: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", variant, "--size", args.size]
    for name in ("repeats", "threads", "device", "g", "tokens", "timesteps"):
        command += [f"--{name}", str(getattr(args, name))]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"variant {variant} ({args.size}) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    """Parse arguments and print the table (module docstring)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", nargs="+", default=["tiny", "small"], choices=sorted(SIZES))
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed repetitions (median reported; default 5)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="default cpu")
    parser.add_argument("--g", type=int, default=4, help="rollouts per prompt, G (default 4, the paper's)")
    parser.add_argument("--tokens", type=int, default=32, help="text tokens per trajectory (default 32)")
    parser.add_argument(
        "--timesteps", type=int, default=11, help="SDE grid points; N = timesteps − 1 (default 11)"
    )
    parser.add_argument("--child", choices=[*VARIANTS, "prefill"], help=argparse.SUPPRESS)
    parser.add_argument("--size", default="tiny", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        args.variant = args.child
        result = measure_prefill(args) if args.child == "prefill" else measure_variant(args)
        print(json.dumps(result))
        return
    n = args.timesteps - 1
    print(
        f"machine: {platform.machine()} {platform.processor() or ''}, torch {torch.__version__}, device "
        f"{args.device}, threads {args.threads}; G={args.g}, {args.tokens} text tokens, N={n} SDE steps"
    )
    for size in args.sizes:
        args.size = size
        res = {v: _child(args, v) for v in VARIANTS}
        pre = _child(args, "prefill")
        a, b, c = (res[v] for v in VARIANTS)
        print(
            f"\n[{size}] packed tokens: text-only {a['tokens']}, one step {b['tokens']}, all steps {c['tokens']}"
        )
        for label, r in zip(("(a) text-only", "(b) one step", "(c) all N steps"), (a, b, c), strict=True):
            print(f"  {label:16s} {r['seconds'] * 1e3:9.1f} ms  peak +{r['peak_mib']:7.1f} MiB")
        print(
            f"  time (b)/(a) = {b['seconds'] / a['seconds']:.2f} (goal <= 1.25); "
            f"(c)/(b) = {c['seconds'] / b['seconds']:.2f} (goal >= N/2 = {n / 2:.1f})"
        )
        if a["peak_mib"] > 0 and b["peak_mib"] > 0:
            print(
                f"  memory (b)/(a) = {b['peak_mib'] / a['peak_mib']:.2f}; (c)/(b) = {c['peak_mib'] / b['peak_mib']:.2f}"
            )
        print(
            f"  rollouts of G={args.g}: shared prefill {pre['shared']:.3f} s vs G prefills {pre['separate']:.3f} s "
            f"-> {pre['separate'] / pre['shared']:.2f}x"
        )


if __name__ == "__main__":
    main()
