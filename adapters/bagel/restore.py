"""Restoration in latent space (image-conditioned generation) and the Latent Representation Bridge on Bagel.

Restore (Sec. 3.1; reference §5.7): start from Gaussian noise ``[rows·cols, 64]`` on the degraded image's latent
grid and integrate Bagel's shifted time grid with :mod:`clear_plugins.flow`, one velocity evaluation per
interval. Each evaluation forwards one *noised* latent block (``<|vision_start|>`` + ``x_t`` tokens at time ``t`` +
``<|vision_end|>``, generation expert) on top of the context's KV cache without writing to it; ``llm2vae`` of its
final hidden states is the velocity. With :class:`~.guidance.BagelGuidance` the text-uncond and image-uncond
branches are evaluated too, in the same forward (:mod:`.denoise`, prepared once per restore), and combined as the
official sampler does. Only the last step keeps autograd (when the caller enables it): that is the step a training
loss reaches through the bridge; earlier steps run without graphs. The initial noise comes from the generator or is
passed explicitly (``noise``).

Bridge (Sec. 3.3, 4.4): ``bridge`` and ``degraded_latent`` (given the degraded image's latent already in the
context, :meth:`~.adapter.BagelAdapter.degraded_latent`) append the latent as a clean image block
(``vae2llm`` + timestep embedding at ``t = 0`` + latent position embedding, through the generation expert) — no new
parameters, differentiable; ``decode_reencode`` decodes to uint8 pixels, applies the real ViT transform and appends
the ViT block (not differentiable: the pixels are integers).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor

from clear_plugins.adapters.base import Latent, RestoreResult, SDERecord
from clear_plugins.bridge import BridgeMode
from clear_plugins.errors import ClearConfigError
from clear_plugins.flow import SDEConfig, ode_step, sde_step, time_grid

from .context import BagelContext, BagelParts, Branch, ContextRunner, LatentItem, VitItem
from .denoise import Denoiser
from .embeddings import grid_position_ids
from .generation import close_segment
from .guidance import BagelGuidance, guided_velocity
from .image_transforms import to_rgb


@dataclass
class BagelRestoreConfig:
    """Defaults of :meth:`BagelAdapter.restore` (SPEC Stage 2; reference §5.7)."""

    num_timesteps: int = field(
        default=30,
        metadata={
            "help": "Time-grid points of a restore when num_steps is not given (SPEC / Sec. 4.1: 30); the "
            "velocity is evaluated num_timesteps − 1 times."
        },
    )
    timestep_shift: float = field(
        default=3.0,
        metadata={
            "help": "Shift s of the grid, s·t/(1+(s−1)·t), for ODE restores (Bagel inference: 3.0, reference "
            "§5.7). An SDEConfig brings its own shift."
        },
    )
    seed: int | None = field(
        default=None,
        metadata={
            "help": "Seed of the initial noise and the SDE noise when restore gets no generator; None draws "
            "from torch's global generator."
        },
    )

    def __post_init__(self) -> None:
        """Validate the grid (errors name the field and value)."""
        time_grid(self.num_timesteps, self.timestep_shift)


class RestoreParts(BagelParts, Protocol):
    """What a restore reads from the adapter: :class:`~.context.BagelParts` and the restore defaults."""

    restore_config: BagelRestoreConfig


def target_grid(adapter: RestoreParts, context: BagelContext, image: Any) -> tuple[int, int]:
    """Latent token grid ``(rows, cols)`` of ``image`` after the VAE resize (``None``: the context's image)."""
    if image is None:
        return context.degraded.latent_grid
    width, height = adapter.encoders.vae_transform.spec.target_size(*to_rgb(image).size)
    step = adapter.model.config.latent_downsample
    return height // step, width // step


def guidance_branches(context: BagelContext, guidance: BagelGuidance | None) -> list[str]:
    """Names of the context's branches a restore with ``guidance`` evaluates: ``main``, then the text-uncond and
    image-uncond branches of ``guidance.uncond_contexts`` when their scales exceed 1."""
    names = ["main"]
    if guidance is not None and guidance.text_scale > 1:
        text, image = guidance.branch_names
        names.append(text)
        if guidance.image_scale > 1:
            names.append(image)
    for name in names:
        if getattr(context, name) is None:
            raise ClearConfigError(
                f"the context has no {name!r} branch; build it with start_context (or pass "
                "uncond_contexts='clear')."
            )
    return names


def prepare_branches(runner: ContextRunner, context: BagelContext, guidance: BagelGuidance | None) -> None:
    """Forward the pending items of the branches a restore needs, in place (the content does not change)."""
    for name in guidance_branches(context, guidance):
        setattr(context, name, runner.flush(getattr(context, name)))


def denoiser(
    runner: ContextRunner, context: BagelContext, grid: tuple[int, int], guidance: BagelGuidance | None
) -> Denoiser:
    """The :class:`~.denoise.Denoiser` of a restore: the conditional branch, then the guidance branches
    ``guidance`` can use (text-uncond, then image-uncond), their pending items forwarded first."""
    prepare_branches(runner, context, guidance)
    return Denoiser(runner, [getattr(context, name) for name in guidance_branches(context, guidance)], grid)


def branch_velocity(
    runner: ContextRunner, branch: Branch, x_t: Tensor, t: float | Tensor, grid: tuple[int, int]
) -> Tensor:
    """Velocity ``[rows·cols, 64]`` (fp32) of the noised block ``x_t`` at time ``t`` on ``branch``'s cache."""
    if branch.pending:
        raise ClearConfigError(
            "the branch has pending items; call prepare_branches(runner, context, guidance) first."
        )
    return Denoiser(runner, [branch], grid)(x_t, t)[0]


def velocity(
    runner: ContextRunner,
    context: BagelContext,
    x_t: Tensor,
    t: float | Tensor,
    grid: tuple[int, int],
    guidance: BagelGuidance | None = None,
    *,
    prepared: Denoiser | None = None,
) -> Tensor:
    """The (guided) velocity the restore uses at ``(x_t, t)``: re-run it on a recorded step to rescore it.

    The branches guidance needs at ``t`` run as one forward; ``prepared`` reuses a restore's prepared
    :func:`denoiser` (built here when not given).
    """
    field = prepared if prepared is not None else denoiser(runner, context, grid, guidance)
    text_scale, image_scale = guidance.scales_at(float(t)) if guidance is not None else (1.0, 1.0)
    if text_scale <= 1:
        return field(x_t, t, 1)[0]
    v = field(x_t, t, 3 if image_scale > 1 else 2)
    return guided_velocity(
        v[0],
        v[1],
        v[2] if image_scale > 1 else None,
        text_scale=text_scale,
        image_scale=image_scale,
        renorm_type=guidance.renorm_type,
        renorm_min=guidance.renorm_min,
    )


def _grid_and_generator(
    adapter: RestoreParts, num_steps: int | None, sde: SDEConfig | None, generator: torch.Generator | None
) -> tuple[Tensor, torch.Generator | None]:
    config = adapter.restore_config
    steps = config.num_timesteps if num_steps is None else num_steps
    if sde is not None and sde.num_timesteps != steps:
        raise ClearConfigError(
            f"num_steps={steps} but sde.num_timesteps={sde.num_timesteps}: both count grid points of the same "
            "restore; make them equal."
        )
    timesteps = time_grid(steps, sde.shift if sde is not None else config.timestep_shift)
    if generator is None and config.seed is not None:
        generator = torch.Generator(device=adapter.runner.device).manual_seed(config.seed)
    return timesteps, generator


def initial_noise(
    adapter: RestoreParts, grid: tuple[int, int], generator: torch.Generator | None, noise: Tensor | None
) -> Tensor:
    """The fp32 latent at ``t = 1`` on the model's device: ``noise`` checked against the grid, else a draw."""
    shape = (grid[0] * grid[1], adapter.model.config.patch_latent_dim)
    device = adapter.runner.device
    if noise is None:
        return torch.randn(shape, generator=generator, device=device, dtype=torch.float32)
    if tuple(noise.shape) != shape or not bool(torch.isfinite(noise).all()):
        raise ClearConfigError(
            f"noise of shape {tuple(noise.shape)} does not fit the restore: pass finite values shaped {shape} "
            f"(the {grid[0]}x{grid[1]} latent grid × patch_latent_dim), or None to draw it from the generator."
        )
    return noise.to(device=device, dtype=torch.float32)


def restore(
    adapter: RestoreParts,
    context: BagelContext,
    image: Any = None,
    *,
    num_steps: int | None = None,
    sde: SDEConfig | None = None,
    guidance: BagelGuidance | dict | None = None,
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
) -> RestoreResult:
    """Denoise a restored latent of ``image`` conditioned on ``context`` as given (module docstring): after
    ``generate_text`` stopped on ``<image_restore>`` its segment is already closed by ``<|im_end|>``.

    With ``sde`` every step is recorded as an :class:`~clear_plugins.adapters.base.SDERecord` (detached, one
    log-prob per image). ``noise`` ``[rows·cols, 64]`` is the initial latent at ``t = 1`` (default: drawn from
    ``generator``); ``generator`` (on the model's device) draws the initial noise when none is given and the SDE
    noise, so G rollouts pass one generator (or one noise tensor) each.
    """
    start = time.perf_counter()
    runner, guidance = adapter.runner, BagelGuidance.coerce(guidance)
    timesteps, generator = _grid_and_generator(adapter, num_steps, sde, generator)
    grid = target_grid(adapter, context, image)
    x = initial_noise(adapter, grid, generator, noise)
    prepared = denoiser(runner, context, grid, guidance)
    n, device = grid[0] * grid[1], runner.device
    index = torch.zeros(n, dtype=torch.long, device=device)
    steps: list[SDERecord] | None = [] if sde is not None else None
    pairs = list(zip(timesteps[:-1].tolist(), timesteps[1:].tolist(), strict=True))
    keep_graph = torch.is_grad_enabled()
    for k, (t, t_next) in enumerate(pairs):
        with torch.set_grad_enabled(keep_graph and k == len(pairs) - 1):
            v = velocity(runner, context, x, t, grid, guidance, prepared=prepared)
            if sde is None:
                x = ode_step(x, v, t, t_next)
                continue
            step = sde_step(x, v, t, t_next, sde.sigma_at(t, t_next), generator=generator, index=index)
        steps.append(
            SDERecord(
                t=torch.tensor(t),
                t_next=torch.tensor(t_next),
                x_t=x.detach(),
                x_next=step.prev_sample.detach(),
                log_prob=step.log_prob.detach(),
            )
        )
        x = step.prev_sample
    if x.is_cuda:
        torch.cuda.synchronize(x.device)  # so ``seconds`` covers the queued kernels
    step_px = adapter.model.config.latent_downsample
    latent = Latent(
        tokens=[x],
        grids=[grid],
        kind="flow",
        extra={
            "pixel_sizes": [(grid[1] * step_px, grid[0] * step_px)],
            "position_ids": [grid_position_ids(*grid, adapter.model.config.max_latent_size)],
        },
    )
    return RestoreResult(latent=latent, steps=steps, timesteps=timesteps, seconds=time.perf_counter() - start)


def bridge(
    adapter: RestoreParts, latent: Latent, context: BagelContext, mode: BridgeMode | str
) -> BagelContext:
    """Append ``latent`` (one image) to ``context`` following ``mode``; returns the new context (module docstring).

    An assistant segment still open is closed with ``<|im_end|>`` first (the image always starts a new item).
    """
    mode = BridgeMode.parse(mode)
    if len(latent.tokens) != 1:
        raise ClearConfigError(
            f"bridge takes one image per call, got a Latent with {len(latent.tokens)}; bridge them one by one."
        )
    if mode is BridgeMode.DECODE_REENCODE:
        encoders = adapter.encoders
        tokens = encoders.encode_understanding(encoders.decode_latent(latent))
        item: LatentItem | VitItem = VitItem(tokens.embeds[0], tokens.grids[0])
    else:
        item = LatentItem(latent.tokens[0].to(adapter.runner.device), tuple(latent.grids[0]))
    return adapter.runner.append_image(close_segment(adapter, context), item)
