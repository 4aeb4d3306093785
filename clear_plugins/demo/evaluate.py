"""Stage 4 of the demo: accuracy of base, SFT and RL on held-out easy-vqa test questions at clean/low/mid/hard,
the ``bridge`` / ``decode_reencode`` / ``degraded_latent`` ablations, the trigger rate per level and the PSNR of
restored images.

The base model answers directly (:func:`~.scoring.direct_answers`, the format it was pre-trained on); the CLEAR
models answer through :class:`~clear_plugins.pipeline.ClearPipeline` (think, optionally restore and bridge, answer),
greedy text and ODE restores without guidance. Accuracy is exact match of the answer word; colour+shape accuracy
is reported beside the overall one because text alone answers most yes/no questions.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import numpy as np

from .base import psnr
from .world import DEMO_DEGRADATIONS, DEMO_SYSTEM_PROMPT, LEVELS, Question, degrade, load_image, questions

EVAL_LEVELS: tuple[str, ...] = ("clean", *LEVELS)


@dataclass
class EvalItem:
    """One held-out question at one level: the clean and the (possibly) degraded image."""

    question: Question
    level: str
    degradation: str | None
    clean: np.ndarray
    image: np.ndarray


def eval_items(n: int, seed: int) -> list[EvalItem]:
    """``n`` test questions per level (half colour/shape, half yes/no), degradations cycling over the demo's
    types; the same questions at every level."""
    rng = random.Random(seed + 1009)
    pool = list(questions("test"))
    kinds = [q for q in pool if q.kind != "yes/no"]
    yes_no = [q for q in pool if q.kind == "yes/no"]
    chosen = rng.sample(kinds, n - n // 2) + rng.sample(yes_no, n // 2)
    items = []
    for level in EVAL_LEVELS:
        for k, q in enumerate(chosen):
            clean = load_image("test", q.image_id)
            name = None if level == "clean" else DEMO_DEGRADATIONS[k % len(DEMO_DEGRADATIONS)]
            image = clean if name is None else degrade(clean, name, level, seed=seed * 7919 + k)
            items.append(EvalItem(q, level, name, clean, image))
    return items


def _norm(text: str | None) -> str:
    return " ".join((text or "").lower().replace(".", " ").split())


def summarise(
    items: list[EvalItem], answers: list[str | None], triggered: list[bool] | None
) -> dict[str, Any]:
    """Accuracy (overall, colour+shape, yes/no) and trigger rate per level."""
    table: dict[str, Any] = {}
    present = {it.level for it in items}
    for level in (lv for lv in EVAL_LEVELS if lv in present):
        rows = [
            (it, a, t)
            for it, a, t in zip(items, answers, triggered or [False] * len(items), strict=True)
            if it.level == level
        ]
        correct = [_norm(a) == it.question.answer for it, a, _ in rows]
        kinds = [c for (it, _, _), c in zip(rows, correct, strict=True) if it.question.kind != "yes/no"]
        yes_no = [c for (it, _, _), c in zip(rows, correct, strict=True) if it.question.kind == "yes/no"]
        table[level] = {
            "n": len(rows),
            "accuracy": float(np.mean(correct)) if correct else float("nan"),
            "colour_shape_accuracy": float(np.mean(kinds)) if kinds else float("nan"),
            "yes_no_accuracy": float(np.mean(yes_no)) if yes_no else float("nan"),
            "trigger_rate": float(np.mean([t for _, _, t in rows])) if triggered is not None else None,
        }
    return table


def evaluate_base(adapter: Any, items: list[EvalItem]) -> dict[str, Any]:
    """The base model answering directly (batched)."""
    from .scoring import direct_answers

    answers = direct_answers(adapter, [it.image for it in items], [it.question.question for it in items])
    return {"levels": summarise(items, answers, None), "answers": answers}


def pipeline_config(mode: str, restore_steps: int) -> Any:
    """The demo's inference settings: greedy, ODE restores of ``restore_steps`` Euler steps, no guidance."""
    from clear_plugins.pipeline import PipelineConfig

    return PipelineConfig(
        num_steps=restore_steps + 1,
        bridge_mode=mode,
        max_new_tokens=96,
        system_prompt=DEMO_SYSTEM_PROMPT,
        guidance=None,
        decode_restored=True,
    )


def evaluate_clear(
    adapter: Any, items: list[EvalItem], mode: str, restore_steps: int, seed: int, progress: Any = None
) -> dict[str, Any]:
    """A CLEAR model through ``ClearPipeline`` with bridge ``mode``; PSNR of every restored image."""
    import torch

    from clear_plugins.pipeline import ClearPipeline

    pipe = ClearPipeline(adapter, pipeline_config(mode, restore_steps))
    answers, triggered, restored_psnr, examples = [], [], [], []
    torch.manual_seed(seed)
    with torch.no_grad():
        for k, it in enumerate(items):
            out = pipe.answer(it.image, it.question.question)
            answers.append(out.answer)
            triggered.append(bool(out.triggered))
            for image in out.restored_images:
                restored = np.asarray(image.convert("RGB").resize(it.clean.shape[1::-1]), dtype=np.uint8)
                restored_psnr.append(
                    {
                        "level": it.level,
                        "degradation": it.degradation,
                        "degraded": psnr(it.image, it.clean),
                        "restored": psnr(restored, it.clean),
                    }
                )
                if len(examples) < 6 and it.level == "hard":
                    examples.append((it.image, restored, it.clean, it.degradation))
            if progress is not None:
                progress(k + 1, len(items))
    return {
        "levels": summarise(items, answers, triggered),
        "answers": answers,
        "psnr": restored_psnr,
        "examples": examples,
    }


def hard_only(items: list[EvalItem]) -> list[EvalItem]:
    """The hard-level items (the ablations run there)."""
    return [it for it in items if it.level == "hard"]
