"""CLEAR's SFT loss terms as pure tensor functions (Sec. 3.2; SPEC Stage 1).

``L = CE + λ_mse · MSE + λ_kl · KL`` where

- CE: next-token cross-entropy on the assistant text targets;
- MSE: flow-matching velocity regression at the clean latent noised to a sampled ``t`` (target ``noise − x0``);
- KL: per token, ``KL(softmax(h_vit.detach()) ‖ softmax(h_vae))`` over the hidden dimension, between the layer
  outputs at the paired ViT and clean-latent positions of one image, at selected layers weighted ``(i+1)/Σ``.

Every function takes plain tensors (no model, no backbone) and returns a 0-d tensor. ``normalizer`` arguments
let a trainer divide by a global count (gradient accumulation, several processes) instead of the local one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def _divide(total: torch.Tensor, normalizer: float | torch.Tensor | None, local: int) -> torch.Tensor:
    """``total`` over a count: ``normalizer`` when given (e.g. a global count), else ``local``; never below 1."""
    if normalizer is None:
        return total / max(local, 1)
    if isinstance(normalizer, torch.Tensor):
        return total / normalizer.to(total.device, total.dtype).clamp_min(1)
    return total / max(float(normalizer), 1.0)


def text_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, normalizer: float | torch.Tensor | None = None
) -> torch.Tensor:
    """Summed token cross-entropy divided by ``normalizer`` (default: the number of targets).

    logits: ``[N, V]`` at the positions that predict a target; labels: ``[N]`` target ids. ``N = 0`` gives 0 (with
    a graph through ``logits``).
    """
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    total = F.cross_entropy(logits.float(), labels, reduction="sum")  # []
    return _divide(total, normalizer, labels.shape[0])


def velocity_mse(
    prediction: torch.Tensor, target: torch.Tensor, normalizer: float | torch.Tensor | None = None
) -> torch.Tensor:
    """Flow-matching MSE: per token the mean squared error over the latent dimension, summed over tokens and
    divided by ``normalizer`` (default: the number of tokens), as the reference reduces it.

    prediction, target: ``[M, D]`` predicted and true velocities (``noise − x0``) at the noised latent tokens.
    """
    if prediction.shape != target.shape:
        raise ValueError(
            f"velocity prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ."
        )
    if prediction.shape[0] == 0:
        return prediction.sum() * 0.0
    per_token = (prediction.float() - target.float()).pow(2).mean(dim=-1)  # [M]
    return _divide(per_token.sum(), normalizer, prediction.shape[0])


def distill_layers(num_layers: int, stride: int = 1) -> list[int]:
    """Decoder layers (0-based) the distillation reads: every ``stride``-th (``stride−1, 2·stride−1, …``) and
    always the last, as the reference selects them."""
    if num_layers < 1 or stride < 1:
        raise ValueError(f"num_layers={num_layers} and stride={stride} must both be >= 1.")
    return sorted(set(range(stride - 1, num_layers, stride)) | {num_layers - 1})


def layer_weighted_kl(
    hidden_states: Sequence[torch.Tensor],
    teacher_index: torch.Tensor,
    student_index: torch.Tensor,
    pair_index: torch.Tensor,
    *,
    stride: int = 1,
    normalizer: float | torch.Tensor | None = None,
) -> torch.Tensor:
    """Layer-weighted per-token KL from understanding (teacher) to clean-latent (student) hidden states.

    hidden_states: ``num_layers + 1`` tensors ``[L, H]`` (the embeddings, then each decoder layer's output);
    teacher_index / student_index: ``[K]`` positions of paired ViT and clean-latent tokens; pair_index: ``[K]``
    which image pair each token belongs to. For each selected layer ``i`` (:func:`distill_layers`) with weight
    ``(i+1)/Σ``: per token ``KL(softmax(h_teacher.detach()) ‖ softmax(h_student))`` over ``H``, averaged over the
    tokens of each pair, summed over pairs; the weighted sum is divided by ``normalizer`` (default: the number of
    pairs). No pairs give 0 with a graph through the states.
    """
    layers = distill_layers(len(hidden_states) - 1, stride)
    if teacher_index.numel() == 0:
        return hidden_states[-1].sum() * 0.0
    num_pairs = int(pair_index.max()) + 1
    counts = torch.bincount(pair_index, minlength=num_pairs).clamp_min(1).float()  # [P]
    weights = torch.tensor([i + 1 for i in layers], dtype=torch.float32)
    weights = weights / weights.sum()  # [n_layers], sums to 1
    total = hidden_states[-1].new_zeros((), dtype=torch.float32)
    for weight, layer in zip(weights.tolist(), layers, strict=True):
        states = hidden_states[layer + 1].float()  # [L, H]
        teacher = F.log_softmax(states[teacher_index].detach(), dim=-1)  # [K, H]
        student = F.log_softmax(states[student_index], dim=-1)  # [K, H]
        per_token = (teacher.exp() * (teacher - student)).sum(dim=-1)  # [K]  KL(teacher ‖ student)
        per_pair = torch.zeros(num_pairs, device=per_token.device).index_add(0, pair_index, per_token)  # [P]
        total = total + weight * (per_pair / counts.to(per_pair.device)).sum()
    return _divide(total, normalizer, num_pairs)


def clear_sft_loss(
    ce: torch.Tensor, mse: torch.Tensor, kl: torch.Tensor, *, mse_weight: float, kl_weight: float
) -> torch.Tensor:
    """``CE + λ_mse · MSE + λ_kl · KL`` (Sec. 3.2)."""
    return ce + mse_weight * mse + kl_weight * kl


__all__ = [
    "clear_sft_loss",
    "distill_layers",
    "layer_weighted_kl",
    "text_cross_entropy",
    "velocity_mse",
]
