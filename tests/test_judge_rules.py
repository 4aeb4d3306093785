"""The rule-based accuracy judge: normalised match, multiple-choice letters, yes/no, numbers."""

from __future__ import annotations

import pytest

from clear_plugins.errors import JudgeError
from clear_plugins.rewards.judge_rules import answer_letter, parse_options
from clear_plugins.rewards.judges import Judge, RuleJudge

MC_QUESTION = "Which animal is in the photo?\nA. cat\nB. dog\nC. bird"


# --- cases ---------------------------------------------------------------------------------------------

RULE_CASES = [
    # (question, answer, ground truth, expected)
    ("q", "The Cat.", "cat", 1.0),
    ("q", "  CAT  ", "a cat", 1.0),
    ("q", "cat", "dog", 0.0),
    ("q", "", "cat", 0.0),
    (MC_QUESTION, "B", "B", 1.0),
    (MC_QUESTION, "(B)", "B", 1.0),
    (MC_QUESTION, "b", "B", 1.0),
    (MC_QUESTION, "B. dog", "B", 1.0),
    (MC_QUESTION, "The answer is B.", "B", 1.0),
    (MC_QUESTION, "Answer: (B)", "(B)", 1.0),
    (MC_QUESTION, "A", "B", 0.0),
    (MC_QUESTION, "A. cat", "B", 0.0),
    (MC_QUESTION, "dog", "B", 1.0),
    (MC_QUESTION, "It is a dog", "B", 1.0),
    (MC_QUESTION, "The answer is cat", "B", 0.0),
    (MC_QUESTION, "B", "dog", 1.0),
    (MC_QUESTION, "C", "dog", 0.0),
    (MC_QUESTION, "cat dog", "B", 0.0),
    ("no options", "option B and option C", "B", 0.0),
    ("no options", "dog", "B", 0.0),
    ("q", "Yes", "yes", 1.0),
    ("q", "Yes, it is.", "Yes", 1.0),
    ("q", "No.", "yes", 0.0),
    ("q", "yes and no", "yes", 0.0),
    ("q", "maybe", "no", 0.0),
    ("q", "3", "3", 1.0),
    ("q", "3.0", "3", 1.0),
    ("q", "three", "3", 1.0),
    ("q", "There are 3 cats.", "three", 1.0),
    ("q", "1,000", "1000", 1.0),
    ("q", "-2.5", "-2.5", 1.0),
    ("q", "3 or 5", "3", 0.0),
    ("q", "4", "3", 0.0),
    ("q", "a black cat", "cat", 1.0),
    ("q", "not a cat", "cat", 0.0),
    ("q", "it isn't a cat", "cat", 0.0),
    ("q", "cat and dog", "cat", 0.0),
    ("q", "red", "dark red", 0.0),
    ("q", "This is a very long answer that mentions the cat among many other words", "cat", 0.0),
]


@pytest.mark.parametrize(("question", "answer", "truth", "expected"), RULE_CASES)
def test_rule_judge_table(question: str, answer: str, truth: str, expected: float) -> None:
    assert RuleJudge().score(question, answer, truth) == expected


def test_rule_judge_takes_explicit_options() -> None:
    judge = RuleJudge()
    assert judge.score("Which?", "A", "dog", options=["dog", "cat"]) == 1.0
    assert judge.score("Which?", "A", "dog", options={"A": "cat", "B": "dog"}) == 0.0
    assert judge.score(MC_QUESTION, "A", "dog", options={"A": "dog", "B": "cat"}) == 1.0


def test_rule_judge_numeric_tolerance_is_a_field() -> None:
    assert RuleJudge().score("q", "3.01", "3") == 0.0
    assert RuleJudge(rel_tol=0.01).score("q", "3.01", "3") == 1.0


def test_rule_judge_rejects_empty_ground_truth() -> None:
    with pytest.raises(JudgeError, match="ground truth"):
        RuleJudge().score("What is shown?", "cat", "  ")


def test_option_and_letter_parsing() -> None:
    assert parse_options(MC_QUESTION) == {"A": "cat", "B": "dog", "C": "bird"}
    assert parse_options("Pick one:\n(A) red\n(B) blue") == {"A": "red", "B": "blue"}
    assert parse_options("B. not starting at A\nC. nope") == {}
    assert answer_letter("The correct answer is (C).") == "C"
    assert answer_letter("A dog") is None
    assert answer_letter("My answer is Apple") is None


def test_rule_judge_satisfies_the_protocol() -> None:
    assert isinstance(RuleJudge(), Judge)
