"""The training batch of :meth:`BagelAdapter.training_forward` and its builder.

A :class:`PackedBatch` is one packed sequence holding one or more samples. Each sample is a list of segments:

- :class:`TextSegment` — token ids (the caller includes ``<|im_start|>``/``<|im_end|>``) and which tokens are
  text targets;
- :class:`VitImageSegment` — a normalised image for the understanding path;
- :class:`LatentImageSegment` — VAE latent tokens: clean (``t = 0``, visible to later tokens), noised from the
  clean latent at ``t > 0`` (flow matching: ``x_t = (1 − t)·x0 + t·noise``, target velocity ``noise − x0``;
  invisible to later tokens), or an already-noised ``x_t`` (e.g. a recorded GRPO step; no target).

A ViT and a clean latent segment of one sample sharing a ``key`` form a distillation pair: their positions are
returned in ``TrainingOutputs.extra`` (the ViT input must be resized so both grids match, see
:func:`~.image_transforms.matched_vit_size`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch

from clear_plugins.errors import ClearConfigError

from .sequence import BagelTokenIds, PackedInputs, SequenceBuilder

IGNORE_INDEX = -100
"""Label value of positions without a text target."""


@dataclass
class TextSegment:
    """A causal text segment. ``loss`` marks targets: ``True`` = every token but the first, or a per-token mask
    (token ``j`` is predicted from position ``j − 1`` of the same segment; ``loss[0]`` must be False)."""

    ids: Sequence[int] | torch.Tensor
    loss: bool | Sequence[bool] = False


@dataclass
class VitImageSegment:
    """An understanding-path image: normalised pixels ``[3, H, W]`` (sides multiples of the ViT patch)."""

    pixels: torch.Tensor
    key: str | None = None


@dataclass
class LatentImageSegment:
    """A generation-path image as latent tokens ``[rows·cols, p·p·C]`` on grid ``(rows, cols)``.

    ``t = 0``: clean. ``t > 0``: ``tokens`` is ``x0``, noised with ``noise`` (sampled when ``None``) unless
    ``noisy_input`` says ``tokens`` already is ``x_t`` (then there is no velocity target).
    """

    tokens: torch.Tensor
    grid: tuple[int, int]
    t: float = 0.0
    noise: torch.Tensor | None = None
    noisy_input: bool = False
    key: str | None = None


Segment = TextSegment | VitImageSegment | LatentImageSegment


@dataclass
class PackedBatch:
    """A packed training sequence for :meth:`BagelAdapter.training_forward`.

    Attributes:
        inputs: layout and contents; noised latent blocks hold ``x_t``.
        labels: ``[L]`` target id predicted at each position, :data:`IGNORE_INDEX` where none.
        velocity_target: ``[n_noised_tokens, p·p·C]`` ``noise − x0`` at the noised latent tokens (sequence order),
            ``None`` when some noised block has no target (``noisy_input``).
        noised_image_index: ``[n_noised_tokens]`` which noised image (0, 1, …) each noised token belongs to.
        distill_vit_index / distill_latent_index / distill_pair_index: ``[K]`` sequence positions of paired ViT and
            clean-latent tokens of the same image, and the pair each belongs to.
        output_hidden_states: return per-layer hidden states (for distillation).
        attention: ``"dense"`` (boolean mask), ``"flex"`` (flex-attention BlockMask) or ``"auto"`` (flex on CUDA) for
            the training forward (see :func:`.flex_attention.resolve_attention`).
        sample_offset: added to the layout's sample ids to name samples in ``TrainingOutputs.extra`` (the index of
            this row's first sample in the list given to ``pack_training_samples``).
    """

    inputs: PackedInputs
    labels: torch.Tensor
    velocity_target: torch.Tensor | None = None
    noised_image_index: torch.Tensor | None = None
    distill_vit_index: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    distill_latent_index: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    distill_pair_index: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    output_hidden_states: bool = False
    sample_offset: int = 0
    attention: str = "auto"

    def to(self, device: torch.device | str) -> PackedBatch:
        """The same batch on ``device``."""
        tensors = (
            "labels",
            "velocity_target",
            "noised_image_index",
            "distill_vit_index",
            "distill_latent_index",
        )
        moved = {name: getattr(self, name).to(device) for name in tensors if getattr(self, name) is not None}
        return replace(
            self,
            inputs=self.inputs.to(device),
            distill_pair_index=self.distill_pair_index.to(device),
            **moved,
        )


def sample_timestep(generator: torch.Generator | None = None, shift: float = 1.0) -> float:
    """A training flow time as Bagel samples it: ``sigmoid(N(0, 1))``, then shifted ``s·t / (1 + (s − 1)·t)``."""
    t = torch.sigmoid(torch.randn((), generator=generator)).item()
    return shift * t / (1.0 + (shift - 1.0) * t)


class _BatchState:
    """Accumulates labels, velocity targets and distillation keys while segments are added."""

    def __init__(self) -> None:
        self.labels: list[int] = []
        self.targets: list[torch.Tensor | None] = []
        self.noised_counts: list[int] = []
        self.vit_keys: dict[tuple[int, str], range] = {}
        self.latent_keys: dict[tuple[int, str], range] = {}


def _text_labels(segment: TextSegment) -> list[int]:
    ids = [int(i) for i in (segment.ids.tolist() if isinstance(segment.ids, torch.Tensor) else segment.ids)]
    if isinstance(segment.loss, bool):
        mask = [False] + [segment.loss] * (len(ids) - 1)
    else:
        mask = [bool(m) for m in segment.loss]
    if len(mask) != len(ids) or mask[0]:
        raise ClearConfigError(
            f"TextSegment.loss has {len(mask)} entries for {len(ids)} tokens (first={mask[0] if mask else None}); "
            "give one bool per token, the first False (it has no predecessor in the segment)."
        )
    return [ids[j + 1] if mask[j + 1] else IGNORE_INDEX for j in range(len(ids) - 1)] + [IGNORE_INDEX]


def _add_latent(
    seq: SequenceBuilder,
    acc: _BatchState,
    seg: LatentImageSegment,
    sample: int,
    generator: torch.Generator | None,
) -> None:
    tokens, span_len = seg.tokens, seg.tokens.shape[0]
    if seg.t > 0 and not seg.noisy_input:
        noise = seg.noise
        if noise is None:
            noise = torch.randn(tokens.shape, generator=generator, dtype=torch.float32).to(tokens)
        acc.targets.append(noise - tokens)
        tokens = (1.0 - seg.t) * tokens + seg.t * noise
    elif seg.t > 0:
        acc.targets.append(None)
    span = seq.add_latent_image(tokens, seg.grid, t=seg.t, sample=sample)
    acc.labels.extend([IGNORE_INDEX] * (span_len + 2))
    if seg.t > 0:
        acc.noised_counts.append(span_len)
    elif seg.key is not None:
        acc.latent_keys[(sample, seg.key)] = range(span.tokens.start, span.tokens.stop)


def _distill_maps(acc: _BatchState) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    vit: list[int] = []
    latent: list[int] = []
    pair: list[int] = []
    paired = [key for key in acc.vit_keys if key in acc.latent_keys]
    for index, key in enumerate(paired):
        vit_range, latent_range = acc.vit_keys[key], acc.latent_keys[key]
        if len(vit_range) != len(latent_range):
            raise ClearConfigError(
                f"distillation pair {key[1]!r} (sample {key[0]}) has {len(vit_range)} ViT tokens but "
                f"{len(latent_range)} latent tokens; resize the ViT input with matched_vit_size(latent grid, patch)."
            )
        vit.extend(vit_range)
        latent.extend(latent_range)
        pair.extend([index] * len(vit_range))
    return (
        torch.tensor(vit, dtype=torch.long),
        torch.tensor(latent, dtype=torch.long),
        torch.tensor(pair, dtype=torch.long),
    )


def build_packed_batch(
    samples: Sequence[Sequence[Segment]],
    token_ids: BagelTokenIds,
    vit_patch_size: int,
    *,
    generator: torch.Generator | None = None,
    output_hidden_states: bool = False,
) -> PackedBatch:
    """Pack ``samples`` (each a list of segments) into one :class:`PackedBatch`; sample ``i`` gets id ``i``."""
    seq = SequenceBuilder(token_ids, vit_patch_size)
    acc = _BatchState()
    for sample, segments in enumerate(samples):
        for seg in segments:
            if isinstance(seg, TextSegment):
                acc.labels.extend(_text_labels(seg))
                seq.add_text(seg.ids, sample=sample)
            elif isinstance(seg, VitImageSegment):
                span = seq.add_vit_image(seg.pixels, sample=sample)
                acc.labels.extend([IGNORE_INDEX] * (span.end_marker - span.start_marker + 1))
                if seg.key is not None:
                    acc.vit_keys[(sample, seg.key)] = range(span.tokens.start, span.tokens.stop)
            elif isinstance(seg, LatentImageSegment):
                _add_latent(seq, acc, seg, sample, generator)
            else:
                raise ClearConfigError(
                    f"unknown segment {type(seg).__name__}; use Text/VitImage/LatentImageSegment."
                )
    vit_index, latent_index, pair_index = _distill_maps(acc)
    has_targets = acc.targets and all(t is not None for t in acc.targets)
    counts = torch.tensor(acc.noised_counts, dtype=torch.long)
    return PackedBatch(
        inputs=seq.build(),
        labels=torch.tensor(acc.labels, dtype=torch.long),
        velocity_target=torch.cat(acc.targets) if has_targets else None,
        noised_image_index=torch.repeat_interleave(torch.arange(len(counts)), counts)
        if len(counts)
        else None,
        distill_vit_index=vit_index,
        distill_latent_index=latent_index,
        distill_pair_index=pair_index,
        output_hidden_states=output_hidden_states,
    )
