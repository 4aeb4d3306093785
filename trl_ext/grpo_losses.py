"""The Interleaved-GRPO math as pure tensor functions (Sec. 3.4, App. A), readable with shape comments.

- :func:`group_advantages`: ``A_i = (R_i − mean_G) / std_G`` over each group of G trajectories (one value per
  trajectory, shared by the text and the image loss); a group whose rewards are all equal gets 0, never NaN.
- :func:`clipped_surrogate`: PPO's ``−min(ρ·A, clip(ρ, 1 − ε_low, 1 + ε_high)·A)`` for any shape.
- :func:`image_log_probs`: the Flow-GRPO log-density of the recorded ``x_next`` under the *current* velocity,
  through :func:`clear_plugins.flow.sde_step` (one value per injected step).
- :func:`flow_grpo_loss`: the clipped image surrogate averaged over the injected steps, with its statistics.

The text surrogate itself is TRL's (``GRPOTrainer._compute_loss``): the trainer feeds it, these functions add the
image term ``λ·L_FlowGRPO`` and the advantages both terms share.
"""

from __future__ import annotations

from typing import Final, NamedTuple

import torch
from torch import Tensor

from clear_plugins.errors import ClearConfigError
from clear_plugins.flow import sde_step

ADVANTAGE_SCALES: Final[tuple[str, ...]] = ("group", "batch", "none")
"""How rewards are scaled after centring per group (TRL's ``scale_rewards`` values)."""

STD_EPS: Final[float] = 1e-4
"""Added to the std before dividing (TRL's constant), so a tiny spread cannot blow an advantage up."""


def group_advantages(rewards: Tensor, group_size: int, scale: str = "group") -> Tensor:
    """Group-normalised advantages ``[B]`` of ``rewards`` ``[B]`` (B = groups × ``group_size``, groups contiguous).

    ``scale``: ``"group"`` divides by each group's std (Eq. 8), ``"batch"`` by the std of all rewards,
    ``"none"`` only centres (Dr. GRPO). NaN rewards (unscorable completions) are left out of the group
    statistics and get advantage 0; so does every member of a group whose (non-NaN) rewards are all equal.
    """
    if scale not in ADVANTAGE_SCALES:
        raise ClearConfigError(f"scale={scale!r} is not one of {ADVANTAGE_SCALES}.")
    if group_size < 1 or rewards.ndim != 1 or rewards.shape[0] % group_size:
        raise ClearConfigError(
            f"rewards of shape {tuple(rewards.shape)} do not split into groups of {group_size}; pass a 1-D tensor "
            "with num_generations rewards per prompt, groups contiguous."
        )
    grouped = rewards.float().view(-1, group_size)  # [num_groups, G]
    valid = ~torch.isnan(grouped)
    count = valid.sum(dim=1, keepdim=True)  # [num_groups, 1]
    filled = torch.where(valid, grouped, torch.zeros_like(grouped))
    mean = filled.sum(dim=1, keepdim=True) / count.clamp(min=1)
    centered = torch.where(valid, grouped - mean, torch.zeros_like(grouped))  # [num_groups, G]
    high = torch.where(valid, grouped, torch.full_like(grouped, -torch.inf)).amax(dim=1, keepdim=True)
    low = torch.where(valid, grouped, torch.full_like(grouped, torch.inf)).amin(dim=1, keepdim=True)
    flat = (count < 2) | (high == low)  # [num_groups, 1]: nothing to compare within the group
    if scale == "group":
        var = (centered**2).sum(dim=1, keepdim=True) / (count - 1).clamp(min=1)
        centered = centered / (var.sqrt() + STD_EPS)
    elif scale == "batch":
        values = rewards[~torch.isnan(rewards)].float()
        std = values.std() if values.numel() > 1 else values.new_zeros(())
        centered = centered / (std + STD_EPS)
    advantages = torch.where(flat | ~valid, torch.zeros_like(centered), centered)
    return advantages.reshape(-1)


class Surrogate(NamedTuple):
    """Result of :func:`clipped_surrogate`: per-element loss, ratio and whether clipping was active."""

    loss: Tensor
    ratio: Tensor
    clipped: Tensor


def clipped_surrogate(log_ratio: Tensor, advantages: Tensor, eps_low: float, eps_high: float) -> Surrogate:
    """PPO's clipped objective as a loss, element-wise: ``−min(ρ·A, clip(ρ, 1 − ε_low, 1 + ε_high)·A)``.

    ``log_ratio`` ``[...]`` is ``log π_θ − log π_old``; ``advantages`` broadcasts to it. ``clipped`` marks the
    elements where the clip decides the value (ρ below the range with A < 0, or above it with A > 0).
    """
    ratio = torch.exp(log_ratio)
    clipped_ratio = torch.clamp(ratio, 1 - eps_low, 1 + eps_high)
    loss = -torch.min(ratio * advantages, clipped_ratio * advantages)
    clipped = ((ratio < 1 - eps_low) & (advantages < 0)) | ((ratio > 1 + eps_high) & (advantages > 0))
    return Surrogate(loss, ratio, clipped)


def image_log_probs(
    x_t: Tensor,
    velocity: Tensor,
    x_next: Tensor,
    t: Tensor,
    t_next: Tensor,
    sigma: Tensor,
    index: Tensor,
) -> Tensor:
    """Log-density ``[S]`` of each recorded ``x_next`` under the SDE step driven by ``velocity`` (App. A.2).

    Args:
        x_t, velocity, x_next: packed latent tokens of the S injected steps, ``[n_tokens, latent_dim]``.
        t, t_next, sigma: ``[S]`` per-step times and noise levels (``t_next < t``).
        index: ``[n_tokens]`` step id ``0..S−1`` of each token.

    Gradients flow into ``velocity`` only; the value equals the rollout's ``log_prob`` when the velocity does.
    """
    return sde_step(x_t, velocity, t, t_next, sigma, prev_sample=x_next, index=index).log_prob


class ImageLoss(NamedTuple):
    """Result of :func:`flow_grpo_loss`: the scalar loss and its statistics (detached floats)."""

    loss: Tensor
    ratio_mean: float
    clip_fraction: float
    log_ratio_abs_max: float


def flow_grpo_loss(
    new_log_probs: Tensor,
    old_log_probs: Tensor,
    advantages: Tensor,
    weights: Tensor,
    eps_low: float,
    eps_high: float,
) -> ImageLoss:
    """Clipped Flow-GRPO loss over S injected steps: ``Σ_s w_s · surrogate_s`` (App. A.2).

    Args:
        new_log_probs, old_log_probs: ``[S]`` log-densities of the recorded ``x_next`` now and at the rollout.
        advantages: ``[S]`` the advantage of the trajectory each step belongs to (the text loss's advantage).
        weights: ``[S]`` non-negative step weights summing to 1 (e.g. each trajectory equally, its steps
            equally within it).
    """
    surrogate = clipped_surrogate(new_log_probs - old_log_probs, advantages, eps_low, eps_high)
    loss = (weights * surrogate.loss).sum()  # scalar
    with torch.no_grad():
        return ImageLoss(
            loss=loss,
            ratio_mean=float(surrogate.ratio.mean()),
            clip_fraction=float(surrogate.clipped.float().mean()),
            log_ratio_abs_max=float((new_log_probs - old_log_probs).abs().max()),
        )
