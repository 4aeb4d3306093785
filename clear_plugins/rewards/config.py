"""Configuration of the Interleaved GRPO rewards (Sec. 3.4, App. I, Table 13, Table 15)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from clear_plugins.errors import ClearConfigError

JUDGE_ERROR_POLICIES: tuple[str, ...] = ("raise", "none", "zero")
"""What the rewards do when the judge raises :class:`~clear_plugins.errors.JudgeError`."""

REWARD_NAMES: tuple[str, ...] = ("accuracy", "format", "decision")
"""Registered names of the built-in rewards, in the order of :attr:`RewardConfig.reward_weights`."""


@dataclass
class RewardConfig:
    """Weights, threshold and dataset columns of the three CLEAR rewards ``R = w_acc·R_acc + w_fmt·R_fmt +
    w_dec·R_dec``.

    Pass :attr:`reward_weights` to TRL's ``GRPOConfig.reward_weights`` together with the functions built by
    :func:`clear_plugins.rewards.functions.make_reward_functions` (same order).
    """

    accuracy_weight: float = field(
        default=0.75,
        metadata={"help": "Weight of the accuracy reward R_acc (Sec. 3.4; Table 13 default 0.75)."},
    )
    format_weight: float = field(
        default=0.1,
        metadata={"help": "Weight of the format reward R_fmt (Sec. 3.4; Table 13 default 0.1)."},
    )
    decision_weight: float = field(
        default=0.15,
        metadata={"help": "Weight of the decision reward R_dec (Sec. 3.4; Table 13 default 0.15)."},
    )
    correct_threshold: float = field(
        default=0.5,
        metadata={
            "help": "An answer counts as correct for R_dec when R_acc is strictly above this (App. I.3, Table 15: "
            "R_acc > 0.5)."
        },
    )
    max_restores: int = field(
        default=1,
        metadata={
            "help": "K: most <image_restore> blocks a well-formed trajectory may have (App. D, Fig. 8: one; raise "
            "it for the pipeline's multi-restore option)."
        },
    )
    image_placeholder: str = field(
        default="",
        metadata={
            "help": "Text the pipeline writes for the restored image between <image_restore> and the next <think> "
            "of a decoded completion; tolerated there by the format check (see clear_plugins.trajectory)."
        },
    )
    question_column: str = field(
        default="question",
        metadata={
            "help": "Dataset column holding the question for the judge (App. I.1). When TRL does not pass it, the "
            "question is read from the prompt's last user message."
        },
    )
    ground_truth_column: str = field(
        default="answer",
        metadata={
            "help": "Dataset column holding the ground-truth answer the judge compares against (App. I.1)."
        },
    )
    on_judge_error: str = field(
        default="raise",
        metadata={
            "help": "When the judge fails (JudgeError): 'raise' stops training; 'none' returns None for that "
            "completion's accuracy and decision rewards (TRL ignores it); 'zero' scores it 0.0. Wrap an LLM judge "
            "in FallbackJudge to fall back to rules instead."
        },
    )
    judge_workers: int = field(
        default=1,
        metadata={
            "help": "Threads scoring the distinct answers of one batch concurrently (useful for an LLM judge "
            "behind an HTTP endpoint; 1 scores them in order)."
        },
    )

    def __post_init__(self) -> None:
        for name in ("accuracy_weight", "format_weight", "decision_weight"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
            ):
                raise ClearConfigError(
                    f"RewardConfig.{name}={value!r} must be a finite number >= 0; the paper uses 0.75 / 0.1 / 0.15 "
                    f"(accuracy / format / decision)."
                )
        if sum(self.reward_weights) <= 0:
            raise ClearConfigError(
                f"RewardConfig weights {self.reward_weights} are all zero; give at least one reward a positive "
                f"weight (paper: accuracy_weight=0.75, format_weight=0.1, decision_weight=0.15)."
            )
        threshold = self.correct_threshold
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 <= threshold <= 1:
            raise ClearConfigError(
                f"RewardConfig.correct_threshold={threshold!r} must lie in [0, 1] (accuracy scores do); the paper "
                f"uses 0.5."
            )
        self._check_int_at_least("max_restores", minimum=0)
        self._check_int_at_least("judge_workers", minimum=1)
        for name in ("question_column", "ground_truth_column"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ClearConfigError(
                    f"RewardConfig.{name}={value!r} must be a non-empty dataset column name."
                )
        if self.question_column == self.ground_truth_column:
            raise ClearConfigError(
                f"RewardConfig.question_column and ground_truth_column are both {self.question_column!r}; the judge "
                f"needs the question and the ground truth from two different columns."
            )
        if self.on_judge_error not in JUDGE_ERROR_POLICIES:
            raise ClearConfigError(
                f"RewardConfig.on_judge_error={self.on_judge_error!r} is not one of {JUDGE_ERROR_POLICIES}."
            )
        if not isinstance(self.image_placeholder, str):
            raise ClearConfigError(
                f"RewardConfig.image_placeholder={self.image_placeholder!r} must be a str ('' for none)."
            )

    def _check_int_at_least(self, name: str, *, minimum: int) -> None:
        value = getattr(self, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ClearConfigError(f"RewardConfig.{name}={value!r} must be an int >= {minimum}.")

    @property
    def reward_weights(self) -> list[float]:
        """``[accuracy_weight, format_weight, decision_weight]``: the order of ``make_reward_functions``."""
        return [float(self.accuracy_weight), float(self.format_weight), float(self.decision_weight)]
