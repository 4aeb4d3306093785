"""Bagel's side of training: backbone-blind :class:`~clear_plugins.training_sample.TrainingSample` → packed rows.

One sample becomes these segments (reference §5.6 and its interleaved reasoning dataset; SPEC "Trajectory
format" and Stage 1), in the order :func:`.generation.start_context`, ``generate_text``, ``restore`` and
``bridge`` feed them at inference::

    <|im_start|> system <|im_end|>                     no target
    [degraded image: clean VAE block, then ViT block]   both from the image after the VAE resize
    <|im_start|> question <|im_end|>                   no target
    <|im_start|> prefix <|im_end|>                     targets: every token after <|im_start|>
    restore block (restore samples only):
      SFT  : clean latent noised at t ~ sigmoid(N(0,1))  noise block (RoPE held, invisible; velocity target)
             clean latent at t = 0                         visible, distillation key "restore"
             clean ViT block, resized to the latent grid   visible, key "restore", dropped w.p. vit_drop_prob
      GRPO : the chosen step's x_t at t                    noise block (velocity read, no target)
             the rollout's final latent                    visible (bridge) — or the re-encoded ViT block
    <|im_start|> suffix <|im_end|>                     targets

The noise block neither advances RoPE nor is seen by later tokens, so every other token sees exactly what it
sees at inference (the reference advances RoPE for a dropped ViT block; we do not, for the same reason).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import torch

from clear_plugins.errors import ClearConfigError
from clear_plugins.training_sample import PackingOptions, RestoreBlock, Text, TrainingSample

from .batch import (
    LatentImageSegment,
    PackedBatch,
    Segment,
    TextSegment,
    VitImageSegment,
    build_packed_batch,
    sample_timestep,
)
from .context import BagelParts
from .image_transforms import matched_vit_size

if TYPE_CHECKING:
    from clear_plugins.adapters.base import Latent

    from .image_transforms import ImageTransform


class TrainingParts(BagelParts, Protocol):
    """What packing reads from the adapter (:class:`~.adapter.BagelAdapter` provides it); typed here so this
    module never names the facade."""

    vit_transform: ImageTransform
    vae_transform: ImageTransform

    def encode_latent(self, images: Sequence[Any]) -> Latent:
        """VAE latents of ``images``."""

    def parameter_groups(self, model: Any = None) -> dict[str, list[str]]:
        """Parameter names per group."""


DISTILL_KEY = "restore"
"""Distillation key pairing the restore block's clean latent with its ViT block."""


def _draw(generator: torch.Generator | None) -> float:
    return float(torch.rand((), generator=generator))


def _ids(adapter: TrainingParts, text: Text) -> list[int]:
    if isinstance(text, str):
        if adapter.tokenizer is None:
            raise ClearConfigError(
                "packing text needs the adapter's tokenizer; build BagelAdapter(model, tokenizer)."
            )
        return list(adapter.tokenizer.encode(text, add_special_tokens=False))
    return [int(i) for i in text]


def _segment(adapter: TrainingParts, text: Text, *, target: bool, close: bool = True) -> TextSegment:
    ids = adapter.token_ids
    body = [ids.bos, *_ids(adapter, text)] + ([ids.eos] if close else [])
    return TextSegment(body, loss=target and len(body) > 1)


def _prompt_image(adapter: TrainingParts, image: Any, generator: torch.Generator | None) -> list[Segment]:
    resized = adapter.vae_transform.resize(image)
    with torch.no_grad():
        latent = adapter.encode_latent([resized], generator=generator)
    return [
        LatentImageSegment(latent.tokens[0].cpu(), latent.grids[0], t=0.0),
        VitImageSegment(adapter.vit_transform(resized)),
    ]


def _restore_segments(
    adapter: TrainingParts, block: RestoreBlock, options: PackingOptions, generator: torch.Generator | None
) -> list[Segment]:
    if not block.is_sft:
        tokens, grid = block.latent.tokens[0].detach().cpu(), tuple(block.latent.grids[0])
        x_t = block.step.x_t.detach().cpu()
        if x_t.shape[0] != grid[0] * grid[1]:
            raise ClearConfigError(
                f"the recorded step's x_t has {x_t.shape[0]} tokens but the rollout's latent grid {grid} has "
                f"{grid[0] * grid[1]}; pass the step and the final latent of the same restore."
            )
        noised = LatentImageSegment(x_t, grid, t=float(block.step.t), noisy_input=True)
        if block.reencoded_image is not None:
            return [noised, VitImageSegment(adapter.vit_transform(block.reencoded_image))]
        return [noised, LatentImageSegment(tokens, grid, t=0.0)]
    resized = adapter.vae_transform.resize(block.clean_image)
    with torch.no_grad():
        latent = adapter.encode_latent([resized], generator=generator)
    x0, grid = latent.tokens[0].cpu(), latent.grids[0]
    t = sample_timestep(generator, options.timestep_shift)
    segments: list[Segment] = [
        LatentImageSegment(x0, grid, t=t),
        LatentImageSegment(x0, grid, t=0.0, key=DISTILL_KEY),
    ]
    drop = options.vit_drop_prob > 0 and _draw(generator) < options.vit_drop_prob
    if not drop:
        size = matched_vit_size(grid, adapter.model.config.vit_config.patch_size)
        segments.append(VitImageSegment(adapter.vit_transform(resized, size), key=DISTILL_KEY))
    return segments


def sample_segments(
    adapter: TrainingParts,
    sample: TrainingSample,
    options: PackingOptions,
    generator: torch.Generator | None = None,
) -> list[Segment]:
    """The segments of one sample (module docstring); text segments dropped w.p. ``options.text_dropout_prob``."""

    def keep_text() -> bool:
        return not (options.text_dropout_prob > 0 and _draw(generator) < options.text_dropout_prob)

    segments: list[Segment] = []
    if sample.system_prompt and keep_text():
        segments.append(_segment(adapter, sample.system_prompt, target=False))
    segments.extend(_prompt_image(adapter, sample.image, generator))
    if keep_text():
        segments.append(_segment(adapter, sample.question, target=False))
    last_open = sample.end_open
    if keep_text():
        segments.append(
            _segment(adapter, sample.prefix, target=True, close=not (last_open and sample.restore is None))
        )
    if sample.restore is not None:
        segments.extend(_restore_segments(adapter, sample.restore, options, generator))
        if keep_text():
            segments.append(_segment(adapter, sample.suffix, target=True, close=not last_open))
    return segments


def segment_tokens(segments: Sequence[Segment], vit_patch: int) -> int:
    """Number of packed positions ``segments`` take (image blocks count their two markers)."""
    total = 0
    for seg in segments:
        if isinstance(seg, TextSegment):
            total += len(seg.ids)
        elif isinstance(seg, VitImageSegment):
            total += (seg.pixels.shape[1] // vit_patch) * (seg.pixels.shape[2] // vit_patch) + 2
        else:
            total += seg.tokens.shape[0] + 2
    return total


def group_rows(lengths: Sequence[int], budget: int | None) -> list[list[int]]:
    """Split sample indices into consecutive rows of at most ``budget`` tokens (an oversized sample alone)."""
    rows: list[list[int]] = []
    used = 0
    for index, length in enumerate(lengths):
        if rows and (budget is None or used + length <= budget):
            rows[-1].append(index)
            used += length
        else:
            rows.append([index])
            used = length
    return rows


def pack_training_samples(
    adapter: TrainingParts, samples: Sequence[TrainingSample], options: PackingOptions | None = None
) -> list[PackedBatch]:
    """Pack ``samples`` into :class:`~.batch.PackedBatch` rows of at most ``options.max_tokens_per_row`` tokens.

    Samples keep their order; ``PackedBatch.sample_offset`` is the index (in ``samples``) of each row's first one.
    """
    options = options or PackingOptions()
    if not samples:
        raise ClearConfigError("pack_training_samples got no samples; pass at least one TrainingSample.")
    generator = options.generator
    patch = adapter.model.config.vit_config.patch_size
    per_sample: list[list[Segment]] = []
    for sample in samples:
        try:
            per_sample.append(sample_segments(adapter, sample, options, generator))
        except ClearConfigError as exc:
            raise ClearConfigError(f"sample {sample.where}: {exc}") from exc
    rows = group_rows([segment_tokens(s, patch) for s in per_sample], options.max_tokens_per_row)
    batches = []
    for row in rows:
        batch = build_packed_batch(
            [per_sample[i] for i in row],
            adapter.token_ids,
            patch,
            generator=generator,
            output_hidden_states=options.output_hidden_states,
        )
        batch.sample_offset = row[0]
        batch.attention = options.attention
        batches.append(batch)
    return batches


def blind_extra(
    batch: PackedBatch,
    label_index: torch.Tensor,
    velocity_index: torch.Tensor,
    velocity_t: torch.Tensor | None,
) -> dict[str, torch.Tensor | None]:
    """The backbone-blind ``TrainingOutputs.extra`` keys (see :class:`~clear_plugins.adapters.base.TrainingOutputs`)."""
    sample = batch.inputs.layout.sample + batch.sample_offset
    return {
        "text_sample": sample[label_index],
        "image_sample": sample[velocity_index],
        "image_timesteps": velocity_t,
        "distill_a": batch.distill_vit_index,
        "distill_b": batch.distill_latent_index,
        "distill_pair": batch.distill_pair_index,
    }


def default_trainable_parameters(adapter: TrainingParts, model: Any = None) -> list[str]:
    """SFT's default trainable names (SPEC Stage 1): the LLM (both experts, embeddings, ``lm_head``, norms), the
    ViT ``connector``, ``vae2llm``, ``llm2vae`` and ``time_embedder``; never SigLIP, the VAE or the frozen sin-cos
    position tables."""
    target = adapter.model if model is None else model
    groups = adapter.parameter_groups(target)
    wanted = set(groups["understanding"]) | set(groups["generation"]) | set(groups["bridge"])
    wanted |= {name for name in groups["vision"] if ".connector." in f".{name}"}
    return [name for name, _ in target.named_parameters() if name in wanted and "pos_embed" not in name]
