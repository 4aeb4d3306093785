"""The three CLEAR rewards (Sec. 3.4, App. I, Table 15), their config, shared judge cache and registration."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from clear_plugins import hookimpl
from clear_plugins.errors import ClearConfigError, JudgeError
from clear_plugins.plugins import load_plugins
from clear_plugins.rewards import JudgeCache, RewardConfig, decision_value, make_reward_functions
from clear_plugins.rewards.functions import (
    DECISION_TABLE,
    accuracy_reward_factory,
    completion_text,
    decision_reward_factory,
    format_reward_factory,
)
from clear_plugins.trajectory import format_direct, format_restore


class CountingJudge:
    """Scores 1.0 when the answer equals the ground truth (case-insensitive), else 0.0; counts its calls."""

    def __init__(self, scores: dict[str, float] | None = None) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.scores = scores or {}

    def score(self, question: str, answer: str, ground_truth: str) -> float:
        self.calls.append((question, answer, ground_truth))
        if answer in self.scores:
            return self.scores[answer]
        return 1.0 if answer.lower() == ground_truth.lower() else 0.0


class FailingJudge:
    """Always fails, like an LLM endpoint that is down."""

    def __init__(self) -> None:
        self.calls = 0

    def score(self, question: str, answer: str, ground_truth: str) -> float:
        self.calls += 1
        raise JudgeError("endpoint down")


RESTORED_RIGHT = format_restore("blurry", "sharp now", "red")
RESTORED_WRONG = format_restore("blurry", "still blurry", "blue")
DIRECT_RIGHT = format_direct("clear enough", "red")
DIRECT_WRONG = format_direct("clear enough", "green")
MALFORMED_WITH_ANSWER = "Sure! " + DIRECT_RIGHT
NO_ANSWER = "<think> I am not sure"


def _call(funcs, completions, truths, **extra):
    prompts = ["What colour is the car?"] * len(completions)
    return [f(prompts=prompts, completions=completions, answer=truths, **extra) for f in funcs]


def test_functions_order_names_and_weights():
    config = RewardConfig()
    funcs = make_reward_functions(config, CountingJudge())
    assert [f.__name__ for f in funcs] == ["accuracy_reward", "format_reward", "decision_reward"]
    assert config.reward_weights == [0.75, 0.1, 0.15]
    assert RewardConfig(accuracy_weight=1, format_weight=0, decision_weight=0).reward_weights == [
        1.0,
        0.0,
        0.0,
    ]


def test_rewards_of_the_four_outcomes_and_malformed_texts():
    completions = [
        RESTORED_RIGHT,
        RESTORED_WRONG,
        DIRECT_RIGHT,
        DIRECT_WRONG,
        MALFORMED_WITH_ANSWER,
        NO_ANSWER,
    ]
    accuracy, fmt, decision = _call(make_reward_functions(judge=CountingJudge()), completions, ["red"] * 6)
    assert accuracy == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    assert fmt == [1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    assert decision == [1.0, 0.0, 0.0, -1.0, 0.0, -1.0]
    weights = RewardConfig().reward_weights
    total = [
        sum(w * r for w, r in zip(weights, rs, strict=True))
        for rs in zip(accuracy, fmt, decision, strict=True)
    ]
    assert total == pytest.approx([1.0, 0.1, 0.85, -0.05, 0.75, -0.15])


@pytest.mark.parametrize(("generated", "correct"), list(itertools.product([True, False], repeat=2)))
def test_table_15_exhaustively(generated, correct):
    expected = {(True, True): 1.0, (False, False): -1.0, (True, False): 0.0, (False, True): 0.0}
    assert (
        decision_value(generated, correct)
        == expected[(generated, correct)]
        == DECISION_TABLE[(generated, correct)]
    )
    text = format_restore("a", "b", "x") if generated else format_direct("a", "x")
    judge = CountingJudge(scores={"x": 0.9 if correct else 0.1})
    decision = make_reward_functions(judge=judge)[2]
    assert decision(prompts=["q"], completions=[text], answer=["x"]) == [expected[(generated, correct)]]


@pytest.mark.parametrize(
    ("score", "threshold", "correct"), [(0.5, 0.5, False), (0.51, 0.5, True), (0.3, 0.2, True)]
)
def test_correct_means_strictly_above_the_threshold(score, threshold, correct):
    judge = CountingJudge(scores={"x": score})
    decision = make_reward_functions(RewardConfig(correct_threshold=threshold), judge)[2]
    assert decision(prompts=["q"], completions=[format_restore("a", "b", "x")], answer=["x"]) == [
        1.0 if correct else 0.0
    ]


def test_judge_runs_once_per_completion_and_decision_never_calls_it_again():
    judge = CountingJudge()
    completions = [RESTORED_RIGHT, DIRECT_WRONG, MALFORMED_WITH_ANSWER, NO_ANSWER]
    accuracy, fmt, decision = make_reward_functions(judge=judge)
    prompts = ["q1", "q2", "q3", "q4"]
    accuracy(prompts=prompts, completions=completions, answer=["red"] * 4)
    assert len(judge.calls) == 3  # no call for the completion without an answer
    fmt(prompts=prompts, completions=completions, answer=["red"] * 4)
    decision(prompts=prompts, completions=completions, answer=["red"] * 4)
    assert len(judge.calls) == 3
    next_batch = [DIRECT_RIGHT, RESTORED_WRONG]
    accuracy(prompts=["q5", "q6"], completions=next_batch, answer=["red", "red"])
    decision(prompts=["q5", "q6"], completions=next_batch, answer=["red", "red"])
    assert len(judge.calls) == 5


def test_reward_functions_pickle_together_and_keep_sharing_the_cache():
    import pickle

    funcs = pickle.loads(pickle.dumps(make_reward_functions(judge=CountingJudge())))
    assert funcs[0].cache is funcs[2].cache
    _call(funcs, [RESTORED_RIGHT], ["red"])
    assert funcs[0].cache.judge_calls == 1 and len(funcs[0].cache.judge.calls) == 1


def test_identical_answers_of_a_group_are_judged_once():
    judge = CountingJudge()
    accuracy = make_reward_functions(judge=judge)[0]
    scores = accuracy(prompts=["q"] * 4, completions=[DIRECT_RIGHT] * 3 + [DIRECT_WRONG], answer=["red"] * 4)
    assert scores == [1.0, 1.0, 1.0, 0.0]
    assert len(judge.calls) == 2


def test_decision_alone_calls_the_judge_once_and_caches():
    judge = CountingJudge()
    decision = decision_reward_factory(RewardConfig(), judge)
    assert decision(prompts=["q"], completions=[RESTORED_RIGHT], answer=["red"]) == [1.0]
    assert decision(prompts=["q"], completions=[RESTORED_RIGHT], answer=["red"]) == [1.0]
    assert len(judge.calls) == 1


def test_registry_factories_share_a_cache_when_given_the_same_one():
    judge = CountingJudge()
    plugins = load_plugins()
    cache = JudgeCache(judge)
    funcs = [plugins.reward(name)(RewardConfig(), judge=cache) for name in ("accuracy", "format", "decision")]
    results = _call(funcs, [RESTORED_RIGHT, DIRECT_WRONG], ["red", "red"])
    assert results == [[1.0, 0.0], [1.0, 1.0], [1.0, -1.0]]
    assert len(judge.calls) == 2 == cache.judge_calls


def test_judge_cache_rejects_bad_arguments():
    with pytest.raises(ClearConfigError, match="no score"):
        JudgeCache(object())
    with pytest.raises(ClearConfigError, match="on_error='skip'"):
        JudgeCache(CountingJudge(), on_error="skip")
    with pytest.raises(ClearConfigError, match="workers=0"):
        JudgeCache(CountingJudge(), workers=0)
    with pytest.raises(ClearConfigError, match="another JudgeCache"):
        JudgeCache(JudgeCache(CountingJudge()))


def test_the_cache_keeps_one_batch_only():
    judge = CountingJudge()
    cache = JudgeCache(judge)
    cache.score_batch([("q", "a", "a"), ("q", "b", "a")])
    cache.score_batch([("q", "c", "a")])
    cache.score_batch([("q", "a", "a")])
    assert len(judge.calls) == 4


def test_conversational_completions_and_prompts():
    judge = CountingJudge()
    accuracy, fmt, decision = make_reward_functions(judge=judge)
    prompts = [[{"role": "system", "content": "sys"}, {"role": "user", "content": "What colour?"}]] * 2
    completions = [
        [{"role": "assistant", "content": RESTORED_RIGHT}],
        [{"role": "assistant", "content": [{"type": "text", "text": DIRECT_WRONG}]}],
    ]
    assert accuracy(prompts=prompts, completions=completions, answer=["red", "red"]) == [1.0, 0.0]
    assert judge.calls[0][0] == "What colour?"  # question read from the prompt when no question column
    assert fmt(prompts=prompts, completions=completions) == [1.0, 1.0]
    assert decision(prompts=prompts, completions=completions, answer=["red", "red"]) == [1.0, -1.0]


def test_completion_text_forms():
    assert completion_text("x") == "x"
    assert completion_text({"role": "assistant", "content": "x"}) == "x"
    assert completion_text([{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]) == "a"
    assert completion_text(None) is None
    assert completion_text([{"role": "assistant", "content": 3}]) is None


def test_unusable_completions_score_zero_without_judge_calls():
    judge = CountingJudge()
    accuracy, fmt, decision = make_reward_functions(judge=judge)
    bad = [None, b"bytes", 7, "\x00" * 10]
    assert accuracy(prompts=["q"] * 4, completions=bad, answer=["red"] * 4) == [0.0] * 4
    assert fmt(prompts=["q"] * 4, completions=bad) == [0.0] * 4
    assert decision(prompts=["q"] * 4, completions=bad, answer=["red"] * 4) == [-1.0] * 4
    assert judge.calls == []


def test_configurable_columns_and_question_column():
    judge = CountingJudge()
    config = RewardConfig(question_column="query", ground_truth_column="ground_truth")
    accuracy = make_reward_functions(config, judge)[0]
    assert accuracy(prompts=["p"], completions=[DIRECT_RIGHT], query=["Q?"], ground_truth=["red"]) == [1.0]
    assert judge.calls == [("Q?", "red", "red")]
    with pytest.raises(ClearConfigError, match=r"ground_truth_column='ground_truth'.*\['answer'\]"):
        accuracy(prompts=["p"], completions=[DIRECT_RIGHT], answer=["red"], trainer_state=None)
    with pytest.raises(ClearConfigError, match="one value per completion"):
        accuracy(prompts=["p", "p"], completions=[DIRECT_RIGHT] * 2, ground_truth=["red"])
    with pytest.raises(ClearConfigError, match="None at row 1"):
        accuracy(prompts=["p", "p"], completions=[DIRECT_RIGHT] * 2, ground_truth=["red", None])


def test_judge_error_policies():
    completions = [RESTORED_RIGHT, NO_ANSWER]
    with pytest.raises(JudgeError, match="endpoint down"):
        _call(make_reward_functions(judge=FailingJudge()), completions, ["red"] * 2)
    failing = FailingJudge()
    accuracy, _, decision = make_reward_functions(RewardConfig(on_judge_error="none"), failing)
    assert _call([accuracy, decision], completions, ["red"] * 2) == [[None, 0.0], [None, -1.0]]
    assert failing.calls == 1
    accuracy, _, decision = make_reward_functions(RewardConfig(on_judge_error="zero"), FailingJudge())
    assert _call([accuracy, decision], completions, ["red"] * 2) == [[0.0, 0.0], [0.0, -1.0]]


@pytest.mark.parametrize("bad", [1.5, -0.1, float("nan"), "0.5", None, True])
def test_out_of_range_judge_scores_are_judge_errors(bad):
    accuracy = make_reward_functions(judge=CountingJudge(scores={"red": bad}))[0]
    with pytest.raises(JudgeError, match="must be a number in"):
        accuracy(prompts=["q"], completions=[DIRECT_RIGHT], answer=["red"])


def test_threaded_judging_matches_sequential():
    completions = [format_direct("t", f"a{i}") for i in range(12)]
    truths = [f"a{i}" if i % 3 else "zzz" for i in range(12)]
    results = []
    for workers in (1, 4):
        judge = CountingJudge()
        accuracy = make_reward_functions(RewardConfig(judge_workers=workers), judge)[0]
        results.append(accuracy(prompts=["q"] * 12, completions=completions, answer=truths))
        assert len(judge.calls) == 12
    assert results[0] == results[1] == [0.0 if i % 3 == 0 else 1.0 for i in range(12)]


def test_restore_rate_is_logged_through_trl_log_metric():
    logged = {}
    decision = make_reward_functions(judge=CountingJudge())[2]
    completions = [RESTORED_RIGHT, DIRECT_RIGHT, DIRECT_WRONG, RESTORED_WRONG]
    decision(prompts=["q"] * 4, completions=completions, answer=["red"] * 4, log_metric=logged.__setitem__)
    assert logged == {"restore_rate": 0.5}


def test_max_restores_reaches_the_format_check():
    text = "<think> a </think> <image_restore> <think> b </think> <image_restore> <think> c </think> <answer> d </answer>"
    fmt_default = format_reward_factory(RewardConfig())
    fmt_two = format_reward_factory(RewardConfig(max_restores=2))
    assert fmt_default(prompts=["q"], completions=[text]) == [0.0]
    assert fmt_two(prompts=["q"], completions=[text]) == [1.0]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"accuracy_weight": -0.1}, "accuracy_weight"),
        ({"format_weight": float("inf")}, "format_weight"),
        ({"decision_weight": "0.15"}, "decision_weight"),
        ({"accuracy_weight": 0, "format_weight": 0, "decision_weight": 0}, "all zero"),
        ({"correct_threshold": 1.5}, "correct_threshold"),
        ({"correct_threshold": -0.01}, "correct_threshold"),
        ({"max_restores": -1}, "max_restores"),
        ({"max_restores": True}, "max_restores"),
        ({"judge_workers": 0}, "judge_workers"),
        ({"question_column": ""}, "question_column"),
        ({"question_column": "answer"}, "question_column and ground_truth_column"),
        ({"on_judge_error": "ignore"}, "on_judge_error"),
        ({"image_placeholder": None}, "image_placeholder"),
    ],
)
def test_config_validation_names_the_field(changes, field):
    with pytest.raises(ClearConfigError, match=field):
        RewardConfig(**changes)


def test_config_fields_carry_help_citing_the_paper():
    for f in dataclasses.fields(RewardConfig):
        assert f.metadata.get("help"), f.name
    helps = {f.name: f.metadata["help"] for f in dataclasses.fields(RewardConfig)}
    assert "Table 15" in helps["correct_threshold"] and "Sec. 3.4" in helps["accuracy_weight"]


def test_builtin_rewards_and_judges_are_registered():
    from clear_plugins.rewards.judges import LLMJudge, RuleJudge

    plugins = load_plugins()
    assert {"accuracy", "format", "decision"} <= set(plugins.rewards)
    assert plugins.reward("accuracy") is accuracy_reward_factory
    assert plugins.judge("rules") is RuleJudge and plugins.judge("llm") is LLMJudge
    fmt = plugins.reward("format")(RewardConfig())
    assert fmt(prompts=["q"], completions=[DIRECT_RIGHT, "junk"]) == [1.0, 0.0]


def test_default_judge_is_the_rule_judge():
    from clear_plugins.rewards.judges import RuleJudge

    accuracy = accuracy_reward_factory()
    assert isinstance(accuracy.cache.judge, RuleJudge)
    assert accuracy(prompts=["What colour?"], completions=[DIRECT_RIGHT], answer=["red"]) == [1.0]


class LengthReward:
    """A third-party reward plugin: shorter completions score higher."""

    @hookimpl
    def clear_register_rewards(self, register):
        def factory(config, judge=None):
            def brevity_reward(prompts, completions, **kwargs):
                return [1.0 / (1 + len(str(c))) for c in completions]

            return brevity_reward

        register("brevity", factory)


def test_third_party_reward_plugin_is_found():
    plugins = load_plugins(extra=[LengthReward()])
    assert {"accuracy", "format", "decision", "brevity"} <= set(plugins.rewards)
    reward = plugins.reward("brevity")(RewardConfig())
    assert reward(prompts=["q"], completions=["abc"]) == [0.25]


def test_a_stray_restore_tag_in_malformed_output_does_not_dodge_the_penalty():
    from clear_plugins.rewards.config import RewardConfig
    from clear_plugins.rewards.functions import make_reward_functions
    from clear_plugins.rewards.judges import RuleJudge

    accuracy, fmt, decision = make_reward_functions(RewardConfig(), RuleJudge())
    stray = "<think> a </think> <answer> blue </answer> <image_restore>"
    direct_wrong = "<think> a </think> <answer> blue </answer>"
    kwargs = {"answer": ["red", "red"], "question": ["What colour?", "What colour?"]}
    assert fmt(["p", "p"], [stray, direct_wrong]) == [0.0, 1.0]
    assert decision(["p", "p"], [stray, direct_wrong], **kwargs) == [-1.0, -1.0]
    weights = RewardConfig().reward_weights
    totals = [
        sum(w * r for w, r in zip(weights, rewards, strict=True))
        for rewards in zip(
            accuracy(["p", "p"], [stray, direct_wrong], **kwargs),
            fmt(["p", "p"], [stray, direct_wrong]),
            decision(["p", "p"], [stray, direct_wrong], **kwargs),
            strict=True,
        )
    ]
    assert totals[0] < totals[1], "malformed output must not beat a well-formed wrong answer"


def test_no_judge_means_the_environment_choice(monkeypatch):
    from clear_plugins.rewards.config import RewardConfig
    from clear_plugins.rewards.functions import as_judge_cache
    from clear_plugins.rewards.judges import FallbackJudge, RuleJudge

    for name in ("CLEAR_JUDGE_BASE_URL", "CLEAR_JUDGE_MODEL"):
        monkeypatch.delenv(name, raising=False)
    assert isinstance(as_judge_cache(None, RewardConfig()).judge, RuleJudge)
    monkeypatch.setenv("CLEAR_JUDGE_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("CLEAR_JUDGE_MODEL", "judge-model")
    assert isinstance(as_judge_cache(None, RewardConfig()).judge, FallbackJudge)
