"""Prompts and scores: multiple choice, yes/no and open-ended questions, and MMBench circular groups.

Multiple-choice and yes/no answers are matched by the rule judge (:class:`~clear_plugins.rewards.judge_rules.
RuleJudge`: the option letter or text, or the one yes/no word); open-ended answers are scored by the configured
judge (an OpenAI-compatible LLM judge, or the rule judge offline), in ``[0, 1]``. A circular group (the same
MMBench question with rotated options) counts as correct only when every copy is answered correctly.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from clear_plugins.eval.items import EvalItem
from clear_plugins.rewards.judge_rules import RuleJudge

KINDS: tuple[str, ...] = ("mc", "yesno", "open")
"""Question kinds: multiple choice, yes/no, open-ended."""

MC_INSTRUCTION = "Answer with the option's letter from the given choices directly."
"""VLMEvalKit's multiple-choice instruction (its ImageMCQDataset prompt)."""

YESNO_INSTRUCTION = "Please answer yes or no."
"""VLMEvalKit's yes/no instruction (its ImageYORNDataset prompt)."""

_RULES = RuleJudge()


def question_kind(item: EvalItem) -> str:
    """``mc`` when the row has at least two options, ``yesno`` for a yes/no ground truth, else ``open``."""
    if len(item.options) >= 2:
        return "mc"
    if item.answer.strip().lower().rstrip(".") in ("yes", "no"):
        return "yesno"
    return "open"


def build_prompt(item: EvalItem) -> str:
    """The text sent with the image, as VLMEvalKit builds it: hint, question, lettered options, instruction."""
    kind = question_kind(item)
    parts = [f"Hint: {item.hint}"] if item.hint else []
    parts.append(f"Question: {item.question}" if kind == "mc" else item.question)
    if kind == "mc":
        parts.append("Options:")
        parts.extend(f"{letter}. {text}" for letter, text in item.options.items())
        parts.append(MC_INSTRUCTION)
    elif kind == "yesno":
        parts.append(YESNO_INSTRUCTION)
    return "\n".join(parts)


def score_answer(item: EvalItem, answer: str | None, judge: Any) -> float:
    """The score of ``answer`` in ``[0, 1]``: rule matching for mc/yes-no, ``judge.score`` for open questions.

    An empty or missing answer scores 0 without calling the judge.
    """
    if not answer or not answer.strip():
        return 0.0
    kind = question_kind(item)
    if kind == "mc":
        return _RULES.score(item.question, answer, item.answer, options=item.options)
    if kind == "yesno":
        return _RULES.score(item.question, answer, item.answer)
    return float(judge.score(item.question, answer, item.answer))


def unit_scores(records: Iterable[dict[str, Any]], *, by_type: bool = False) -> list[dict[str, Any]]:
    """Collapse circular copies into one unit each (score 1 only if every copy scores at least 0.5).

    With ``by_type`` the copies of a group are split by degradation type first (per-corruption tables: in a
    sampled build the rotations of one question may draw different types). Records without a circular group
    pass through unchanged. A unit keeps the first copy's fields, with
    ``score`` replaced and ``copies`` set to the group's size; latency and restore counts are summed over copies.
    """
    units: dict[tuple, dict[str, Any]] = {}
    order: list[tuple] = []
    for record in records:
        group = record.get("circular_group")
        key = (
            record["benchmark"],
            record["level"],
            group if group is not None else ("row", record["row_id"]),
            record["type"] if by_type else None,
        )
        if key not in units:
            units[key] = {**record, "copies": 1}
            order.append(key)
            continue
        unit = units[key]
        unit["copies"] += 1
        unit["score"] = (
            float(min(unit["score"], record["score"]) >= 0.5) if group is not None else unit["score"]
        )
        unit["seconds"] = unit.get("seconds", 0.0) + record.get("seconds", 0.0)
        unit["num_restores"] = unit.get("num_restores", 0) + record.get("num_restores", 0)
    result = []
    for key in order:
        unit = units[key]
        if unit.get("circular_group") is not None:
            unit["score"] = float(unit["score"] >= 0.5)
        result.append(unit)
    return result
