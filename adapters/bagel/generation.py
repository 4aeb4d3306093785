"""Prefill and text generation of a Bagel conversation (the token layout of SPEC "Trajectory format").

:func:`start_context` prefills ``[<|im_start|> system <|im_end|>] [VAE block, t = 0] [ViT block]
[<|im_start|> question <|im_end|>]``: the degraded image enters as a clean VAE block then a ViT block at the next
RoPE position, both from the image after the VAE resize, as the official inferencer does (reference §5.6).

:func:`generate_text` opens an assistant segment with ``<|im_start|>`` when none is open and continues from the
KV cache, one forward per token (never re-reading the context), recording each token's log-probability (GRPO's
importance ratio). It ends on ``<|im_end|>``, on a stop string (then
``<|im_end|>`` is appended, as the model emits it after ``<image_restore>``), or on the token budget (the segment
stays open). Text is decoded without Bagel's four segment/image markers but with every other token, so the
trajectory tags survive whether they are BPE text (tag mode ``"text"``, the default), plain added tokens (mode
``"token"``) or special tokens. Only :func:`clear_plugins.tags.sampling_vocabulary` ids are sampled: embedding rows
the tokenizer does not know (the checkpoint's spare rows) and, in text mode, tag tokens are masked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from clear_plugins.adapters.base import TextResult, TextSampling
from clear_plugins.errors import ClearConfigError
from clear_plugins.tags import sampling_vocabulary, tag_mode

from .context import BagelContext, BagelParts, DegradedImage, LatentItem, TextItem, VitItem, concat_items


def _tokenizer(adapter: BagelParts) -> Any:
    if adapter.tokenizer is None:
        raise ClearConfigError(
            "this BagelAdapter has no tokenizer, so it cannot read or write text; build it as "
            "BagelAdapter(model, tokenizer)."
        )
    return adapter.tokenizer


def text_segment(adapter: BagelParts, text: str) -> TextItem:
    """``<|im_start|> text <|im_end|>`` as a :class:`~.context.TextItem` (reference §4)."""
    ids = _tokenizer(adapter).encode(text, add_special_tokens=False)
    return TextItem((adapter.token_ids.bos, *ids, adapter.token_ids.eos))


def start_context(adapter: BagelParts, image: Any, question: str, *, system_prompt: str) -> BagelContext:
    """Prefill system prompt, degraded image (VAE then ViT block) and question; see the module docstring.

    An empty ``system_prompt`` adds no system segment. Both text-uncond guidance branches are the cache before the
    question; the image-uncond branches hold the two texts, pending until a guided restore needs them.
    """
    runner = adapter.runner
    encoders = adapter.encoders
    resized = encoders.vae_transform.resize(image)
    latent = encoders.encode_latent([resized])
    vit = encoders.encode_understanding([resized])
    system = (text_segment(adapter, system_prompt),) if system_prompt else ()
    head = (*system, LatentItem(latent.tokens[0], latent.grids[0]), VitItem(vit.embeds[0], vit.grids[0]))
    question_item = text_segment(adapter, question)
    text_uncond, _ = runner.forward(runner.empty(), head)
    main, _ = runner.forward(text_uncond, [question_item])
    texts = runner.empty().plus(*system, question_item)
    return BagelContext(
        main=main,
        text_uncond=text_uncond,
        image_uncond=texts,
        degraded=DegradedImage(latent=latent, vit=vit),
        items=concat_items((), [*head, question_item]),
        official_text_uncond=text_uncond,
        official_image_uncond=texts,
    )


def open_segment(adapter: BagelParts, context: BagelContext) -> BagelContext:
    """Open an assistant segment (``<|im_start|>``); CLEAR's text-uncond branch becomes the context before it."""
    if context.segment_open:
        return context
    opened = context.push_text([adapter.token_ids.bos])
    return replace(opened, text_uncond=context.main, segment_open=True)


def pick_token(logits: Tensor, sampling: TextSampling, generator: torch.Generator | None = None) -> int:
    """Greedy arg-max, or a draw at ``temperature`` from the ``top_p`` nucleus of fp32 ``logits`` ``[vocab]``."""
    if not sampling.do_sample:
        return int(torch.argmax(logits))
    if not sampling.temperature > 0:
        raise ClearConfigError(f"temperature={sampling.temperature!r} must be > 0 when do_sample=True.")
    if not 0 < sampling.top_p <= 1:
        raise ClearConfigError(f"top_p={sampling.top_p!r} must be in (0, 1]; 1.0 keeps every token.")
    probs = torch.softmax(logits.float() / sampling.temperature, dim=-1)
    if sampling.top_p < 1:
        sorted_probs, order = torch.sort(probs, descending=True)
        outside = (torch.cumsum(sorted_probs, dim=-1) - sorted_probs) >= sampling.top_p
        probs = torch.zeros_like(probs).scatter(0, order, sorted_probs.masked_fill(outside, 0.0))
    return int(torch.multinomial(probs, 1, generator=generator))


def token_logprob(logits: Tensor, token: int, sampling: TextSampling) -> float:
    """Log-probability of ``token`` under the distribution :func:`pick_token` draws from (``logits / temperature``
    when sampling, masked rows included as ``-inf``; top-p truncation is not applied, as in TRL's ratio)."""
    scaled = logits.float() / sampling.temperature if sampling.do_sample else logits.float()
    return float(torch.log_softmax(scaled, dim=-1)[token])


def _generator(sampling: TextSampling, context: BagelContext, device: torch.device) -> torch.Generator | None:
    """A generator seeded by ``sampling.seed`` and the context length (so successive calls draw afresh)."""
    if not sampling.do_sample or sampling.seed is None:
        return None
    return torch.Generator(device=device).manual_seed(int(sampling.seed) + context.num_tokens)


def _stop_in(text: str, stop: Sequence[str]) -> tuple[str, int] | None:
    """The stop string found earliest in ``text`` and the end of its first occurrence."""
    found = [(text.index(s), s) for s in stop if s and s in text]
    if not found:
        return None
    start, string = min(found)
    return string, start + len(string)


def _stop_window(stop: Sequence[str]) -> int:
    """Trailing tokens to decode so a just-completed stop string is seen: a token holds at least one byte and a
    character at most four, plus one token for a partial character before it."""
    return 4 * max((len(s) for s in stop), default=0) + 1


def close_segment(adapter: BagelParts, context: BagelContext) -> BagelContext:
    """Append ``<|im_end|>`` to an open assistant segment (pending); a closed context is returned as is."""
    if not context.segment_open:
        return context
    return replace(context.push_text([adapter.token_ids.eos]), segment_open=False)


@torch.no_grad()
def generate_text(
    adapter: BagelParts,
    context: BagelContext,
    *,
    max_new_tokens: int,
    stop: Sequence[str] = (),
    sampling: TextSampling | None = None,
) -> TextResult:
    """Continue the assistant's text from ``context``'s cache (module docstring).

    ``token_ids`` are the chosen tokens, plus the ``<|im_end|>`` appended after a stop string.
    """
    if max_new_tokens < 1:
        raise ClearConfigError(f"max_new_tokens={max_new_tokens} must be >= 1.")
    tokenizer = _tokenizer(adapter)
    sampling = sampling or TextSampling()
    eos, runner = adapter.token_ids.eos, adapter.runner
    ctx = open_segment(adapter, context)
    generator = _generator(sampling, ctx, runner.device)
    vocabulary = sampling_vocabulary(tokenizer, tag_mode(adapter.model.config))
    new: list[int] = []
    logprobs: list[float | None] = []
    stopped = False
    window = _stop_window(stop)
    for _ in range(max_new_tokens):
        ctx = runner.ensure_logits(ctx)
        logits = ctx.next_logits.clone()
        logits[vocabulary.size :] = float("-inf")
        logits[list(vocabulary.excluded)] = float("-inf")
        token = pick_token(logits, sampling, generator)
        new.append(token)
        logprobs.append(token_logprob(logits, token, sampling))
        ctx = ctx.push_text([token])
        if token == eos:
            ctx = replace(ctx, segment_open=False)
            break
        if stop and _stop_in(_decode(tokenizer, new[-window:], adapter), stop) is not None:
            ctx, stopped = close_segment(adapter, ctx), True
            new.append(eos)
            logprobs.append(None)
            break
    text = _decode(tokenizer, new, adapter)
    found = _stop_in(text, stop) if stopped else None
    if found is not None:
        text = text[: found[1]]
    return TextResult(
        text=text,
        token_ids=new,
        stopped_on=None if found is None else found[0],
        context=ctx,
        logprobs=logprobs,
    )


def _decode(tokenizer: Any, ids: Sequence[int], adapter: BagelParts) -> str:
    """Decode generated ids without Bagel's segment/image markers, keeping every other token.

    ``skip_special_tokens`` is not used: a tokenizer that already registers the trajectory tags as *special*
    tokens (rather than the plain added tokens :func:`~clear_plugins.injection.inject` adds) would lose them.
    """
    special = adapter.token_ids
    markers = {special.bos, special.eos, special.start_of_image, special.end_of_image}
    return tokenizer.decode([i for i in ids if i not in markers], skip_special_tokens=False)


def score_text(adapter: BagelParts, context: BagelContext, ids: Sequence[int]) -> tuple[Tensor, BagelContext]:
    """Teacher-forced fp32 logits ``[len(ids), vocab]`` predicting each of ``ids`` after ``context``.

    Opens an assistant segment if none is open, keeps autograd as the caller sets it (a loss on answer tokens
    reaches a bridged latent through it), and returns the context with ``ids`` appended.
    """
    if len(ids) == 0:
        raise ClearConfigError("score_text needs at least one token id.")
    runner = adapter.runner
    ctx = open_segment(adapter, context)
    previous = ctx.next_logits
    ctx = ctx.push_text(ids)
    main, hidden = runner.forward(ctx.main)
    logits = runner.logits(hidden)
    n = len(ids)
    rows = torch.cat([previous[None], logits[: n - 1]]) if previous is not None else logits[-n - 1 : -1]
    return rows, replace(ctx, main=main, next_logits=logits[-1])
