"""Accuracy judges behind ``R_acc`` (Sec. 3.4, App. I.1): the protocol, the fallback, and the factory.

* :class:`LLMJudge` — the paper's LLM-as-judge (GPT-4.1-mini, Fig. 9) over any OpenAI-compatible endpoint.
* :class:`RuleJudge` — rule-based 1/0 scoring; the default when no endpoint is configured.
* :class:`FallbackJudge` — tries one judge, scores with another when it fails, so a judge outage never
  stops training; after repeated failures it rests the first judge for a cooldown.
* :func:`build_judge` — what a :class:`JudgeConfig` asks for.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from clear_plugins.errors import ClearConfigError, JudgeError, JudgeUnavailableError
from clear_plugins.rewards.judge_config import ENV_API_KEY, ENV_BASE_URL, ENV_MODEL, JudgeConfig
from clear_plugins.rewards.judge_llm import LLMJudge, default_judge_prompt, parse_score
from clear_plugins.rewards.judge_rules import RuleJudge

__all__ = [
    "ENV_API_KEY",
    "ENV_BASE_URL",
    "ENV_MODEL",
    "FallbackJudge",
    "Judge",
    "JudgeConfig",
    "LLMJudge",
    "RuleJudge",
    "build_judge",
    "default_judge_prompt",
    "parse_score",
]

_LOG = logging.getLogger("clear_plugins.judges")


@runtime_checkable
class Judge(Protocol):
    """Anything that rates an answer against the ground truth.

    ``score`` returns a number in ``[0, 1]`` and raises :class:`~clear_plugins.errors.JudgeError` when it
    cannot score (endpoint down, reply unusable, nothing to compare with).
    """

    def score(self, question: str, answer: str, ground_truth: str) -> float:
        """Rate ``answer`` to ``question`` against ``ground_truth`` in ``[0, 1]``."""
        ...


class FallbackJudge:
    """Scores with ``primary``; when it raises :class:`JudgeError`, scores with ``fallback`` instead.

    The first fallback is logged as a warning on the ``clear_plugins.judges`` logger, later ones at debug
    level; :attr:`fallback_uses` counts them. After ``max_consecutive_failures`` primary failures in a row the
    primary is not called for ``cooldown`` seconds (a warning says so, with the count so far); afterwards
    it is tried again, and one more failure restarts the cooldown while a success resets the count. A primary
    that cannot be reached at all (:class:`~clear_plugins.errors.JudgeUnavailableError`: connection refused,
    unknown host) rests at once, with one warning saying it is down and when it is tried again. Errors
    other than :class:`JudgeError` (bugs) propagate, and so does a :class:`JudgeError` from the fallback.
    Safe to share between threads.
    """

    def __init__(
        self,
        primary: Judge,
        fallback: Judge,
        *,
        max_consecutive_failures: int = JudgeConfig.fallback_after_failures,
        cooldown: float = JudgeConfig.fallback_cooldown,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_consecutive_failures < 1:
            raise ClearConfigError(
                f"FallbackJudge max_consecutive_failures={max_consecutive_failures!r} is invalid; "
                "use 1 or more."
            )
        if not cooldown >= 0:
            raise ClearConfigError(f"FallbackJudge cooldown={cooldown!r} is invalid; use seconds >= 0.")
        self.primary = primary
        self.fallback = fallback
        self.max_consecutive_failures = max_consecutive_failures
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._consecutive_failures = 0
        self._resting_until = -math.inf
        self._fallback_uses = 0
        self._primary_failures = 0

    @classmethod
    def from_config(cls, primary: Judge, fallback: Judge, config: JudgeConfig) -> FallbackJudge:
        """A fallback judge with the failure limit and cooldown of ``config``."""
        return cls(
            primary,
            fallback,
            max_consecutive_failures=config.fallback_after_failures,
            cooldown=config.fallback_cooldown,
        )

    def __repr__(self) -> str:
        """Both judges and the counters."""
        return (
            f"FallbackJudge(primary={self.primary!r}, fallback={self.fallback!r}, "
            f"fallback_uses={self._fallback_uses}, primary_failures={self._primary_failures})"
        )

    @property
    def fallback_uses(self) -> int:
        """How many answers the fallback judge has scored."""
        return self._fallback_uses

    @property
    def primary_failures(self) -> int:
        """How many times the primary judge raised :class:`JudgeError`."""
        return self._primary_failures

    @property
    def resting(self) -> bool:
        """Whether the primary judge is skipped right now (cooling down after repeated failures)."""
        with self._lock:
            return self._clock() < self._resting_until

    def score(self, question: str, answer: str, ground_truth: str) -> float:
        """The primary judge's score, or the fallback's when the primary fails or is resting."""
        if not self.resting:
            try:
                value = self.primary.score(question, answer, ground_truth)
            except JudgeError as err:
                self._primary_failed(err)
            else:
                self._primary_succeeded()
                return value
        with self._lock:
            self._fallback_uses += 1
        return self.fallback.score(question, answer, ground_truth)

    def _primary_failed(self, err: JudgeError) -> None:
        """Count a primary failure; warn the first time and whenever a cooldown starts."""
        down = isinstance(err, JudgeUnavailableError)
        with self._lock:
            self._primary_failures += 1
            self._consecutive_failures += 1
            if down:  # not transient: rest now, whatever the count
                self._consecutive_failures = max(self._consecutive_failures, self.max_consecutive_failures)
            first = self._primary_failures == 1
            in_a_row = self._consecutive_failures
            rest = in_a_row >= self.max_consecutive_failures
            if rest:
                self._resting_until = self._clock() + self.cooldown
            uses = self._fallback_uses + 1
        name = type(self.primary).__name__
        if down:
            _LOG.warning(
                "Judge %r is down (%s); scoring with %r, and trying it again in %.1f s (at %s).",
                name,
                err,
                type(self.fallback).__name__,
                self.cooldown,
                time.strftime("%H:%M:%S", time.localtime(time.time() + self.cooldown)),
            )
            return
        if first:
            _LOG.warning(
                "Judge %r failed (%s); scoring with %r instead. Later fallbacks are logged at DEBUG level.",
                name,
                err,
                type(self.fallback).__name__,
            )
        else:
            _LOG.debug("Judge %r failed (%s); fallback use %d.", name, err, uses)
        if rest:
            _LOG.warning(
                "Judge %r failed %d times in a row; skipping it for %.1f s (fallback used %d times so far).",
                name,
                in_a_row,
                self.cooldown,
                uses,
            )

    def _primary_succeeded(self) -> None:
        """Reset the run of failures; say so when the primary comes back from a cooldown."""
        with self._lock:
            recovered = self._consecutive_failures >= self.max_consecutive_failures
            self._consecutive_failures = 0
        if recovered:
            _LOG.info("Judge %r answers again; leaving the fallback.", type(self.primary).__name__)


def build_judge(config: JudgeConfig | None = None, *, api_key: str | None = None) -> Judge:
    """The judge ``config`` asks for.

    With an endpoint (``config.base_url`` or ``$CLEAR_JUDGE_BASE_URL``): an :class:`LLMJudge`, wrapped in a
    :class:`FallbackJudge` over :class:`RuleJudge` unless ``config.fallback`` is false. Without one: a
    :class:`RuleJudge`, with an info log saying so. A missing model name is a :class:`ClearConfigError`.
    """
    config = JudgeConfig() if config is None else config
    if not (config.base_url or os.environ.get(ENV_BASE_URL)):
        _LOG.info(
            "No judge endpoint configured (JudgeConfig.base_url or $%s); R_acc is scored by RuleJudge.",
            ENV_BASE_URL,
        )
        return RuleJudge()
    llm = LLMJudge.from_config(config, api_key=api_key)
    if not config.fallback:
        return llm
    return FallbackJudge.from_config(llm, RuleJudge(), config)
