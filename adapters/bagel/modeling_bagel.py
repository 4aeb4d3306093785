"""``BagelForConditionalGeneration``: the transformers-native BAGEL-7B-MoT.

Children (their ``state_dict`` keys are exactly the official ``ema.safetensors`` keys, plus ``vae.*``):
``language_model`` (MoT Qwen2 + untied ``lm_head``), ``vit_model`` (SigLIP-NaViT), ``connector``,
``vit_pos_embed`` / ``latent_pos_embed`` (frozen sin-cos tables), ``time_embedder``, ``vae2llm``, ``llm2vae`` and
``vae`` (diffusers ``AutoencoderKL``).

Token embeddings of a packed sequence (reference §5.2, §5.3):
text ``embed_tokens(id)``; ViT ``connector(vit(patches)) + vit_pos_embed[pos]``;
latent ``vae2llm(token) + time_embedder(t) + latent_pos_embed[pos]``.
Heads: ``lm_head`` on text positions, ``llm2vae`` (the velocity) on latent positions.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from diffusers import AutoencoderKL
from torch import nn
from transformers import AutoModel, GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import CausalLMOutputWithPast

from clear_plugins.errors import ClearConfigError
from clear_plugins.hub_cards.inference import ClearInferenceMixin

from .cache import BagelKVCache
from .configuration_bagel import BagelConfig
from .embeddings import (
    MLPConnector,
    PositionEmbedding,
    TimestepEmbedder,
    grid_position_ids,
    patchify,
    sincos_2d_table,
    unpatchify,
)
from .modeling_mot import BagelLanguageModel, PackedOutput
from .modeling_vit import BagelVisionModel
from .packing import LayoutBuilder, PackedLayout, TokenKind
from .sequence import PackedInputs


class BagelPreTrainedModel(PreTrainedModel):
    """Weight initialisation and transformers plumbing shared by Bagel models."""

    config_class = BagelConfig
    config: BagelConfig
    base_model_prefix = "bagel"
    supports_gradient_checkpointing = True
    _no_split_modules: ClassVar[list[str]] = ["BagelMoTDecoderLayer", "SiglipEncoderLayer"]
    _supports_sdpa = True
    _supports_flash_attn = False
    _supports_flex_attn = False
    _supports_attention_backend = False

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """transformers' defaults, plus the sin-cos tables (skipped on ``meta``) and a zero ``llm2vae`` (official)."""
        super()._init_weights(module)
        if isinstance(module, PositionEmbedding) and not module.pos_embed.is_meta:
            init.copy_(module.pos_embed, sincos_2d_table(module.side, module.hidden_size))
        if module is getattr(self, "llm2vae", None):
            init.zeros_(module.weight)
            init.zeros_(module.bias)


class BagelForConditionalGeneration(BagelPreTrainedModel, GenerationMixin):
    """Bagel: understanding (ViT → LLM → text) and generation (VAE latents ↔ LLM) in one MoT transformer."""

    def __init__(self, config: BagelConfig) -> None:
        super().__init__(config)
        # transformers sets the checked implementation on the top-level config only; the setter propagates it
        # to llm_config / vit_config, whose modules read it.
        config._attn_implementation = config._attn_implementation
        llm, vit = config.llm_config, config.vit_config
        hidden = llm.hidden_size
        self.language_model = BagelLanguageModel(llm)
        self.vit_model = BagelVisionModel(vit)
        self.connector = MLPConnector(vit.hidden_size, hidden, config.connector_act)
        self.vit_pos_embed = PositionEmbedding(config.vit_max_num_patch_per_side, hidden)
        self.time_embedder = TimestepEmbedder(hidden)
        self.vae2llm = nn.Linear(config.patch_latent_dim, hidden)
        self.llm2vae = nn.Linear(hidden, config.patch_latent_dim)
        self.latent_pos_embed = PositionEmbedding(config.max_latent_size, hidden)
        self.vae = AutoencoderKL(**config.vae_config)
        self.post_init()

    # -- transformers plumbing -------------------------------------------------------------------------------
    def get_input_embeddings(self) -> nn.Embedding:
        """The shared token embedding ``language_model.model.embed_tokens``."""
        return self.language_model.model.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        """Replace the token embedding."""
        self.language_model.model.embed_tokens = value

    def get_output_embeddings(self) -> nn.Linear:
        """The untied ``language_model.lm_head``."""
        return self.language_model.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        """Replace the LM head."""
        self.language_model.lm_head = value

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        """``generate`` must not build a transformers ``DynamicCache``: Bagel uses :class:`BagelKVCache`."""
        return False

    # -- embeddings ------------------------------------------------------------------------------------------
    def embed_vit(self, patches: torch.Tensor, grids: list[tuple[int, int]]) -> torch.Tensor:
        """ViT token embeddings ``[N, H]`` of packed patches: ``connector(vit(patches)) + vit_pos_embed[pos]``."""
        side = self.config.vit_max_num_patch_per_side
        pos = torch.cat([grid_position_ids(r, c, side, device=patches.device) for r, c in grids])
        features = self.vit_model(patches, pos, [r * c for r, c in grids])
        return self.connector(features) + self.vit_pos_embed(pos).to(features.dtype)

    def embed_latent(
        self, tokens: torch.Tensor, timesteps: torch.Tensor, grids: list[tuple[int, int]]
    ) -> torch.Tensor:
        """Latent token embeddings ``[M, H]``: ``vae2llm(token) + time_embedder(t) + latent_pos_embed[pos]``."""
        side = self.config.max_latent_size
        pos = torch.cat([grid_position_ids(r, c, side, device=tokens.device) for r, c in grids])
        x = self.vae2llm(tokens.to(self.vae2llm.weight.dtype))
        return x + self.time_embedder(timesteps).to(x.dtype) + self.latent_pos_embed(pos).to(x.dtype)

    def embed_packed(self, inputs: PackedInputs) -> torch.Tensor:
        """Input embeddings ``[L, H]`` of a packed sequence (text, ViT and latent tokens at their positions)."""
        layout = inputs.layout
        parts = [(TokenKind.TEXT, self.get_input_embeddings()(inputs.text_ids))]
        if inputs.vit_embeds is not None:
            parts.append((TokenKind.VIT, inputs.vit_embeds))
        elif inputs.vit_patches is not None:
            parts.append((TokenKind.VIT, self.embed_vit(inputs.vit_patches, inputs.vit_grids)))
        if inputs.latent_tokens is not None:
            latent = self.embed_latent(inputs.latent_tokens, inputs.latent_timesteps, inputs.latent_grids)
            parts.append((TokenKind.LATENT, latent))
        dtype = parts[0][1].dtype
        embeds = torch.zeros(len(layout), parts[0][1].shape[1], dtype=dtype, device=parts[0][1].device)
        for kind, values in parts:
            index = layout.indices(kind)
            if index.numel() != values.shape[0]:
                raise ClearConfigError(
                    f"the layout has {index.numel()} {kind.name} tokens but {values.shape[0]} were given; build "
                    "PackedInputs with SequenceBuilder so contents and layout agree."
                )
            embeds = embeds.index_copy(0, index, values.to(dtype))
        missing = len(layout) - sum(v.shape[0] for _, v in parts)
        if missing:
            raise ClearConfigError(
                f"{missing} tokens of the layout have no content (ViT or latent inputs missing)."
            )
        return embeds

    # -- packed forward ---------------------------------------------------------------------------------------
    def forward_packed(
        self,
        inputs_embeds: torch.Tensor,
        layout: PackedLayout,
        past_key_values: BagelKVCache | None = None,
        use_cache: bool = False,
        output_hidden_states: bool = False,
        attention: str = "dense",
    ) -> PackedOutput:
        """Run the MoT language model over packed embeddings ``[L, H]`` (see ``BagelMoTModel.forward``)."""
        return self.language_model.model(
            inputs_embeds,
            layout,
            past_key_values=past_key_values,
            use_cache=use_cache,
            output_hidden_states=output_hidden_states,
            attention=attention,
        )

    def text_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """``lm_head`` on final hidden states of text positions."""
        return self.language_model.lm_head(hidden)

    def velocity(self, hidden: torch.Tensor) -> torch.Tensor:
        """``llm2vae`` on final hidden states of latent positions: the predicted velocity ``≈ noise − x0``."""
        return self.llm2vae(hidden)

    # -- VAE ----------------------------------------------------------------------------------------------
    def vae_encode(
        self, pixels: torch.Tensor, *, sample: bool | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Pixels ``[B, 3, H, W]`` in ``[-1, 1]`` → normalised latents ``(z − shift)·scale`` ``[B, C, H/8, W/8]``.

        ``sample`` (default ``config.vae_sample_posterior``) samples the posterior as the official code does;
        ``False`` takes its mean.
        """
        vae_dtype = self.vae.encoder.conv_in.weight.dtype
        dist = self.vae.encode(pixels.to(vae_dtype)).latent_dist
        use_sample = self.config.vae_sample_posterior if sample is None else sample
        z = dist.sample(generator=generator) if use_sample else dist.mode()
        return (z - self.vae.config.shift_factor) * self.vae.config.scaling_factor

    def vae_decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents ``[B, C, h, w]`` → pixels ``[B, 3, 8h, 8w]`` (about ``[-1, 1]``, not clamped)."""
        vae_dtype = self.vae.decoder.conv_in.weight.dtype
        z = latents.to(vae_dtype) / self.vae.config.scaling_factor + self.vae.config.shift_factor
        return self.vae.decode(z).sample

    def latent_to_tokens(self, latent: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """One normalised latent ``[C, h, w]`` → tokens ``[rows·cols, p·p·C]`` (cropped to whole patches) and grid."""
        p = self.config.latent_patch_size
        rows, cols = latent.shape[1] // p, latent.shape[2] // p
        return patchify(latent[:, : rows * p, : cols * p], p), (rows, cols)

    def tokens_to_latent(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Inverse of :meth:`latent_to_tokens`: ``[rows·cols, p·p·C]`` → ``[C, rows·p, cols·p]``."""
        return unpatchify(tokens, grid, self.config.latent_patch_size, self.config.latent_channels)

    # -- text-only causal LM (what TRL / generate see) ----------------------------------------------------
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        past_key_values: BagelKVCache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        logits_to_keep: int = 0,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        """Causal LM over a padded text batch ``[B, T]`` (row ``b`` is sample ``b`` of the packed cache).

        Padding (``attention_mask == 0``) is dropped before packing; positions continue from
        ``past_key_values.state``. Images enter through :meth:`embed_packed` / :meth:`forward_packed` instead.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ClearConfigError("pass exactly one of input_ids or inputs_embeds.")
        embeds = self.get_input_embeddings()(input_ids) if inputs_embeds is None else inputs_embeds
        batch, length = embeds.shape[:2]
        keep = torch.ones(batch, length, dtype=torch.bool, device=embeds.device)
        if attention_mask is not None:
            keep = attention_mask[:, -length:].bool()
        builder = LayoutBuilder(past_key_values.state if past_key_values is not None else None)
        for row, count in enumerate(keep.sum(dim=1).tolist()):
            if count:
                builder.text(count, sample=row)
        out = self.forward_packed(
            embeds[keep],
            builder.build(device=embeds.device),
            past_key_values=past_key_values,
            use_cache=bool(use_cache) or past_key_values is not None,
            output_hidden_states=bool(output_hidden_states),
        )
        hidden = embeds.new_zeros(batch, length, embeds.shape[-1]).index_put((keep,), out.last_hidden_state)
        logits = self.text_logits(hidden[:, -logits_to_keep:, :] if logits_to_keep else hidden)
        loss = None
        if labels is not None:
            loss = self.loss_function(logits, labels, self.config.get_text_config().vocab_size, **kwargs)
        states = None
        if out.hidden_states is not None:
            states = tuple(embeds.new_zeros(hidden.shape).index_put((keep,), h) for h in out.hidden_states)
        return CausalLMOutputWithPast(
            loss=loss, logits=logits, past_key_values=out.past_key_values, hidden_states=states
        )

    def prepare_inputs_for_generation(
        self,
        input_ids: torch.LongTensor,
        past_key_values: BagelKVCache | None = None,
        attention_mask: torch.Tensor | None = None,
        **kwargs,
    ) -> dict:
        """Feed only the tokens the cache has not seen yet (one per row after the prefill)."""
        if past_key_values is not None and len(past_key_values):
            input_ids = input_ids[:, -1:]
        else:
            past_key_values = BagelKVCache(self.config.get_text_config().num_hidden_layers)
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "past_key_values": past_key_values,
            "use_cache": True,
        }


class ClearBagelForConditionalGeneration(ClearInferenceMixin, BagelForConditionalGeneration):
    """Bagel with the CLEAR inference API built in: ``generate(images=..., questions=...)`` restores then answers
    with the settings an export recorded (see :mod:`clear_plugins.hub_cards.inference`). ``AutoModel`` loads
    ``clear_bagel`` folders as this class; the weights are those of :class:`BagelForConditionalGeneration`."""


AutoModel.register(BagelConfig, ClearBagelForConditionalGeneration, exist_ok=True)

__all__ = ["BagelForConditionalGeneration", "BagelPreTrainedModel", "ClearBagelForConditionalGeneration"]
