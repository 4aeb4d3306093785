"""The trace-writing prompts of App. C.2 (Fig. 7 structure, our own wording) and the chat messages they become.

The generate-then-answer prompt has the four steps of Fig. 7: A diagnosis (as if seeing only the degraded image,
no answer yet), B the ``<image_restore>`` trigger on its own line, C post-restoration analysis, D the concise
answer matching the ground truth. The direct variant omits B and C and has the writer judge the visual
information sufficient despite the degradation (App. C.2). Both send the degraded and the clean image as
base64 ``data:`` URLs, the question and the ground truth.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

RESTORE_PROMPT = """You write training data for a vision-language assistant that can restore degraded images.
You receive a degraded image, the clean original of the same image, a question and its ground-truth answer.
Write one reasoning trace in the exact structure below.

Step A - Diagnosis. Speak as if you saw only the degraded image. Say which visual defects you notice and
which degradation most likely caused them, and explain why the quality is too low to answer with confidence,
so you will call the restoration tool. Do not state or hint at the answer yet.
Step B - Trigger. Put <image_restore> on a line of its own.
Step C - After restoration. Speak as if you now had the restored image. Confirm that the defects from step A
are gone, point to the details that are now visible and matter for the question, and reason from them to a
conclusion.
Step D - Answer. Give the final answer briefly; it must agree with the ground-truth answer.

Output format, nothing before or after it:
<think>step A</think>
<image_restore>
<think>step C</think>
<answer>step D</answer>"""
"""System prompt of a generate-then-answer trace (Fig. 7 structure)."""

DIRECT_PROMPT = """You write training data for a vision-language assistant that can restore degraded images.
You receive a degraded image, the clean original of the same image, a question and its ground-truth answer.
Write one reasoning trace in the exact structure below.

Step A - Diagnosis. Speak as if you saw only the degraded image. Say which visual defects you notice and
which degradation most likely caused them, and explain why the details the question needs are still clear
enough, so no restoration is needed.
Step B - Reasoning. Point to the visual details that answer the question and reason from them to a conclusion.
Step C - Answer. Give the final answer briefly; it must agree with the ground-truth answer.
Never write <image_restore>.

Output format, nothing before or after it:
<think>steps A and B</think>
<answer>step C</answer>"""
"""System prompt of a direct-answer trace (Fig. 7 without the trigger and post-restoration steps)."""


def data_url(png: bytes) -> str:
    """A ``data:image/png;base64,…`` URL of PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def user_text(question: str, answer: str, degradation: str | None, level: str | None) -> str:
    """The user turn's text: the question, the ground truth and (as a hint for step A) the degradation."""
    hint = (
        f"\nDegradation applied (for your diagnosis only): {degradation}, {level} severity."
        if degradation
        else ""
    )
    return (
        f"Question: {question}\nGround-truth answer: {answer}{hint}\nImage 1 is degraded; image 2 is clean."
    )


def trace_messages(
    pathway: str, question: str, answer: str, degraded_png: bytes, clean_png: bytes, **hint: Any
) -> list[dict[str, Any]]:
    """The chat messages asking for one trace of ``pathway`` (``"direct"`` or ``"restore"``)."""
    system = RESTORE_PROMPT if pathway == "restore" else DIRECT_PROMPT
    content = [
        {"type": "text", "text": user_text(question, answer, hint.get("degradation"), hint.get("level"))},
        {"type": "image_url", "image_url": {"url": data_url(degraded_png)}},
        {"type": "image_url", "image_url": {"url": data_url(clean_png)}},
    ]
    return [{"role": "system", "content": system}, {"role": "user", "content": content}]


def sha256(data: str | bytes) -> str:
    """Hex SHA-256 of text (UTF-8) or bytes."""
    return hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()


def redacted(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``messages`` with every text and image replaced by its SHA-256 and length (what is logged by default)."""

    def part(item: Any) -> Any:
        if isinstance(item, str):
            return {"sha256": sha256(item), "chars": len(item)}
        if item.get("type") == "image_url":
            url = item["image_url"]["url"]
            return {"type": "image_url", "sha256": sha256(url), "chars": len(url)}
        return {"type": item.get("type"), **part(item.get("text", ""))}

    out = []
    for message in messages:
        content = message["content"]
        shown = part(content) if isinstance(content, str) else [part(item) for item in content]
        out.append({"role": message["role"], "content": shown})
    return out


def describe(messages: list[dict[str, Any]], full: bool) -> str:
    """One JSON line describing a request: the messages in full, or hashed (``full=False``)."""
    return json.dumps(messages if full else redacted(messages), ensure_ascii=False)
