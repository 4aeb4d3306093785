"""Stage 2 of ``data build``: ask the base model each question on the degraded image, judge it, pick the pathway.

App. C.1: a sample the base model answers correctly goes to the direct pathway, one it fails goes to
generate-then-answer. The base model answers through :class:`~clear_plugins.pipeline.ClearPipeline` over any
adapter with restoration disabled (``max_restores=0``), so the probe runs the same loop as inference. Probing
is batched; each finished batch is cached.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from clear_plugins.data.cache import StageCache
from clear_plugins.data.config import DataBuildConfig
from clear_plugins.errors import JudgeError
from clear_plugins.trajectory import SPECIAL_TAGS, parse

_TAGS = re.compile("|".join(re.escape(tag) for tag in SPECIAL_TAGS))


class Prober(Protocol):
    """Answers questions about images with the base model (no restoration)."""

    name: str

    def answers(self, images: Sequence[Any], questions: Sequence[str]) -> list[str]:
        """One answer text per (image, question)."""
        ...


def extract_answer(text: str) -> str:
    """The ``<answer>`` content when the text has one, else the text without tags (a base model's free reply)."""
    parsed = parse(text, max_restores=1)
    if parsed.answer is not None:
        return parsed.answer
    return _TAGS.sub(" ", text or "").strip()


class PipelineProber:
    """Probe through a :class:`~clear_plugins.pipeline.ClearPipeline` with restoration disabled."""

    def __init__(self, pipeline: Any, *, max_new_tokens: int = 256, system_prompt: str | None = None) -> None:
        self.pipeline = pipeline
        self.max_new_tokens = max_new_tokens
        self.system_prompt = system_prompt
        self.name = f"pipeline:{type(pipeline.adapter).__name__}"

    def answers(self, images: Sequence[Any], questions: Sequence[str]) -> list[str]:
        """Answers of the pipeline with ``max_restores=0`` (a direct answer, never a restore)."""
        outputs = self.pipeline(
            list(images),
            list(questions),
            max_restores=0,
            max_new_tokens=self.max_new_tokens,
            system_prompt=self.system_prompt,
        )
        return [extract_answer(output.text) for output in outputs]


def probe_stage(
    config: DataBuildConfig,
    samples: list[dict[str, Any]],
    prober: Prober,
    judge: Any,
    cache: StageCache,
    *,
    on_batch: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Probe and judge every sample not yet in ``cache``; return one probe record per sample, in order.

    A judge failure (:class:`JudgeError`) leaves that sample unprobed (not cached), so a rerun tries again.
    """
    from PIL import Image

    todo = [s for s in samples if s["id"] not in cache]
    out = Path(config.output_dir)
    for start in range(0, len(todo), config.probe_batch_size):
        batch = todo[start : start + config.probe_batch_size]
        images = []
        for sample in batch:
            with Image.open(out / sample["degraded_image"]) as image:
                images.append(image.convert("RGB"))
        answers = prober.answers(images, [s["question"] for s in batch])
        for sample, answer in zip(batch, answers, strict=True):
            try:
                score = float(judge.score(sample["question"], answer, sample["answer"]))
            except JudgeError:
                continue
            correct = score > config.correct_threshold
            cache.append(
                {
                    "id": sample["id"],
                    "probe_answer": answer,
                    "probe_score": score,
                    "pathway": "direct" if correct else "restore",
                    "prober": prober.name,
                }
            )
        if on_batch is not None:
            on_batch(len(batch))
    return [cache.get(s["id"]) for s in samples if s["id"] in cache]
