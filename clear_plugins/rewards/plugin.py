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
    """Register the built-in judges: ``rules`` (offline), ``llm`` (any OpenAI-compatible endpoint) and ``auto``
    (the LLM judge with the rule judge as fallback when an endpoint is configured, else the rule judge)."""
    from clear_plugins.rewards.judges import LLMJudge, RuleJudge

    register("rules", RuleJudge)
    register("llm", LLMJudge)
    register("auto", auto_judge)


def auto_judge(**options: object) -> object:
    """Build the judge :func:`~clear_plugins.rewards.judges.build_judge` picks for ``JudgeConfig(**options)``."""
    from clear_plugins.rewards.judges import JudgeConfig, build_judge

    return build_judge(JudgeConfig(**options))
