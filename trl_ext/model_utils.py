"""Model plumbing shared by CLEAR's trainers: what trains, LoRA targets, and the routed training forward.

- :func:`routed_forward` runs ``adapter.training_forward`` *through* the wrapped model (DDP, FSDP, DeepSpeed,
  PEFT): the wrapper's ``forward`` is what syncs gradients and gathers shards, and TRL has replaced the model's
  own ``forward`` with its fused-LM-head patch. The unwrapped module's ``forward`` is swapped for the duration
  of one call, then restored.
- :func:`select_trainable` freezes everything but the chosen parameter names; :func:`frozen_modules` lists the
  modules whose every parameter is frozen (SigLIP, the VAE), which the trainer keeps in eval mode.
- :func:`lora_target_modules` names the linear layers of the trained groups for ``peft.LoraConfig``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from clear_plugins.adapters.base import BackboneAdapter
from clear_plugins.errors import ClearConfigError

FROZEN_GROUPS: tuple[str, ...] = ("vision", "vae")
"""Groups whose fully frozen modules run in eval mode during training."""


def inner_module(model: nn.Module) -> nn.Module:
    """The module a distributed wrapper (DDP, FSDP, DeepSpeed) calls; ``model`` itself when it is not wrapped."""
    inner = getattr(model, "module", None)
    return inner if isinstance(inner, nn.Module) else model


@contextmanager
def routed_forward(model: nn.Module, fn: Callable[..., Any]) -> Iterator[nn.Module]:
    """Within the block, calling ``model(x)`` runs ``fn(x)`` behind every wrapper ``model`` has.

    Yields ``model``. The swapped ``forward`` is an instance attribute of :func:`inner_module` (restored after, so
    TRL's fused-LM-head patch, also an instance attribute, survives).
    """
    target = inner_module(model)
    had_own = "forward" in vars(target)
    previous = vars(target).get("forward")
    target.forward = fn
    try:
        yield model
    finally:
        if had_own:
            target.forward = previous
        else:
            del target.forward


def trainable_names(adapter: BackboneAdapter, model: nn.Module, groups: Sequence[str] | None) -> list[str]:
    """Parameter names to train: the union of ``groups``, or the adapter's SFT default when ``None``."""
    if groups is None:
        return adapter.default_trainable_parameters(model)
    by_group = adapter.parameter_groups(model)
    return [name for group in groups for name in by_group[group]]


def select_trainable(model: nn.Module, names: Sequence[str]) -> int:
    """Set ``requires_grad`` to train exactly ``names``; returns the number of trainable values."""
    wanted = set(names)
    known = {name for name, _ in model.named_parameters()}
    missing = sorted(wanted - known)
    if missing:
        raise ClearConfigError(f"parameters {missing[:5]} to train do not exist in the model.")
    total = 0
    for name, param in model.named_parameters():
        param.requires_grad_(name in wanted)
        total += param.numel() if name in wanted else 0
    if total == 0:
        raise ClearConfigError("no parameter would train; choose trainable_groups that hold parameters.")
    return total


def frozen_modules(adapter: BackboneAdapter, model: nn.Module) -> list[nn.Module]:
    """Top-most modules whose every parameter is frozen and belongs to a :data:`FROZEN_GROUPS` group."""
    groups = adapter.parameter_groups(model)
    frozen_names = {n for g in FROZEN_GROUPS for n in groups[g]}
    found: list[tuple[str, nn.Module]] = []
    for prefix, module in model.named_modules():
        params = list(module.named_parameters(prefix=prefix))
        if not params or any(p.requires_grad or n not in frozen_names for n, p in params):
            continue
        if any(prefix.startswith(f"{outer}.") for outer, _ in found):
            continue
        found.append((prefix, module))
    return [module for _, module in found]


def set_frozen_eval(modules: Sequence[nn.Module]) -> None:
    """Put frozen encoders back in eval mode (``Trainer`` calls ``model.train()`` every step)."""
    for module in modules:
        module.eval()


def lora_target_modules(
    adapter: BackboneAdapter, model: nn.Module, groups: Sequence[str] = ("understanding", "generation")
) -> list[str]:
    """Full names of the ``nn.Linear`` layers in ``groups`` except the LM head, for ``LoraConfig(target_modules=…)``.

    Both experts are named explicitly (a short list such as ``["q_proj", "v_proj"]`` would also wrap the vision
    tower and miss the generation expert).
    """
    by_group = adapter.parameter_groups(model)
    names = {n for g in groups for n in by_group[g]}
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return [
        prefix
        for prefix, module in model.named_modules()
        if isinstance(module, nn.Linear) and module is not output and f"{prefix}.weight" in names
    ]


def zero_loss(model: nn.Module) -> torch.Tensor:
    """A zero loss connected to every trainable parameter (gradients exactly 0, never NaN)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return sum((p.sum() * 0.0 for p in params), torch.zeros((), device=params[0].device))


__all__ = [
    "frozen_modules",
    "inner_module",
    "lora_target_modules",
    "routed_forward",
    "select_trainable",
    "set_frozen_eval",
    "trainable_names",
    "zero_loss",
]
