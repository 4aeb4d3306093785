"""Bagel's SigLIP-NaViT vision tower (``vit_model.vision_model``) over packed patches of several images.

Differences from transformers' ``SiglipVisionModel`` (reference §1.2, §2.4, §7): the patch embedding is a
``Linear(3·P·P → hidden)`` over patches flattened in ``(py, px, c)`` order (the official file stores it so); the
learned position table is indexed by ``row·side + col`` for every image size; images of different sizes are packed
into one run and attend only within themselves (a block-diagonal mask); there is no pooling head.
The encoder layers are transformers' ``SiglipEncoderLayer`` (same parameter names as the checkpoint).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import SiglipVisionConfig
from transformers.models.siglip.modeling_siglip import SiglipEncoder

from clear_plugins.errors import ClearConfigError

from .packing import attention_bias, block_diagonal_mask


class BagelVisionEmbeddings(nn.Module):
    """Patch embedding (``Linear``, ``(py, px, c)`` columns) plus the learned position table."""

    def __init__(self, config: SiglipVisionConfig) -> None:
        super().__init__()
        patch_dim = config.num_channels * config.patch_size * config.patch_size
        self.patch_embedding = nn.Linear(patch_dim, config.hidden_size)
        self.position_embedding = nn.Embedding(
            (config.image_size // config.patch_size) ** 2, config.hidden_size
        )

    def forward(self, patches: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        """``[N, 3·P·P]`` patches and ``[N]`` grid ids → ``[N, hidden]``."""
        weight = self.patch_embedding.weight
        return self.patch_embedding(patches.to(weight.dtype)) + self.position_embedding(position_ids)


class BagelVisionTransformer(nn.Module):
    """Embeddings → SigLIP encoder (per-image attention) → ``post_layernorm``."""

    def __init__(self, config: SiglipVisionConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = BagelVisionEmbeddings(config)
        self.encoder = SiglipEncoder(config)
        self.post_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, patches: torch.Tensor, position_ids: torch.Tensor, lengths: list[int]) -> torch.Tensor:
        """Encode packed patches of ``len(lengths)`` images (``lengths`` tokens each) → ``[N, hidden]``."""
        if sum(lengths) != patches.shape[0]:
            raise ClearConfigError(
                f"image lengths {lengths} sum to {sum(lengths)}, but {patches.shape[0]} patches were given."
            )
        hidden = self.embeddings(patches, position_ids)[None]
        mask = block_diagonal_mask(lengths, device=patches.device)
        bias = attention_bias(mask, self.config._attn_implementation, hidden.dtype)
        hidden = self.encoder(inputs_embeds=hidden, attention_mask=bias).last_hidden_state
        return self.post_layernorm(hidden[0])


class BagelVisionModel(nn.Module):
    """``vit_model``: holds ``vision_model`` so parameter names match the checkpoint."""

    def __init__(self, config: SiglipVisionConfig) -> None:
        super().__init__()
        self.vision_model = BagelVisionTransformer(config)

    def forward(self, patches: torch.Tensor, position_ids: torch.Tensor, lengths: list[int]) -> torch.Tensor:
        """See :meth:`BagelVisionTransformer.forward`."""
        return self.vision_model(patches, position_ids, lengths)
