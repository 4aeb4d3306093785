"""Interleaved GRPO rollouts through the adapter contract (SPEC Stage 2; backbone-blind).

For one prompt, :func:`rollout_group` prefills the context **once** (``start_context``) and runs G trajectories
from it — contexts are immutable forks, so the G rollouts share the prompt's KV cache. Each trajectory::

    first   = generate_text(prompt, stop=["<image_restore>"])        # sampled, per-token log-probs recorded
    if it stopped on <image_restore> (or force_restore):
        result  = restore(context, image, sde=..., guidance=None)    # SDE, every (t, x_t, x_next, log p) recorded
        context = bridge(result.latent, context, bridge_mode)        # no ViT re-encode in "bridge" mode
        rest    = generate_text(context)                             # continues to <answer>

Every rollout has its own seed (text sampling and denoising noise), so the G rollouts of one prompt differ.
Everything runs without autograd. The result keeps what the training forward needs to replay the trajectory
(:class:`~clear_plugins.adapters.base.RolloutSample`) and TRL's bookkeeping (ids, mask, old log-probs) with one
placeholder id at the restored image's place.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from clear_plugins.adapters.base import BackboneAdapter, RestoreResult, RolloutSample, TextSampling
from clear_plugins.bridge import BridgeMode
from clear_plugins.errors import ClearConfigError
from clear_plugins.flow import SDEConfig
from clear_plugins.trajectory import RESTORE_TAG, system_prompt


@dataclass
class RolloutOptions:
    """How trajectories are sampled (the trainer builds it from :class:`~clear_plugins.trl_ext.grpo.InterleavedGRPOConfig`)."""

    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    sde: SDEConfig = field(default_factory=SDEConfig)
    bridge_mode: str = "bridge"
    force_restore: bool = False
    system_prompt: str | None = None
    placeholder_id: int = 0

    def __post_init__(self) -> None:
        """Check the fields that rollouts depend on."""
        mode = BridgeMode.parse(self.bridge_mode)
        if mode is BridgeMode.DEGRADED_LATENT:
            raise ClearConfigError(
                "bridge_mode='degraded_latent' is an inference ablation; GRPO rollouts use 'bridge' or "
                "'decode_reencode'."
            )
        if self.max_new_tokens < 1:
            raise ClearConfigError(f"max_new_tokens={self.max_new_tokens} must be >= 1.")


@dataclass
class Trajectory:
    """One sampled trajectory.

    Attributes:
        sample: what the training forward replays (``steps`` empty: the trainer chooses them).
        text: the decoded completion (both segments), for the rewards.
        completion_ids: generated ids with one placeholder where the restored image sits (TRL bookkeeping).
        completion_mask: 1 for sampled tokens (trained), 0 for appended ones and the placeholder.
        old_logprobs: the rollout log-probability of each completion id (0 where the mask is 0).
        token_positions: index in ``completion_ids`` of each segment token, in order.
        restore: the adapter's restore result (latent, SDE records), or ``None``.
        forced: restored because of ``force_restore`` although the text did not ask for it.
        seconds: wall-clock time of ``text`` and ``restore`` (including the bridge).
    """

    sample: RolloutSample
    text: str
    completion_ids: list[int]
    completion_mask: list[int]
    old_logprobs: list[float]
    token_positions: list[int]
    restore: RestoreResult | None = None
    forced: bool = False
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def restored(self) -> bool:
        """Whether the rollout ran the restoration."""
        return self.restore is not None


@dataclass
class GroupRollout:
    """G trajectories of one prompt and the time spent prefilling the shared prompt."""

    trajectories: list[Trajectory]
    prefill_seconds: float


def rollout_seed(base: int, step: int, prompt_index: int, generation: int) -> int:
    """A distinct 63-bit seed per (run seed, generation round, prompt, rollout)."""
    value = (base * 1_000_003 + step) * 1_000_033 + prompt_index
    return (value * 1_009 + generation) % (2**63 - 1)


def _device(adapter: BackboneAdapter) -> torch.device:
    return next(adapter.model.parameters()).device


def _book(segments: list[list[int]], logprobs: list[list[float | None]], placeholder: int) -> tuple:
    """Completion ids with a placeholder between segments, mask, old log-probs and the segment positions."""
    ids, mask, old, positions = [], [], [], []
    for k, (segment, values) in enumerate(zip(segments, logprobs, strict=True)):
        if k:
            ids.append(placeholder)
            mask.append(0)
            old.append(0.0)
        for token, value in zip(segment, values, strict=True):
            sampled = value is not None and math.isfinite(value)
            positions.append(len(ids))
            ids.append(int(token))
            mask.append(int(sampled))
            old.append(float(value) if sampled else 0.0)
    return ids, mask, old, positions


def _logprobs(result: Any) -> list[float | None]:
    if result.logprobs is None or len(result.logprobs) != len(result.token_ids):
        raise ClearConfigError(
            "generate_text returned no per-token log-probabilities (TextResult.logprobs); GRPO needs the adapter "
            "to record them."
        )
    return list(result.logprobs)


def rollout_one(
    adapter: BackboneAdapter, prompt: Any, image: Any, options: RolloutOptions, seed: int
) -> Trajectory:
    """One trajectory from the prefilled ``prompt`` context (module docstring), seeded by ``seed``."""
    sampling = TextSampling(do_sample=True, temperature=options.temperature, top_p=options.top_p, seed=seed)
    tick = time.perf_counter()
    first = adapter.generate_text(
        prompt, max_new_tokens=options.max_new_tokens, stop=(RESTORE_TAG,), sampling=sampling
    )
    segments, logprobs, text = [list(first.token_ids)], [_logprobs(first)], first.text
    seconds = {"text": time.perf_counter() - tick, "restore": 0.0}
    asked = first.stopped_on == RESTORE_TAG
    restore = None
    if asked or options.force_restore:
        tick = time.perf_counter()
        generator = torch.Generator(device=_device(adapter)).manual_seed(seed)
        restore = adapter.restore(
            first.context,
            image,
            num_steps=options.sde.num_timesteps,
            sde=options.sde,
            guidance=None,
            generator=generator,
        )
        context = adapter.bridge(restore.latent, first.context, options.bridge_mode)
        seconds["restore"] = time.perf_counter() - tick
        tick = time.perf_counter()
        budget = max(options.max_new_tokens - len(first.token_ids), 1)
        rest = adapter.generate_text(context, max_new_tokens=budget, stop=(), sampling=sampling)
        segments.append(list(rest.token_ids))
        logprobs.append(_logprobs(rest))
        text += rest.text
        seconds["text"] += time.perf_counter() - tick
    ids, mask, old, positions = _book(segments, logprobs, options.placeholder_id)
    sample = RolloutSample(
        prompt=prompt,
        segments=segments,
        restored=None if restore is None else restore.latent,
        bridge_mode=BridgeMode.parse(options.bridge_mode).value,
    )
    return Trajectory(
        sample=sample,
        text=text,
        completion_ids=ids,
        completion_mask=mask,
        old_logprobs=old,
        token_positions=positions,
        restore=restore,
        forced=restore is not None and not asked,
        seconds=seconds,
    )


@torch.no_grad()
def rollout_group(
    adapter: BackboneAdapter,
    image: Any,
    question: str,
    *,
    num_generations: int,
    options: RolloutOptions,
    seeds: list[int],
) -> GroupRollout:
    """G = ``num_generations`` trajectories of one prompt sharing one prefill (module docstring)."""
    if len(seeds) != num_generations:
        raise ClearConfigError(
            f"got {len(seeds)} seeds for num_generations={num_generations}: pass one each."
        )
    tick = time.perf_counter()
    prompt = adapter.start_context(image, question, system_prompt=system_prompt(options.system_prompt))
    prefill = time.perf_counter() - tick
    trajectories = [rollout_one(adapter, prompt, image, options, seed) for seed in seeds]
    return GroupRollout(trajectories, prefill)
