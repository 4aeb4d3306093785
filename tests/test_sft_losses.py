"""The SFT loss terms of ``clear_plugins.trl_ext.losses`` against direct computations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from clear_plugins.trl_ext.losses import (
    clear_sft_loss,
    distill_layers,
    layer_weighted_kl,
    text_cross_entropy,
    velocity_mse,
)


def test_cross_entropy_matches_torch_and_uses_the_normalizer():
    logits, labels = torch.randn(5, 11), torch.randint(0, 11, (5,))
    assert torch.allclose(text_cross_entropy(logits, labels), F.cross_entropy(logits, labels))
    summed = F.cross_entropy(logits, labels, reduction="sum")
    assert torch.allclose(text_cross_entropy(logits, labels, normalizer=torch.tensor(10)), summed / 10)
    empty = text_cross_entropy(torch.zeros(0, 11, requires_grad=True), torch.zeros(0, dtype=torch.long))
    assert empty.item() == 0.0 and empty.requires_grad


def test_velocity_mse_is_per_token_mean_over_dims():
    pred, target = torch.randn(4, 6), torch.randn(4, 6)
    assert torch.allclose(velocity_mse(pred, target), F.mse_loss(pred, target))
    per_token = (pred - target).pow(2).mean(-1).sum()
    assert torch.allclose(velocity_mse(pred, target, normalizer=8), per_token / 8)
    with pytest.raises(ValueError, match="differ"):
        velocity_mse(pred, target[:3])


def test_distill_layers_follow_the_stride_and_keep_the_last():
    assert distill_layers(4) == [0, 1, 2, 3]
    assert distill_layers(5, stride=2) == [1, 3, 4]
    assert distill_layers(3, stride=10) == [2]


def test_layer_weighted_kl_matches_a_direct_computation():
    torch.manual_seed(0)
    states = [torch.randn(10, 8, requires_grad=True) for _ in range(4)]  # embeddings + 3 layers
    teacher, student = torch.tensor([0, 1, 2, 5, 6]), torch.tensor([3, 4, 7, 8, 9])
    pair = torch.tensor([0, 0, 0, 1, 1])
    got = layer_weighted_kl(states, teacher, student, pair)
    expected = 0.0
    for i, w in zip([0, 1, 2], [1 / 6, 2 / 6, 3 / 6], strict=True):
        h = states[i + 1]
        for members in ([0, 1, 2], [3, 4]):
            t, s = h[teacher[members]], h[student[members]]
            kl = F.kl_div(F.log_softmax(s, -1), F.log_softmax(t, -1), log_target=True, reduction="batchmean")
            expected = expected + w * kl / 2
    assert torch.allclose(got, expected, atol=1e-6)
    got.backward()
    # the teacher is detached: no gradient reaches positions used only as teacher
    assert states[3].grad[teacher].abs().sum() == 0 and states[3].grad[student].abs().sum() > 0


def test_layer_weighted_kl_is_zero_for_identical_states_and_without_pairs():
    h = torch.randn(4, 8)
    states = [h, torch.cat([h[:2], h[:2]])]
    assert (
        layer_weighted_kl(states, torch.tensor([0, 1]), torch.tensor([2, 3]), torch.tensor([0, 0])).abs()
        < 1e-6
    )
    none = layer_weighted_kl(
        states,
        torch.zeros(0, dtype=torch.long),
        torch.zeros(0, dtype=torch.long),
        torch.zeros(0, dtype=torch.long),
    )
    assert none.item() == 0.0


def test_total_loss_weights_the_terms():
    total = clear_sft_loss(
        torch.tensor(1.0), torch.tensor(2.0), torch.tensor(4.0), mse_weight=0.5, kl_weight=0.1
    )
    assert total.item() == pytest.approx(2.4)
