"""GRPO training batches on Bagel: replay rollouts exactly as they were sampled (SPEC Stage 2).

:func:`pack_rollouts` turns :class:`~clear_plugins.adapters.base.RolloutSample` records into one
:class:`~.batch.PackedBatch` (one packed sample per trajectory) laid out as the rollout's context was:

1. the prompt items of the group's context (system segment, the degraded image's clean VAE block and ViT block,
   the question segment) — the very tensors the rollout prefilled, so nothing is re-sampled (the VAE posterior);
2. ``<|im_start|>`` + the first assistant segment;
3. when the rollout restored: each injected step's ``x_t`` at its ``t`` as a *noise block* — invisible to every
   other block and holding the RoPE position, exactly like the block the restore evaluated the velocity on —
   then ``<|im_end|>`` if the segment was still open when the restore ran (a forced restore: the bridge closed
   it afterwards), then the restored image as the rollout bridged it: a clean latent block (``bridge``) or the
   ViT block of the decoded pixels (``decode_reencode``), visible to what follows;
4. ``<|im_start|>`` + each later assistant segment.

Every segment token is a text target, so ``training_forward`` returns one logit row per generated token, in
order; velocities come out at the noise blocks, sample after sample and step after step. Because the packed
mask and positions equal the incremental ones (:mod:`.packing`), an unchanged model reproduces the rollout's
token log-probabilities and velocities, so the GRPO ratio is 1 on-policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import torch

from clear_plugins.adapters.base import RolloutSample
from clear_plugins.bridge import BridgeMode
from clear_plugins.errors import ClearConfigError

from .batch import IGNORE_INDEX, PackedBatch
from .context import BagelContext, BagelParts, LatentItem, TextItem, VitItem
from .sequence import SequenceBuilder

if TYPE_CHECKING:
    from PIL.Image import Image

    from clear_plugins.adapters.base import Latent, Tokens


class RolloutParts(BagelParts, Protocol):
    """What replaying a rollout reads from the adapter (:class:`~.adapter.BagelAdapter` provides it); typed here
    so this module never names the facade."""

    def encode_understanding(self, images: Sequence[Image]) -> Tokens:
        """ViT tokens of ``images``."""

    def decode_latent(self, latent: Latent) -> list[Image]:
        """Pixels of ``latent``."""


class _Packer:
    """Appends blocks of several samples to one builder and keeps the labels aligned with the tokens."""

    def __init__(self, adapter: RolloutParts) -> None:
        self.adapter = adapter
        self.builder = SequenceBuilder(adapter.token_ids, adapter.model.config.vit_config.patch_size)
        self.labels: list[int] = []
        self.noised_counts: list[int] = []

    def text(self, ids: Sequence[int], sample: int, targets: int = 0) -> None:
        """A text run; its first ``targets`` tokens after the first are labelled (predicted from the previous)."""
        ids = [int(i) for i in ids]
        self.builder.add_text(ids, sample=sample)
        labels = [ids[j + 1] if j < targets else IGNORE_INDEX for j in range(len(ids) - 1)]
        self.labels.extend([*labels, IGNORE_INDEX])

    def image(self, item: LatentItem | VitItem, sample: int) -> None:
        """A clean latent or ViT block (visible to later tokens)."""
        if isinstance(item, LatentItem):
            self.builder.add_latent_image(item.tokens, item.grid, 0.0, sample=sample)
        else:
            self.builder.add_vit_embeds(item.embeds, item.grid, sample=sample)
        self.labels.extend([IGNORE_INDEX] * item.num_tokens)

    def noise(self, x_t: torch.Tensor, t: float, grid: tuple[int, int], sample: int) -> None:
        """A noised latent block at time ``t`` (invisible to other blocks, RoPE position held)."""
        self.builder.add_latent_image(x_t, grid, t, sample=sample, noised=True)
        self.labels.extend([IGNORE_INDEX] * (x_t.shape[0] + 2))
        self.noised_counts.append(x_t.shape[0])

    def segment(self, ids: Sequence[int], sample: int) -> None:
        """``<|im_start|>`` + a generated segment, every generated token a target."""
        self.text([self.adapter.token_ids.bos, *ids], sample, targets=len(ids))


def _prompt(sample: RolloutSample) -> BagelContext:
    prompt = sample.prompt
    if not isinstance(prompt, BagelContext) or prompt.segment_open:
        raise ClearConfigError(
            "RolloutSample.prompt must be the BagelContext returned by start_context (before any generated text)."
        )
    return prompt


def _bridged_item(adapter: RolloutParts, sample: RolloutSample) -> LatentItem | VitItem:
    """The restored image's block as the rollout's bridge built it."""
    latent, mode = sample.restored, BridgeMode.parse(sample.bridge_mode)
    if mode is BridgeMode.DECODE_REENCODE:
        with torch.no_grad():
            tokens = adapter.encode_understanding(adapter.decode_latent(latent))
        return VitItem(tokens.embeds[0], tokens.grids[0])
    if mode is BridgeMode.DEGRADED_LATENT:
        raise ClearConfigError(
            "bridge_mode='degraded_latent' is an inference ablation; GRPO trains 'bridge' or 'decode_reencode'."
        )
    return LatentItem(latent.tokens[0].detach(), tuple(latent.grids[0]))


def pack_rollouts(adapter: RolloutParts, samples: Sequence[RolloutSample]) -> PackedBatch:
    """Pack ``samples`` into one :class:`~.batch.PackedBatch` (module docstring); sample ``i`` gets id ``i``."""
    if not samples:
        raise ClearConfigError("pack_rollouts needs at least one RolloutSample.")
    packer = _Packer(adapter)
    device = adapter.runner.device
    for index, sample in enumerate(samples):
        if not sample.segments:
            raise ClearConfigError(f"RolloutSample {index} has no assistant segment; nothing to train on.")
        for item in _prompt(sample).items:
            if isinstance(item, TextItem):
                packer.text(item.ids, index)
            else:
                packer.image(item, index)
        first = sample.segments[0]
        packer.segment(first, index)
        if sample.restored is not None:
            grid = tuple(sample.restored.grids[0])
            for step in sample.steps:
                packer.noise(step.x_t.to(device), float(step.t), grid, index)
            if first[-1] != adapter.token_ids.eos:  # the bridge closed a segment the restore saw open
                packer.text([adapter.token_ids.eos], index)
            packer.image(_bridged_item(adapter, sample), index)
        elif sample.steps:
            raise ClearConfigError(f"RolloutSample {index} has SDE steps but no restored latent.")
        for segment in sample.segments[1:]:
            packer.segment(segment, index)
    counts = torch.tensor(packer.noised_counts, dtype=torch.long)
    return PackedBatch(
        inputs=packer.builder.build(),
        labels=torch.tensor(packer.labels, dtype=torch.long),
        noised_image_index=torch.repeat_interleave(torch.arange(len(counts)), counts)
        if len(counts)
        else None,
    )
