"""Packed-row attention as a ``torch.nn.attention.flex_attention`` BlockMask (training on long packed rows).

The dense mask of :func:`.packing.attention_mask` is a ``[L, L]`` boolean — about 1 GB at the reference's ~32k-token
packs — and keeps SDPA off its fused kernels. Here the same rule (module docstring of :mod:`.packing`) is a
``mask_mod`` over the layout's per-token tensors, and the block structure (which 128×128 tiles are empty, partial
or full) is computed one query tile at a time, so nothing ``L × L`` is ever held. The official Bagel trains this
way.

``resolve_attention`` picks the path: ``"auto"`` is flex on CUDA and dense elsewhere — torch's flex attention has
no backward on CPU (forward-only works there, which the equality test uses).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

from clear_plugins.errors import ClearConfigError

from .packing import AttnMode, PackedLayout, attention_bias, attention_mask

BLOCK_SIZE = 128
"""Tile side of the BlockMask (flex attention's default)."""
FLEX = "flex_attention"
"""Name of the flex path in the attention dispatch."""


def flex_available() -> bool:
    """Whether this torch provides flex attention."""
    try:
        import torch.nn.attention.flex_attention  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_attention(requested: str, device: torch.device) -> str:
    """``"flex"`` or ``"dense"`` for a training forward on ``device`` (see the module docstring)."""
    if requested == "auto":
        return "flex" if device.type == "cuda" and flex_available() else "dense"
    if requested == "flex" and not flex_available():
        raise ClearConfigError(
            "attention='flex' needs torch.nn.attention.flex_attention (torch >= 2.5); use 'dense'."
        )
    if requested not in ("flex", "dense"):
        raise ClearConfigError(f"attention={requested!r} must be 'auto', 'flex' or 'dense'.")
    return requested


def _mask_mod(query: PackedLayout, key: PackedLayout) -> Callable:
    """The packing rule as a flex ``mask_mod`` over query/key token indices."""
    qs, qb, qm, qo = query.sample, query.block, query.mode, query.order
    ks, kb, km, ko = key.sample, key.block, key.mode, key.order
    q_last, k_last = len(query) - 1, len(key) - 1
    noise, causal = int(AttnMode.NOISE), int(AttnMode.CAUSAL)

    def mask_mod(b, h, q_idx, kv_idx):
        q = q_idx.clamp(max=q_last)
        k = kv_idx.clamp(max=k_last)
        earlier = (kb[k] < qb[q]) & (km[k] != noise)
        within = (kb[k] == qb[q]) & ((qm[q] != causal) | (ko[k] <= qo[q]))
        return (qs[q] == ks[k]) & (earlier | within) & (q_idx <= q_last) & (kv_idx <= k_last)

    return mask_mod


def _tiles(query: PackedLayout, key: PackedLayout, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Bool ``[nq, nk]`` tiles with any visible pair, and tiles entirely visible (interior tiles only)."""
    lq, lk = len(query), len(key)
    nq, nk = -(-lq // block), -(-lk // block)
    any_tile = torch.zeros(nq, nk, dtype=torch.bool, device=query.kind.device)
    full_tile = torch.zeros_like(any_tile)
    for i in range(nq):
        rows = slice(i * block, min((i + 1) * block, lq))
        part = PackedLayout(
            *(getattr(query, n)[rows] for n in ("kind", "sample", "block", "mode", "order", "position"))
        )
        dense = attention_mask(part, key)  # [r, lk], one query tile at a time
        padded = torch.zeros(block, nk * block, dtype=torch.bool, device=dense.device)
        padded[: dense.shape[0], :lk] = dense
        tiles = padded.view(block, nk, block)
        any_tile[i] = tiles.any(dim=2).any(dim=0)
        if dense.shape[0] == block:
            full_tile[i, : lk // block] = tiles[:, : lk // block].all(dim=2).all(dim=0)
    return any_tile, full_tile


def _indices(tiles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per query tile: the number of listed key tiles and their indices (listed first), as flex expects."""
    counts = tiles.sum(dim=1).to(torch.int32)
    order = torch.argsort((~tiles).to(torch.int8), dim=1, stable=True).to(torch.int32)
    return counts[None, None], order[None, None]


def packed_block_mask(query: PackedLayout, key: PackedLayout | None = None, block: int = BLOCK_SIZE) -> Any:
    """The flex ``BlockMask`` of queries ``query`` over keys ``key`` (default: the same tokens)."""
    from torch.nn.attention.flex_attention import BlockMask

    key = query if key is None else key
    any_tile, full_tile = _tiles(query, key, block)
    partial = any_tile & ~full_tile
    kv_num, kv_idx = _indices(partial)
    full_num, full_idx = _indices(full_tile)
    return BlockMask.from_kv_blocks(
        kv_num,
        kv_idx,
        full_num,
        full_idx,
        BLOCK_SIZE=block,
        mask_mod=_mask_mod(query, key),
        seq_lengths=(len(query), len(key)),
    )


def packed_mask(
    query: PackedLayout, key: PackedLayout, attention: str, implementation: str | None, dtype
) -> Any:
    """The mask a forward over ``query`` uses: a BlockMask for ``"flex"``, else the dense mask/bias."""
    if attention == "flex":
        return packed_block_mask(query, key)
    return attention_bias(attention_mask(query, key), implementation, dtype)


@functools.cache
def _compiled_flex() -> Callable:
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=True)


def flex_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: Any,
    scaling: float | None = None,
    **_: Any,
) -> tuple[torch.Tensor, None]:
    """The transformers attention-interface signature over a BlockMask: ``[1, heads, L, d]`` → ``[1, L, heads, d]``.

    Compiled on CUDA (fused kernels); eager elsewhere (CPU: forward only).
    """
    from torch.nn.attention.flex_attention import flex_attention

    fn = _compiled_flex() if query.device.type == "cuda" else flex_attention
    if query.device.type == "cpu" and torch.is_grad_enabled() and query.requires_grad:
        raise ClearConfigError(
            "flex attention has no backward on CPU in this torch; train with attention='dense' (or 'auto') on CPU."
        )
    out = fn(
        query, key, value, block_mask=attention_mask, scale=scaling, enable_gqa=key.shape[1] != query.shape[1]
    )
    return out.transpose(1, 2).contiguous(), None


def attention_interface(implementation: str | None, mask: Any, default: Callable) -> Callable:
    """The attention function for ``mask``: flex for a BlockMask, else the configured implementation."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    if is_block_mask(mask):
        return flex_attention_forward
    return ALL_ATTENTION_FUNCTIONS.get_interface(implementation, default)


def is_block_mask(mask: Any) -> bool:
    """Whether ``mask`` is a flex-attention BlockMask (``None`` and dense tensors are not)."""
    if mask is None or isinstance(mask, torch.Tensor) or not flex_available():
        return False
    from torch.nn.attention.flex_attention import BlockMask

    return isinstance(mask, BlockMask)


__all__ = [
    "BLOCK_SIZE",
    "attention_interface",
    "flex_attention_forward",
    "is_block_mask",
    "packed_block_mask",
    "packed_mask",
    "resolve_attention",
]
