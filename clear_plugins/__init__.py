"""clear-plugins: CLEAR (generate before answering) for Hugging Face unified multimodal models.

The public API is re-exported here lazily: ``from clear_plugins import X`` imports only the module that holds
``X``, so light commands (``clear-plugins degrade``) never import torch or TRL.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0.dev0"

_EXPORTS: dict[str, str] = {
    # spine
    "hookimpl": "clear_plugins.hookspecs",
    "Plugins": "clear_plugins.plugins",
    "load_plugins": "clear_plugins.plugins",
    "get_plugin_manager": "clear_plugins.plugins",
    "BridgeMode": "clear_plugins.bridge",
    # flow math
    "SDEConfig": "clear_plugins.flow",
    "SDEStep": "clear_plugins.flow",
    "sde_step": "clear_plugins.flow",
    "ode_step": "clear_plugins.flow",
    "time_grid": "clear_plugins.flow",
    # trajectories and rewards
    "SPECIAL_TAGS": "clear_plugins.trajectory",
    "parse": "clear_plugins.trajectory",
    "format_direct": "clear_plugins.trajectory",
    "format_restore": "clear_plugins.trajectory",
    "system_prompt": "clear_plugins.trajectory",
    "RewardConfig": "clear_plugins.rewards.config",
    "make_reward_functions": "clear_plugins.rewards.functions",
    "JudgeCache": "clear_plugins.rewards.functions",
    # pipeline
    "ClearPipeline": "clear_plugins.pipeline",
    "PipelineConfig": "clear_plugins.pipeline",
    "PipelineOutput": "clear_plugins.pipeline",
    # injection
    "inject": "clear_plugins.injection",
    "eject": "clear_plugins.injection",
    "InjectionOptions": "clear_plugins.injection",
    # adapter contract
    "BackboneAdapter": "clear_plugins.adapters.base",
    "Tokens": "clear_plugins.adapters.base",
    "Latent": "clear_plugins.adapters.base",
    "RestoreResult": "clear_plugins.adapters.base",
    "SDERecord": "clear_plugins.adapters.base",
    "TrainingOutputs": "clear_plugins.adapters.base",
    # training
    "TrainingRow": "clear_plugins.data.schema",
    "TrainingSample": "clear_plugins.training_sample",
    "RestoreBlock": "clear_plugins.training_sample",
    "PackingOptions": "clear_plugins.training_sample",
    "ClearSFTConfig": "clear_plugins.trl_ext.sft_config",
    "ClearSFTTrainer": "clear_plugins.trl_ext.sft",
    "InterleavedGRPOConfig": "clear_plugins.trl_ext.grpo_config",
    "InterleavedGRPOTrainer": "clear_plugins.trl_ext.grpo",
    # errors
    "ClearError": "clear_plugins.errors",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'clear_plugins' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
