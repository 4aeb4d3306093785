"""Fixtures of the ``data build`` tests: a small VQA source on disk and a fake-backbone prober."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from fake_backbone import FakeAdapter, build_fake
from PIL import Image

from clear_plugins.data.probe import PipelineProber
from clear_plugins.pipeline import ClearPipeline, PipelineConfig

PROBE_REPLY = "<think>The image is degraded but I will answer.</think> <answer>A</answer>"
"""What the fake base model says to every question: rows whose answer is ``A`` are probed correct (direct)."""


def write_source(
    folder: Path, n: int = 40, *, name: str = "vqa.jsonl", bad_rows: tuple[int, ...] = (), size: int = 24
) -> Path:
    """``n`` rows ``q00..`` with ``size``-px images; even rows answer ``A`` (direct), odd rows ``B`` (restore).

    Each question carries its id in brackets (``[q07]``) so a scripted server can tell rows apart. Rows in
    ``bad_rows`` point at an image file that is not an image.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        image = folder / f"img{i:02d}.png"
        if i in bad_rows:
            image.write_bytes(b"not an image")
        else:
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(image)
        rows.append(
            {
                "id": f"q{i:02d}",
                "image": image.name,
                "question": f"[q{i:02d}] Which letter is shown?",
                "options": {"A": "alpha", "B": "beta"},
                "answer": "A" if i % 2 == 0 else "B",
            }
        )
    path = folder / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def fake_prober() -> PipelineProber:
    """A prober over the fake backbone that always answers ``A``."""
    model, _ = build_fake(script=[PROBE_REPLY])
    return PipelineProber(ClearPipeline(FakeAdapter(model), PipelineConfig(num_steps=2)))
