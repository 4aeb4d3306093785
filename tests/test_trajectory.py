"""Trajectory tags, system prompt, parsing of the two patterns (App. D, Fig. 8) and SFT-target formatting."""

from __future__ import annotations

import re

import pytest

from clear_plugins.errors import ClearConfigError, TrajectoryError
from clear_plugins.trajectory import (
    ANSWER_CLOSE,
    ANSWER_OPEN,
    RESTORE_TAG,
    SPECIAL_TAGS,
    THINK_CLOSE,
    THINK_OPEN,
    SegmentMarkers,
    format_direct,
    format_multi_restore,
    format_restore,
    parse,
    system_prompt,
)

DIRECT = "<think> The car is clearly red. </think> <answer> Red. </answer>"
RESTORE = (
    "<think> Too blurry. </think> <image_restore> <think> Now sharp: EXIT. </think> <answer> EXIT </answer>"
)
BAGEL_DECODED = (
    "<think> Too blurry. </think><image_restore><|im_end|><|vision_start|>latent tokens<|vision_end|>"
    "<|im_start|><think> Now sharp: EXIT. </think><answer> EXIT </answer>"
)


def test_special_tags_are_the_five_trajectory_tags():
    assert SPECIAL_TAGS == ("<think>", "</think>", "<answer>", "</answer>", "<image_restore>")
    assert (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE, RESTORE_TAG) == SPECIAL_TAGS


def test_direct_pattern_is_well_formed():
    parsed = parse(DIRECT)
    assert parsed.well_formed and parsed.problem is None
    assert parsed.thinks == ("The car is clearly red.",)
    assert parsed.answer == "Red."
    assert not parsed.restore_requested and parsed.num_restores == 0


@pytest.mark.parametrize("text", [RESTORE, BAGEL_DECODED, RESTORE.replace("> <", ">\n\t <")])
def test_generate_then_answer_pattern_is_well_formed(text):
    parsed = parse(text)
    assert parsed.well_formed, parsed.problem
    assert parsed.thinks == ("Too blurry.", "Now sharp: EXIT.")
    assert parsed.answer == "EXIT"
    assert parsed.restore_requested and parsed.num_restores == 1


def test_tags_may_touch_without_whitespace():
    parsed = parse("<think>a</think><image_restore><think>b</think><answer>c</answer>")
    assert parsed.well_formed and parsed.thinks == ("a", "b") and parsed.answer == "c"


def test_multiple_restores_need_max_restores():
    text = format_multi_restore(["one", "two", "three"], "done")
    assert text.count(RESTORE_TAG) == 2
    too_many = parse(text)
    assert not too_many.well_formed and "max_restores=1" in too_many.problem
    assert too_many.num_restores == 2 and too_many.answer == "done"
    parsed = parse(text, max_restores=2)
    assert parsed.well_formed and parsed.thinks == ("one", "two", "three")
    assert not parse(RESTORE, max_restores=0).well_formed
    assert parse(DIRECT, max_restores=0).well_formed


def test_placeholder_is_tolerated_in_the_image_gap_only():
    text = format_restore("a", "b", "c", image_placeholder="[IMG]")
    assert "<image_restore> [IMG] <think>" in text
    assert parse(text, image_placeholder="[IMG]").well_formed
    assert not parse(text).well_formed  # unknown text in the gap
    assert not parse("[IMG] " + DIRECT, image_placeholder="[IMG]").well_formed


def test_segment_markers_are_tolerated_only_in_the_image_gap():
    for marker in ("<|im_end|>", "<|im_start|>", "<|vision_start|><|vision_end|>"):
        assert not parse(marker + DIRECT).well_formed
        assert not parse(DIRECT + marker).well_formed
        assert not parse(DIRECT.replace("</think>", marker + "</think>")).well_formed
        assert not parse(DIRECT.replace(" <answer>", marker + "<answer>")).well_formed
    unclosed = BAGEL_DECODED.replace("<|vision_end|>", "")
    assert "not closed" in parse(unclosed).problem
    nested_tag = BAGEL_DECODED.replace("latent tokens", "<answer>")
    assert not parse(nested_tag).well_formed


def test_other_backbone_markers_can_be_given():
    markers = SegmentMarkers(text_open="<bos>", text_close="<eos>", image_open="<img>", image_close="</img>")
    text = "<think>a</think><image_restore><eos><img>xyz</img><bos><think>b</think><answer>c</answer>"
    assert parse(text, markers=markers).well_formed
    assert not parse(text).well_formed


MALFORMED = {
    "empty": "",
    "blank": "  \n ",
    "no tags": "The answer is red.",
    "answer only": "<answer> red </answer>",
    "think only (truncated)": "<think> the image is blurry",
    "unclosed think": "<think> blurry <answer> red </answer>",
    "unclosed answer": "<think> a </think> <answer> red",
    "missing answer": "<think> a </think>",
    "restore at the end (truncated)": "<think> a </think> <image_restore>",
    "doubled think": "<think> a </think> <think> b </think> <answer> c </answer>",
    "doubled answer": "<think> a </think> <answer> b </answer> <answer> c </answer>",
    "nested think": "<think> a <think> b </think> </think> <answer> c </answer>",
    "answer inside think": "<think> a <answer> b </answer> </think> <answer> c </answer>",
    "empty think": "<think> </think> <answer> c </answer>",
    "empty answer": "<think> a </think> <answer>  </answer>",
    "text before": "Sure! <think> a </think> <answer> b </answer>",
    "text between": "<think> a </think> so <answer> b </answer>",
    "text after": "<think> a </think> <answer> b </answer> bye",
    "restore before think": "<image_restore> <think> a </think> <answer> b </answer>",
    "restore after answer": "<think> a </think> <answer> b </answer> <image_restore>",
    "text after restore": "<think> a </think> <image_restore> I restore now <think> b </think> <answer> c </answer>",
    "stray close": "</think> <think> a </think> <answer> b </answer>",
    "NUL chars": "<think> a </think>\x00<answer> b </answer>",
    "replacement chars": "\ufffd\ufffd<think> a </think> <answer> b </answer>",
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_texts_are_not_well_formed(name):
    parsed = parse(MALFORMED[name])
    assert not parsed.well_formed
    assert isinstance(parsed.problem, str) and parsed.problem


@pytest.mark.parametrize("value", [None, b"<think> a </think> <answer> b </answer>", 42, ["<think>"]])
def test_non_strings_are_reported_not_raised(value):
    parsed = parse(value)
    assert not parsed.well_formed and "expected a decoded str" in parsed.problem
    assert parsed.answer is None and parsed.thinks == () and not parsed.restore_requested


def test_garbage_bytes_decoded_with_errors_parse_without_exceptions():
    garbage = bytes(range(256)).decode("utf-8", errors="replace") * 50
    assert not parse(garbage).well_formed
    assert not parse(garbage + DIRECT).well_formed


def test_answer_is_extracted_best_effort_from_one_answer_block():
    assert parse(MALFORMED["text before"]).answer == "b"
    assert parse(MALFORMED["text after restore"]).answer == "c"
    assert parse(MALFORMED["answer only"]).answer == "red"
    assert parse(MALFORMED["doubled answer"]).answer is None
    assert parse(MALFORMED["unclosed answer"]).answer is None
    assert parse(MALFORMED["empty answer"]).answer is None
    assert parse("<think> a </think> <image_restore> <answer> x </answer>").restore_requested


def test_problem_names_what_is_wrong():
    assert "truncated" in parse(MALFORMED["think only (truncated)"]).problem
    assert "'bye'" in parse(MALFORMED["text after"]).problem
    assert "empty <answer>" in parse(MALFORMED["empty answer"]).problem
    assert "inside the <think>" in parse(MALFORMED["nested think"]).problem


@pytest.mark.parametrize(
    "text",
    [
        "<think>" * 150_000,
        "<think> a </think>" + "<image_restore>" * 70_000,
        "<" * 1_000_000,
        "<think" * 170_000,
        "<think> " + "x" * 1_000_000 + " </think> <answer> y </answer>",
        ("<think>a</think><image_restore><|vision_start|>" * 25_000),
    ],
    ids=["opens", "restores", "angles", "near-misses", "long-think", "open-images"],
)
def test_megabyte_adversarial_strings_parse(text):
    # Their parse time is measured in benchmarks/trajectory_parse.py (no timed assertion here).
    assert len(text) >= 1_000_000
    parsed = parse(text, max_restores=10**9)
    assert parsed.well_formed == text.endswith("</answer>")


def test_round_trips():
    cases = [
        (format_direct("  think it over ", " red "), 0, ("think it over",), "red"),
        (format_restore("before", "after", "42"), 1, ("before", "after"), "42"),
        (format_multi_restore(["x", "y", "z"], "w"), 2, ("x", "y", "z"), "w"),
    ]
    for text, k, thinks, answer in cases:
        parsed = parse(text, max_restores=k)
        assert parsed.well_formed and parsed.thinks == thinks and parsed.answer == answer
        assert parsed.num_restores == k
    vision = format_restore("a", "b", "c", image_placeholder="<|vision_start|><|vision_end|>")
    assert parse(vision).well_formed


def test_format_is_compact_like_fig8():
    assert format_direct("a", "b") == "<think> a </think> <answer> b </answer>"
    assert (
        format_restore("a", "b", "c")
        == "<think> a </think> <image_restore> <think> b </think> <answer> c </answer>"
    )


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: format_direct("I think <answer> x", "y"), "<answer>"),
        (lambda: format_direct("a", "b </answer>"), "</answer>"),
        (lambda: format_restore("a <image_restore>", "b", "c"), "image_restore"),
        (lambda: format_direct("a <|im_end|>", "b"), "im_end"),
        (lambda: format_direct("   ", "b"), "empty"),
        (lambda: format_direct("a", None), "must be a str"),
        (lambda: format_multi_restore([], "b"), "non-empty list"),
        (lambda: format_multi_restore("abc", "b"), "non-empty list"),
        (lambda: format_restore("a", "b", "c", image_placeholder="<think>"), "image_placeholder"),
        (lambda: format_restore("a", "b", "c", image_placeholder="<|im_end|>x<|im_start|>"), "not accepted"),
    ],
)
def test_invalid_parts_raise_trajectory_error(call, match):
    with pytest.raises(TrajectoryError, match=re.escape(match)):
        call()


def test_shipped_system_prompt_has_the_fig8_structure():
    prompt = system_prompt()
    for tag in SPECIAL_TAGS:
        assert tag in prompt
    examples = [line for line in prompt.splitlines() if line.startswith(THINK_OPEN)]
    assert len(examples) == 2
    parsed = [parse(line) for line in examples]
    assert all(p.well_formed for p in parsed)
    assert [p.restore_requested for p in parsed] == [True, False]


def test_system_prompt_override():
    assert system_prompt("Be brief.") == "Be brief."
    with pytest.raises(ClearConfigError, match="non-empty"):
        system_prompt("  ")
