"""An explicit KV cache for packed Bagel contexts.

Per decoder layer it holds the keys (after ``k_norm`` and RoPE) and the values (as projected) of every cached token,
shaped ``[1, num_kv_heads, L, head_dim]``, plus the :class:`~.packing.PackedLayout` of those tokens (so the mask of
new tokens against them can be built) and the :class:`~.packing.LayoutState` where the next block goes.

Appending concatenates new tensors (the stored ones are never written in place), so :meth:`BagelKVCache.copy` is a
cheap fork: two contexts (e.g. the classifier-free-guidance branches) can grow independently from a shared prefix.
Tensors are stored as computed: if they carry autograd history, so does the cache (the differentiable bridge).
"""

from __future__ import annotations

import torch

from clear_plugins.errors import ClearConfigError

from .packing import LayoutState, PackedLayout


class BagelKVCache:
    """Keys/values of a packed context, one entry per decoder layer, with the layout of the cached tokens."""

    def __init__(self, num_layers: int) -> None:
        self.keys: list[torch.Tensor | None] = [None] * num_layers
        self.values: list[torch.Tensor | None] = [None] * num_layers
        self.layout: PackedLayout | None = None
        self.state: LayoutState = LayoutState()

    @property
    def num_layers(self) -> int:
        """Number of decoder layers."""
        return len(self.keys)

    def __len__(self) -> int:
        """Number of cached tokens."""
        return 0 if self.layout is None else len(self.layout)

    def layer(self, index: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(keys, values)`` of layer ``index``, or ``None`` while the cache is empty."""
        k, v = self.keys[index], self.values[index]
        return None if k is None or v is None else (k, v)

    def append(self, keys: list[torch.Tensor], values: list[torch.Tensor], layout: PackedLayout) -> None:
        """Append the per-layer keys/values of the tokens described by ``layout`` and adopt its end state."""
        if len(keys) != self.num_layers or len(values) != self.num_layers:
            raise ClearConfigError(
                f"got {len(keys)} key and {len(values)} value tensors for a {self.num_layers}-layer cache."
            )
        for i, (k, v) in enumerate(zip(keys, values, strict=True)):
            old = self.layer(i)
            self.keys[i] = k if old is None else torch.cat([old[0], k], dim=2)
            self.values[i] = v if old is None else torch.cat([old[1], v], dim=2)
        self.layout = layout if self.layout is None else self.layout.cat(layout)
        self.state = layout.end_state

    def copy(self) -> BagelKVCache:
        """A fork sharing the cached tensors; appending to either leaves the other unchanged."""
        other = BagelKVCache(self.num_layers)
        other.keys, other.values = list(self.keys), list(self.values)
        other.layout, other.state = self.layout, self.state
        return other

    def detach(self) -> BagelKVCache:
        """A copy whose tensors carry no autograd history."""
        other = self.copy()
        other.keys = [None if k is None else k.detach() for k in self.keys]
        other.values = [None if v is None else v.detach() for v in self.values]
        return other
