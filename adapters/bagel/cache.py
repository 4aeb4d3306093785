"""An explicit KV cache for packed Bagel contexts.

Per decoder layer it holds the keys (after ``k_norm`` and RoPE) and the values (as projected) of every cached token,
shaped ``[1, num_kv_heads, L, head_dim]``, plus the :class:`~.packing.PackedLayout` of those tokens (so the mask of
new tokens against them can be built) and the :class:`~.packing.LayoutState` where the next block goes.

Appending concatenates new tensors (the stored ones are never written in place; a forward hands over the
concatenation its attention already made, :meth:`BagelKVCache.extend`), so :meth:`BagelKVCache.copy` is a cheap fork: two contexts (e.g. the classifier-free-guidance branches) can grow independently from a shared prefix.
Tensors are stored as computed: if they carry autograd history, so does the cache (the differentiable bridge).
"""

from __future__ import annotations

import torch

from clear_plugins.errors import ClearConfigError

from .packing import AttnMode, LayoutState, PackedLayout


class BagelKVCache:
    """Keys/values of a packed context, one entry per decoder layer, with the layout of the cached tokens.

    The layout is kept as the list of appended chunks and concatenated only when a mask needs it (most forwards on
    a cache need none: see :meth:`sees_everything`), so a decoded token costs no work proportional to the context
    beyond the one key/value concatenation its layer does anyway.
    """

    def __init__(self, num_layers: int) -> None:
        self.keys: list[torch.Tensor | None] = [None] * num_layers
        self.values: list[torch.Tensor | None] = [None] * num_layers
        self.state: LayoutState = LayoutState()
        self._chunks: tuple[PackedLayout, ...] = ()
        self._length = 0
        self._samples: frozenset[int] = frozenset()
        self._has_noise = False

    @property
    def num_layers(self) -> int:
        """Number of decoder layers."""
        return len(self.keys)

    def __len__(self) -> int:
        """Number of cached tokens."""
        return self._length

    @property
    def layout(self) -> PackedLayout | None:
        """The :class:`~.packing.PackedLayout` of the cached tokens (``None`` while empty)."""
        if not self._chunks:
            return None
        if len(self._chunks) > 1:
            merged = self._chunks[0]
            for chunk in self._chunks[1:]:
                merged = merged.cat(chunk)
            self._chunks = (merged,)
        return self._chunks[0]

    def sees_everything(self, query: PackedLayout) -> bool:
        """Whether every token of ``query`` (appended after this cache) may attend to every cached token and every
        token of ``query``: then no attention mask is needed (module :mod:`.packing`'s rule).

        True for one token, or one bidirectional block (an image, or a noised latent block), of the one sample the
        cache holds, when the cache holds no noised block.
        """
        if self._has_noise or len(query) == 0:
            return False
        sample = int(query.sample[0])
        if not self._samples <= {sample}:
            return False
        if len(query) == 1:
            return True
        one_block = bool((query.block == query.block[0]).all()) and bool((query.sample == sample).all())
        return one_block and int(query.mode[0]) != int(AttnMode.CAUSAL)

    def layer(self, index: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(keys, values)`` of layer ``index``, or ``None`` while the cache is empty."""
        k, v = self.keys[index], self.values[index]
        return None if k is None or v is None else (k, v)

    def append(self, keys: list[torch.Tensor], values: list[torch.Tensor], layout: PackedLayout) -> None:
        """Append the per-layer keys/values of the tokens described by ``layout`` and adopt its end state."""
        self._check(keys, values)
        full_keys, full_values = [], []
        for i, (k, v) in enumerate(zip(keys, values, strict=True)):
            old = self.layer(i)
            full_keys.append(k if old is None else torch.cat([old[0], k], dim=2))
            full_values.append(v if old is None else torch.cat([old[1], v], dim=2))
        self.extend(full_keys, full_values, layout)

    def extend(self, keys: list[torch.Tensor], values: list[torch.Tensor], layout: PackedLayout) -> None:
        """Adopt per-layer keys/values that already hold the cached tokens followed by those of ``layout`` (what an
        attention layer concatenates anyway), so nothing is copied a second time."""
        self._check(keys, values)
        expected = self._length + len(layout)
        if any(k.shape[2] != expected or v.shape[2] != expected for k, v in zip(keys, values, strict=True)):
            raise ClearConfigError(
                f"extend needs keys/values of the {self._length} cached tokens plus the {len(layout)} new ones; "
                "use append for the new tokens alone."
            )
        self.keys, self.values = list(keys), list(values)
        self._chunks = (*self._chunks, layout)
        self._length = expected
        self._samples = self._samples | set(layout.sample.tolist())
        self._has_noise = self._has_noise or bool((layout.mode == int(AttnMode.NOISE)).any())
        self.state = layout.end_state

    def _check(self, keys: list[torch.Tensor], values: list[torch.Tensor]) -> None:
        if len(keys) != self.num_layers or len(values) != self.num_layers:
            raise ClearConfigError(
                f"got {len(keys)} key and {len(values)} value tensors for a {self.num_layers}-layer cache."
            )

    def copy(self) -> BagelKVCache:
        """A fork sharing the cached tensors; appending to either leaves the other unchanged."""
        other = BagelKVCache(self.num_layers)
        other.keys, other.values = list(self.keys), list(self.values)
        other.state, other._chunks, other._length = self.state, self._chunks, self._length
        other._samples, other._has_noise = self._samples, self._has_noise
        return other

    def detach(self) -> BagelKVCache:
        """A copy whose tensors carry no autograd history."""
        other = self.copy()
        other.keys = [None if k is None else k.detach() for k in self.keys]
        other.values = [None if v is None else v.detach() for v in self.values]
        return other


class BranchSlots:
    """Key/value buffers for repeated forwards of one query block on each of several fixed caches.

    Per layer and branch the buffer holds the branch's cached keys (values) followed by room for the block; it is
    built on first use, once per restore, and each step only writes the block's new keys/values into the room, so
    a denoising step copies nothing proportional to the context. The caches themselves are never written. A step
    that keeps autograd on caches with autograd history (the last step after a differentiable bridge) rebuilds its
    buffers once under the graph, so gradients reach the cache as they would through a plain concatenation.
    """

    def __init__(self, caches: list[BagelKVCache], block: int) -> None:
        self.caches = caches
        self.block = block
        layers = caches[0].num_layers
        self._keys: list[list[torch.Tensor | None]] = [[None] * len(caches) for _ in range(layers)]
        self._values: list[list[torch.Tensor | None]] = [[None] * len(caches) for _ in range(layers)]
        self._tracked: list[list[bool]] = [[False] * len(caches) for _ in range(layers)]

    def write(
        self, layer: int, branch: int, keys: torch.Tensor, values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Put the block's ``keys``/``values`` ``[1, kv_heads, block, d]`` after branch ``branch``'s cache in layer
        ``layer``; returns the whole buffers (cache + block) to attend to."""
        if keys.shape[2] != self.block:
            raise ClearConfigError(f"the slots hold blocks of {self.block} tokens, got {keys.shape[2]}.")
        past = self.caches[branch].layer(layer)
        # built without autograd (earlier steps run without graphs) but now a graph must reach the cache: rebuild
        track = (
            past is not None and torch.is_grad_enabled() and (past[0].requires_grad or past[1].requires_grad)
        )
        if self._keys[layer][branch] is None or (track and not self._tracked[layer][branch]):
            self._keys[layer][branch] = self._room(None if past is None else past[0], keys)
            self._values[layer][branch] = self._room(None if past is None else past[1], values)
            self._tracked[layer][branch] = track
        k, v = self._keys[layer][branch], self._values[layer][branch]
        k[:, :, -self.block :] = keys
        v[:, :, -self.block :] = values
        return k, v

    @staticmethod
    def _room(past: torch.Tensor | None, new: torch.Tensor) -> torch.Tensor:
        room = torch.empty_like(new)
        return room if past is None else torch.cat([past, room], dim=2)
