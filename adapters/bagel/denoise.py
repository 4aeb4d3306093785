"""The velocity field of one restore, prepared once and evaluated at every denoising step.

A velocity evaluation forwards one *noised* latent block (``<|vision_start|>`` + ``x_t`` at time ``t`` +
``<|vision_end|>``, generation expert) on top of each branch's KV cache, without writing to it. Everything that does
not change between steps is built once per restore by :class:`Denoiser`: each branch's block layout (it continues
that branch's cache) and RoPE tables, the expert routing, the marker embeddings, and per layer and branch a
key/value buffer holding the cache followed by room for the block (:class:`~.cache.BranchSlots`). A step then
embeds ``x_t`` once, repeats the block for the branches it needs (the conditional one, and the guidance branches
when guidance is in force at ``t``), and runs them as **one** forward: the weights are read once per step, each
block attends to its own buffer without a mask, and nothing proportional to the context is copied.
"""

from __future__ import annotations

import torch
from torch import Tensor

from clear_plugins.errors import ClearConfigError

from .cache import BranchSlots
from .context import Branch, ContextRunner
from .modeling_mot import SlotPlan
from .packing import LayoutBuilder, TokenKind


class Denoiser:
    """Velocities of a noised latent block on ``branches`` (caches with nothing pending), for one restore.

    Args:
        runner: runs the model.
        branches: the conditional branch first, then the guidance branches in the order their velocities are
            wanted (at most as many are evaluated as a step asks for, always a prefix).
        grid: the latent token grid ``(rows, cols)``.
    """

    def __init__(self, runner: ContextRunner, branches: list[Branch], grid: tuple[int, int]) -> None:
        model = runner.model
        self.model = model
        self.grid = grid
        self.num_tokens = grid[0] * grid[1]
        device = runner.device
        self._layouts = []
        for branch in branches:
            builder = LayoutBuilder(branch.cache.state)
            builder.image(self.num_tokens, TokenKind.LATENT, noised=True)
            self._layouts.append(builder.build(device))
        self._slots = BranchSlots([branch.cache for branch in branches], self.num_tokens + 2)
        ids = torch.tensor([runner.token_ids.start_of_image, runner.token_ids.end_of_image], device=device)
        self._markers = model.get_input_embeddings()(ids)
        self._plans: dict[int, SlotPlan] = {}

    @property
    def num_branches(self) -> int:
        """How many branches the denoiser can evaluate."""
        return len(self._layouts)

    def _plan(self, count: int) -> SlotPlan:
        if count not in self._plans:
            mot = self.model.language_model.model
            self._plans[count] = mot.slot_plan(self._layouts[:count], self._slots, self._markers)
        return self._plans[count]

    def __call__(self, x_t: Tensor, t: float | Tensor, count: int = 1) -> Tensor:
        """fp32 velocities ``[count, rows·cols, 64]`` of ``x_t`` at time ``t`` on the first ``count`` branches."""
        if not 1 <= count <= self.num_branches:
            raise ClearConfigError(
                f"count={count} must be between 1 and the {self.num_branches} branches the denoiser was built for."
            )
        model = self.model
        timesteps = torch.full((self.num_tokens,), float(t), dtype=torch.float32, device=x_t.device)
        latent = model.embed_latent(x_t, timesteps, [self.grid])
        dtype = self._markers.dtype
        block = torch.cat([self._markers[:1], latent.to(dtype), self._markers[1:]])
        embeds = block.repeat(count, 1) if count > 1 else block
        plan = self._plan(count)
        hidden = model.language_model.model(embeds, plan.layout, plan=plan).last_hidden_state
        tokens = hidden.view(count, self.num_tokens + 2, -1)[:, 1:-1]
        return model.velocity(tokens).float()
