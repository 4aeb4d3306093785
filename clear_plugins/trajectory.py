"""Trajectories of CLEAR: the special tags, the system prompt, and parsing/formatting of the two patterns.

A trajectory (App. D, Fig. 8) is one of

- direct: ``<think> … </think> <answer> … </answer>``
- generate-then-answer: ``<think> … </think> <image_restore> [image] <think> … </think> <answer> … </answer>``

generalised to at most ``max_restores`` (K) restore blocks: ``(<think> … </think> <image_restore> [image])*k
<think> … </think> <answer> … </answer>`` with ``k <= K`` (K = 1 in the paper).

Grammar checked by :func:`parse` (this is the format reward's definition of *well formed*):

- Only whitespace may stand between blocks, before the first ``<think>`` and after ``</answer>``.
- Think and answer contents must be non-empty and contain none of the five tags nor a segment marker.
- The *image gap* between ``<image_restore>`` and the next ``<think>`` is where the restored image lives. A decoded
  trajectory holds segment markers there (Bagel: ``<|im_end|>`` closing the text segment, the image block
  ``<|vision_start|> … <|vision_end|>``, ``<|im_start|>`` opening the next segment). The gap may contain only
  whitespace, those markers, complete image blocks (whose inside may be anything but a tag or marker), and the
  ``image_placeholder`` string given to :func:`parse`. Markers anywhere else make the trajectory malformed.

:func:`parse` never raises: ``None``, bytes, truncated, doubled, nested or garbage input come back with
``well_formed=False`` and a short ``problem``. It runs in linear time (one literal-alternation scan, then a walk
over the tags found).
"""

from __future__ import annotations

import functools
import importlib.resources
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from clear_plugins.errors import ClearConfigError, TrajectoryError

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
ANSWER_OPEN = "<answer>"
ANSWER_CLOSE = "</answer>"
RESTORE_TAG = "<image_restore>"

SPECIAL_TAGS: tuple[str, ...] = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE, RESTORE_TAG)
"""The tags to add to a tokenizer (each may become a single token)."""

SYSTEM_PROMPT_RESOURCE = "resources/system_prompt.txt"
"""Location of the shipped system prompt inside the ``clear_plugins`` package."""

_WHITESPACE = " \t\n\r\f\v"
_SNIPPET_CHARS = 24


@dataclass(frozen=True)
class SegmentMarkers:
    """The backbone's text-segment and image-block markers, tolerated only in the image gap.

    Defaults are Bagel's (Qwen2 chat markers): text segments ``<|im_start|> … <|im_end|>``, image blocks
    ``<|vision_start|> … <|vision_end|>`` (SPEC, "Trajectory format").
    """

    text_open: str = "<|im_start|>"
    text_close: str = "<|im_end|>"
    image_open: str = "<|vision_start|>"
    image_close: str = "<|vision_end|>"

    def all(self) -> tuple[str, ...]:
        """The four markers."""
        return (self.text_open, self.text_close, self.image_open, self.image_close)


BAGEL_MARKERS = SegmentMarkers()
"""Segment markers of a decoded Bagel trajectory."""


@dataclass(frozen=True)
class ParsedTrajectory:
    """What :func:`parse` found in a completion.

    Attributes:
        thinks: contents (stripped) of the ``<think>`` blocks, in order. For a malformed text, best effort: every
            ``<think>`` directly followed by ``</think>``.
        restore_requested: the text contains ``<image_restore>`` at least once (the decision reward's *g*).
        num_restores: how many ``<image_restore>`` tags the text contains.
        answer: stripped content of the answer block; ``None`` when there is no answer. For a malformed text,
            best effort: extracted when the text holds exactly one ``<answer>`` directly followed by exactly one
            ``</answer>``; ``None`` otherwise, and ``None`` when that content is blank.
        well_formed: the text follows one of the two patterns with at most ``max_restores`` restore blocks.
        problem: why it is not well formed (``None`` when it is).
    """

    thinks: tuple[str, ...]
    restore_requested: bool
    num_restores: int
    answer: str | None
    well_formed: bool
    problem: str | None


class _Tag(NamedTuple):
    text: str
    start: int
    end: int


@functools.lru_cache(maxsize=8)
def _tag_pattern(markers: SegmentMarkers) -> re.Pattern[str]:
    literals = sorted({*SPECIAL_TAGS, *markers.all()}, key=len, reverse=True)
    return re.compile("|".join(re.escape(literal) for literal in literals))


def _tokenize(text: str, markers: SegmentMarkers) -> list[_Tag]:
    return [_Tag(m.group(), m.start(), m.end()) for m in _tag_pattern(markers).finditer(text)]


def _blank(segment: str) -> bool:
    return not segment.strip(_WHITESPACE)


def _snippet(segment: str) -> str:
    segment = segment.strip(_WHITESPACE)
    return repr(segment[:_SNIPPET_CHARS] + ("…" if len(segment) > _SNIPPET_CHARS else ""))


class _Walker:
    """Checks the strict grammar over the tag list; each method returns a problem or ``None``."""

    def __init__(self, text: str, tags: list[_Tag], markers: SegmentMarkers, placeholder: str) -> None:
        self.text, self.tags, self.markers, self.placeholder = text, tags, markers, placeholder
        self.k = 0  # index of the next tag
        self.pos = 0  # end of the last consumed tag

    def _next(self, where: str) -> tuple[_Tag | None, str | None]:
        """Consume the next tag; the text before it must be blank."""
        tag = self.tags[self.k] if self.k < len(self.tags) else None
        gap = self.text[self.pos : tag.start if tag else len(self.text)]
        if not _blank(gap):
            return tag, f"unexpected text {_snippet(gap)} {where}"
        self.k += 1
        if tag is not None:
            self.pos = tag.end
        return tag, None

    def _block(self, open_tag: _Tag, close: str) -> tuple[str, str | None]:
        """Read the content up to the closing tag, which must be the very next tag."""
        tag = self.tags[self.k] if self.k < len(self.tags) else None
        name = open_tag.text
        if tag is None:
            return "", f"{name} at char {open_tag.start} is never closed (truncated?)"
        if tag.text != close:
            return (
                "",
                f"{tag.text} at char {tag.start} inside the {name} block opened at char {open_tag.start}",
            )
        content = self.text[open_tag.end : tag.start]
        self.k += 1
        self.pos = tag.end
        if _blank(content):
            return "", f"empty {name} block at char {open_tag.start}"
        return content, None

    def _image_gap(self) -> str | None:
        """Skip the image gap after ``<image_restore>``; stop before the next ``<think>``."""
        m = self.markers
        while self.k < len(self.tags):
            tag = self.tags[self.k]
            gap = self.text[self.pos : tag.start]
            if self.placeholder:
                gap = gap.replace(self.placeholder, "")
            if not _blank(gap):
                return f"unexpected text {_snippet(gap)} between {RESTORE_TAG} and the next {THINK_OPEN}"
            if tag.text == THINK_OPEN:
                self.pos = tag.start
                return None
            if tag.text == m.image_open:
                nxt = self.tags[self.k + 1] if self.k + 1 < len(self.tags) else None
                if nxt is None or nxt.text != m.image_close:
                    return f"image block {m.image_open} at char {tag.start} is not closed by {m.image_close}"
                self.k += 2
                self.pos = nxt.end
            elif tag.text in (m.text_open, m.text_close):
                self.k += 1
                self.pos = tag.end
            else:
                return f"{tag.text} at char {tag.start} between {RESTORE_TAG} and the next {THINK_OPEN}"
        return f"no {THINK_OPEN} after {RESTORE_TAG} (truncated?)"

    def problem(self, max_restores: int) -> str | None:
        """The first deviation from the grammar, or ``None`` for a well-formed trajectory."""
        if _blank(self.text):
            return "empty text"
        restores = 0
        while True:
            tag, problem = self._next(f"before {THINK_OPEN}")
            if problem or tag is None:
                return problem or f"missing {THINK_OPEN} (truncated?)"
            if tag.text != THINK_OPEN:
                return f"expected {THINK_OPEN} at char {tag.start}, found {tag.text}"
            problem = self._block(tag, THINK_CLOSE)[1]
            if problem:
                return problem
            tag, problem = self._next(f"after {THINK_CLOSE}")
            if problem or tag is None:
                return problem or f"missing {ANSWER_OPEN} after the last {THINK_CLOSE} (truncated?)"
            if tag.text == ANSWER_OPEN:
                return self._answer_and_end(tag)
            if tag.text != RESTORE_TAG:
                return f"expected {ANSWER_OPEN} or {RESTORE_TAG} at char {tag.start}, found {tag.text}"
            restores += 1
            if restores > max_restores:
                return f"more than max_restores={max_restores} {RESTORE_TAG} blocks"
            problem = self._image_gap()
            if problem:
                return problem

    def _answer_and_end(self, tag: _Tag) -> str | None:
        problem = self._block(tag, ANSWER_CLOSE)[1]
        if problem:
            return problem
        tail, problem = self._next(f"after {ANSWER_CLOSE}")
        if problem:
            return problem
        if tail is not None:
            return f"unexpected {tail.text} at char {tail.start} after {ANSWER_CLOSE}"
        return None


def _best_effort(text: str, tags: list[_Tag]) -> tuple[tuple[str, ...], int, str | None]:
    thinks: list[str] = []
    answer_pairs: list[tuple[_Tag, _Tag]] = []
    n_open = n_close = restores = 0
    for i, tag in enumerate(tags):
        nxt = tags[i + 1] if i + 1 < len(tags) else None
        if tag.text == RESTORE_TAG:
            restores += 1
        elif tag.text == ANSWER_OPEN:
            n_open += 1
            if nxt is not None and nxt.text == ANSWER_CLOSE:
                answer_pairs.append((tag, nxt))
        elif tag.text == ANSWER_CLOSE:
            n_close += 1
        elif tag.text == THINK_OPEN and nxt is not None and nxt.text == THINK_CLOSE:
            thinks.append(text[tag.end : nxt.start].strip(_WHITESPACE))
    answer = None
    if n_open == 1 and n_close == 1 and len(answer_pairs) == 1:
        opening, closing = answer_pairs[0]
        answer = text[opening.end : closing.start].strip(_WHITESPACE) or None
    return tuple(thinks), restores, answer


def parse(
    text: object,
    *,
    max_restores: int = 1,
    image_placeholder: str = "",
    markers: SegmentMarkers = BAGEL_MARKERS,
) -> ParsedTrajectory:
    """Parse a completion into its blocks and check it against the two patterns (never raises).

    Args:
        text: the decoded completion. Anything that is not a ``str`` (``None``, bytes) is reported as not well
            formed; decode bytes yourself first.
        max_restores: K, the largest number of ``<image_restore>`` blocks a well-formed trajectory may have.
        image_placeholder: a string the pipeline writes into the image gap for the restored image (tolerated
            there, any number of times). Use the same value given to :func:`format_restore`.
        markers: the backbone's segment markers tolerated in the image gap (default: Bagel's).
    """
    if not isinstance(text, str):
        kind = "None" if text is None else type(text).__name__
        problem = f"expected a decoded str, got {kind}"
        return ParsedTrajectory((), False, 0, None, False, problem)
    tags = _tokenize(text, markers)
    thinks, restores, answer = _best_effort(text, tags)
    problem = _Walker(text, tags, markers, image_placeholder).problem(max_restores)
    return ParsedTrajectory(
        thinks=thinks,
        restore_requested=restores > 0,
        num_restores=restores,
        answer=answer,
        well_formed=problem is None,
        problem=problem,
    )


def _clean_part(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise TrajectoryError(f"{name} must be a str, got {type(value).__name__} ({value!r}); pass the text.")
    cleaned = value.strip(_WHITESPACE)
    if not cleaned:
        raise TrajectoryError(f"{name} is empty ({value!r}); every think and answer block needs some text.")
    for tag in (*SPECIAL_TAGS, *BAGEL_MARKERS.all()):
        if tag in cleaned:
            raise TrajectoryError(
                f"{name} contains {tag!r}; pass plain text, the format_* functions add the tags themselves."
            )
    return cleaned


def format_multi_restore(thinks: Sequence[str], answer: str, *, image_placeholder: str = "") -> str:
    """Build a trajectory with ``len(thinks) - 1`` restore blocks (compact: one space between blocks).

    Parts are stripped; ``parse(result, max_restores=len(thinks) - 1, image_placeholder=...)`` is well formed
    and returns the same parts.

    Raises:
        TrajectoryError: no thinks, a part that is not a non-empty str, a part containing a tag or marker, or an
            ``image_placeholder`` that :func:`parse` would not accept in the image gap.
    """
    if isinstance(thinks, str) or not isinstance(thinks, Sequence) or not thinks:
        raise TrajectoryError(f"thinks must be a non-empty list of str, got {thinks!r}; pass e.g. [think].")
    parts = [_clean_part(think, f"thinks[{i}]") for i, think in enumerate(thinks)]
    final = _clean_part(answer, "answer")
    if not isinstance(image_placeholder, str) or any(tag in image_placeholder for tag in SPECIAL_TAGS):
        raise TrajectoryError(
            f"image_placeholder {image_placeholder!r} must be a str without trajectory tags; use e.g. '' or "
            f"'<|vision_start|><|vision_end|>'."
        )
    blocks: list[str] = []
    for i, think in enumerate(parts):
        if i:
            blocks.append(RESTORE_TAG)
            if image_placeholder.strip(_WHITESPACE):
                blocks.append(image_placeholder.strip(_WHITESPACE))
        blocks.append(f"{THINK_OPEN} {think} {THINK_CLOSE}")
    blocks.append(f"{ANSWER_OPEN} {final} {ANSWER_CLOSE}")
    result = " ".join(blocks)
    check = parse(result, max_restores=len(parts) - 1, image_placeholder=image_placeholder.strip(_WHITESPACE))
    if not check.well_formed:
        raise TrajectoryError(
            f"image_placeholder {image_placeholder!r} is not accepted in the image gap ({check.problem}); use "
            f"plain text, or complete image blocks such as '<|vision_start|><|vision_end|>'."
        )
    return result


def format_direct(think: str, answer: str) -> str:
    """Build a direct trajectory ``<think> … </think> <answer> … </answer>`` (an SFT target)."""
    return format_multi_restore([think], answer)


def format_restore(think_before: str, think_after: str, answer: str, *, image_placeholder: str = "") -> str:
    """Build a generate-then-answer trajectory with one ``<image_restore>`` block (an SFT target).

    ``image_placeholder`` (empty by default) is written between ``<image_restore>`` and the second ``<think>``;
    give the same value to :func:`parse`.
    """
    return format_multi_restore([think_before, think_after], answer, image_placeholder=image_placeholder)


@functools.cache
def _shipped_system_prompt() -> str:
    resource = importlib.resources.files("clear_plugins").joinpath(SYSTEM_PROMPT_RESOURCE)
    return resource.read_text(encoding="utf-8").strip()


def system_prompt(override: str | None = None) -> str:
    """The system prompt shared by SFT, GRPO and inference (Fig. 8 structure, our own wording).

    Args:
        override: another prompt to use instead (e.g. the authors' text, for their released checkpoints).

    Raises:
        ClearConfigError: ``override`` is given but is not a non-empty str.
    """
    if override is None:
        return _shipped_system_prompt()
    if not isinstance(override, str) or not override.strip():
        raise ClearConfigError(
            f"system prompt override {override!r} must be a non-empty str; pass None to use the shipped prompt."
        )
    return override
