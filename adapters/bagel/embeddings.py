"""Bagel's fixed embeddings and small projection modules.

- the 2-D sin-cos position tables (``vit_pos_embed``, ``latent_pos_embed``): row ``k`` is grid cell
  ``(k // G, k % G)``; the first half of the columns encodes the column index, the second half the row index;
  each half is ``[sin(p·ω), cos(p·ω)]`` (sin block first) with ``ω_i = 10000^(−i/(D/4))``
  (reference §5.4);
- the timestep embedding: ``[cos(t·f), sin(t·f)]`` (cos block first), 256 frequencies
  ``f_i = exp(−ln(10000)·i/128)``, ``t`` in ``[0, 1]`` unscaled (reference §5.5);
- patchify / unpatchify in ``(py, px, c)`` order (channel fastest), row-major over the patch grid (§5.2, §5.3);
- flattened grid position ids ``row·side + col`` ("extrapolate" mode, §5.2).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers.activations import ACT2FN

from clear_plugins.errors import ClearConfigError, ImageInputError

TIMESTEP_FREQUENCY_DIM = 256
"""Width of the sinusoidal timestep features fed to ``time_embedder.mlp.0`` (reference §5.5)."""
SINCOS_BASE = 10000.0
"""Base of the sin-cos position tables and of the timestep frequencies (reference §5.4, §5.5)."""


def sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """1-D sin-cos embedding ``[sin(p·ω), cos(p·ω)]`` of width ``dim`` (sin block first), in float64."""
    if dim % 2:
        raise ClearConfigError(f"sin-cos width {dim} is odd; use an even width.")
    omega = torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0)
    omega = 1.0 / SINCOS_BASE**omega
    angles = positions.reshape(-1).to(torch.float64)[:, None] * omega[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def sincos_2d_table(grid_size: int, dim: int) -> torch.Tensor:
    """The ``[grid_size², dim]`` float32 table Bagel stores in ``*_pos_embed.pos_embed``.

    Row ``k`` is the cell ``(row=k // grid_size, col=k % grid_size)``; columns ``[0, dim/2)`` encode the column,
    columns ``[dim/2, dim)`` the row.
    """
    if dim % 4:
        raise ClearConfigError(
            f"2-D sin-cos width {dim} is not a multiple of 4; use a hidden size divisible by 4."
        )
    coords = torch.arange(grid_size, dtype=torch.float32)
    rows = coords.repeat_interleave(grid_size)
    cols = coords.repeat(grid_size)
    table = torch.cat([sincos_1d(dim // 2, cols), sincos_1d(dim // 2, rows)], dim=1)
    return table.to(torch.float32)


def timestep_features(t: torch.Tensor, dim: int = TIMESTEP_FREQUENCY_DIM) -> torch.Tensor:
    """Sinusoidal features ``[cos(t·f), sin(t·f)]`` (cos block first) of flow times ``t`` (``[N]`` → ``[N, dim]``)."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(SINCOS_BASE) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    )
    args = t.reshape(-1).float()[:, None] * freqs[None, :]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def grid_position_ids(rows: int, cols: int, side: int, device: torch.device | None = None) -> torch.Tensor:
    """Flattened position ids ``row·side + col`` of a ``rows × cols`` grid placed in the table's top-left corner."""
    if rows > side or cols > side:
        raise ImageInputError(
            f"a {rows}×{cols} token grid does not fit a position table of side {side}; resize the image so that "
            f"neither side exceeds {side} tokens (see the image transform's max_size)."
        )
    r = torch.arange(rows, device=device)
    c = torch.arange(cols, device=device)
    return (r[:, None] * side + c[None, :]).reshape(-1)


def patchify(image: torch.Tensor, patch: int) -> torch.Tensor:
    """``[C, H, W]`` → ``[(H/p)·(W/p), p·p·C]``: patches row-major, each flattened in ``(py, px, c)`` order."""
    c, h, w = image.shape
    if h % patch or w % patch:
        raise ImageInputError(
            f"image of size {h}×{w} is not divisible by the patch size {patch}; resize it first."
        )
    x = image.reshape(c, h // patch, patch, w // patch, patch)
    return x.permute(1, 3, 2, 4, 0).reshape((h // patch) * (w // patch), patch * patch * c)


def unpatchify(tokens: torch.Tensor, grid: tuple[int, int], patch: int, channels: int) -> torch.Tensor:
    """Inverse of :func:`patchify`: ``[h·w, p·p·C]`` → ``[C, h·p, w·p]``."""
    h, w = grid
    if tokens.shape != (h * w, patch * patch * channels):
        raise ImageInputError(
            f"tokens of shape {tuple(tokens.shape)} do not match a {h}×{w} grid of {patch}×{patch}×{channels} "
            f"patches (expected {(h * w, patch * patch * channels)})."
        )
    x = tokens.reshape(h, w, patch, patch, channels)
    return x.permute(4, 0, 2, 1, 3).reshape(channels, h * patch, w * patch)


class PositionEmbedding(nn.Module):
    """A frozen 2-D sin-cos table ``pos_embed`` of shape ``[side², hidden]`` indexed by flattened grid ids.

    The table is a parameter with ``requires_grad=False`` (the official checkpoint stores it). The model's weight
    initialisation fills it with :func:`sincos_2d_table` (skipped on the ``meta`` device and for loaded weights);
    :meth:`reset_parameters` fills it explicitly.
    """

    def __init__(self, side: int, hidden_size: int) -> None:
        super().__init__()
        self.side = side
        self.hidden_size = hidden_size
        self.pos_embed = nn.Parameter(torch.zeros(side * side, hidden_size), requires_grad=False)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Fill the table with its sin-cos values (no-op on the ``meta`` device)."""
        if not self.pos_embed.is_meta:
            self.pos_embed.copy_(sincos_2d_table(self.side, self.hidden_size).to(self.pos_embed))

    def forward(self, position_ids: torch.Tensor) -> torch.Tensor:
        """Rows of the table for ``position_ids`` (``[N]`` → ``[N, hidden]``)."""
        return self.pos_embed[position_ids]


class TimestepEmbedder(nn.Module):
    """Flow time → hidden vector: sinusoidal features, then ``mlp`` = Linear → SiLU → Linear (keys ``mlp.0/2``)."""

    def __init__(self, hidden_size: int, frequency_dim: int = TIMESTEP_FREQUENCY_DIM) -> None:
        super().__init__()
        self.frequency_dim = frequency_dim
        self.mlp = nn.Sequential(
            nn.Linear(frequency_dim, hidden_size, bias=True),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size, bias=True),
        )

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """Embed times ``t`` (``[N]``, 1 = noise, 0 = clean) → ``[N, hidden]``."""
        features = timestep_features(t, self.frequency_dim).to(self.mlp[0].weight.dtype)
        return self.mlp(features)


class MLPConnector(nn.Module):
    """ViT features → LLM width: ``fc1`` → activation → ``fc2``."""

    def __init__(self, in_dim: int, out_dim: int, activation: str) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_dim, out_dim)
        self.act = ACT2FN[activation]
        self.fc2 = nn.Linear(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Project ``[N, in_dim]`` → ``[N, out_dim]``."""
        return self.fc2(self.act(self.fc1(x)))
