"""``BagelAdapter``: the CLEAR backbone contract for :class:`BagelForConditionalGeneration`, as a thin facade.

Every member delegates: :mod:`.encoders` (``encode_understanding``, ``encode_latent``, ``decode_latent``),
:mod:`.generation` (``start_context``, ``generate_text``), :mod:`.restore` (``restore``, ``bridge``), with the
context of :mod:`.context` and the guidance of :mod:`.guidance`. Those modules never import this one at run time
(only for type hints), so following an image through an answer never re-enters the facade.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from clear_plugins.adapters.base import (
    PARAMETER_GROUPS,
    BackboneAdapter,
    ImagePolicy,
    Latent,
    RestoreResult,
    RolloutSample,
    TextResult,
    TextSampling,
    Tokens,
    TrainingOutputs,
)
from clear_plugins.errors import ClearConfigError

from . import generation, rl, training
from . import restore as restoration
from .batch import IGNORE_INDEX, PackedBatch
from .context import BagelContext, ContextRunner
from .encoders import BagelEncoders
from .flex_attention import resolve_attention
from .guidance import BagelGuidance
from .image_transforms import ImageTransform
from .packing import AttnMode, TokenKind
from .presets import DEFAULT_PRESET, PRESETS, apply_preset, get_preset
from .restore import BagelRestoreConfig
from .sequence import BagelTokenIds

if TYPE_CHECKING:
    from PIL.Image import Image

    from clear_plugins.bridge import BridgeMode
    from clear_plugins.flow import SDEConfig

    from .modeling_bagel import BagelForConditionalGeneration

GROUP_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("vae", re.compile(r"(^|\.)vae\.")),
    ("vision", re.compile(r"(^|\.)(vit_model|connector|vit_pos_embed)\.")),
    ("bridge", re.compile(r"(^|\.)(vae2llm|llm2vae|time_embedder|latent_pos_embed)\.")),
    ("generation", re.compile(r"_moe_gen")),
    ("understanding", re.compile(r"(^|\.)language_model\.")),
)
"""First matching pattern wins; names may carry wrapper prefixes (PEFT, DDP) and LoRA suffixes."""


class BagelAdapter(BackboneAdapter):
    """Drives a :class:`BagelForConditionalGeneration` (``model_type`` ``"clear_bagel"``).

    Args:
        model: the Bagel model.
        tokenizer: its tokenizer (needed for text); the special-token ids are read from it when given.
        token_ids: explicit special-token ids (default: from ``tokenizer``, else the BAGEL-7B-MoT ids).
        restore_config: defaults of :meth:`restore` (grid size, shift, seed).

    Attributes:
        default_guidance: the classifier-free guidance :class:`~clear_plugins.pipeline.ClearPipeline` uses at
            inference (the ``clear_eval`` preset's, :mod:`.presets`; SPEC: inference guides, RL rollouts do not).
    """

    model_types: ClassVar[tuple[str, ...]] = ("clear_bagel",)
    image_policy: ClassVar[ImagePolicy] = "flow"
    default_tag_mode: ClassVar[str] = "text"
    presets: ClassVar[tuple[str, ...]] = tuple(PRESETS)
    default_preset: ClassVar[str | None] = DEFAULT_PRESET

    def __init__(
        self,
        model: BagelForConditionalGeneration,
        tokenizer: Any = None,
        *,
        token_ids: BagelTokenIds | None = None,
        restore_config: BagelRestoreConfig | None = None,
    ) -> None:
        super().__init__(model, tokenizer)
        if token_ids is None:
            token_ids = BagelTokenIds.from_tokenizer(tokenizer) if tokenizer is not None else BagelTokenIds()
        vocab = model.config.get_text_config().vocab_size
        too_large = {k: v for k, v in vars(token_ids).items() if not 0 <= v < vocab}
        if too_large:
            raise ClearConfigError(
                f"special-token ids {too_large} do not fit the model's vocabulary of {vocab}; pass the model's "
                "tokenizer or token_ids=BagelTokenIds(...) with ids below the vocabulary size."
            )
        self.token_ids: BagelTokenIds = token_ids
        self.encoders = BagelEncoders(model)
        self.restore_config = restore_config or BagelRestoreConfig()
        self.default_guidance: BagelGuidance | None = get_preset(DEFAULT_PRESET).guidance()
        self.runner = ContextRunner(model, token_ids)

    def apply_preset(self, name: str) -> dict[str, Any]:
        """Put a preset of :mod:`.presets` on this adapter (see :func:`.presets.apply_preset`)."""
        return apply_preset(self, name)

    def describe_preset(self, name: str) -> dict[str, Any]:
        """The values of a preset of :mod:`.presets` and the reference file they come from."""
        return get_preset(name).as_dict()

    @property
    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def vit_transform(self) -> ImageTransform:
        """Resize + normalise before the ViT (see :class:`~.encoders.BagelEncoders`)."""
        return self.encoders.vit_transform

    @vit_transform.setter
    def vit_transform(self, transform: ImageTransform) -> None:
        self.encoders.vit_transform = transform

    @property
    def vae_transform(self) -> ImageTransform:
        """Resize + normalise before the VAE (see :class:`~.encoders.BagelEncoders`)."""
        return self.encoders.vae_transform

    @vae_transform.setter
    def vae_transform(self, transform: ImageTransform) -> None:
        self.encoders.vae_transform = transform

    def encode_understanding(
        self, images: Sequence[Image], sizes: Sequence[tuple[int, int]] | None = None
    ) -> Tokens:
        """ViT context embeddings per image (see :meth:`.encoders.BagelEncoders.encode_understanding`)."""
        return self.encoders.encode_understanding(images, sizes)

    def encode_latent(
        self,
        images: Sequence[Image],
        *,
        sample: bool | None = None,
        generator: torch.Generator | None = None,
    ) -> Latent:
        """Patchified VAE latents per image (see :meth:`.encoders.BagelEncoders.encode_latent`)."""
        return self.encoders.encode_latent(images, sample=sample, generator=generator)

    def decode_latent(self, latent: Latent) -> list[Image]:
        """Decode each latent to an RGB image (see :meth:`.encoders.BagelEncoders.decode_latent`)."""
        return self.encoders.decode_latent(latent)

    def start_context(self, image: Any, question: str, *, system_prompt: str) -> BagelContext:
        """Prefill system prompt, degraded image (clean VAE block, then ViT block) and question (see
        :func:`.generation.start_context`)."""
        return generation.start_context(self, image, question, system_prompt=system_prompt)

    def generate_text(
        self,
        context: BagelContext,
        *,
        max_new_tokens: int,
        stop: Sequence[str] = (),
        sampling: TextSampling | None = None,
    ) -> TextResult:
        """Continue the assistant's text from the KV cache (see :func:`.generation.generate_text`)."""
        return generation.generate_text(
            self, context, max_new_tokens=max_new_tokens, stop=stop, sampling=sampling
        )

    def restore(
        self,
        context: BagelContext,
        image: Any = None,
        *,
        num_steps: int | None = None,
        sde: SDEConfig | None = None,
        guidance: BagelGuidance | dict | None = None,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ) -> RestoreResult:
        """Denoise the restored latent conditioned on ``context`` (see :func:`.restore.restore`).

        ``num_steps`` defaults to ``restore_config.num_timesteps`` grid points; ``guidance=None`` samples without
        classifier-free guidance (RL rollouts), a :class:`~.guidance.BagelGuidance` guides as Bagel edits.
        ``noise`` is an explicit initial latent ``[rows·cols, 64]``; otherwise ``generator`` draws it.
        """
        return restoration.restore(
            self,
            context,
            image,
            num_steps=num_steps,
            sde=sde,
            guidance=guidance,
            generator=generator,
            noise=noise,
        )

    def degraded_latent(self, context: BagelContext, image: Any = None) -> Latent:
        """The degraded image's latent already in ``context`` (its clean VAE block): what the ``degraded_latent``
        ablation bridges, with no fresh posterior sample."""
        return context.degraded.latent

    def bridge(self, latent: Latent, context: BagelContext, mode: BridgeMode | str) -> BagelContext:
        """Put ``latent`` into ``context`` following ``mode`` (see :func:`.restore.bridge`)."""
        return restoration.bridge(self, latent, context, mode)

    def training_forward(
        self, batch: PackedBatch, *, output_hidden_states: bool | None = None
    ) -> TrainingOutputs:
        """One forward over a :class:`~.batch.PackedBatch`.

        Returns text logits at the labelled positions, velocities (``llm2vae``) at the noised latent tokens with
        the target ``noise − x0`` when known, per-layer hidden states when asked, and in ``extra``: ``label_index``
        and ``velocity_index`` (sequence positions), ``velocity_image`` (noised-image index per velocity row),
        ``velocity_timesteps``, and the distillation maps ``distill_vit_index`` / ``distill_latent_index`` /
        ``distill_pair_index`` (positions of the same image's ViT and clean latent tokens).
        """
        device = self._device
        batch = batch.to(device)
        layout = batch.inputs.layout
        want_states = batch.output_hidden_states if output_hidden_states is None else output_hidden_states
        embeds = self.model.embed_packed(batch.inputs)
        attention = resolve_attention(batch.attention, device)
        out = self.model.forward_packed(embeds, layout, output_hidden_states=want_states, attention=attention)
        label_index = torch.nonzero(batch.labels != IGNORE_INDEX, as_tuple=False).flatten()
        noised = (layout.kind == int(TokenKind.LATENT)) & (layout.mode == int(AttnMode.NOISE))
        velocity_index = torch.nonzero(noised, as_tuple=False).flatten()
        latent_index = layout.indices(TokenKind.LATENT)
        timesteps = batch.inputs.latent_timesteps
        velocity_t = (
            timesteps[torch.searchsorted(latent_index, velocity_index)] if timesteps is not None else None
        )
        return TrainingOutputs(
            text_logits=self.model.text_logits(out.last_hidden_state[label_index]),
            text_labels=batch.labels[label_index],
            image_output=self.model.velocity(out.last_hidden_state[velocity_index]),
            image_target=batch.velocity_target,
            hidden_states=out.hidden_states,
            extra={
                "label_index": label_index,
                "velocity_index": velocity_index,
                "velocity_image": batch.noised_image_index,
                "velocity_timesteps": velocity_t,
                "distill_vit_index": batch.distill_vit_index,
                "distill_latent_index": batch.distill_latent_index,
                "distill_pair_index": batch.distill_pair_index,
                **training.blind_extra(batch, label_index, velocity_index, velocity_t),
            },
        )

    def pack_rollouts(self, samples: Sequence[RolloutSample]) -> PackedBatch:
        """GRPO trajectories replayed as sampled, with noise blocks at the chosen steps (see :mod:`.rl`)."""
        return rl.pack_rollouts(self, samples)

    def pack_training_samples(self, samples: Sequence[Any], options: Any = None) -> list[PackedBatch]:
        """Pack backbone-blind training samples into packed rows (see :mod:`.training`)."""
        return training.pack_training_samples(self, samples, options)

    def default_trainable_parameters(self, model: Any = None) -> list[str]:
        """SFT's default trainable parameter names (see :func:`.training.default_trainable_parameters`)."""
        return training.default_trainable_parameters(self, model)

    def parameter_groups(self, model: Any = None) -> dict[str, list[str]]:
        """Parameter names per group: ``understanding`` (LLM und expert, embeddings, ``lm_head``, ``norm``),
        ``generation`` (``*_moe_gen``, ``norm_moe_gen``), ``bridge`` (``vae2llm``, ``llm2vae``, ``time_embedder``,
        ``latent_pos_embed``), ``vision`` (ViT, ``connector``, ``vit_pos_embed``) and ``vae``.
        """
        target = self.model if model is None else model
        groups: dict[str, list[str]] = {name: [] for name in PARAMETER_GROUPS}
        for name, _ in target.named_parameters():
            group = next((g for g, pattern in GROUP_PATTERNS if pattern.search(name)), None)
            if group is None:
                raise ClearConfigError(
                    f"parameter {name!r} fits no Bagel parameter group; extend GROUP_PATTERNS in "
                    "clear_plugins.adapters.bagel.adapter for the module that owns it."
                )
            groups[group].append(name)
        return groups
