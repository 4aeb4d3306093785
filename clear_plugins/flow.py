"""Backbone-blind flow-matching math, in fp32: Bagel's time grid, the Euler ODE step, Flow-GRPO's SDE step.

Conventions (SPEC Stage 2; Bagel reference §5.7):

- ``t = 1`` is pure noise and ``t = 0`` the clean latent; training builds ``x_t = (1 − t)·x0 + t·noise``.
- The model predicts the velocity ``v ≈ noise − x0``.
- A step goes from ``t`` to ``t_next ≤ t``, so ``Δt = t_next − t ≤ 0``; Euler's update is ``x_t + v·Δt``.
- The grid has ``num_timesteps`` *points*; the velocity is evaluated once per interval, at its start, so a
  grid of ``N`` points costs ``N − 1`` evaluations and its last point (``t = 0``) is never evaluated.

Flow-GRPO's step (App. A.2) turns the ODE into the reverse-time SDE with the same marginals:
score ``s = −(x_t + (1 − t)·v)/t``, mean ``μ = x_t + (v − σ²/2·s)·Δt``, std ``σ·√(−Δt)``. Its log-probability
is what the GRPO image loss compares between the rollout policy and the trained one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal, NamedTuple

import torch
from torch import Tensor

from clear_plugins.errors import ClearConfigError

MIN_SCORE_T: Final[float] = 1e-6
"""Floor on ``t`` in the score's division, so a step evaluated at ``t = 0`` stays finite.

Bagel's grid never evaluates ``t = 0``. For any step with ``0 ≤ t_next ≤ t`` the score term is multiplied by
``|Δt| ≤ t``, so the floor changes nothing except the otherwise undefined ``0/0`` at ``t = 0``.
"""

_LOG_SQRT_2PI: Final[float] = 0.5 * math.log(2.0 * math.pi)

SigmaSchedule = Literal["constant", "flow_grpo"]
_SIGMA_SCHEDULES: Final[tuple[str, ...]] = ("constant", "flow_grpo")

Scalar = float | Tensor


def shift_timesteps(t: Scalar, shift: float) -> Scalar:
    """Bagel's timestep shift ``s·t / (1 + (s − 1)·t)``; keeps 0 and 1 fixed, pushes the rest towards noise.

    Args:
        t: time(s) in ``[0, 1]``, a float or a tensor.
        shift: ``s > 0``; 1 leaves ``t`` unchanged, Bagel's inference uses 3.0 (s = 3 maps 0.5 to 0.75).
    """
    if not (isinstance(shift, int | float) and math.isfinite(shift) and shift > 0):
        raise ClearConfigError(f"shift={shift!r} is invalid: pass a finite number > 0 (1.0 means no shift).")
    return shift * t / (1 + (shift - 1) * t)


def time_grid(num_timesteps: int, shift: float = 1.0) -> Tensor:
    """Bagel's sampling grid: ``num_timesteps`` points ``linspace(1, 0)``, shifted, as fp32 ``[num_timesteps]``.

    ``num_timesteps`` counts grid *points* (Bagel's ``num_timesteps``), not velocity evaluations: a step goes
    from ``grid[k]`` to ``grid[k + 1]``, so there are ``num_timesteps − 1`` evaluations and ``grid[-1] = 0``
    is never evaluated. SPEC's default restore is 30 points with shift 3.0.
    """
    if not (isinstance(num_timesteps, int) and num_timesteps >= 2):
        raise ClearConfigError(
            f"num_timesteps={num_timesteps!r} is invalid: pass an int >= 2 (grid points, including t=1 and t=0)."
        )
    grid = torch.linspace(1.0, 0.0, num_timesteps, dtype=torch.float64)
    return shift_timesteps(grid, shift).to(torch.float32)


def flow_grpo_sigma(t: Scalar, t_next: Scalar, a: float) -> Scalar:
    """Flow-GRPO's noise level ``a·√(t / (1 − t))``, with ``t = 1`` replaced by ``t_next`` in ``1 − t``.

    The expression is infinite at ``t = 1``; like Flow-GRPO, only the ``1 − t`` denominator takes the next
    grid point there (the numerator stays 1). Floats in give a float out; tensors broadcast.
    """
    if isinstance(t, Tensor) or isinstance(t_next, Tensor):
        t = torch.as_tensor(t, dtype=torch.float32)
        t_next = torch.as_tensor(t_next, dtype=torch.float32, device=t.device)
        return a * torch.sqrt(t / (1 - torch.where(t >= 1, t_next, t)))
    denominator = 1.0 - (t_next if t >= 1 else t)
    if denominator <= 0:
        raise ClearConfigError(
            f"flow_grpo sigma is infinite at t={t!r}, t_next={t_next!r}: a step from t=1 must go to t_next < 1."
        )
    return a * math.sqrt(t / denominator)


@dataclass
class SDEConfig:
    """How GRPO rollouts sample the restored latent: grid, shift and the SDE's noise level σ_t (App. A.2)."""

    sigma_schedule: SigmaSchedule = field(
        default="constant",
        metadata={
            "help": "Noise level σ_t of the SDE step (App. A.2): 'constant' uses `sigma` at every step (the "
            "reference's choice); 'flow_grpo' uses a·sqrt(t/(1−t)) with t=1 replaced by the next grid point."
        },
    )
    sigma: float = field(
        default=0.3,
        metadata={
            "help": "Constant σ_t for sigma_schedule='constant' (the reference uses 0.3; 0 is the ODE)."
        },
    )
    a: float = field(
        default=0.7,
        metadata={
            "help": "Flow-GRPO's noise scale a in a·sqrt(t/(1−t)) for sigma_schedule='flow_grpo' (0.7)."
        },
    )
    num_timesteps: int = field(
        default=30,
        metadata={
            "help": "Grid points from t=1 to t=0 (Bagel's num_timesteps; SPEC: 30); the model is evaluated "
            "num_timesteps−1 times, once per interval."
        },
    )
    shift: float = field(
        default=3.0,
        metadata={"help": "Timestep shift s in s·t/(1+(s−1)·t) applied to the grid (SPEC/Bagel: 3.0)."},
    )

    def __post_init__(self) -> None:
        """Check each field; errors name the field, its value and the fix."""
        if self.sigma_schedule not in _SIGMA_SCHEDULES:
            raise ClearConfigError(
                f"sigma_schedule={self.sigma_schedule!r} is unknown: use one of {', '.join(_SIGMA_SCHEDULES)}."
            )
        for name in ("sigma", "a"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not (math.isfinite(value) and value >= 0)
            ):
                raise ClearConfigError(f"{name}={value!r} is invalid: pass a finite number >= 0.")
        time_grid(self.num_timesteps, self.shift)  # validates num_timesteps and shift with named errors

    @property
    def num_steps(self) -> int:
        """Velocity evaluations per sample: ``num_timesteps − 1``."""
        return self.num_timesteps - 1

    def grid(self) -> Tensor:
        """The shifted fp32 grid of ``num_timesteps`` points from 1 to 0 (see :func:`time_grid`)."""
        return time_grid(self.num_timesteps, self.shift)

    def sigma_at(self, t: Scalar, t_next: Scalar) -> Scalar:
        """σ_t for the step ``t → t_next`` under this config's schedule."""
        if self.sigma_schedule == "constant":
            return self.sigma
        return flow_grpo_sigma(t, t_next, self.a)


class SDEStep(NamedTuple):
    """Result of :func:`sde_step`.

    Attributes:
        prev_sample: ``x_next``, the input sample's shape and dtype (the given one when scoring).
        log_prob: fp32 log-density of ``prev_sample``: ``[batch]``, or ``[num_images]`` with ``index``.
        mean: fp32 Gaussian mean ``μ``, the sample's shape.
        std: fp32 Gaussian std ``σ·√(−Δt)``, broadcastable to the sample.
    """

    prev_sample: Tensor
    log_prob: Tensor
    mean: Tensor
    std: Tensor


def _num_images(index: Tensor | None, sample: Tensor) -> tuple[int, Tensor | None]:
    """Validate a packed-token image index; return the image count and the tokens per image."""
    if index is None:
        return sample.shape[0] if sample.ndim else 1, None
    if index.ndim != 1 or index.dtype != torch.long or index.shape[0] != sample.shape[0]:
        raise ClearConfigError(
            f"index has shape {tuple(index.shape)} and dtype {index.dtype}: pass a 1-D LongTensor with one image "
            f"id per token (sample has {sample.shape[0]} tokens)."
        )
    if index.numel() == 0 or int(index.min()) < 0:
        raise ClearConfigError(
            "index is empty or has negative ids: image ids must be 0, 1, ..., num_images−1."
        )
    counts = torch.bincount(index)
    if bool((counts == 0).any()):
        raise ClearConfigError(
            f"index skips image ids {torch.nonzero(counts == 0).flatten().tolist()}: number images 0..n−1."
        )
    return counts.shape[0], counts


def _column(value: Scalar, sample: Tensor, index: Tensor | None, rows: int, name: str) -> Tensor:
    """``value`` as an fp32 tensor that broadcasts against ``sample`` (one value per row or per image)."""
    if not isinstance(value, Tensor):
        return torch.tensor(float(value), dtype=torch.float32, device=sample.device)
    value = value.to(device=sample.device, dtype=torch.float32)
    if value.ndim == 0:
        return value
    if value.ndim == 1 and value.shape[0] == rows:
        per_row = value if index is None else value[index]
        return per_row.view(-1, *([1] * (sample.ndim - 1)))
    if value.ndim == sample.ndim:
        torch.broadcast_shapes(value.shape, sample.shape)
        return value
    unit = "image" if index is not None else "sample"
    raise ClearConfigError(
        f"{name} has shape {tuple(value.shape)}, which does not fit sample shape {tuple(sample.shape)}: pass a "
        f"float, a 0-d tensor, or one value per {unit} ({rows})."
    )


def _step_columns(
    sample: Tensor, t: Scalar, t_next: Scalar, sigma: Scalar, index: Tensor | None, rows: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Broadcastable fp32 ``t``, ``t_next``, ``sigma``, checked: ``0 ≤ t_next ≤ t ≤ 1`` and ``0 ≤ σ < ∞``."""
    t_, t_next_, sigma_ = (
        _column(value, sample, index, rows, name)
        for value, name in ((t, "t"), (t_next, "t_next"), (sigma, "sigma"))
    )
    bad_time = (t_next_ < 0) | (t_next_ > t_) | (t_ > 1)
    if bool(bad_time.any()):
        raise ClearConfigError(
            f"t={t!r}, t_next={t_next!r} are invalid: steps go from noise to data, 0 <= t_next <= t <= 1."
        )
    if bool(((sigma_ < 0) | ~torch.isfinite(sigma_)).any()):
        raise ClearConfigError(
            f"sigma={sigma!r} is invalid: pass finite values >= 0 (0 gives the Euler step)."
        )
    return t_, t_next_, sigma_


def ode_step(
    sample: Tensor, velocity: Tensor, t: Scalar, t_next: Scalar, *, index: Tensor | None = None
) -> Tensor:
    """Euler step ``x_t + v·(t_next − t)`` of the flow ODE, computed in fp32, returned in ``sample.dtype``.

    ``t`` and ``t_next`` are floats or per-sample tensors (per image with ``index``, as in :func:`sde_step`).
    """
    rows, _ = _num_images(index, sample)
    t_, t_next_, _ = _step_columns(sample, t, t_next, 0.0, index, rows)
    return (sample.float() + velocity.float() * (t_next_ - t_)).to(sample.dtype)


def _gaussian_log_prob(value: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """Element-wise ``log N(value; mean, std²)``, set to 0 where ``std == 0`` (NaN-free, also in gradients)."""
    positive = std > 0
    safe_std = torch.where(positive, std, torch.ones_like(std))
    log_density = -((value - mean) ** 2) / (2 * safe_std**2) - torch.log(safe_std) - _LOG_SQRT_2PI
    return torch.where(positive, log_density, torch.zeros_like(log_density))


def _reduce(log_prob: Tensor, index: Tensor | None, counts: Tensor | None) -> Tensor:
    """Mean over all but the first dim (Flow-GRPO), then, with ``index``, the mean over each image's tokens."""
    per_row = log_prob.mean(dim=tuple(range(1, log_prob.ndim))) if log_prob.ndim > 1 else log_prob
    if index is None or counts is None:
        return per_row
    sums = per_row.new_zeros(counts.shape[0]).index_add(0, index, per_row)
    return sums / counts.to(per_row.dtype)


def sde_step(
    sample: Tensor,
    velocity: Tensor,
    t: Scalar,
    t_next: Scalar,
    sigma: Scalar,
    *,
    prev_sample: Tensor | None = None,
    generator: torch.Generator | None = None,
    index: Tensor | None = None,
) -> SDEStep:
    """One Flow-GRPO SDE step ``t → t_next`` (App. A.2): draw ``x_next`` (or score a given one).

    Args:
        sample: ``x_t``, ``[batch, ...]``, or packed latents ``[num_tokens, ...]`` of several images.
        velocity: the model's ``v`` at ``(x_t, t)``, same shape; gradients flow from ``log_prob`` into it.
        t, t_next: floats, or tensors with one value per sample (per image with ``index``); ``t_next ≤ t``.
        sigma: σ_t, same forms (see :meth:`SDEConfig.sigma_at`); 0 gives exactly :func:`ode_step`.
        prev_sample: when given, it is scored (not drawn) and returned as is.
        generator: random generator for the drawn noise (always drawn in fp32, ``sample``'s shape).
        index: LongTensor ``[num_tokens]`` with each token's image id ``0..n−1``; ``log_prob`` is then one
            value per image and tensor ``t``/``t_next``/``sigma`` hold one value per image.

    Returns:
        :class:`SDEStep`. ``log_prob`` is the Gaussian log-density of the returned ``prev_sample`` (after the
        cast to ``sample.dtype``, so rescoring it later gives the same number), constants included, averaged
        over all dims but the first (Flow-GRPO's convention) and per image with ``index``. It is 0 where the
        std is 0 (σ = 0 or ``t_next = t``), where the density is undefined.
    """
    rows, counts = _num_images(index, sample)
    if prev_sample is not None and prev_sample.shape != sample.shape:
        raise ClearConfigError(
            f"prev_sample has shape {tuple(prev_sample.shape)} but sample has {tuple(sample.shape)}: pass the "
            f"x_next recorded for this sample."
        )
    t_, t_next_, sigma_ = _step_columns(sample, t, t_next, sigma, index, rows)
    x, v = sample.float(), velocity.float()
    dt = t_next_ - t_
    score = -(x + (1 - t_) * v) / t_.clamp_min(MIN_SCORE_T)
    mean = x + (v - sigma_**2 / 2 * score) * dt
    std = sigma_ * torch.sqrt(-dt)
    if prev_sample is None:
        noise = torch.randn(mean.shape, generator=generator, dtype=torch.float32, device=mean.device)
        prev_sample = (mean + std * noise).to(sample.dtype)
    log_prob = _gaussian_log_prob(prev_sample.detach().float(), mean, std)
    return SDEStep(prev_sample, _reduce(log_prob, index, counts), mean, std)


@dataclass(frozen=True)
class SDETrajectory:
    """A whole sampled trajectory on one grid, recorded without autograd graphs.

    Step ``k`` goes from ``(timesteps[k], latents[k])`` to ``(timesteps[k + 1], latents[k + 1])`` with
    log-probability ``log_probs[k]``.

    Attributes:
        timesteps: fp32 grid ``[num_timesteps]``, 1 → 0.
        latents: ``[num_timesteps, *x_T.shape]`` in ``x_T``'s dtype; ``latents[-1]`` is the final sample.
        log_probs: fp32 ``[num_timesteps − 1, batch]`` (``[.., num_images]`` with ``index``).
    """

    timesteps: Tensor
    latents: Tensor
    log_probs: Tensor


@torch.no_grad()
def sample_sde_trajectory(
    velocity_fn: Callable[[Tensor, float], Tensor],
    x_T: Tensor,
    config: SDEConfig,
    generator: torch.Generator | None = None,
    *,
    index: Tensor | None = None,
) -> SDETrajectory:
    """Run :func:`sde_step` over ``config``'s grid from the noise ``x_T``, calling ``velocity_fn(x, t)`` per step."""
    grid = config.grid()
    latents = [x_T]
    log_probs = []
    for t, t_next in zip(grid[:-1].tolist(), grid[1:].tolist(), strict=True):
        x = latents[-1]
        step = sde_step(
            x, velocity_fn(x, t), t, t_next, config.sigma_at(t, t_next), generator=generator, index=index
        )
        latents.append(step.prev_sample)
        log_probs.append(step.log_prob)
    return SDETrajectory(grid, torch.stack(latents), torch.stack(log_probs))
