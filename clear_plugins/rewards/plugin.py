"""Built-in rewards and judges, registered through the same hooks a third-party plugin uses.

Reward factories have the signature ``factory(config: RewardConfig | None = None, judge=None)`` and return one
TRL reward function. The accuracy and decision rewards share their judge scores when they are given the same
:class:`~clear_plugins.rewards.functions.JudgeCache` as ``judge`` (or are built together by
:func:`~clear_plugins.rewards.functions.make_reward_functions`)::

    plugins = load_plugins()
    cache = JudgeCache(judge)
    funcs = [plugins.reward(name)(config, judge=cache) for name in ("accuracy", "format", "decision")]
"""

from __future__ import annotations

from collections.abc import Callable

from clear_plugins.hookspecs import hookimpl


@hookimpl
def clear_register_rewards(register: Callable[..., None]) -> None:
    """Register the built-in reward functions: ``accuracy``, ``format`` and ``decision`` (Sec. 3.4)."""
    from clear_plugins.rewards.functions import (
        accuracy_reward_factory,
        decision_reward_factory,
        format_reward_factory,
    )

    register("accuracy", accuracy_reward_factory)
    register("format", format_reward_factory)
    register("decision", decision_reward_factory)


@hookimpl
def clear_register_judges(register: Callable[..., None]) -> None:
    """Register the built-in judges: ``rules`` (offline) and ``llm`` (any OpenAI-compatible endpoint)."""
    from clear_plugins.rewards.judges import LLMJudge, RuleJudge

    register("rules", RuleJudge)
    register("llm", LLMJudge)
