"""Rewards of Interleaved GRPO (Sec. 3.4, App. I): accuracy (through judges), format and decision.

``R = 0.75·R_acc + 0.1·R_fmt + 0.15·R_dec``, as three TRL reward functions plus ``reward_weights``::

    from clear_plugins.rewards import RewardConfig, make_reward_functions

    config = RewardConfig()
    reward_funcs = make_reward_functions(config, judge)  # [accuracy, format, decision]
    weights = config.reward_weights                      # [0.75, 0.1, 0.15]

Judges live in :mod:`clear_plugins.rewards.judges`. Importing this package does not import torch.
"""

from clear_plugins.rewards.config import RewardConfig
from clear_plugins.rewards.functions import JudgeCache, decision_value, make_reward_functions

__all__ = ["JudgeCache", "RewardConfig", "decision_value", "make_reward_functions"]
