"""The contract a backbone implements so CLEAR can run on it.

One :class:`BackboneAdapter` instance wraps one loaded model. Everything else in clear-plugins (trajectories,
rewards, advantages, trainers, the pipeline, the benchmark, model cards) is backbone-blind and talks to the
model only through these members. The member names are fixed: later work relies on them.

The value types exchanged with the adapter (:class:`Tokens`, :class:`Latent`, :class:`RestoreResult`,
:class:`SDERecord`, :class:`TrainingOutputs`) live here too, so a new backbone needs nothing but this module.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    import torch
    from PIL.Image import Image

    from clear_plugins.bridge import BridgeMode
    from clear_plugins.flow import SDEConfig
    from clear_plugins.training_sample import PackingOptions, TrainingSample

ImagePolicy = Literal["flow", "discrete"]
PARAMETER_GROUPS: tuple[str, ...] = ("understanding", "generation", "bridge", "vision", "vae")
"""The parameter groups every adapter reports (see :meth:`BackboneAdapter.parameter_groups`)."""


@dataclass
class Tokens:
    """Understanding-side context embeddings of a batch of images.

    Attributes:
        embeds: one tensor per image, ``[num_tokens_i, hidden_size]``, ready to be placed in the LLM context.
        grids: the token grid ``(rows, cols)`` of each image.
        extra: backbone-specific data (position ids, pixel sizes) the adapter needs to place the tokens.
    """

    embeds: list[torch.Tensor]
    grids: list[tuple[int, int]]
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Latent:
    """Generation-side latent of a batch of images.

    Attributes:
        tokens: one tensor per image: ``[num_tokens_i, latent_dim]`` floats for ``flow`` backbones (patchified
            VAE latents) or ``[num_tokens_i]`` integer ids for ``discrete`` backbones.
        grids: the token grid ``(rows, cols)`` of each image.
        kind: ``"flow"`` or ``"discrete"``, matching the adapter's ``image_policy``.
        extra: backbone-specific data (pixel sizes, position ids).
    """

    tokens: list[torch.Tensor]
    grids: list[tuple[int, int]]
    kind: ImagePolicy = "flow"
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class SDERecord:
    """One recorded stochastic denoising step, stored without autograd graphs.

    ``t`` and ``t_next`` follow the flow convention of :mod:`clear_plugins.flow` (1 = noise, 0 = clean);
    ``log_prob`` is the log-density of ``x_next`` under the step's Gaussian, one value per image.
    """

    t: torch.Tensor
    t_next: torch.Tensor
    x_t: torch.Tensor
    x_next: torch.Tensor
    log_prob: torch.Tensor


@dataclass
class RestoreResult:
    """What :meth:`BackboneAdapter.restore` returns.

    Attributes:
        latent: the restored latent after the last step.
        steps: every recorded SDE step when an SDE configuration was given, else ``None``.
        timesteps: the time grid used, ``num_steps`` points from 1 to 0 after any shift.
        seconds: wall-clock time spent denoising.
    """

    latent: Latent
    steps: list[SDERecord] | None = None
    timesteps: torch.Tensor | None = None
    seconds: float = 0.0


@dataclass
class TrainingOutputs:
    """What :meth:`BackboneAdapter.training_forward` returns for one packed batch.

    Attributes:
        text_logits: ``[num_text_targets, vocab]`` logits at the positions that predict text labels.
        text_labels: ``[num_text_targets]`` target ids aligned with ``text_logits``.
        image_output: the image-policy output at the chosen generation positions: predicted velocities
            ``[num_latent_tokens, latent_dim]`` (``flow``) or image-token logits (``discrete``).
        image_target: the regression target aligned with ``image_output`` (e.g. ``noise - x0``), if known.
        hidden_states: per-layer hidden states ``[num_layers + 1]`` of ``[seq_len, hidden]`` when requested.
        extra: backbone-specific tensors, plus these backbone-blind keys for batches built by
            :meth:`BackboneAdapter.pack_training_samples`: ``text_sample`` ``[num_text_targets]`` and
            ``image_sample`` ``[num_latent_tokens]`` (which sample of the packed row each row of ``text_logits`` /
            ``image_output`` belongs to), ``image_timesteps`` ``[num_latent_tokens]`` (flow time of each), and
            ``distill_a`` / ``distill_b`` (``[K]`` positions in ``hidden_states`` of paired understanding and clean
            latent tokens of the same image) with ``distill_pair`` (``[K]`` pair index).
    """

    text_logits: torch.Tensor | None = None
    text_labels: torch.Tensor | None = None
    image_output: torch.Tensor | None = None
    image_target: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class TextSampling:
    """How :meth:`BackboneAdapter.generate_text` picks tokens: greedy by default.

    Attributes:
        do_sample: sample instead of taking the arg-max.
        temperature: softmax temperature when sampling.
        top_p: nucleus-sampling mass when sampling (1.0 keeps every token).
        seed: seed of the sampling generator (``None``: torch's global generator).
    """

    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None


@dataclass
class TextResult:
    """What :meth:`BackboneAdapter.generate_text` returns.

    Attributes:
        text: the decoded new text, trajectory tags kept.
        token_ids: the new token ids.
        stopped_on: the stop string that ended generation (e.g. ``"<image_restore>"``), or ``None`` when it ended
            on the end-of-segment token or the token budget.
        context: the context after the new tokens (its cache extended).
        logprobs: one entry per ``token_ids`` entry: the log-probability of the token under the distribution it
            was drawn from (temperature applied, vocabulary restricted as sampled, before any top-p cut), or
            ``None`` for a token the adapter appended itself (e.g. the end-of-segment token after a stop string).
            ``None`` as a whole when the adapter does not record them. GRPO's importance ratio uses them.
    """

    text: str
    token_ids: list[int]
    stopped_on: str | None
    context: Any
    logprobs: list[float | None] | None = None


@dataclass
class RolloutSample:
    """One sampled interleaved trajectory, as the GRPO training forward replays it (backbone-blind).

    The training forward renders exactly what the rollout's context held: the prompt, the first assistant
    segment, then — when the rollout restored — each chosen denoising step's ``x_t`` as a *noise block*
    (invisible to every later token; the velocity is read there) followed by the restored image as the rollout
    bridged it (visible), then the remaining assistant segments.

    Attributes:
        prompt: the adapter's context right after :meth:`BackboneAdapter.start_context` (shared by a group).
        segments: token ids of each assistant segment exactly as :meth:`BackboneAdapter.generate_text` returned
            them (the adapter adds its own segment openers).
        restored: the latent put into the context after the first segment, or ``None`` (no restoration).
        bridge_mode: how the rollout put ``restored`` into the context (a :class:`~clear_plugins.bridge.BridgeMode`
            value).
        steps: the recorded SDE steps to inject as noise blocks (one chosen step, or every step for the
            all-steps ablation); empty when only the text is trained.
    """

    prompt: Any
    segments: list[list[int]]
    restored: Latent | None = None
    bridge_mode: str = "bridge"
    steps: list[SDERecord] = field(default_factory=list)


class BackboneAdapter(ABC):
    """Base class of a backbone adapter; subclass it and register the subclass through
    :func:`~clear_plugins.hookspecs.clear_register_adapters`.

    Class attributes:
        model_types: the ``config.model_type`` values this adapter handles.
        image_policy: ``"flow"`` (continuous latents, velocity prediction) or ``"discrete"`` (image-token ids).
        default_guidance: the inference-time guidance configuration, or ``None``.
    """

    model_types: ClassVar[tuple[str, ...]] = ()
    image_policy: ClassVar[ImagePolicy] = "flow"
    default_tag_mode: ClassVar[str] = "token"
    """The tag mode :func:`~clear_plugins.injection.inject` uses when neither its options nor the model config
    name one (:mod:`clear_plugins.tags`)."""
    default_guidance: Any = None
    """The guidance :class:`~clear_plugins.pipeline.ClearPipeline` uses at inference when asked for
    ``"default"`` (Bagel: its editing classifier-free guidance); ``None`` when the backbone has none."""

    presets: ClassVar[tuple[str, ...]] = ()
    """Names :meth:`apply_preset` accepts (backbone-specific restore settings); empty when there are none."""
    default_preset: ClassVar[str | None] = None
    """The preset ``clear-plugins answer`` and ``serve`` apply unless told otherwise (``None``: none)."""

    def __init__(self, model: Any, tokenizer: Any = None) -> None:
        self.model = model
        self.tokenizer = tokenizer

    def apply_preset(self, name: str) -> dict[str, Any]:
        """Put the named preset of restore settings on this adapter; return the
        :class:`~clear_plugins.pipeline.PipelineConfig` fields it sets. The base class has no presets."""
        from clear_plugins.errors import ClearConfigError

        raise ClearConfigError(
            f"preset={name!r}: the {type(self).__name__} backbone defines no presets; leave the preset unset."
        )

    def describe_preset(self, name: str) -> dict[str, Any]:
        """The values of the named preset, JSON-ready (recorded in outputs); empty when there are no presets."""
        return {}

    @classmethod
    def matches(cls, model: Any) -> bool:
        """Whether this adapter can drive ``model``; by default, whether its ``config.model_type`` is listed."""
        config = getattr(model, "config", None)
        return getattr(config, "model_type", None) in cls.model_types

    @abstractmethod
    def encode_understanding(self, images: Sequence[Image]) -> Tokens:
        """Encode images for understanding (ViT or equivalent): context embeddings, one tensor per image."""

    @abstractmethod
    def encode_latent(self, images: Sequence[Image]) -> Latent:
        """Encode images into the generation latent (VAE latent tokens, or VQ ids for discrete backbones)."""

    @abstractmethod
    def start_context(self, image: Image, question: str, *, system_prompt: str) -> Any:
        """Prefill the reasoning context and return it, with its KV cache.

        The context holds the system prompt, the degraded ``image`` (encoded the way the backbone conditions on
        an input image), the ``question`` and the opening of the assistant's turn, so that
        :meth:`generate_text` continues with the assistant's first ``<think>``.
        """

    @abstractmethod
    def generate_text(
        self,
        context: Any,
        *,
        max_new_tokens: int,
        stop: Sequence[str] = (),
        sampling: TextSampling | None = None,
    ) -> TextResult:
        """Continue the text from ``context``'s cache, without re-reading it.

        Generation ends at the backbone's end-of-segment token, after the first ``stop`` string (kept in the
        text), or after ``max_new_tokens`` tokens. The returned context includes the new tokens.
        """

    @abstractmethod
    def restore(
        self,
        context: Any,
        image: Any,
        *,
        num_steps: int,
        sde: SDEConfig | None = None,
        guidance: Any = None,
    ) -> RestoreResult:
        """Generate the restored latent of ``image`` conditioned on ``context``.

        ``num_steps`` counts time-grid *points* as Bagel does (:func:`clear_plugins.flow.time_grid`): the
        velocity is evaluated ``num_steps − 1`` times.

        With ``sde`` set, sample stochastically and record every ``(t, x_t, x_next, log_prob)`` without graphs.
        ``guidance`` configures classifier-free guidance; ``None`` samples without it (RL rollouts).
        """

    @abstractmethod
    def bridge(self, latent: Latent, context: Any, mode: BridgeMode) -> Any:
        """Put ``latent`` into the reasoning ``context`` following ``mode`` and return the updated context.

        ``BridgeMode.BRIDGE`` adds no parameters where the backbone has a latent→LLM connector.
        """

    def degraded_latent(self, context: Any, image: Image) -> Latent:
        """The degraded ``image``'s latent for the ``degraded_latent`` ablation (Sec. 4.4).

        By default it is encoded afresh; an adapter whose context already holds it returns that one (Bagel does),
        so the ablation bridges exactly what the model was conditioned on.
        """
        return self.encode_latent([image])

    @abstractmethod
    def decode_latent(self, latent: Latent) -> list[Image]:
        """Decode latents to pixels (for viewing, perceptual metrics and ``decode_reencode``)."""

    @abstractmethod
    def training_forward(self, batch: Any) -> TrainingOutputs:
        """One forward over a packed interleaved batch: text logits, image-policy output, hidden states.

        This is not ``model.forward``, which TRL patches for its fused LM head.
        """

    def pack_rollouts(self, samples: Sequence[RolloutSample]) -> Any:
        """Pack GRPO trajectories into one batch for :meth:`training_forward`.

        The forward's ``text_logits`` must hold, sample after sample, one row per token of ``segments`` (in
        order), predicting that token from the same context the rollout sampled it in; ``image_output`` holds
        the velocity at each injected step's tokens, sample after sample and step after step, with
        ``extra["velocity_image"]`` numbering the injected steps ``0, 1, …`` in that order. Backbones without
        GRPO support keep this default.
        """
        raise NotImplementedError(
            f"{type(self).__name__} does not implement pack_rollouts, so it cannot be trained with GRPO; implement "
            "pack_rollouts(samples) -> batch for training_forward."
        )

    @abstractmethod
    def pack_training_samples(
        self, samples: Sequence[TrainingSample], options: PackingOptions | None = None
    ) -> list[Any]:
        """Pack backbone-blind samples into training batches that :meth:`training_forward` accepts.

        Each batch is one packed row holding one or more whole samples, in order, within
        ``options.max_tokens_per_row``. Text targets are every assistant token of ``prefix`` and ``suffix`` plus
        the end-of-segment marker that closes each (none after an ``end_open`` suffix); prompt text has none.
        ``TrainingOutputs.extra["text_sample"]`` indexes samples within the row (0, 1, …, in the order given).
        """

    def default_trainable_parameters(self, model: Any = None) -> list[str]:
        """Parameter names SFT trains by default (SPEC Stage 1): the ``understanding``, ``generation`` and
        ``bridge`` groups. Backbones override it to add or drop modules (e.g. a ViT connector, frozen tables)."""
        groups = self.parameter_groups(model)
        return [name for group in ("understanding", "generation", "bridge") for name in groups[group]]

    @abstractmethod
    def parameter_groups(self, model: Any = None) -> dict[str, list[str]]:
        """Parameter names of ``model`` (default: the wrapped one) in each group of :data:`PARAMETER_GROUPS`.

        Used for freezing, LoRA targets and gradient tests. Every group key is present (possibly empty).
        """
