"""Command-line options shared by ``clear-plugins answer`` and ``serve``: which model, which preset, how to answer.

Light at import time (no torch): the heavy work is in :mod:`clear_plugins.loading`, imported by the commands' ``run``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

BRIDGE_MODES = ("bridge", "decode_reencode", "degraded_latent")
"""``--bridge-mode`` choices (:class:`clear_plugins.bridge.BridgeMode`)."""


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--model``, ``--weights``, ``--ema``, ``--preset``, the pipeline options and ``--dtype``/``--device``."""
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        required=True,
        metavar="DIR",
        help="An official BAGEL-7B-MoT folder (configs, VAE, tokenizer) or a folder written by save_pretrained.",
    )
    group.add_argument(
        "--weights",
        metavar="DIR_OR_FILE",
        help="Weights to load on top of an official --model folder: the released CLEAR folder "
        "(model.safetensors and/or ema.safetensors) or one .safetensors file. Default: the folder's own weights.",
    )
    group.add_argument(
        "--ema",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="With a --weights folder: --ema loads ema.safetensors, --no-ema model.safetensors; default: "
        "model.safetensors when present (the reference's default), else ema.safetensors.",
    )
    group.add_argument(
        "--dtype", default="auto", help="auto (bfloat16 on a GPU, float32 on the CPU), bfloat16, float32."
    )
    group.add_argument(
        "--device", default="auto", help="auto (cuda when available, else cpu), cpu, cuda, cuda:N."
    )
    answer = parser.add_argument_group("answering")
    answer.add_argument(
        "--preset",
        help="Restore guidance and image sizes (Bagel: clear_eval, the default; clear_demo; bagel_edit). See the "
        "README's preset table.",
    )
    answer.add_argument(
        "--bridge-mode",
        choices=BRIDGE_MODES,
        default="bridge",
        help="How the restored latent re-enters the "
        "context (default bridge, Sec. 3.3; the others are the Sec. 4.4 ablations).",
    )
    answer.add_argument(
        "--num-steps", type=int, help="Denoising grid points per restore (default: the preset's, 30)."
    )
    answer.add_argument(
        "--max-restores", type=int, default=1, help="Restores allowed per answer, K (default 1)."
    )
    answer.add_argument(
        "--max-new-tokens", type=int, default=512, help="Text tokens per answer (default 512)."
    )
    answer.add_argument(
        "--system-prompt-file",
        type=Path,
        metavar="FILE",
        help="Use this file's text as the system prompt (e.g. the authors' prompt for their released weights); "
        "default: the shipped prompt.",
    )


def read_system_prompt(path: Path | None) -> str | None:
    """The text of ``--system-prompt-file`` (``None`` when not given); a clear error for a bad file."""
    if path is None:
        return None
    from clear_plugins.errors import ClearConfigError

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ClearConfigError(
            f"--system-prompt-file {str(path)!r} cannot be read ({err}); pass a UTF-8 text file."
        ) from err
    if not text.strip():
        raise ClearConfigError(
            f"--system-prompt-file {str(path)!r} is empty; pass a file with the prompt's text."
        )
    return text.strip()


def load_setup(args: argparse.Namespace) -> Any:
    """Load the model of ``args`` and build its :class:`~clear_plugins.loading.ServingSetup` (heavy imports here)."""
    from clear_plugins.loading import LoadOptions, build_pipeline, load_model

    options = LoadOptions(
        model=args.model, weights=args.weights, ema=args.ema, dtype=args.dtype, device=args.device
    )
    system_prompt = read_system_prompt(args.system_prompt_file)
    model, tokenizer = load_model(options)
    return build_pipeline(
        model,
        tokenizer,
        preset=args.preset,
        bridge_mode=args.bridge_mode,
        num_steps=args.num_steps,
        max_restores=args.max_restores,
        max_new_tokens=args.max_new_tokens,
        system_prompt=system_prompt,
    )
