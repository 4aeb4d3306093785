"""The reasoning context of one Bagel conversation: what it holds, its KV caches, and how it grows.

A :class:`BagelContext` is built by :func:`~.generation.start_context` and grows through text generation and the
bridge. It keeps the caches of the classifier-free-guidance branches next to the full one (reference §5.7, the
CLEAR reference's ``inferencer.py``, ``interleave_reason_tool_condition``, and official Bagel's
``interleave_inference``; :mod:`.guidance` sets them side by side):

- ``main``: everything — system prompt, the degraded image (clean VAE block, then ViT block), the question, the
  assistant's text segments and every restored image;
- ``text_uncond`` (CLEAR): the context without the model's own think segment: snapshotted from ``main`` when an
  assistant segment opens (before it: the context without the question), and equal to ``main`` after an image;
- ``image_uncond`` (CLEAR): the context without image blocks — every text, the think segments included. After a
  bridge it holds what the reference's does: a latent (VAE) block makes it the whole ``main`` (the reference's
  ``edit_cfg_img_context = deepcopy(gen_context)``, so from the second restore on it holds every image); a ViT
  block (``decode_reencode``) is appended to it;
- ``official_text_uncond`` / ``official_image_uncond`` (official Bagel): the context before the question (system
  prompt and images; ``main`` after a bridge) and the input texts alone (system prompt and question): neither
  holds the model's generated text.

Each cache sits in a :class:`Branch` together with *pending* items: content that belongs to the branch but has not
been run through the model yet. Pending items are forwarded on first use, together with whatever comes next, so
the guidance branches cost nothing until a guided restore needs them and a forced ``<|im_end|>`` rides along with
the next forward. Forwarding pending items (:meth:`ContextRunner.flush`) never changes what a context holds, only
where it is stored; any operation that adds content returns a new context and leaves the old one valid (caches
are forked with :meth:`~.cache.BagelKVCache.copy`, never written in place).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import Tensor

from clear_plugins.adapters.base import Latent, Tokens
from clear_plugins.errors import ClearConfigError

from .cache import BagelKVCache
from .sequence import BagelTokenIds, SequenceBuilder

if TYPE_CHECKING:
    from .encoders import BagelEncoders
    from .modeling_bagel import BagelForConditionalGeneration


@dataclass(frozen=True)
class TextItem:
    """Text token ids appended as one causal block (segment markers included by the caller)."""

    ids: tuple[int, ...]

    @property
    def num_tokens(self) -> int:
        """Sequence length of the block."""
        return len(self.ids)

    def add_to(self, builder: SequenceBuilder) -> None:
        """Append to ``builder``."""
        builder.add_text(list(self.ids))

    def detached(self) -> TextItem:
        """Itself (ids carry no autograd history)."""
        return self


@dataclass(frozen=True, eq=False)
class LatentItem:
    """A clean (``t = 0``) VAE-latent image block: tokens ``[rows·cols, p·p·C]`` on ``grid``."""

    tokens: Tensor
    grid: tuple[int, int]

    @property
    def num_tokens(self) -> int:
        """Sequence length of the block (markers included)."""
        return self.tokens.shape[0] + 2

    def add_to(self, builder: SequenceBuilder) -> None:
        """Append to ``builder`` (``vae2llm`` + timestep embedding at 0 + latent position embedding)."""
        builder.add_latent_image(self.tokens, self.grid, 0.0)

    def detached(self) -> LatentItem:
        """The same block without autograd history."""
        return LatentItem(self.tokens.detach(), self.grid)


@dataclass(frozen=True, eq=False)
class VitItem:
    """A ViT image block from precomputed token embeddings ``[rows·cols, hidden]`` on ``grid``."""

    embeds: Tensor
    grid: tuple[int, int]

    @property
    def num_tokens(self) -> int:
        """Sequence length of the block (markers included)."""
        return self.embeds.shape[0] + 2

    def add_to(self, builder: SequenceBuilder) -> None:
        """Append to ``builder``."""
        builder.add_vit_embeds(self.embeds, self.grid)

    def detached(self) -> VitItem:
        """The same block without autograd history."""
        return VitItem(self.embeds.detach(), self.grid)


Item = TextItem | LatentItem | VitItem


def concat_items(items: Sequence[Item], more: Iterable[Item]) -> tuple[Item, ...]:
    """``items`` followed by ``more``, merging consecutive text items into one."""
    out = list(items)
    for item in more:
        if isinstance(item, TextItem) and out and isinstance(out[-1], TextItem):
            out[-1] = TextItem(out[-1].ids + item.ids)
        else:
            out.append(item)
    return tuple(out)


@dataclass(frozen=True)
class Branch:
    """A KV cache plus items that belong after it but have not been forwarded yet."""

    cache: BagelKVCache
    pending: tuple[Item, ...] = ()

    def plus(self, *items: Item) -> Branch:
        """This branch with ``items`` appended to the pending ones (nothing is run)."""
        return Branch(self.cache, concat_items(self.pending, items))

    @property
    def num_tokens(self) -> int:
        """Tokens held, cached or pending."""
        return len(self.cache) + sum(item.num_tokens for item in self.pending)


@dataclass(frozen=True)
class DegradedImage:
    """The degraded input image's encodings, kept for reuse (grid of the restore, ablations, re-prefill)."""

    latent: Latent
    vit: Tokens

    @property
    def latent_grid(self) -> tuple[int, int]:
        """Token grid of the VAE latent (the restored image's grid)."""
        return self.latent.grids[0]


@dataclass
class BagelContext:
    """The state of one Bagel conversation (see the module docstring).

    Attributes:
        main: the full context's cache and pending items.
        text_uncond: CLEAR's text-uncond guidance branch (without the model's own think segment).
        image_uncond: CLEAR's image-uncond guidance branch (without the image blocks; see the module docstring
            for what it holds after a bridge).
        degraded: the degraded image's VAE latent and ViT embeddings.
        items: every item of ``main`` in order (text ids, image blocks): the record a re-prefill replays.
        segment_open: whether an assistant text segment is open (``<|im_start|>`` fed, no ``<|im_end|>`` yet).
        next_logits: fp32 ``[vocab]`` logits of the next token when known (``None`` while items are pending).
        official_text_uncond: official Bagel's text-uncond branch (without the question and generated text).
        official_image_uncond: official Bagel's image-uncond branch (the system prompt and question only).
    """

    main: Branch
    text_uncond: Branch
    image_uncond: Branch
    degraded: DegradedImage
    items: tuple[Item, ...]
    segment_open: bool = False
    next_logits: Tensor | None = None
    official_text_uncond: Branch | None = None
    official_image_uncond: Branch | None = None

    @property
    def text_ids(self) -> list[int]:
        """All text token ids of the context, in order (image blocks left out)."""
        return [i for item in self.items if isinstance(item, TextItem) for i in item.ids]

    @property
    def num_tokens(self) -> int:
        """Sequence length of the full context."""
        return self.main.num_tokens

    def push_text(self, ids: Sequence[int]) -> BagelContext:
        """A new context with ``ids`` appended to ``main`` and ``image_uncond`` (pending; nothing is run); official
        Bagel's branches hold no generated text."""
        item = TextItem(tuple(int(i) for i in ids))
        return replace(
            self,
            main=self.main.plus(item),
            image_uncond=self.image_uncond.plus(item),
            items=concat_items(self.items, [item]),
            next_logits=None,
        )


class BagelParts(Protocol):
    """What prefill, text generation and restoration read from the adapter (:class:`~.adapter.BagelAdapter`
    provides it); typed here so those modules never name the facade."""

    model: BagelForConditionalGeneration
    tokenizer: Any
    token_ids: BagelTokenIds
    runner: ContextRunner
    encoders: BagelEncoders


class ContextRunner:
    """Runs items through Bagel on top of a branch (on a fork of its cache) and reads the heads."""

    def __init__(self, model: BagelForConditionalGeneration, token_ids: BagelTokenIds) -> None:
        self.model = model
        self.token_ids = token_ids

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters."""
        return next(self.model.parameters()).device

    def empty(self) -> Branch:
        """A branch with an empty cache."""
        return Branch(BagelKVCache(self.model.config.llm_config.num_hidden_layers))

    def builder(self, branch: Branch) -> SequenceBuilder:
        """A sequence builder continuing ``branch``'s cache."""
        return SequenceBuilder(
            self.token_ids, self.model.config.vit_config.patch_size, state=branch.cache.state
        )

    def forward(self, branch: Branch, items: Sequence[Item] = ()) -> tuple[Branch, Tensor | None]:
        """Forward ``branch``'s pending items then ``items``; returns the grown branch and their final hidden states.

        The hidden states ``[n, hidden]`` cover exactly the forwarded tokens (``None`` when there were none).
        """
        builder = self.builder(branch)
        for item in (*branch.pending, *items):
            item.add_to(builder)
        if len(builder) == 0:
            return branch, None
        inputs = builder.build(self.device)
        cache = branch.cache.copy()
        out = self.model.forward_packed(
            self.model.embed_packed(inputs), inputs.layout, past_key_values=cache, use_cache=True
        )
        return Branch(cache), out.last_hidden_state

    def flush(self, branch: Branch) -> Branch:
        """``branch`` with its pending items forwarded (same content)."""
        return self.forward(branch)[0] if branch.pending else branch

    def logits(self, hidden: Tensor) -> Tensor:
        """fp32 next-token logits ``[..., vocab]`` of final hidden states at text positions."""
        return self.model.text_logits(hidden).float()

    def ensure_logits(self, context: BagelContext) -> BagelContext:
        """``context`` with ``next_logits`` set, forwarding its pending items if needed (same content)."""
        if context.next_logits is not None:
            return context
        if not context.main.pending or not isinstance(context.main.pending[-1], TextItem):
            raise ClearConfigError(
                "the context ends with an image block or a closed segment, so no next-token logits exist; "
                "open a text segment first (generate_text does)."
            )
        main, hidden = self.forward(context.main)
        return replace(context, main=main, next_logits=self.logits(hidden[-1]))

    def append_image(self, context: BagelContext, item: LatentItem | VitItem) -> BagelContext:
        """A new context with the image block ``item`` forwarded into ``main`` (one forward, pending included).

        As in the CLEAR reference's inferencer, both text-uncond branches become the new ``main``; CLEAR's
        image-uncond branch becomes the whole new ``main`` after a latent block and receives a ViT block (module
        docstring); official Bagel's image-uncond branch is left as it is. Guidance branches carry no autograd
        history.
        """
        main, _ = self.forward(context.main, [item])
        detached = Branch(main.cache.detach())
        image_uncond = (
            detached if isinstance(item, LatentItem) else context.image_uncond.plus(item.detached())
        )
        return replace(
            context,
            main=main,
            text_uncond=main,
            image_uncond=image_uncond,
            official_text_uncond=detached,
            items=concat_items(context.items, [item]),
            segment_open=False,
            next_logits=None,
        )

    def replay(self, context: BagelContext) -> BagelContext:
        """The same context rebuilt by one full prefill of its items (no cache reuse): the reference for tests
        and benchmarks of cached continuation. ``next_logits`` is set when a text segment is open."""
        main, hidden = self.forward(self.empty(), context.items)
        logits = self.logits(hidden[-1]) if context.segment_open else None
        return replace(context, main=main, next_logits=logits)
