"""The demo's toy world: easy-vqa questions and images, the degradations it uses, and a word-level tokenizer.

easy-vqa (PyPI, MIT) ships 64×64 images of one coloured shape and templated questions with 13 answers. Text alone
answers most yes/no questions (the demo prototype measured 82.5% from the question string alone), so accuracy on
colour and shape questions is reported separately (:func:`question_kind`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

DEMO_DEGRADATIONS: tuple[str, ...] = ("lens_blur", "motion_blur", "dark_illumination")
"""The degradation types the demo trains and evaluates on: those where the prototype's restorer lifted hard-level
colour+shape accuracy (demo-prototype.md, "Restoration")."""

LEVELS: tuple[str, ...] = ("low", "mid", "hard")
"""Severity levels of :func:`clear_plugins.degradations.apply` (SPEC App. B)."""

COLOURS: frozenset[str] = frozenset({"red", "green", "blue", "black", "gray", "teal", "brown", "yellow"})
SHAPES: frozenset[str] = frozenset({"circle", "rectangle", "triangle"})

SEGMENT_TOKENS: tuple[str, ...] = (
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|endoftext|>",
)
"""Bagel's segment markers, special tokens of the demo tokenizer (bos, eos, image start/end, pad)."""

UNK = "[UNK]"

DEMO_SYSTEM_PROMPT = "answer the question about the image ."
"""The short system prompt of every demo stage (the shipped 289-word prompt would be ~10x the demo's context)."""


@dataclass(frozen=True)
class Question:
    """One easy-vqa question about one image."""

    image_id: int
    question: str
    answer: str

    @property
    def kind(self) -> str:
        """``"colour"``, ``"shape"`` or ``"yes/no"`` (see :func:`question_kind`)."""
        return question_kind(self.answer)


def question_kind(answer: str) -> str:
    """The kind of a question from its answer: ``"colour"``, ``"shape"`` or ``"yes/no"``."""
    if answer in COLOURS:
        return "colour"
    if answer in SHAPES:
        return "shape"
    return "yes/no"


def _questions(split: str) -> list[Question]:
    import easy_vqa

    get = easy_vqa.get_train_questions if split == "train" else easy_vqa.get_test_questions
    texts, answers, ids = get()
    return [Question(int(i), str(q), str(a)) for q, a, i in zip(texts, answers, ids, strict=True)]


@lru_cache(maxsize=2)
def questions(split: str) -> tuple[Question, ...]:
    """Every easy-vqa question of ``split`` (``"train"`` or ``"test"``)."""
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r} must be 'train' or 'test'.")
    return tuple(_questions(split))


@lru_cache(maxsize=2)
def image_paths(split: str) -> dict[int, str]:
    """Image id → PNG path of ``split``."""
    import easy_vqa

    get = easy_vqa.get_train_image_paths if split == "train" else easy_vqa.get_test_image_paths
    return {int(k): str(v) for k, v in get().items()}


def load_image(split: str, image_id: int) -> np.ndarray:
    """The RGB ``uint8`` array ``[64, 64, 3]`` of one easy-vqa image."""
    from PIL import Image

    with Image.open(image_paths(split)[image_id]) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def degrade(image: np.ndarray, name: str, level: str, seed: int) -> np.ndarray:
    """``image`` degraded with the built-in degradation ``name`` at ``level`` (seeded)."""
    from clear_plugins import degradations

    return np.asarray(degradations.apply(image, name, level, seed=seed), dtype=np.uint8)


def sample_questions(split: str, n: int, seed: int, *, oversample_kinds: int = 1) -> list[Question]:
    """``n`` questions of ``split`` drawn at random (test questions come grouped by image); colour and shape
    questions weighted ``oversample_kinds`` times."""
    pool = list(questions(split))
    weights = [oversample_kinds if q.kind != "yes/no" else 1 for q in pool]
    rng = random.Random(seed)
    if n >= len(pool):
        return pool
    return rng.choices(pool, weights=weights, k=n) if oversample_kinds > 1 else rng.sample(pool, n)


def _trace_words() -> list[str]:
    """Words of the offline trace writer's templates over every degradation and level (so SFT traces tokenize)."""
    from clear_plugins import degradations
    from clear_plugins.data.offline import offline_trace

    texts = []
    for k, name in enumerate(degradations.names()):
        for level in LEVELS:
            sample = {"question": "q", "answer": "a", "degradation": name, "level": level}
            for seed in range(12):
                texts.append(offline_trace(sample, "direct" if seed % 2 else "restore", seed=seed * 31 + k))
    return texts


def build_tokenizer() -> Any:
    """A word-level tokenizer of easy-vqa's vocabulary, the trace templates' words, the trajectory tags (one added
    token each) and Bagel's segment markers (special tokens). Deterministic: the same words in the same order."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from clear_plugins.trajectory import SPECIAL_TAGS

    words: set[str] = set()
    for split in ("train", "test"):
        for q in questions(split):
            words.update(q.question.replace("?", " ? ").split())
            words.add(q.answer)
    pre = pre_tokenizers.Whitespace()
    for text in _trace_words():
        for tag in SPECIAL_TAGS:
            text = text.replace(tag, " ")
        words.update(piece for piece, _ in pre.pre_tokenize_str(text))
    vocab = {token: i for i, token in enumerate([*SEGMENT_TOKENS, UNK, *sorted(words)])}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tokenizer.pre_tokenizer = pre
    tokenizer.add_special_tokens([AddedToken(t, special=True) for t in SEGMENT_TOKENS])
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in SPECIAL_TAGS])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=UNK,
        additional_special_tokens=["<|vision_start|>", "<|vision_end|>"],
    )
