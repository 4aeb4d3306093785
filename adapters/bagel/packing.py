"""Packed interleaved sequences: per-token layout, RoPE positions, attention mask and MoT routing.

A packed sequence is one flat run of tokens (no batch dimension) that may hold several samples. Every token has:

- ``kind``: :class:`TokenKind` — ``TEXT`` (text and the image start/end markers), ``VIT`` or ``LATENT``. Only
  ``LATENT`` tokens are routed to the generation expert (``*_moe_gen``); everything else uses the understanding one;
- ``sample``: which sample it belongs to (samples never attend to each other);
- ``block`` and ``mode``: the block it belongs to and that block's :class:`AttnMode` — ``CAUSAL`` (text),
  ``FULL`` (an image block, bidirectional within itself) or ``NOISE`` (a noised latent block: bidirectional within
  itself and invisible to every other block);
- ``order``: a running index, increasing along the sequence (causal attention within a block compares it);
- ``position``: the 1-D RoPE position. Text tokens take consecutive positions; a whole image block (start marker,
  tokens, end marker) shares one position ``p`` and the next item starts at ``p + 1``; a noised block does not
  advance the position (reference §5.6 and the official training packer).

The mask rule, for a query ``q`` and key ``k`` of the same sample: ``k`` is visible if it is in an earlier block
that is not ``NOISE``, or in the same block and (the block is not ``CAUSAL`` or ``k.order <= q.order``).
Block ids and orders continue across calls through :class:`LayoutState`, so a layout built on top of a KV cache
gives exactly the rows of the full sequence's mask: an incremental forward equals the full forward.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import IntEnum

import torch

from clear_plugins.errors import ClearConfigError


class TokenKind(IntEnum):
    """What a packed token is; ``LATENT`` tokens go through the generation expert."""

    TEXT = 0
    VIT = 1
    LATENT = 2


class AttnMode(IntEnum):
    """Attention mode of a block."""

    CAUSAL = 0
    FULL = 1
    NOISE = 2


@dataclass(frozen=True)
class LayoutState:
    """Where the next block goes: next RoPE position per sample, next block id, next running order."""

    positions: dict[int, int] = field(default_factory=dict)
    next_block: int = 0
    next_order: int = 0

    def position(self, sample: int) -> int:
        """Next RoPE position of ``sample`` (0 for a new sample)."""
        return self.positions.get(sample, 0)


_FIELDS = ("kind", "sample", "block", "mode", "order", "position")


@dataclass
class PackedLayout:
    """Per-token metadata of a packed sequence: six 1-D ``long`` tensors of equal length.

    ``end_state`` is the :class:`LayoutState` after the last block, used to continue the sequence (a KV cache
    adopts it when the layout's tokens are appended).
    """

    kind: torch.Tensor
    sample: torch.Tensor
    block: torch.Tensor
    mode: torch.Tensor
    order: torch.Tensor
    position: torch.Tensor
    end_state: LayoutState = field(default_factory=LayoutState)

    def __len__(self) -> int:
        return int(self.kind.shape[0])

    def to(self, device: torch.device | str) -> PackedLayout:
        """The same layout on ``device``."""
        return replace(self, **{name: getattr(self, name).to(device) for name in _FIELDS})

    def cat(self, other: PackedLayout) -> PackedLayout:
        """This layout followed by ``other`` (whose ``end_state`` is kept)."""
        return PackedLayout(
            **{name: torch.cat([getattr(self, name), getattr(other, name)]) for name in _FIELDS},
            end_state=other.end_state,
        )

    def indices(self, kind: TokenKind) -> torch.Tensor:
        """Sequence indices of the tokens of ``kind``, in sequence order."""
        return torch.nonzero(self.kind == int(kind), as_tuple=False).flatten()

    @property
    def gen_mask(self) -> torch.Tensor:
        """Bool ``[L]``: tokens routed to the generation expert (the latent tokens)."""
        return self.kind == int(TokenKind.LATENT)


@dataclass(frozen=True)
class ImageSpan:
    """Where an image block landed in a builder's sequence: marker indices and the token slice."""

    start_marker: int
    tokens: slice
    end_marker: int
    position: int
    block: int


class LayoutBuilder:
    """Appends text and image blocks, assigning kinds, blocks, modes, orders and RoPE positions.

    Start from ``LayoutState()`` for a fresh sequence or from a KV cache's ``state`` to continue it. Indices
    returned by :meth:`text` and :meth:`image` are relative to the tokens this builder adds.
    """

    def __init__(self, state: LayoutState | None = None) -> None:
        start = state if state is not None else LayoutState()
        self._positions = dict(start.positions)
        self._block = start.next_block
        self._order = start.next_order
        self._rows: dict[str, list[int]] = {name: [] for name in _FIELDS}

    def __len__(self) -> int:
        return len(self._rows["kind"])

    def _push(self, kinds: list[int], sample: int, mode: AttnMode, positions: list[int]) -> None:
        n = len(kinds)
        self._rows["kind"].extend(kinds)
        self._rows["sample"].extend([sample] * n)
        self._rows["block"].extend([self._block] * n)
        self._rows["mode"].extend([int(mode)] * n)
        self._rows["order"].extend(range(self._order, self._order + n))
        self._rows["position"].extend(positions)
        self._order += n
        self._block += 1

    def text(self, length: int, sample: int = 0) -> slice:
        """Add a causal text block of ``length`` tokens to ``sample``; returns its slice."""
        if length <= 0:
            raise ClearConfigError(f"a text block needs at least one token, got length={length}.")
        start, p = len(self), self._positions.get(sample, 0)
        self._push([int(TokenKind.TEXT)] * length, sample, AttnMode.CAUSAL, list(range(p, p + length)))
        self._positions[sample] = p + length
        return slice(start, start + length)

    def image(self, num_tokens: int, kind: TokenKind, sample: int = 0, *, noised: bool = False) -> ImageSpan:
        """Add an image block ``[start marker, num_tokens × kind, end marker]`` sharing one RoPE position.

        ``noised=True`` (latent blocks only) makes the block invisible to every other block and leaves the RoPE
        position where it was; otherwise the next item starts one position later.
        """
        if kind == TokenKind.TEXT or num_tokens <= 0:
            raise ClearConfigError(
                f"an image block needs VIT or LATENT tokens and num_tokens > 0 (got {kind!r}, {num_tokens})."
            )
        if noised and kind != TokenKind.LATENT:
            raise ClearConfigError("only LATENT blocks can be noised; pass noised=False for a ViT block.")
        start, p, block = len(self), self._positions.get(sample, 0), self._block
        kinds = [int(TokenKind.TEXT)] + [int(kind)] * num_tokens + [int(TokenKind.TEXT)]
        self._push(kinds, sample, AttnMode.NOISE if noised else AttnMode.FULL, [p] * len(kinds))
        if not noised:
            self._positions[sample] = p + 1
        return ImageSpan(start, slice(start + 1, start + 1 + num_tokens), start + 1 + num_tokens, p, block)

    @property
    def state(self) -> LayoutState:
        """The state after everything added so far."""
        return LayoutState(dict(self._positions), self._block, self._order)

    def build(self, device: torch.device | str | None = None) -> PackedLayout:
        """The layout of the added tokens."""
        tensors = {
            name: torch.tensor(values, dtype=torch.long, device=device) for name, values in self._rows.items()
        }
        return PackedLayout(**tensors, end_state=self.state)


def attention_mask(query: PackedLayout, key: PackedLayout) -> torch.Tensor:
    """Bool ``[Lq, Lk]``: ``True`` where query token ``i`` may attend to key token ``j`` (module docstring rule)."""
    same_sample = query.sample[:, None] == key.sample[None, :]
    same_block = query.block[:, None] == key.block[None, :]
    earlier_visible = (key.block[None, :] < query.block[:, None]) & (key.mode != int(AttnMode.NOISE))[None, :]
    not_causal = (query.mode != int(AttnMode.CAUSAL))[:, None]
    within = same_block & (not_causal | (key.order[None, :] <= query.order[:, None]))
    return same_sample & (earlier_visible | within)


def attention_bias(mask: torch.Tensor, implementation: str | None, dtype: torch.dtype) -> torch.Tensor:
    """The ``[1, 1, Lq, Lk]`` mask in the form an attention implementation takes (bool for SDPA, additive else)."""
    mask = mask[None, None]
    if implementation == "sdpa":
        return mask
    bias = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
    return bias.masked_fill(~mask, torch.finfo(dtype).min)


def block_diagonal_mask(lengths: list[int], device: torch.device | str | None = None) -> torch.Tensor:
    """Bool ``[N, N]`` letting each of several concatenated segments attend only within itself (varlen)."""
    ids = torch.repeat_interleave(
        torch.arange(len(lengths), device=device), torch.tensor(lengths, device=device)
    )
    return ids[:, None] == ids[None, :]


class Routing:
    """Routes a packed run of tokens between the understanding and generation experts, sorting once per forward.

    :meth:`sort` puts the understanding rows first and the generation rows after them (each in sequence order);
    every routed op then runs each expert on a slice (:meth:`apply`: no gather per op), and :meth:`unsort` restores
    sequence order once at the end. With a single expert present every step is the identity.
    """

    def __init__(self, gen_mask: torch.Tensor) -> None:
        self.num_gen = int(gen_mask.sum())
        self.num_und = int(gen_mask.shape[0]) - self.num_gen
        self.order: torch.Tensor | None = None
        self.inverse: torch.Tensor | None = None
        if self.num_gen and self.num_und:
            self.order = torch.argsort(gen_mask.to(torch.int8), stable=True)
            self.inverse = torch.argsort(self.order)

    def sort(self, x: torch.Tensor, dim: int = 0) -> torch.Tensor:
        """Rows of ``x`` (along ``dim``) in expert order."""
        return x if self.order is None else x.index_select(dim, self.order)

    def unsort(self, x: torch.Tensor, dim: int = 0) -> torch.Tensor:
        """Rows of ``x`` (along ``dim``, in expert order) back in sequence order."""
        return x if self.inverse is None else x.index_select(dim, self.inverse)

    def sort_layout(self, layout: PackedLayout) -> PackedLayout:
        """``layout`` with its tokens in expert order (what the mask of sorted queries is built from)."""
        if self.order is None:
            return layout
        return replace(layout, **{name: getattr(layout, name)[self.order] for name in _FIELDS})

    def apply(self, x: torch.Tensor, und_fn: torch.nn.Module, gen_fn: torch.nn.Module) -> torch.Tensor:
        """``und_fn`` on the understanding rows and ``gen_fn`` on the generation rows of ``x`` (in expert order)."""
        if self.num_gen == 0:
            return und_fn(x)
        if self.num_und == 0:
            return gen_fn(x)
        und = und_fn(x[: self.num_und])
        return torch.cat([und, gen_fn(x[self.num_und :]).to(und.dtype)])
