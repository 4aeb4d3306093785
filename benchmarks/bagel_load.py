"""Load time and peak memory of ``from_official_checkpoint``, and what a BAGEL-7B-MoT load would need.

Writes official-layout checkpoints (``ema.safetensors`` bf16, ``ae.safetensors`` BFL fp32, the two JSON configs)
at two sizes — ``tiny`` (the test geometry) and ``medium`` (a ~270 M-parameter LLM with the real FLUX VAE) — then
loads each in a fresh subprocess and reports wall time and peak RSS above the post-import baseline
(``resource.getrusage``). The 7B estimate scales the medium run's peak-per-loaded-byte to 14.61 B bf16 parameters
(29.21 GB) + the VAE. The files were just written, so reads come from a warm page cache: real first loads are
bounded by the disk instead.

Usage: ``python benchmarks/bagel_load.py [--sizes tiny medium] [--threads N]`` (default 1 thread)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file
from threads import add_threads_argument, pin  # this script's folder is on sys.path

from clear_plugins.adapters.bagel.configuration_bagel import BagelConfig, flux_vae_config
from clear_plugins.adapters.bagel.modeling_bagel import BagelForConditionalGeneration
from clear_plugins.adapters.bagel.testing import tiny_bagel_config
from clear_plugins.adapters.bagel.vae_conversion import diffusers_to_bfl_state_dict

BAGEL_7B_EMA_BYTES = 14_607_260_128 * 2
"""ema.safetensors of BAGEL-7B-MoT: 14,607,260,128 bf16 parameters (reference §2.6)."""
BAGEL_7B_VAE_PARAMS = 83_819_683
"""Parameters of the FLUX VAE in ae.safetensors (reference §6.1)."""

_TINY = tiny_bagel_config()
SIZES: dict[str, dict] = {
    "tiny": {
        "llm": {**_TINY.llm_config.to_dict(), "model_type": "qwen2"},
        "vit": {**_TINY.vit_config.to_dict(), "num_hidden_layers": _TINY.vit_config.num_hidden_layers + 1},
        "vae": _TINY.vae_config,
        "overrides": {
            k: getattr(_TINY, k)
            for k in ("max_latent_size", "vit_max_num_patch_per_side", "vit_transform", "vae_transform")
        },
    },
    "medium": {
        "llm": {
            "model_type": "qwen2",
            "hidden_size": 1024,
            "intermediate_size": 2816,
            "num_hidden_layers": 8,
            "num_attention_heads": 16,
            "num_key_value_heads": 4,
            "vocab_size": 32000,
            "rope_theta": 1000000.0,
            "rms_norm_eps": 1e-6,
        },
        "vit": {
            "model_type": "siglip_vision_model",
            "hidden_size": 384,
            "intermediate_size": 1536,
            "num_attention_heads": 6,
            "num_hidden_layers": 7,
            "patch_size": 14,
            "image_size": 980,
        },
        "vae": flux_vae_config(),
        "overrides": {},
    },
}
"""Checkpoint sizes: official-style JSON dicts (ViT layer count as stored: built + 1), VAE kwargs, overrides."""


def write_checkpoint(directory: Path, size: dict) -> None:
    """Write an official-layout directory with random weights (shapes from our model built on meta)."""
    config = BagelConfig.from_official(size["llm"], size["vit"], vae_config=size["vae"], **size["overrides"])
    with torch.device("meta"):
        model = BagelForConditionalGeneration(config)
    state = {k: torch.randn(v.shape) * 0.02 for k, v in model.state_dict().items()}
    save_file(
        {k: v.bfloat16() for k, v in state.items() if not k.startswith("vae.")},
        str(directory / "ema.safetensors"),
    )
    vae = {k.removeprefix("vae."): v for k, v in state.items() if k.startswith("vae.")}
    bfl = diffusers_to_bfl_state_dict(vae, len(size["vae"]["block_out_channels"]))
    save_file({k: v.contiguous() for k, v in bfl.items()}, str(directory / "ae.safetensors"))
    (directory / "llm_config.json").write_text(json.dumps(size["llm"]), encoding="utf-8")
    (directory / "vit_config.json").write_text(json.dumps(size["vit"]), encoding="utf-8")


def _status_mb(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak of this process image; unlike ``ru_maxrss`` it is not inherited from
    the parent across fork + exec) from ``/proc/self/status``, in MB."""
    with open("/proc/self/status", encoding="ascii") as handle:
        line = next(row for row in handle if row.startswith(f"{field}:"))
    return int(line.split()[1]) / 1024


def measure(directory: Path, size_name: str) -> dict:
    """Load once (run in a fresh process) and return time, memory and byte counts."""
    from clear_plugins.adapters.bagel.checkpoint import from_official_checkpoint

    size = SIZES[size_name]
    before = _status_mb("VmRSS")
    start = time.perf_counter()
    model = from_official_checkpoint(directory, vae_config=size["vae"], config_overrides=size["overrides"])
    seconds = time.perf_counter() - start
    peak, after = _status_mb("VmHWM"), _status_mb("VmRSS")
    with torch.no_grad():  # read every weight once, as a forward pass would
        checksum = sum(float(t.float().sum()) for t in model.state_dict().values())
    return {
        "load_s": seconds,
        "rss_before_mb": before,
        "peak_rss_mb": peak,
        "rss_after_mb": after,
        "rss_touched_mb": _status_mb("VmRSS"),
        "checksum": checksum,
        "model_mb": sum(t.numel() * t.element_size() for t in model.state_dict().values()) / 2**20,
        "ema_file_mb": (directory / "ema.safetensors").stat().st_size / 2**20,
        "ae_file_mb": (directory / "ae.safetensors").stat().st_size / 2**20,
    }


def report(name: str, m: dict) -> None:
    """Print one size's numbers and, for the largest, the 7B projection."""
    extra = m["peak_rss_mb"] - m["rss_before_mb"]
    print(
        f"{name:>6}: ema {m['ema_file_mb']:.1f} MB + ae {m['ae_file_mb']:.1f} MB -> model {m['model_mb']:.1f} MB "
        f"in {m['load_s']:.2f} s; RSS {m['rss_before_mb']:.0f} MB after imports, load peak "
        f"{m['peak_rss_mb']:.0f} MB (+{extra:.0f} MB = {extra / m['model_mb']:.2f}x the weights), "
        f"{m['rss_after_mb']:.0f} MB right after, {m['rss_touched_mb']:.0f} MB once every weight was read "
        f"(+{(m['rss_touched_mb'] - m['rss_before_mb']) / m['model_mb']:.2f}x)"
    )


def project_7b(m: dict) -> None:
    """Scale the measured load to BAGEL-7B-MoT.

    The load peak is split into the VAE part (its fp32 file pages + the bf16 copy, 1.5x the ``ae`` file) and the
    rest, which scales with the ``ema`` file (bf16 tensors are copy-on-write views of the mmap, so it is small).
    Once every weight has been read, the resident size scales with the model.
    """
    gb = 1e9 / 2**20  # MB per GB
    ema_gb, vae_file_gb = BAGEL_7B_EMA_BYTES / 1e9, BAGEL_7B_VAE_PARAMS * 4 / 1e9
    vae_part = 1.5 * m["ae_file_mb"]
    ema_ratio = max(m["peak_rss_mb"] - m["rss_before_mb"] - vae_part, 0.0) / m["ema_file_mb"]
    touched_ratio = (m["rss_touched_mb"] - m["rss_before_mb"]) / m["model_mb"]
    base = m["rss_before_mb"] / gb
    at_load = base + ema_ratio * ema_gb + 1.5 * vae_file_gb
    touched = base + touched_ratio * (ema_gb + vae_file_gb / 2)
    print(
        f"BAGEL-7B-MoT estimate (ema {ema_gb:.1f} GB bf16, ae {vae_file_gb:.2f} GB fp32, VAE cast to bf16): "
        f"peak RSS while loading ~{at_load:.1f} GB (ema part {ema_ratio:.3f}x its file), ~{touched:.1f} GB resident "
        f"once a forward has read every weight (file-backed pages of the mmap); dtype=float32 would copy "
        f"everything (~{2 * ema_gb:.0f} GB). With device='cuda', safe_open reads each tensor straight to the GPU."
    )


def main(argv: list[str] | None = None) -> int:
    """Write each size, measure it in a subprocess, print the numbers and the 7B projection."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--child", nargs=2, metavar=("DIR", "SIZE"), help=argparse.SUPPRESS)
    add_threads_argument(parser)
    args = parser.parse_args(argv)
    threads = pin(args.threads)
    if args.child:
        print(json.dumps(measure(Path(args.child[0]), args.child[1])))
        return 0
    print(f"machine: {threads}, torch {torch.__version__}")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.sizes:
            directory = Path(tmp) / name
            directory.mkdir()
            write_checkpoint(directory, SIZES[name])
            child = [
                sys.executable,
                __file__,
                "--child",
                str(directory),
                name,
                "--threads",
                str(args.threads),
            ]
            out = subprocess.run(child, check=True, capture_output=True, text=True).stdout
            results[name] = json.loads(out.strip().splitlines()[-1])
            report(name, results[name])
    project_7b(results[args.sizes[-1]])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
