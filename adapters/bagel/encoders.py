"""Bagel's image encoders and decoder: pixels → ViT tokens, pixels → VAE latent tokens, latent tokens → pixels.

Images go through the config's transforms (:mod:`.image_transforms`): the ViT path for
:meth:`BagelEncoders.encode_understanding`, the VAE path for :meth:`BagelEncoders.encode_latent`. Encoding keeps
autograd as the caller sets it (wrap calls in ``torch.no_grad()`` for inference).

This module sits beneath :mod:`.generation` (prefill) and :mod:`.restore` (the ``decode_reencode`` bridge), which
call it directly; :class:`~.adapter.BagelAdapter` only delegates to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from clear_plugins.adapters.base import Latent, Tokens

from .embeddings import grid_position_ids, patchify
from .image_transforms import ImageTransform, tensor_to_pil

if TYPE_CHECKING:
    from PIL.Image import Image

    from .modeling_bagel import BagelForConditionalGeneration


class BagelEncoders:
    """The ViT and VAE paths of one :class:`~.modeling_bagel.BagelForConditionalGeneration`.

    Attributes:
        model: the Bagel model.
        vit_transform: resize + normalise before the ViT (``config.vit_transform``).
        vae_transform: resize + normalise before the VAE (``config.vae_transform``).
    """

    def __init__(self, model: BagelForConditionalGeneration) -> None:
        self.model = model
        self.vit_transform = ImageTransform(model.config.vit_transform, "vit_transform")
        self.vae_transform = ImageTransform(model.config.vae_transform, "vae_transform")

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters."""
        return next(self.model.parameters()).device

    def encode_understanding(
        self, images: Sequence[Image], sizes: Sequence[tuple[int, int]] | None = None
    ) -> Tokens:
        """ViT context embeddings ``[rows·cols, hidden]`` per image (``connector(vit) + vit_pos_embed``).

        ``sizes`` optionally forces each image's ``(width, height)`` (e.g. :func:`matched_vit_size`).
        """
        config = self.model.config
        patch = config.vit_config.patch_size
        pixels = [
            self.vit_transform(img, None if sizes is None else sizes[i]) for i, img in enumerate(images)
        ]
        grids = [(p.shape[1] // patch, p.shape[2] // patch) for p in pixels]
        patches = torch.cat([patchify(p, patch) for p in pixels]).to(self.device)
        embeds = self.model.embed_vit(patches, grids)
        side = config.vit_max_num_patch_per_side
        return Tokens(
            embeds=list(embeds.split([r * c for r, c in grids])),
            grids=grids,
            extra={
                "pixel_sizes": [(p.shape[2], p.shape[1]) for p in pixels],
                "position_ids": [grid_position_ids(r, c, side) for r, c in grids],
            },
        )

    def encode_latent(
        self,
        images: Sequence[Image],
        *,
        sample: bool | None = None,
        generator: torch.Generator | None = None,
    ) -> Latent:
        """Patchified VAE latents ``[rows·cols, 64]`` per image (posterior sampled unless ``sample=False``)."""
        tokens, grids, sizes = [], [], []
        for image in images:
            pixels = self.vae_transform(image).to(self.device)
            latent = self.model.vae_encode(pixels[None], sample=sample, generator=generator)[0]
            image_tokens, grid = self.model.latent_to_tokens(latent)
            tokens.append(image_tokens)
            grids.append(grid)
            sizes.append((pixels.shape[2], pixels.shape[1]))
        side = self.model.config.max_latent_size
        return Latent(
            tokens=tokens,
            grids=grids,
            kind="flow",
            extra={"pixel_sizes": sizes, "position_ids": [grid_position_ids(r, c, side) for r, c in grids]},
        )

    def decode_latent(self, latent: Latent) -> list[Image]:
        """Decode each latent's tokens to an RGB image (``grid · 16`` pixels per side)."""
        images = []
        for tokens, grid in zip(latent.tokens, latent.grids, strict=True):
            z = self.model.tokens_to_latent(tokens.to(self.device), grid)
            images.append(tensor_to_pil(self.model.vae_decode(z[None])[0]))
        return images
