"""Shared pieces of the SFT tests: a small on-disk dataset of training rows and a tiny CPU config."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from clear_plugins.trajectory import format_direct, format_restore


def write_rows(folder: Path, n: int = 4, *, size: int = 32, extra: list[dict] | None = None) -> Path:
    """``n`` rows alternating restore / direct, their images as PNGs in ``folder``; returns the JSONL path."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        degraded, clean = f"img/deg_{i}.png", f"img/clean_{i}.png"
        (folder / "img").mkdir(exist_ok=True)
        for name in (degraded, clean):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / name)
        restore = i % 2 == 0
        rows.append(
            {
                "id": f"r{i}",
                "question": "What does the sign say?",
                "answer": "EXIT",
                "degraded_image": degraded,
                "clean_image": clean if restore else None,
                "trajectory": format_restore("blurry", "clear", "EXIT")
                if restore
                else format_direct("clear", "EXIT"),
                "pathway": "restore" if restore else "direct",
                "system_prompt": "Be brief.",
            }
        )
    rows.extend(extra or [])
    path = folder / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def tiny_config(output_dir: Path, **overrides):
    """A ClearSFTConfig for a tiny CPU run (no reports, no saving unless asked)."""
    from clear_plugins.trl_ext.sft_config import ClearSFTConfig

    values = {
        "output_dir": str(output_dir),
        "max_steps": 3,
        "per_device_train_batch_size": 2,
        "learning_rate": 1e-3,
        "use_cpu": True,
        "report_to": [],
        "save_strategy": "no",
        "logging_steps": 1,
        "seed": 0,
        "disable_tqdm": True,
        "gradient_checkpointing": False,
        "dataloader_num_workers": 0,
    }
    values.update(overrides)
    return ClearSFTConfig(**values)
