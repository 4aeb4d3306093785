"""Batched direct answers of a demo model: several (image, question) contexts in one packed forward.

The base model of stage 0 answers with one word right after the question. Scoring the arg-max over easy-vqa's 13
answer words at the answer position matched greedy generation on every question the prototype compared, at ~1/10
of the cost; packing several contexts into one forward cuts the cost again (demo-prototype.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .world import DEMO_SYSTEM_PROMPT, questions


def answer_words() -> list[str]:
    """easy-vqa's answer words, sorted."""
    return sorted({q.answer for q in questions("train")})


def direct_answers(
    adapter: Any, images: Sequence[np.ndarray], texts: Sequence[str], *, per_forward: int = 8
) -> list[str]:
    """The base model's one-word answer to each question (arg-max over the answer words), ``per_forward``
    contexts per packed forward."""
    import torch

    from clear_plugins.adapters.bagel.batch import (
        LatentImageSegment,
        TextSegment,
        VitImageSegment,
        build_packed_batch,
    )

    from .base import Encoded, _text

    tok, ids, model = adapter.tokenizer, adapter.token_ids, adapter.model
    words = answer_words()
    word_ids = torch.tensor([tok.convert_tokens_to_ids(w) for w in words])
    out: list[str] = []
    with torch.no_grad():
        for start in range(0, len(images), per_forward):
            chunk = list(images[start : start + per_forward])
            enc = Encoded(adapter, chunk)
            samples = [
                [
                    TextSegment(_text(tok, ids, DEMO_SYSTEM_PROMPT)),
                    LatentImageSegment(enc.tokens[i], enc.grid),
                    VitImageSegment(enc.vit[i]),
                    TextSegment(_text(tok, ids, texts[start + i])),
                    TextSegment([ids.bos, ids.eos], loss=[False, True]),
                ]
                for i in range(len(chunk))
            ]
            batch = build_packed_batch(samples, ids, model.config.vit_config.patch_size)
            logits = adapter.training_forward(batch).text_logits[:, word_ids]
            out.extend(words[int(k)] for k in logits.argmax(dim=-1))
    return out


class DirectProber:
    """A :class:`~clear_plugins.data.probe.Prober` over :func:`direct_answers` (the base model as App. C's probe)."""

    name = "demo-base-direct"

    def __init__(self, adapter: Any) -> None:
        self.adapter = adapter

    def answers(self, images: Sequence[Any], texts: Sequence[str]) -> list[str]:
        """One answer word per (image, question)."""
        arrays = [
            np.asarray(im.convert("RGB") if hasattr(im, "convert") else im, dtype=np.uint8) for im in images
        ]
        return direct_answers(self.adapter, arrays, list(texts))
