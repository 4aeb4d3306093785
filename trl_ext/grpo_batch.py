"""Turning rollouts into the tensors TRL's GRPO loss reads, and a training forward into per-token log-probs.

The dict built by :func:`trl_inputs` is what ``GRPOTrainer._compute_loss`` needs (see
``shared/reference/trl-subclassing.md``): ``prompt_ids``/``prompt_mask`` (a one-column stub: the prompt lives in
each rollout's context), right-padded ``completion_ids``/``completion_mask``, ``old_per_token_logps`` (the
rollout's own log-probs, so the ratio is exact from the first step), ``advantages`` ``[B]`` and
``num_items_in_batch``; plus per-row lists TRL's shuffle/split keep aligned: ``rollout_samples`` (what the
training forward replays, chosen steps included) and ``token_positions``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from clear_plugins.adapters.base import RolloutSample, SDERecord, TrainingOutputs
from clear_plugins.flow import SDEConfig
from clear_plugins.tags import SamplingVocabulary

from .rollout import Trajectory


def _pad(rows: Sequence[Sequence[float]], value: float, dtype: torch.dtype, device: Any) -> Tensor:
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), value, dtype=dtype, device=device)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(list(row), dtype=dtype, device=device)
    return out


def trl_inputs(
    trajectories: Sequence[Trajectory],
    samples: Sequence[RolloutSample],
    advantages: Tensor,
    pad_id: int,
    device: Any,
) -> dict[str, Any]:
    """The ``_compute_loss`` dict of a local batch (module docstring); ``samples`` carry the chosen steps."""
    completion_ids = _pad([t.completion_ids for t in trajectories], pad_id, torch.long, device)  # [B, T]
    completion_mask = _pad([t.completion_mask for t in trajectories], 0, torch.long, device)  # [B, T]
    old = _pad([t.old_logprobs for t in trajectories], 0.0, torch.float32, device)  # [B, T]
    batch = len(trajectories)
    return {
        "prompt_ids": torch.full((batch, 1), pad_id, dtype=torch.long, device=device),
        "prompt_mask": torch.zeros((batch, 1), dtype=torch.long, device=device),
        "completion_ids": completion_ids,
        "completion_mask": completion_mask,
        "old_per_token_logps": old,
        "advantages": advantages.to(device),
        "rollout_samples": list(samples),
        "token_positions": [list(t.token_positions) for t in trajectories],
    }


def token_logps(
    outputs: TrainingOutputs,
    token_positions: Sequence[Sequence[int]],
    width: int,
    *,
    temperature: float,
    vocabulary: SamplingVocabulary | None,
    compute_entropy: bool,
) -> tuple[Tensor, Tensor | None]:
    """Per-token log-probs (and entropies) ``[B, width]`` from a packed forward's ``text_logits``.

    ``text_logits`` ``[N, V]`` hold one row per segment token, sample after sample; row ``j`` of sample ``b``
    goes to column ``token_positions[b][j]``. Logits are divided by ``temperature`` and ids outside the sampling
    ``vocabulary`` (spare rows, tag tokens in text mode) are masked, as in the rollout.
    """
    logits = outputs.text_logits.float() / temperature  # [N, V]
    if vocabulary is not None:
        ids = torch.arange(logits.shape[-1], device=logits.device)
        blocked = ids >= vocabulary.size
        if vocabulary.excluded:
            blocked[list(vocabulary.excluded)] = True
        logits = logits.masked_fill(blocked, float("-inf"))
    log_probs = torch.log_softmax(logits, dim=-1)  # [N, V]
    labels = outputs.text_labels.to(logits.device)
    picked = log_probs.gather(1, labels[:, None])[:, 0]  # [N]
    rows = [len(p) for p in token_positions]
    if sum(rows) != picked.shape[0]:
        raise RuntimeError(
            f"the training forward returned {picked.shape[0]} text rows for {sum(rows)} completion tokens; the "
            "adapter's pack_rollouts must label every segment token."
        )
    batch = len(token_positions)
    out = picked.new_zeros((batch, width))
    entropies = picked.new_zeros((batch, width)) if compute_entropy else None
    row_index = torch.repeat_interleave(
        torch.arange(batch, device=picked.device), torch.tensor(rows).to(picked.device)
    )
    col_index = torch.tensor([c for p in token_positions for c in p], dtype=torch.long, device=picked.device)
    out = out.index_put((row_index, col_index), picked)
    if entropies is not None:
        with torch.no_grad():
            probs = log_probs.exp()
            entropy = -(probs * log_probs.masked_fill(probs == 0, 0.0)).sum(-1)  # [N]
        entropies = entropies.index_put((row_index, col_index), entropy)
    return out, entropies


def flat_steps(samples: Sequence[RolloutSample]) -> tuple[list[SDERecord], list[int]]:
    """Every injected step in forward order, and the batch row each belongs to."""
    steps, rows = [], []
    for row, sample in enumerate(samples):
        steps.extend(sample.steps)
        rows.extend([row] * len(sample.steps))
    return steps, rows


def step_tensors(steps: Sequence[SDERecord], sde: SDEConfig, device: Any) -> dict[str, Tensor]:
    """Stacked ``x_t``/``x_next`` ``[n_tokens, D]``, per-step ``t``/``t_next``/``sigma``/``old`` ``[S]`` and the
    token→step ``index`` ``[n_tokens]``."""
    t = torch.stack([s.t.float().reshape(()) for s in steps]).to(device)
    t_next = torch.stack([s.t_next.float().reshape(()) for s in steps]).to(device)
    sigma = torch.tensor(
        [float(sde.sigma_at(float(s.t), float(s.t_next))) for s in steps], dtype=torch.float32, device=device
    )
    counts = torch.tensor([s.x_t.shape[0] for s in steps], device=device)
    return {
        "x_t": torch.cat([s.x_t for s in steps]).to(device),
        "x_next": torch.cat([s.x_next for s in steps]).to(device),
        "t": t,
        "t_next": t_next,
        "sigma": sigma,
        "old": torch.cat([s.log_prob.float().reshape(-1) for s in steps]).to(device),
        "index": torch.repeat_interleave(torch.arange(len(steps), device=device), counts),
    }


def step_weights(rows: Sequence[int], device: Any) -> Tensor:
    """``[S]`` weights: every restored trajectory counts equally, its steps equally within it (sum 1)."""
    per_row: dict[int, int] = {}
    for row in rows:
        per_row[row] = per_row.get(row, 0) + 1
    weights = [1.0 / (len(per_row) * per_row[row]) for row in rows]
    return torch.tensor(weights, dtype=torch.float32, device=device)
