"""Backbone-blind training samples: what SFT and GRPO feed one trajectory as, before a backbone packs it.

A :class:`TrainingSample` is one conversation in the order inference builds it (SPEC "Trajectory format")::

    [system prompt] [degraded image] [question]                          prompt: no text target
    [assistant text up to and including <image_restore>]                  text targets
    [restore block]                                                       restore rows only
    [the rest of the assistant text]                                      text targets

A direct-answer trajectory has no restore block: ``prefix`` holds the whole assistant text and ``suffix`` is
empty. The restore block (:class:`RestoreBlock`) is either

- ``clean_image`` (SFT, Sec. 3.2): the backbone adds the clean image's latent noised at a sampled ``t`` (a noise
  block: invisible to every later token, its velocity regressed onto ``noise − x0``), the clean latent at
  ``t = 0`` (visible) and the clean image's understanding tokens (visible, dropped with
  :attr:`PackingOptions.vit_drop_prob`); or
- ``step`` + ``latent`` (GRPO, Sec. 3.4): the chosen recorded SDE step's ``x_t`` at ``t`` as a noise block (the
  velocity is read there), then the rollout's final latent as the visible bridged block; with
  ``reencoded_image`` also set, the visible block is that image's understanding tokens instead
  (``decode_reencode`` ablation).

:meth:`~clear_plugins.adapters.base.BackboneAdapter.pack_training_samples` turns a list of samples into the
backbone's training batches. Text may be given as a string (tokenised by the adapter) or as token ids (GRPO
completions, used as they are); the adapter adds the backbone's own segment markers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from clear_plugins.errors import ClearConfigError
from clear_plugins.trajectory import RESTORE_TAG, THINK_OPEN

if TYPE_CHECKING:
    import torch

    from clear_plugins.adapters.base import Latent, SDERecord

ATTENTION_MODES: tuple[str, ...] = ("auto", "flex", "dense")
"""Values of :attr:`PackingOptions.attention`."""

Text = str | Sequence[int]
"""A text part: a string the adapter tokenises, or token ids used as they are."""


@dataclass
class RestoreBlock:
    """What follows ``<image_restore>`` in a restore sample (module docstring).

    Attributes:
        clean_image: SFT: the clean image (PIL image, or anything the adapter's encoders accept).
        step: GRPO: the chosen recorded SDE step; its ``x_t`` (``[n_tokens, latent_dim]``) enters as a noise block
            at time ``t``.
        latent: GRPO: the rollout's final latent (one image), the visible bridged block (and the grid of ``x_t``).
        reencoded_image: GRPO ``decode_reencode``: the decoded image, made visible as understanding tokens in
            place of ``latent``.
    """

    clean_image: Any = None
    step: SDERecord | None = None
    latent: Latent | None = None
    reencoded_image: Any = None

    def __post_init__(self) -> None:
        """Exactly one form: a clean image (SFT) or a step with its visible block (GRPO)."""
        sft = self.clean_image is not None
        rollout = self.step is not None or self.latent is not None or self.reencoded_image is not None
        if sft == rollout:
            raise ClearConfigError(
                "RestoreBlock needs either clean_image (SFT) or step plus latent/reencoded_image (GRPO), not "
                f"both or neither (clean_image={'set' if sft else None}, step={self.step is not None}, "
                f"latent={self.latent is not None}, reencoded_image={self.reencoded_image is not None})."
            )
        if rollout and (self.step is None or self.latent is None):
            raise ClearConfigError(
                "a GRPO RestoreBlock needs both step (the chosen SDE step) and latent (the rollout's final latent, "
                f"which also gives the grid); got step={self.step is not None}, latent={self.latent is not None}."
            )

    @property
    def is_sft(self) -> bool:
        """Whether this is the SFT form (a clean image)."""
        return self.clean_image is not None


@dataclass
class TrainingSample:
    """One backbone-blind training trajectory (module docstring).

    Attributes:
        image: the degraded input image.
        question: the user's question.
        prefix: assistant text up to and including ``<image_restore>`` (restore), or the whole assistant text
            (direct).
        restore: the restore block, ``None`` for a direct-answer trajectory.
        suffix: the assistant text after the restore block (empty for direct trajectories).
        system_prompt: the system prompt text (``""``: none).
        end_open: the last text segment was cut by a token budget: no end-of-segment marker is added after it
            (truncated GRPO rollouts).
        index: the dataset row index, named in error messages.
        id: the dataset row id.
    """

    image: Any
    question: str
    prefix: Text
    restore: RestoreBlock | None = None
    suffix: Text = ""
    system_prompt: str = ""
    end_open: bool = False
    index: int | None = None
    id: str | None = None

    def __post_init__(self) -> None:
        """A restore sample needs its suffix; a direct one has none."""
        if self.restore is None and len(self.suffix):
            raise ClearConfigError(
                f"sample {self.where}: a direct trajectory (restore=None) has no suffix; put the whole assistant "
                "text in prefix."
            )
        if not len(self.prefix):
            raise ClearConfigError(f"sample {self.where}: prefix is empty; give the assistant text.")

    @property
    def where(self) -> str:
        """How error messages name this sample (row index and id)."""
        return f"row {self.index if self.index is not None else '?'} (id {self.id!r})"

    @classmethod
    def from_trajectory(
        cls,
        image: Any,
        question: str,
        trajectory: str,
        *,
        clean_image: Any = None,
        system_prompt: str = "",
        index: int | None = None,
        id: str | None = None,
    ) -> TrainingSample:
        """An SFT sample from a ``format_direct`` / ``format_restore`` trajectory (see :func:`split_trajectory`).

        A trajectory with ``<image_restore>`` needs ``clean_image``.
        """
        prefix, suffix = split_trajectory(trajectory)
        if suffix is None:
            return cls(image, question, prefix, system_prompt=system_prompt, index=index, id=id)
        if clean_image is None:
            where = f"row {index if index is not None else '?'} (id {id!r})"
            raise ClearConfigError(f"{where} restores but has no clean_image; give the clean image.")
        return cls(
            image,
            question,
            prefix,
            RestoreBlock(clean_image=clean_image),
            suffix,
            system_prompt=system_prompt,
            index=index,
            id=id,
        )


def split_trajectory(trajectory: str) -> tuple[str, str | None]:
    """Split an assistant trajectory at its first ``<image_restore>``.

    Returns ``(prefix, suffix)``: ``prefix`` ends with the tag; ``suffix`` starts at the next ``<think>`` (the image
    gap — whitespace, a placeholder or marker text — is dropped, since the backbone's own image block goes
    there). A direct trajectory gives ``(trajectory, None)``.
    """
    cut = trajectory.find(RESTORE_TAG)
    if cut < 0:
        return trajectory, None
    end = cut + len(RESTORE_TAG)
    rest = trajectory[end:]
    think = rest.find(THINK_OPEN)
    if think < 0:
        raise ClearConfigError(
            f"no {THINK_OPEN} after {RESTORE_TAG} in {trajectory[:60]!r}…; a restore trajectory continues with "
            f"{THINK_OPEN} (format_restore)."
        )
    return trajectory[:end], rest[think:]


@dataclass
class PackingOptions:
    """How :meth:`~clear_plugins.adapters.base.BackboneAdapter.pack_training_samples` builds training batches.

    Attributes:
        max_tokens_per_row: token budget of one packed row; samples are packed first-fit in order, a sample longer
            than the budget gets a row of its own. ``None``: every sample in one row.
        vit_drop_prob: probability of dropping the clean image's understanding block in an SFT restore block.
        text_dropout_prob: probability of dropping each text segment (the reference's text-condition dropout).
        timestep_shift: shift applied to the sampled SFT flow time ``t = sigmoid(N(0, 1))``.
        output_hidden_states: return per-layer hidden states (needed by the distillation loss).
        attention: how the backbone attends over a packed row: ``"flex"`` (block-sparse, no dense mask),
            ``"dense"`` (a dense mask) or ``"auto"`` (flex where the backbone and torch support it).
        generator: draws flow times, noise and dropouts (``None``: torch's global generator).
    """

    max_tokens_per_row: int | None = None
    vit_drop_prob: float = 0.0
    text_dropout_prob: float = 0.0
    timestep_shift: float = 1.0
    output_hidden_states: bool = False
    attention: str = "auto"
    generator: torch.Generator | None = None

    def __post_init__(self) -> None:
        """Check the probabilities and the budget."""
        for name in ("vit_drop_prob", "text_dropout_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ClearConfigError(f"{name}={value!r} must be a probability in [0, 1].")
        if self.max_tokens_per_row is not None and self.max_tokens_per_row < 1:
            raise ClearConfigError(
                f"max_tokens_per_row={self.max_tokens_per_row!r} must be >= 1, or None for one row."
            )
        if self.attention not in ATTENTION_MODES:
            raise ClearConfigError(f"attention={self.attention!r} must be one of {ATTENTION_MODES}.")
        if not self.timestep_shift > 0:
            raise ClearConfigError(f"timestep_shift={self.timestep_shift!r} must be > 0 (1.0: no shift).")


__all__ = ["PackingOptions", "RestoreBlock", "Text", "TrainingSample", "split_trajectory"]
