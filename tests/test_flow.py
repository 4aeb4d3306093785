"""Tests for clear_plugins.flow: grid, Euler step, Flow-GRPO SDE step, σ schedules and their statistics."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from clear_plugins.errors import ClearConfigError
from clear_plugins.flow import (
    SDEConfig,
    flow_grpo_sigma,
    ode_step,
    sample_sde_trajectory,
    sde_step,
    shift_timesteps,
    time_grid,
)

# Gaussian data x0 ~ N(M, S²) per dim: the flow's marginals and velocity are known in closed form.
M, S = 1.5, 0.5


def gaussian_velocity(x: torch.Tensor, t: float) -> torch.Tensor:
    """Exact v(x, t) = E[noise − x0 | x_t = x] for x_t = (1−t)·x0 + t·noise, x0 ~ N(M, S²), noise ~ N(0, 1).

    x_t ~ N((1−t)M, V) with V = (1−t)²S² + t²; Cov(noise, x_t) = t and Cov(x0, x_t) = (1−t)S², so
    v = −M + (t − (1−t)S²)·(x − (1−t)M)/V.
    """
    variance = (1 - t) ** 2 * S**2 + t**2
    return -M + (t - (1 - t) * S**2) * (x - (1 - t) * M) / variance


def marginal(t: float) -> tuple[float, float]:
    """Mean and std of x_t under the Gaussian data."""
    return (1 - t) * M, math.sqrt((1 - t) ** 2 * S**2 + t**2)


def _inputs(shape: tuple[int, ...], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g), torch.randn(shape, generator=g)


# --- grid -------------------------------------------------------------------------------------------------


def test_shift_golden_values() -> None:
    assert shift_timesteps(0.5, 3.0) == pytest.approx(0.75)
    assert shift_timesteps(0.0, 3.0) == 0.0
    assert shift_timesteps(1.0, 3.0) == 1.0
    assert shift_timesteps(0.3, 1.0) == pytest.approx(0.3)
    tensor = shift_timesteps(torch.tensor([0.25, 0.5]), 3.0)
    torch.testing.assert_close(tensor, torch.tensor([0.5, 0.75]))


def test_time_grid_points_endpoints_and_shift() -> None:
    torch.testing.assert_close(time_grid(5), torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0]))
    grid = time_grid(30, shift=3.0)
    assert grid.shape == (30,) and grid.dtype == torch.float32
    assert grid[0].item() == 1.0 and grid[-1].item() == 0.0
    assert bool((grid[1:] < grid[:-1]).all())
    torch.testing.assert_close(grid, shift_timesteps(torch.linspace(1, 0, 30), 3.0))
    assert grid[1].item() > 1 - 1 / 29  # the shift spends more of the grid near noise


def test_config_defaults_follow_spec_and_count_points() -> None:
    config = SDEConfig()
    assert (config.sigma_schedule, config.sigma, config.a) == ("constant", 0.3, 0.7)
    assert (config.num_timesteps, config.shift, config.num_steps) == (30, 3.0, 29)
    torch.testing.assert_close(config.grid(), time_grid(30, 3.0))


@pytest.mark.parametrize(
    ("kwargs", "field_name"),
    [
        ({"sigma_schedule": "linear"}, "sigma_schedule"),
        ({"sigma": -0.1}, "sigma"),
        ({"a": float("nan")}, "a"),
        ({"num_timesteps": 1}, "num_timesteps"),
        ({"shift": 0.0}, "shift"),
    ],
)
def test_config_validation_names_the_field(kwargs: dict, field_name: str) -> None:
    with pytest.raises(ClearConfigError, match=field_name):
        SDEConfig(**kwargs)


# --- σ schedules ----------------------------------------------------------------------------------------------


def test_sigma_schedules() -> None:
    assert SDEConfig(sigma=0.3).sigma_at(0.6, 0.5) == 0.3
    config = SDEConfig(sigma_schedule="flow_grpo", a=0.7)
    assert config.sigma_at(0.6, 0.5) == pytest.approx(0.7 * math.sqrt(0.6 / 0.4))
    # At t = 1 only the 1 − t denominator takes the next grid point (infinite otherwise).
    assert config.sigma_at(1.0, 0.9) == pytest.approx(0.7 * math.sqrt(1 / 0.1))
    assert config.sigma_at(0.0, 0.0) == 0.0
    tensor = flow_grpo_sigma(torch.tensor([1.0, 0.6]), torch.tensor([0.9, 0.5]), 0.7)
    torch.testing.assert_close(tensor, torch.tensor([0.7 * math.sqrt(10.0), 0.7 * math.sqrt(1.5)]))
    with pytest.raises(ClearConfigError, match="t_next"):
        flow_grpo_sigma(1.0, 1.0, 0.7)


# --- single steps ---------------------------------------------------------------------------------------------


def test_ode_step_is_euler() -> None:
    x, v = _inputs((3, 4))
    torch.testing.assert_close(ode_step(x, v, 0.8, 0.6), x - 0.2 * v)


@pytest.mark.parametrize("sigma", [0.0, torch.zeros(3)])
def test_sigma_zero_is_exactly_the_euler_step(sigma: float | torch.Tensor) -> None:
    x, v = _inputs((3, 4, 5))
    step = sde_step(x, v, 0.7, 0.55, sigma, generator=torch.Generator().manual_seed(1))
    assert torch.equal(step.prev_sample, ode_step(x, v, 0.7, 0.55))
    assert torch.equal(step.log_prob, torch.zeros(3))
    assert not bool(step.std.any())


def test_step_mean_and_std_follow_app_a2() -> None:
    # Worked by hand: x = 1, v = 0.5, t = 0.5, t_next = 0.25, sigma = 0.4, so dt = -0.25,
    # score = -(1 + 0.5 * 0.5) / 0.5 = -2.5, mean = 1 + (0.5 - 0.08 * -2.5) * -0.25 = 0.825, std = 0.4 * 0.5 = 0.2.
    step = sde_step(
        torch.ones(1, 1), torch.full((1, 1), 0.5), 0.5, 0.25, 0.4, prev_sample=torch.full((1, 1), 0.825)
    )
    torch.testing.assert_close(step.mean, torch.full((1, 1), 0.825))
    torch.testing.assert_close(step.std, torch.tensor(0.2))
    torch.testing.assert_close(step.log_prob, torch.tensor([-math.log(0.2) - 0.5 * math.log(2 * math.pi)]))


def test_log_prob_matches_torch_normal_and_rescoring() -> None:
    x, v = _inputs((3, 2, 4, 4))
    drawn = sde_step(x, v, 0.9, 0.8, 0.5, generator=torch.Generator().manual_seed(2))
    normal = torch.distributions.Normal(drawn.mean, drawn.std)
    expected = normal.log_prob(drawn.prev_sample).mean(dim=(1, 2, 3))
    torch.testing.assert_close(drawn.log_prob, expected)
    rescored = sde_step(x, v, 0.9, 0.8, 0.5, prev_sample=drawn.prev_sample)
    assert rescored.prev_sample is drawn.prev_sample
    torch.testing.assert_close(rescored.log_prob, drawn.log_prob, rtol=0, atol=0)
    # A velocity moving the mean by ≈ 6 stds gives the recorded sample far less density.
    other = sde_step(x, v + 10.0, 0.9, 0.8, 0.5, prev_sample=drawn.prev_sample)
    assert bool((other.log_prob < drawn.log_prob - 5).all())


def test_generator_makes_draws_reproducible() -> None:
    x, v = _inputs((2, 8))
    first = sde_step(x, v, 0.5, 0.4, 0.3, generator=torch.Generator().manual_seed(5))
    second = sde_step(x, v, 0.5, 0.4, 0.3, generator=torch.Generator().manual_seed(5))
    third = sde_step(x, v, 0.5, 0.4, 0.3, generator=torch.Generator().manual_seed(6))
    assert torch.equal(first.prev_sample, second.prev_sample)
    assert not torch.equal(first.prev_sample, third.prev_sample)


def test_per_sample_tensor_times_equal_separate_calls() -> None:
    x, v = _inputs((3, 5))
    t, t_next = torch.tensor([1.0, 0.6, 0.2]), torch.tensor([0.9, 0.5, 0.0])
    sigma = flow_grpo_sigma(t, t_next, 0.7)
    batch = sde_step(x, v, t, t_next, sigma, generator=torch.Generator().manual_seed(0))
    for row in range(3):
        args = (x[row : row + 1], v[row : row + 1], t[row].item(), t_next[row].item())
        single = sde_step(*args, sigma[row].item(), prev_sample=batch.prev_sample[row : row + 1])
        torch.testing.assert_close(single.mean, batch.mean[row : row + 1])
        torch.testing.assert_close(single.log_prob, batch.log_prob[row : row + 1])
        torch.testing.assert_close(ode_step(*args), ode_step(x, v, t, t_next)[row : row + 1])


def test_packed_index_reduces_per_image_like_separate_calls() -> None:
    sizes = (4, 7, 2)
    x, v = _inputs((sum(sizes), 6))
    index = torch.repeat_interleave(torch.arange(3), torch.tensor(sizes))
    t, t_next = torch.tensor([0.9, 0.5, 0.3]), torch.tensor([0.8, 0.45, 0.1])
    sigma = torch.tensor([0.3, 0.5, 0.2])
    packed = sde_step(x, v, t, t_next, sigma, generator=torch.Generator().manual_seed(0), index=index)
    assert packed.log_prob.shape == (3,)
    for image, (xs, vs, ys) in enumerate(
        zip(x.split(sizes), v.split(sizes), packed.prev_sample.split(sizes), strict=True)
    ):
        single = sde_step(
            xs[None],
            vs[None],
            t[image].item(),
            t_next[image].item(),
            sigma[image].item(),
            prev_sample=ys[None],
        )
        torch.testing.assert_close(single.log_prob, packed.log_prob[image : image + 1])
        torch.testing.assert_close(single.mean[0], packed.mean[index == image])


def test_bad_index_and_shapes_are_rejected() -> None:
    x, v = _inputs((4, 3))
    with pytest.raises(ClearConfigError, match="skips image ids"):
        sde_step(x, v, 0.5, 0.4, 0.3, index=torch.tensor([0, 0, 2, 2]))
    with pytest.raises(ClearConfigError, match="LongTensor"):
        sde_step(x, v, 0.5, 0.4, 0.3, index=torch.tensor([0, 0, 1]))
    with pytest.raises(ClearConfigError, match="one value per sample"):
        sde_step(x, v, torch.tensor([0.5, 0.4]), 0.3, 0.3)
    with pytest.raises(ClearConfigError, match="prev_sample"):
        sde_step(x, v, 0.5, 0.4, 0.3, prev_sample=x[:2])


@pytest.mark.parametrize(("t", "t_next", "sigma"), [(0.4, 0.5, 0.3), (1.2, 0.5, 0.3), (0.5, 0.4, -1.0)])
def test_invalid_times_and_sigma_are_rejected(t: float, t_next: float, sigma: float) -> None:
    x, v = _inputs((2, 3))
    with pytest.raises(ClearConfigError, match="sigma" if sigma < 0 else "t_next"):
        sde_step(x, v, t, t_next, sigma)


@pytest.mark.parametrize(("t", "t_next"), [(1.0, 0.97), (1e-7, 0.0), (0.0, 0.0), (0.3, 0.3)])
def test_no_nan_or_inf_at_the_ends(t: float, t_next: float) -> None:
    x, v = _inputs((2, 8))
    v.requires_grad_(True)
    sigma = SDEConfig(sigma_schedule="flow_grpo").sigma_at(t, t_next)
    step = sde_step(x, v, t, t_next, sigma, generator=torch.Generator().manual_seed(0))
    step.log_prob.sum().backward()
    for value in (step.prev_sample, step.log_prob, step.mean, step.std, v.grad):
        assert bool(torch.isfinite(value).all())
    constant = sde_step(x, v.detach(), t, t_next, 0.3, generator=torch.Generator().manual_seed(0))
    assert bool(torch.isfinite(constant.prev_sample).all() and torch.isfinite(constant.log_prob).all())


def test_log_prob_gradient_reaches_the_velocity() -> None:
    x, v = _inputs((2, 8))
    drawn = sde_step(x, v, 0.6, 0.5, 0.3, generator=torch.Generator().manual_seed(0))
    v_train = v.clone().requires_grad_(True)
    sde_step(x, v_train, 0.6, 0.5, 0.3, prev_sample=drawn.prev_sample).log_prob.sum().backward()
    assert v_train.grad is not None and bool(torch.isfinite(v_train.grad).all())
    assert v_train.grad.abs().sum().item() > 0


def test_bf16_inputs_compute_in_fp32_and_return_sample_dtype() -> None:
    x, v = _inputs((2, 16))
    x16, v16 = x.bfloat16(), v.bfloat16()
    step = sde_step(x16, v16, 0.8, 0.7, 0.3, generator=torch.Generator().manual_seed(0))
    assert step.prev_sample.dtype == torch.bfloat16
    assert step.log_prob.dtype == step.mean.dtype == step.std.dtype == torch.float32
    reference = sde_step(x16.float(), v16.float(), 0.8, 0.7, 0.3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(step.mean, reference.mean, rtol=0, atol=0)
    # log_prob scores the returned (rounded) sample, so rescoring it later reproduces the rollout's number.
    rescored = sde_step(x16, v16, 0.8, 0.7, 0.3, prev_sample=step.prev_sample)
    torch.testing.assert_close(rescored.log_prob, step.log_prob, rtol=0, atol=0)
    assert ode_step(x16, v16, 0.8, 0.7).dtype == torch.bfloat16


# --- statistics: the SDE and the ODE carry N(0, 1) noise to the data distribution --------------------------


def _trajectory(config: SDEConfig, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(20_000, 4, generator=generator)
    return sample_sde_trajectory(gaussian_velocity, noise, config, generator)


@pytest.mark.parametrize(
    "config",
    [
        SDEConfig(sigma_schedule="constant", sigma=0.0, num_timesteps=200),
        SDEConfig(sigma_schedule="constant", sigma=0.3, num_timesteps=200),
        SDEConfig(sigma_schedule="flow_grpo", a=0.7, num_timesteps=200),
    ],
    ids=["ode", "constant-0.3", "flow_grpo-0.7"],
)
def test_sampler_reaches_gaussian_data_and_keeps_marginals(config: SDEConfig) -> None:
    trajectory = _trajectory(config)
    assert trajectory.latents.shape == (200, 20_000, 4) and trajectory.log_probs.shape == (199, 20_000)
    final = trajectory.latents[-1]
    # 80k values: the standard error is ≈ 0.002; the rest of the tolerance covers Euler's O(Δt) bias.
    assert final.mean().item() == pytest.approx(M, abs=0.01)
    assert final.std().item() == pytest.approx(S, abs=0.015)
    # Intermediate marginals of the forward process are preserved. Near t = 1 flow_grpo's σ is large
    # (≈ 17 on the first step here) and Euler–Maruyama's bias there (≈ +0.03 in std at t = 0.99) only
    # shrinks with finer grids, so the check uses t ≤ 0.7.
    for target in (0.7, 0.5, 0.2):
        k = int((trajectory.timesteps - target).abs().argmin())
        t = trajectory.timesteps[k].item()
        mean, std = marginal(t)
        assert trajectory.latents[k].mean().item() == pytest.approx(mean, abs=0.01)
        assert trajectory.latents[k].std().item() == pytest.approx(std, abs=0.01)
    if config.sigma > 0 or config.sigma_schedule == "flow_grpo":
        assert bool(torch.isfinite(trajectory.log_probs).all())
        assert trajectory.log_probs[-1].abs().sum() > 0


def test_noise_without_score_correction_fails_the_same_check() -> None:
    """Negative control: the statistical test above detects a drift missing the −σ²/2·s term."""
    config = SDEConfig(sigma=0.3, num_timesteps=200)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(20_000, 4, generator=generator)
    grid = config.grid().tolist()
    for t, t_next in itertools.pairwise(grid):
        noise = torch.randn(x.shape, generator=generator)
        x = ode_step(x, gaussian_velocity(x, t), t, t_next) + 0.3 * math.sqrt(t - t_next) * noise
    assert abs(x.std().item() - S) > 0.04
