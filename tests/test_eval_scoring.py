"""Scores, prompts, circular units and the report's aggregates, on hand-made records."""

from __future__ import annotations

import pytest

from clear_plugins.eval import metrics
from clear_plugins.eval.items import EvalItem, row_options
from clear_plugins.eval.scoring import MC_INSTRUCTION, build_prompt, question_kind, score_answer, unit_scores


def _item(question="What is it?", answer="B", options=None, hint=""):
    options = {"A": "a dog", "B": "a cat"} if options is None else options
    return EvalItem("B1", "hard", "1", "1", "motion_blur", "capture", question, answer, options, hint)


class CountingJudge:
    def __init__(self, value):
        self.value, self.calls = value, 0

    def score(self, question, answer, ground_truth):
        self.calls += 1
        return self.value


def test_kinds_prompts_and_scores():
    judge = CountingJudge(0.7)
    mc = _item(hint="Look closely.")
    assert question_kind(mc) == "mc"
    assert (
        build_prompt(mc)
        == f"Hint: Look closely.\nQuestion: What is it?\nOptions:\nA. a dog\nB. a cat\n{MC_INSTRUCTION}"
    )
    assert (
        score_answer(mc, "B", judge)
        == score_answer(mc, "a cat", judge)
        == score_answer(mc, "(B)", judge)
        == 1.0
    )
    assert score_answer(mc, "A", judge) == 0.0 and score_answer(mc, "", judge) == 0.0
    yesno = _item("Is it a cat?", "Yes", options={})
    assert question_kind(yesno) == "yesno" and build_prompt(yesno).endswith("Please answer yes or no.")
    assert score_answer(yesno, "yes, it is", judge) == 1.0 and score_answer(yesno, "no", judge) == 0.0
    opened = _item("What colour?", "orange", options={})
    assert question_kind(opened) == "open" and build_prompt(opened) == "What colour?"
    assert judge.calls == 0
    assert score_answer(opened, "orange-ish", judge) == 0.7 and judge.calls == 1
    assert score_answer(opened, None, judge) == 0.0 and judge.calls == 1


def test_row_options_reads_letter_columns_dicts_lists_and_json():
    assert row_options({"A": "x", "B": "y", "C": "nan"}, ("A", "B", "C")) == {"A": "x", "B": "y"}
    assert row_options({"options": {"a": "x", "b": "y"}}, ("options",)) == {"A": "x", "B": "y"}
    assert row_options({"options": ["x", "y"]}, ("options",)) == {"A": "x", "B": "y"}
    assert row_options({"options": '{"A": "x", "B": "y"}'}, ("options",)) == {"A": "x", "B": "y"}


def _record(bench, level, row, score, group=None, kind="motion_blur", restored=False, seconds=1.0):
    category = "capture" if kind == "motion_blur" else "transmission"
    return {
        "benchmark": bench,
        "level": level,
        "row_id": row,
        "score": score,
        "circular_group": group,
        "type": kind,
        "corruption_category": category,
        "restored": restored,
        "num_restores": int(restored),
        "seconds": seconds,
    }


def test_circular_units_need_every_rotation_right():
    records = [
        _record("B1", "hard", "1", 1.0, "1"),
        _record("B1", "hard", "1000001", 1.0, "1"),
        _record("B1", "hard", "2", 1.0, "2"),
        _record("B1", "hard", "1000002", 0.0, "2", kind="jpeg_compression"),
        _record("B1", "hard", "3", 0.4),
    ]
    units = unit_scores(records)
    assert [(u["circular_group"], u["score"], u["copies"]) for u in units] == [
        ("1", 1.0, 2),
        ("2", 0.0, 2),
        (None, 0.4, 1),
    ]
    assert units[1]["seconds"] == 2.0
    split = unit_scores(records, by_type=True)
    assert [(u["circular_group"], u["type"], u["score"]) for u in split[1:3]] == [
        ("2", "motion_blur", 1.0),
        ("2", "jpeg_compression", 0.0),
    ]


def test_aggregates():
    records = [
        _record("B1", "clean", "1", 1.0, seconds=1.0),
        _record("B1", "clean", "2", 1.0, seconds=1.0),
        _record("B1", "hard", "1", 1.0, restored=True, seconds=3.0),
        _record("B1", "hard", "2", 0.0, kind="jpeg_compression", seconds=1.0),
        _record("B2", "clean", "1", 0.5),
        _record("B2", "hard", "1", 0.0, restored=True),
        {**_record("B2", "hard", "9", 1.0), "error": "unreadable"},
    ]
    accuracy = metrics.accuracy_table(records)
    assert accuracy == {
        "B1": {"clean": 100.0, "hard": 50.0},
        "B2": {"clean": 50.0, "hard": 0.0},
        "AVG": {"clean": 75.0, "hard": 25.0},
    }
    assert metrics.robustness(accuracy)["AVG"] == {
        "clean": 75.0,
        "hard": 25.0,
        "drop": 50.0,
        "relative_drop": pytest.approx(200 / 3),
    }
    assert metrics.per_corruption(records) == {
        "jpeg_compression": {"hard": 0.0},
        "motion_blur": {"hard": 50.0},
    }
    assert metrics.per_corruption(records, "corruption_category")["capture"] == {"hard": 50.0}
    assert metrics.trigger_rates(records)["AVG"] == {"clean": 0.0, "hard": 75.0}
    times = metrics.times(records)
    assert times["B1"]["hard"] == {"total_s": 4.0, "mean_s": 2.0, "rows": 2}
    assert times["Total"]["hard"] == {"total_s": 5.0, "mean_s": 5.0 / 3, "rows": 3}
