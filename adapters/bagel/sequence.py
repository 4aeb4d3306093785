"""Content of packed interleaved sequences: what goes at each token, built block by block.

:class:`SequenceBuilder` appends text segments, ViT images and VAE-latent images (each image wrapped in
``<|vision_start|> … <|vision_end|>`` marker tokens) and returns :class:`PackedInputs`: the
:class:`~.packing.PackedLayout` plus the text ids, ViT patches (or precomputed ViT embeddings) and latent tokens
with their flow times, each listed in sequence order. The model turns it into input embeddings with
``BagelForConditionalGeneration.embed_packed``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from clear_plugins.errors import ClearConfigError

from .embeddings import patchify
from .packing import ImageSpan, LayoutBuilder, LayoutState, PackedLayout, TokenKind


@dataclass(frozen=True)
class BagelTokenIds:
    """Ids of the four special tokens Bagel places around text segments and image blocks (reference §4).

    Defaults are the Qwen2.5 tokenizer's ids used by BAGEL-7B-MoT.
    """

    bos: int = 151644
    eos: int = 151645
    start_of_image: int = 151652
    end_of_image: int = 151653

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> BagelTokenIds:
        """Look the four tokens up in ``tokenizer``; the error names a missing one."""
        names = {
            "bos": "<|im_start|>",
            "eos": "<|im_end|>",
            "start_of_image": "<|vision_start|>",
            "end_of_image": "<|vision_end|>",
        }
        ids = {}
        for attr, token in names.items():
            token_id = tokenizer.convert_tokens_to_ids(token)
            if token_id is None or token_id == getattr(tokenizer, "unk_token_id", object()):
                raise ClearConfigError(
                    f"tokenizer has no {token!r} token; add it (tokenizer.add_tokens) before packing."
                )
            ids[attr] = int(token_id)
        return cls(**ids)


@dataclass
class PackedInputs:
    """Everything needed to embed one packed sequence.

    Attributes:
        layout: per-token metadata (kinds, blocks, modes, RoPE positions).
        text_ids: ``[n_text]`` ids of the ``TEXT`` tokens (text and image markers), in sequence order.
        vit_patches: ``[n_vit, 3·P·P]`` patches of every ViT image, in sequence order (``None`` if none, or when
            ``vit_embeds`` is given).
        vit_embeds: ``[n_vit, hidden]`` precomputed ViT token embeddings (connector output + position table),
            used instead of running the ViT on ``vit_patches``.
        vit_grids: ``(rows, cols)`` patch grid of each ViT image.
        latent_tokens: ``[n_latent, p·p·C]`` latent tokens of every latent image (``x_t`` for noised blocks).
        latent_timesteps: ``[n_latent]`` flow time of each latent token (0 = clean).
        latent_grids: ``(rows, cols)`` token grid of each latent image.
        vit_spans / latent_spans: where each image landed in the sequence.
    """

    layout: PackedLayout
    text_ids: torch.Tensor
    vit_patches: torch.Tensor | None = None
    vit_embeds: torch.Tensor | None = None
    vit_grids: list[tuple[int, int]] = field(default_factory=list)
    latent_tokens: torch.Tensor | None = None
    latent_timesteps: torch.Tensor | None = None
    latent_grids: list[tuple[int, int]] = field(default_factory=list)
    vit_spans: list[ImageSpan] = field(default_factory=list)
    latent_spans: list[ImageSpan] = field(default_factory=list)

    def to(self, device: torch.device | str) -> PackedInputs:
        """The same inputs with every tensor on ``device``."""
        moved = {
            name: getattr(self, name).to(device)
            for name in ("text_ids", "vit_patches", "vit_embeds", "latent_tokens", "latent_timesteps")
            if getattr(self, name) is not None
        }
        return replace(self, layout=self.layout.to(device), **moved)


class SequenceBuilder:
    """Builds :class:`PackedInputs` block by block (optionally continuing a cached context's ``state``)."""

    def __init__(
        self, token_ids: BagelTokenIds, vit_patch_size: int, state: LayoutState | None = None
    ) -> None:
        self.token_ids = token_ids
        self.vit_patch_size = vit_patch_size
        self.layout = LayoutBuilder(state)
        self._text: list[int] = []
        self._vit_patches: list[torch.Tensor] = []
        self._vit_embeds: list[torch.Tensor] = []
        self._vit_grids: list[tuple[int, int]] = []
        self._latents: list[torch.Tensor] = []
        self._times: list[torch.Tensor] = []
        self._latent_grids: list[tuple[int, int]] = []
        self._vit_spans: list[ImageSpan] = []
        self._latent_spans: list[ImageSpan] = []

    def __len__(self) -> int:
        return len(self.layout)

    def add_text(self, ids: Sequence[int] | torch.Tensor, sample: int = 0) -> slice:
        """Append a causal text segment (the caller includes ``<|im_start|>``/``<|im_end|>`` as wanted)."""
        values = [int(i) for i in (ids.tolist() if isinstance(ids, torch.Tensor) else ids)]
        self._text.extend(values)
        return self.layout.text(len(values), sample)

    def _image(self, n: int, kind: TokenKind, sample: int, noised: bool) -> ImageSpan:
        span = self.layout.image(n, kind, sample, noised=noised)
        self._text.extend([self.token_ids.start_of_image, self.token_ids.end_of_image])
        return span

    def add_vit_image(self, pixels: torch.Tensor, sample: int = 0) -> ImageSpan:
        """Append a ViT image block from normalised pixels ``[3, H, W]`` (sides multiples of the patch size)."""
        if self._vit_embeds:
            raise ClearConfigError(
                "this builder already holds precomputed ViT embeddings; add every ViT image the same way."
            )
        p = self.vit_patch_size
        grid = (pixels.shape[1] // p, pixels.shape[2] // p)
        self._vit_patches.append(patchify(pixels, p))
        self._vit_grids.append(grid)
        span = self._image(grid[0] * grid[1], TokenKind.VIT, sample, noised=False)
        self._vit_spans.append(span)
        return span

    def add_vit_embeds(self, embeds: torch.Tensor, grid: tuple[int, int], sample: int = 0) -> ImageSpan:
        """Append a ViT image block from precomputed token embeddings ``[rows·cols, hidden]``."""
        if self._vit_patches:
            raise ClearConfigError(
                "this builder already holds ViT patches; add every ViT image the same way."
            )
        if embeds.shape[0] != grid[0] * grid[1]:
            raise ClearConfigError(f"{embeds.shape[0]} ViT embeddings do not match the grid {grid}.")
        self._vit_embeds.append(embeds)
        self._vit_grids.append(tuple(grid))
        span = self._image(embeds.shape[0], TokenKind.VIT, sample, noised=False)
        self._vit_spans.append(span)
        return span

    def add_latent_image(
        self,
        tokens: torch.Tensor,
        grid: tuple[int, int],
        t: float = 0.0,
        sample: int = 0,
        noised: bool | None = None,
    ) -> ImageSpan:
        """Append a latent image block of tokens ``[rows·cols, p·p·C]`` at flow time ``t`` (0 = clean).

        ``noised`` (default: ``t > 0``) makes the block invisible to later tokens and keeps the RoPE position.
        """
        if tokens.shape[0] != grid[0] * grid[1]:
            raise ClearConfigError(f"{tokens.shape[0]} latent tokens do not match the grid {grid}.")
        is_noised = t > 0 if noised is None else noised
        self._latents.append(tokens)
        self._times.append(
            torch.full((tokens.shape[0],), float(t), dtype=torch.float32, device=tokens.device)
        )
        self._latent_grids.append(tuple(grid))
        span = self._image(tokens.shape[0], TokenKind.LATENT, sample, noised=is_noised)
        self._latent_spans.append(span)
        return span

    @property
    def state(self) -> LayoutState:
        """Layout state after everything added so far."""
        return self.layout.state

    def build(self, device: torch.device | str | None = None) -> PackedInputs:
        """The packed inputs of everything added (on ``device`` when given)."""
        inputs = PackedInputs(
            layout=self.layout.build(),
            text_ids=torch.tensor(self._text, dtype=torch.long),
            vit_patches=torch.cat(self._vit_patches) if self._vit_patches else None,
            vit_embeds=torch.cat(self._vit_embeds) if self._vit_embeds else None,
            vit_grids=list(self._vit_grids),
            latent_tokens=torch.cat(self._latents) if self._latents else None,
            latent_timesteps=torch.cat(self._times) if self._times else None,
            latent_grids=list(self._latent_grids),
            vit_spans=list(self._vit_spans),
            latent_spans=list(self._latent_spans),
        )
        return inputs.to(device) if device is not None else inputs
