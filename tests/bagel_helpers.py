"""Shared pieces of the Bagel part-2 tests: a tiny Bagel with its tokenizer, scripted decoding, forward counting."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from tiny_tokenizer import tiny_tokenizer

from clear_plugins.adapters.bagel.adapter import BagelAdapter
from clear_plugins.adapters.bagel.modeling_bagel import BagelForConditionalGeneration
from clear_plugins.adapters.bagel.packing import AttnMode
from clear_plugins.adapters.bagel.testing import tiny_bagel_config
from clear_plugins.injection import add_tags
from clear_plugins.trajectory import SPECIAL_TAGS

SYSTEM = "You answer questions about degraded images."
QUESTION = "What does the sign say?"
SCRIPT_BIAS = 1e4


def build_tiny_bagel(seed: int = 0) -> tuple[BagelForConditionalGeneration, object]:
    """A tiny random Bagel (fp32, eval) and the tiny tokenizer; ``llm2vae`` is random so velocities are not zero."""
    torch.manual_seed(seed)
    model = BagelForConditionalGeneration(tiny_bagel_config()).eval()
    torch.nn.init.normal_(model.llm2vae.weight, std=0.05)
    return model, tiny_tokenizer()


def tiny_adapter(seed: int = 0, *, tags: bool = True) -> BagelAdapter:
    """A :class:`BagelAdapter` over :func:`build_tiny_bagel`, the trajectory tags added as single tokens (tag mode
    ``"token"``) unless ``tags=False`` (tag mode ``"text"``, the Bagel default)."""
    model, tokenizer = build_tiny_bagel(seed)
    if tags:
        add_tags(model, tokenizer, SPECIAL_TAGS)
        model.config.clear_tag_mode = "token"
    return BagelAdapter(model, tokenizer)


def ids(tokenizer, *texts: str) -> list[int]:
    """Token ids of the concatenated ``texts`` (no special tokens added)."""
    return tokenizer.encode("".join(texts), add_special_tokens=False)


@contextmanager
def scripted(model: BagelForConditionalGeneration, script: Sequence[int]) -> Iterator[list[int]]:
    """Make greedy decoding emit ``script`` (cycling): each single-position ``lm_head`` call gets a large bias on
    the next scripted token. Test scaffolding on the tiny model's head; yields the list of forced tokens."""
    forced: list[int] = []

    def hook(_module, _inputs, output):
        if output.ndim != 1:
            return output
        token = script[len(forced) % len(script)]
        forced.append(token)
        bias = torch.zeros_like(output)
        bias[token] = SCRIPT_BIAS
        return output + bias

    handle = model.language_model.lm_head.register_forward_hook(hook)
    try:
        yield forced
    finally:
        handle.remove()


@contextmanager
def forward_lengths(model: BagelForConditionalGeneration) -> Iterator[list[tuple[int, bool]]]:
    """Record ``(number of positions, has a noised block)`` for every packed forward of the language model."""
    seen: list[tuple[int, bool]] = []

    def hook(_module, args):
        embeds, layout = args[0], args[1]
        seen.append((int(embeds.shape[0]), bool((layout.mode == int(AttnMode.NOISE)).any())))

    handle = model.language_model.model.register_forward_pre_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()
