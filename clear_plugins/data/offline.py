"""The offline trace writer: valid, varied traces from templates, with no LLM (``--writer offline``).

It builds each trace from the question, the ground-truth answer and the degradation metadata, choosing among
several phrasings per sentence with a seeded generator, so the whole pipeline runs on a machine without an
endpoint (the demo, the tests). Its traces say nothing an image model would need to see, so a model trained on
them learns the format and the decision, not visual reasoning: the stats and any model card call them
``offline-template``.
"""

from __future__ import annotations

import random
from typing import Any

from clear_plugins.trajectory import SPECIAL_TAGS, SegmentMarkers, format_direct, format_restore

NAME = "offline-template"
"""The ``trace_writer`` label of rows written here."""

SYMPTOMS: dict[str, str] = {
    "lens_blur": "soft, out-of-focus edges",
    "lens_flare": "bright flare streaks and washed-out patches",
    "motion_blur": "directional smearing along the edges",
    "dirty_lens": "hazy smudges and dark specks",
    "hsv_saturation": "unnatural, shifted colours",
    "jpeg_compression": "blocky compression artefacts",
    "block_exchange": "shuffled rectangular blocks",
    "mean_shift": "flattened, posterised regions",
    "scan_lines": "horizontal scan lines",
    "dark_illumination": "very dark, low-contrast regions",
    "atmospheric_turbulence": "wavy, warped structures",
    "gaussian_noise": "heavy grain noise",
    "color_diffusion": "colours bleeding across edges",
    "sharpness_change": "over-sharpened halos",
    "graffiti": "painted strokes over the content",
    "watermark_damage": "overlaid watermark text",
}
"""What each built-in degradation looks like, in words (unknown types fall back to a generic phrase)."""

_LEVEL_WORDS = {"low": "mild", "mid": "moderate", "hard": "severe"}

_OPENINGS = (
    "Looking at the image, I notice {symptom}, which suggests {name} of {severity} strength.",
    "The picture shows {symptom}; this looks like {severity} {name}.",
    "I first check the image quality: there are {symptom}, a sign of {severity} {name}.",
)
_SUFFICIENT = (
    'Even so, the parts that matter for the question "{question}" remain readable.',
    "The details the question asks about are still clear enough to judge.",
    "Despite this, the relevant region is intact, so I can answer directly.",
)
_INSUFFICIENT = (
    'The details needed for the question "{question}" are too damaged to answer with confidence, so I will '
    "restore the image first.",
    "Because of this I cannot read the relevant details reliably; restoring the image should help.",
    "The evidence the question needs is obscured, so I request a restored image before answering.",
)
_AFTER = (
    "The restored image no longer shows {symptom}, and the relevant details are now visible.",
    "After restoration the {name} is gone and the region the question refers to is clear.",
    "With the restored view, the artefacts are resolved and I can inspect the details directly.",
)
_CONCLUDE = (
    "Based on what is visible, the answer is {answer}.",
    "These details point to {answer}.",
    "So the answer is {answer}.",
)


def _clean(text: str) -> str:
    """``text`` on one line with the trajectory tags removed (so they never break the format)."""
    for tag in (*SPECIAL_TAGS, *SegmentMarkers().all()):
        text = text.replace(tag, " ")
    return " ".join(text.split())


def offline_trace(sample: dict[str, Any], pathway: str, *, seed: int) -> str:
    """A well-formed trace of ``pathway`` (``"direct"`` or ``"restore"``) for ``sample``, varied by ``seed``."""
    rng = random.Random(seed)
    name = str(sample.get("degradation") or "degradation")
    values = {
        "symptom": SYMPTOMS.get(name, "visible artefacts"),
        "name": name.replace("_", " "),
        "severity": _LEVEL_WORDS.get(str(sample.get("level")), "some"),
        "question": _clean(str(sample["question"]).splitlines()[0] if sample["question"] else "")[:120],
        "answer": _clean(str(sample["answer"])) or "unknown",
    }

    def pick(options: tuple[str, ...]) -> str:
        return rng.choice(options).format(**values)

    answer = values["answer"]
    if pathway == "direct":
        think = " ".join((pick(_OPENINGS), pick(_SUFFICIENT), pick(_CONCLUDE)))
        return format_direct(think, answer)
    before = " ".join((pick(_OPENINGS), pick(_INSUFFICIENT)))
    after = " ".join((pick(_AFTER), pick(_CONCLUDE)))
    return format_restore(before, after, answer)
