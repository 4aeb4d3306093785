"""The three CLEAR rewards as TRL reward functions (Sec. 3.4, App. I).

Each function has TRL's signature ``f(prompts, completions, **dataset_columns) -> list[float | None]`` and a
``__name__`` (TRL logs ``rewards/<name>/mean``). Completions may be strings or TRL conversational lists
(``[{"role": "assistant", "content": ...}]``).

- :class:`AccuracyReward` — ``R_acc ∈ [0, 1]`` from a judge; 0 without calling it when there is no answer.
- :class:`FormatReward` — ``R_fmt ∈ {0, 1}``: 1 iff :func:`clear_plugins.trajectory.parse` finds it well formed.
- :class:`DecisionReward` — ``R_dec`` of Table 15, from a well-formed restore and ``R_acc > threshold``.

The judge runs at most once per distinct ``(question, answer, ground_truth)`` of a batch: accuracy and decision
share a :class:`JudgeCache`, which keeps the scores of the last batch it saw. TRL calls the reward functions in
order on the same batch, so the decision reward (after accuracy) only reads cached scores. Called on its own
(without the accuracy reward before it), the decision reward asks the judge once per answer and caches.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from clear_plugins.errors import ClearConfigError, JudgeError
from clear_plugins.rewards.config import JUDGE_ERROR_POLICIES, RewardConfig
from clear_plugins.trajectory import ParsedTrajectory, parse

if TYPE_CHECKING:
    from clear_plugins.rewards.judges import Judge

ScoreKey = tuple[str, str, str]
"""``(question, answer, ground_truth)``: what a judge score depends on."""

RewardFunction = Callable[..., list[float | None]]
"""A TRL reward function."""

DECISION_TABLE: Mapping[tuple[bool, bool], float] = {
    (True, True): 1.0,  # generated and correct: generation helped
    (False, False): -1.0,  # skipped and wrong: should have generated
    (True, False): 0.0,  # generated and wrong: neutral
    (False, True): 0.0,  # skipped and correct: neutral
}
"""Table 15 (App. I.3): ``R_dec`` keyed by ``(generated, correct)``."""

_TRL_EXTRA_KWARGS = frozenset({"trainer_state", "log_extra", "log_metric", "completion_ids", "environments"})


def decision_value(generated: bool, correct: bool) -> float:
    """``R_dec`` for one completion (Table 15): +1 generated & correct, −1 skipped & wrong, else 0."""
    return DECISION_TABLE[(bool(generated), bool(correct))]


class JudgeCache:
    """A judge wrapper holding the scores of the current batch, shared by the accuracy and decision rewards.

    It is a judge itself (:meth:`score`), so it can be passed wherever a judge is expected: give the same
    instance to the accuracy and decision factories and they share one judge call per answer.

    Args:
        judge: any object with ``score(question, answer, ground_truth) -> float``.
        on_error: ``"raise"``, ``"none"`` or ``"zero"`` — see :attr:`RewardConfig.on_judge_error`.
        workers: threads scoring the distinct answers of one batch concurrently.

    Attributes:
        judge_calls: how many times the wrapped judge was asked (for logging and tests).
    """

    def __init__(self, judge: Judge, *, on_error: str = "raise", workers: int = 1) -> None:
        if isinstance(judge, JudgeCache):
            raise ClearConfigError("JudgeCache was given another JudgeCache; pass that cache itself instead.")
        if not callable(getattr(judge, "score", None)):
            raise ClearConfigError(
                f"judge {judge!r} has no score(question, answer, ground_truth) method; pass a judge such as "
                f"clear_plugins.rewards.judges.RuleJudge()."
            )
        if on_error not in JUDGE_ERROR_POLICIES:
            raise ClearConfigError(f"JudgeCache on_error={on_error!r} is not one of {JUDGE_ERROR_POLICIES}.")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ClearConfigError(f"JudgeCache workers={workers!r} must be an int >= 1.")
        self.judge = judge
        self.on_error = on_error
        self.workers = workers
        self.judge_calls = 0
        self._calls_lock = threading.Lock()
        self._scores: dict[ScoreKey, float | None] = {}

    def __getstate__(self) -> dict[str, Any]:
        """Picklable (TRL's async rollout worker pickles reward functions): the lock is left out."""
        state = self.__dict__.copy()
        del state["_calls_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore a pickled cache with a fresh lock."""
        self.__dict__.update(state)
        self._calls_lock = threading.Lock()

    def score(self, question: str, answer: str, ground_truth: str) -> float | None:
        """Score one answer (cached like a batch of one)."""
        return self.score_batch([(question, answer, ground_truth)])[0]

    def score_batch(self, keys: Sequence[ScoreKey]) -> list[float | None]:
        """Scores for ``keys``, asking the judge only for keys not scored in the previous batch.

        Afterwards the cache holds exactly this batch's scores, so it never grows past one batch.
        """
        missing = [key for key in dict.fromkeys(keys) if key not in self._scores]
        if self.workers > 1 and len(missing) > 1:
            with ThreadPoolExecutor(max_workers=min(self.workers, len(missing))) as pool:
                fresh = dict(zip(missing, pool.map(self._score_one, missing), strict=True))
        else:
            fresh = {key: self._score_one(key) for key in missing}
        batch = {key: fresh[key] if key in fresh else self._scores[key] for key in keys}
        self._scores = batch
        return [batch[key] for key in keys]

    def _score_one(self, key: ScoreKey) -> float | None:
        with self._calls_lock:
            self.judge_calls += 1
        try:
            value = self.judge.score(*key)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                raise JudgeError(
                    f"judge {type(self.judge).__name__} returned {value!r} for answer {key[1][:80]!r}; a score "
                    f"must be a number in [0, 1]. Fix the judge's score()."
                )
        except JudgeError:
            if self.on_error == "raise":
                raise
            return None if self.on_error == "none" else 0.0
        return float(value)


def _content_text(content: Any) -> str | None:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [part.get("text") for part in content if isinstance(part, dict)]
        return "".join(part for part in parts if isinstance(part, str))
    return None


def completion_text(completion: Any) -> str | None:
    """The text of a TRL completion: a str, or the assistant contents of a conversational list, joined.

    Returns ``None`` for anything else (which the rewards then score as malformed with no answer).
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    if not isinstance(completion, list) or not all(isinstance(m, dict) for m in completion):
        return None
    texts = [_content_text(m.get("content")) for m in completion if m.get("role", "assistant") == "assistant"]
    if not texts or any(text is None for text in texts):
        return None
    return "".join(text for text in texts if text is not None)


def _prompt_question(prompt: Any) -> str:
    """The question inside a TRL prompt: the prompt str, or the last user message's text."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list):
        for message in reversed(prompt):
            if isinstance(message, dict) and message.get("role") == "user":
                return _content_text(message.get("content")) or ""
    return ""


def _column(kwargs: Mapping[str, Any], name: str, n: int, field_name: str) -> list[Any]:
    if name not in kwargs:
        columns = sorted(k for k in kwargs if k not in _TRL_EXTRA_KWARGS)
        raise ClearConfigError(
            f"RewardConfig.{field_name}={name!r} is not among the dataset columns TRL passed ({columns}); set "
            f"RewardConfig.{field_name} to the column that holds it, or add the column to the dataset."
        )
    values = kwargs[name]
    if isinstance(values, str) or not isinstance(values, Sequence) or len(values) != n:
        raise ClearConfigError(
            f"dataset column {name!r} must be a list with one value per completion ({n}), got {values!r:.120}."
        )
    return list(values)


def _parse_all(config: RewardConfig, completions: Sequence[Any]) -> list[ParsedTrajectory]:
    return [
        parse(
            completion_text(c), max_restores=config.max_restores, image_placeholder=config.image_placeholder
        )
        for c in completions
    ]


def _accuracy_scores(
    config: RewardConfig,
    cache: JudgeCache,
    prompts: Sequence[Any],
    parsed: list[ParsedTrajectory],
    kwargs: Mapping[str, Any],
) -> list[float | None]:
    """``R_acc`` per completion: 0.0 without a judge call when there is no answer, else the cached score."""
    n = len(parsed)
    truths = _column(kwargs, config.ground_truth_column, n, "ground_truth_column")
    if any(truth is None for truth in truths):
        raise ClearConfigError(
            f"dataset column {config.ground_truth_column!r} holds None at row {truths.index(None)}; every "
            f"training sample needs a ground-truth answer: fill it in or drop the row."
        )
    if config.question_column in kwargs:
        questions = [str(q) for q in _column(kwargs, config.question_column, n, "question_column")]
    else:
        questions = [_prompt_question(p) for p in prompts]
    keys = {i: (questions[i], p.answer, str(truths[i])) for i, p in enumerate(parsed) if p.answer is not None}
    scored = dict(zip(keys, cache.score_batch(list(keys.values())), strict=True))
    return [scored.get(i, 0.0) for i in range(n)]


class AccuracyReward:
    """``R_acc ∈ [0, 1]`` (App. I.1): the judge's score of the extracted answer; 0 when there is no answer."""

    def __init__(self, config: RewardConfig, cache: JudgeCache) -> None:
        self.config, self.cache = config, cache
        self.__name__ = "accuracy_reward"

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any
    ) -> list[float | None]:
        """One score per completion; ``None`` only when the judge failed under ``on_judge_error='none'``."""
        return _accuracy_scores(
            self.config, self.cache, prompts, _parse_all(self.config, completions), kwargs
        )


class FormatReward:
    """``R_fmt ∈ {0, 1}`` (App. I.2): 1 iff the completion follows one of the two patterns."""

    def __init__(self, config: RewardConfig) -> None:
        self.config = config
        self.__name__ = "format_reward"

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any
    ) -> list[float | None]:
        """1.0 for a well-formed completion, else 0.0."""
        return [1.0 if p.well_formed else 0.0 for p in _parse_all(self.config, completions)]


class DecisionReward:
    """``R_dec ∈ {−1, 0, +1}`` (App. I.3, Table 15), reading ``R_acc`` from the shared :class:`JudgeCache`.

    *Generated* means the completion is well formed and follows the generate-then-answer pattern (a stray
    ``<image_restore>`` in a malformed completion does not count, so malformed output cannot dodge the −1 of
    "skipped and wrong"); *correct* means ``R_acc > correct_threshold``.
    Also logs ``restore_rate`` (the share of completions that triggered generation) through TRL's
    ``log_metric`` when TRL provides it.
    """

    def __init__(self, config: RewardConfig, cache: JudgeCache) -> None:
        self.config, self.cache = config, cache
        self.__name__ = "decision_reward"

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any
    ) -> list[float | None]:
        """One value of Table 15 per completion; ``None`` where the accuracy score is ``None``."""
        parsed = _parse_all(self.config, completions)
        accuracy = _accuracy_scores(self.config, self.cache, prompts, parsed, kwargs)
        log_metric = kwargs.get("log_metric")
        if callable(log_metric) and parsed:
            log_metric("restore_rate", sum(p.restore_requested for p in parsed) / len(parsed))
        threshold = self.config.correct_threshold
        return [
            None if acc is None else decision_value(p.restore_requested and p.well_formed, acc > threshold)
            for p, acc in zip(parsed, accuracy, strict=True)
        ]


def as_judge_cache(judge: Judge | JudgeCache | None, config: RewardConfig) -> JudgeCache:
    """``judge`` itself when it is a :class:`JudgeCache`, else a new cache around it.

    ``None`` means :func:`clear_plugins.rewards.judges.build_judge`'s choice: the LLM judge (rule judge as
    fallback) when an endpoint is configured in the environment, else the rule judge.
    """
    if isinstance(judge, JudgeCache):
        return judge
    if judge is None:
        from clear_plugins.rewards.judges import build_judge

        judge = build_judge()
    return JudgeCache(judge, on_error=config.on_judge_error, workers=config.judge_workers)


def make_reward_functions(
    config: RewardConfig | None = None, judge: Judge | JudgeCache | None = None
) -> list[RewardFunction]:
    """``[accuracy, format, decision]`` sharing one judge cache; weights: ``config.reward_weights``.

    Example::

        config = RewardConfig()
        GRPOTrainer(..., reward_funcs=make_reward_functions(config, judge),
                    args=GRPOConfig(reward_weights=config.reward_weights, ...))
    """
    config = config if config is not None else RewardConfig()
    cache = as_judge_cache(judge, config)
    return [AccuracyReward(config, cache), FormatReward(config), DecisionReward(config, cache)]


def accuracy_reward_factory(
    config: RewardConfig | None = None, judge: Judge | JudgeCache | None = None
) -> RewardFunction:
    """Registry factory of ``R_acc``; pass the same :class:`JudgeCache` as to the decision factory to share it."""
    config = config if config is not None else RewardConfig()
    return AccuracyReward(config, as_judge_cache(judge, config))


def format_reward_factory(
    config: RewardConfig | None = None, judge: Judge | JudgeCache | None = None
) -> RewardFunction:
    """Registry factory of ``R_fmt`` (``judge`` is accepted for a uniform signature and unused)."""
    return FormatReward(config if config is not None else RewardConfig())


def decision_reward_factory(
    config: RewardConfig | None = None, judge: Judge | JudgeCache | None = None
) -> RewardFunction:
    """Registry factory of ``R_dec``; pass the same :class:`JudgeCache` as to the accuracy factory to share it."""
    config = config if config is not None else RewardConfig()
    return DecisionReward(config, as_judge_cache(judge, config))
