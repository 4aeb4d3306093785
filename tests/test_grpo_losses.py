"""GRPO math: group advantages, the clipped surrogate, Flow-GRPO image log-probs and loss, step selection."""

from __future__ import annotations

import math

import pytest
import torch

from clear_plugins.errors import ClearConfigError
from clear_plugins.flow import sde_step
from clear_plugins.trl_ext.grpo_losses import (
    clipped_surrogate,
    flow_grpo_loss,
    group_advantages,
    image_log_probs,
)
from clear_plugins.trl_ext.step_selection import StepSelector


def test_group_advantages_normalise_each_group_by_its_own_mean_and_std():
    rewards = torch.tensor([1.0, 0.0, 0.5, 0.5, 3.0, 1.0, 2.0, 2.0])
    adv = group_advantages(rewards, 4)
    for g, group in enumerate(rewards.view(2, 4)):
        expected = (group - group.mean()) / (group.std() + 1e-4)
        assert torch.allclose(adv[4 * g : 4 * g + 4], expected, atol=1e-6)
    assert torch.allclose(adv.view(2, 4).sum(dim=1), torch.zeros(2), atol=1e-5)


def test_zero_variance_groups_get_exactly_zero_and_no_nan():
    # 0.1 is not exact in binary: the mean of equal values can differ from them by one ulp.
    rewards = torch.tensor([0.1, 0.1, 0.1, 0.7, 0.2, 0.9])
    for scale in ("group", "batch", "none"):
        adv = group_advantages(rewards, 3, scale)
        assert torch.equal(adv[:3], torch.zeros(3)), scale
        assert torch.isfinite(adv).all()
        assert (adv[3:] != 0).all()


def test_unscorable_rewards_are_left_out_and_get_zero_advantage():
    rewards = torch.tensor([1.0, float("nan"), 0.0, float("nan"), float("nan"), 1.0])
    adv = group_advantages(rewards, 3)
    assert adv[1] == 0 and adv[3] == 0 and adv[4] == 0 and adv[5] == 0  # second group: one valid reward
    assert adv[0] > 0 > adv[2] and math.isclose(float(adv[0]), -float(adv[2]), rel_tol=1e-6)


def test_scale_none_only_centres_and_batch_uses_the_global_std():
    rewards = torch.tensor([1.0, 3.0, 0.0, 4.0])
    assert torch.allclose(group_advantages(rewards, 2, "none"), torch.tensor([-1.0, 1.0, -2.0, 2.0]))
    batch = group_advantages(rewards, 2, "batch")
    assert torch.allclose(batch, torch.tensor([-1.0, 1.0, -2.0, 2.0]) / (rewards.std() + 1e-4))


def test_group_advantages_reject_bad_shapes():
    with pytest.raises(ClearConfigError, match="groups of 4"):
        group_advantages(torch.zeros(6), 4)
    with pytest.raises(ClearConfigError, match="scale"):
        group_advantages(torch.zeros(4), 2, "rank")


def test_clipped_surrogate_matches_ppo_by_hand():
    log_ratio = torch.log(torch.tensor([1.5, 0.5, 1.1, 0.5]))
    adv = torch.tensor([1.0, -1.0, 2.0, 1.0])
    out = clipped_surrogate(log_ratio, adv, 0.2, 0.2)
    assert torch.allclose(out.loss, torch.tensor([-1.2, 0.8, -2.2, -0.5]), atol=1e-6)
    assert out.clipped.tolist() == [True, True, False, False]


def test_image_log_probs_equal_sde_step_and_reach_the_velocity():
    gen = torch.Generator().manual_seed(0)
    x_t = torch.randn(6, 4, generator=gen)
    v = torch.randn(6, 4, generator=gen, requires_grad=True)
    index = torch.tensor([0, 0, 0, 1, 1, 1])
    t, t_next, sigma = torch.tensor([0.9, 0.5]), torch.tensor([0.8, 0.3]), torch.tensor([0.3, 0.3])
    drawn = sde_step(x_t, v.detach(), t, t_next, sigma, generator=gen, index=index)
    new = image_log_probs(x_t, v, drawn.prev_sample, t, t_next, sigma, index)
    assert torch.allclose(new, drawn.log_prob, atol=1e-6)
    new.sum().backward()
    assert v.grad is not None and v.grad.abs().sum() > 0


def test_flow_grpo_loss_is_the_weighted_surrogate_and_the_advantage_sign_sets_the_push():
    new = torch.tensor([0.2, -0.1], requires_grad=True)
    old = torch.tensor([0.0, 0.0])
    weights = torch.tensor([0.5, 0.5])
    result = flow_grpo_loss(new, old, torch.tensor([1.0, -1.0]), weights, 0.2, 0.2)
    expected = 0.5 * (-min(math.exp(0.2), 1.2)) + 0.5 * max(math.exp(-0.1), 0.8)
    assert math.isclose(float(result.loss.detach()), expected, rel_tol=1e-6)
    result.loss.backward()
    assert new.grad[0] == 0  # clipped: no gradient
    assert new.grad[1] > 0  # negative advantage: lowering the log-prob lowers the loss
    assert result.clip_fraction == 0.5


def test_step_selection_strategies():
    robin = StepSelector("round_robin")
    assert [robin.choose(3) for _ in range(7)] == [0, 1, 2, 0, 1, 2, 0]
    uniform = [StepSelector("uniform", seed=s).choose(5) for s in range(200)]
    assert set(uniform) == set(range(5))
    weighted = StepSelector("weighted", seed=1)
    draws = [weighted.choose(9) for _ in range(3000)]
    middle, ends = draws.count(4), draws.count(0) + draws.count(8)
    assert middle > ends  # sin weights: the middle step ~ 1.0 against ~ 0.17 each at the ends
    with pytest.raises(ClearConfigError, match="step selection"):
        StepSelector("first")
