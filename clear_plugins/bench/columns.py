"""Column roles of a VQA table (id, image, question, answer, options) and their auto-detection."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from clear_plugins.errors import ClearConfigError

ID_CANDIDATES: tuple[str, ...] = ("index", "id", "question_id", "qid", "sample_id", "idx", "uid")
IMAGE_CANDIDATES: tuple[str, ...] = (
    "image",
    "img",
    "image_path",
    "img_path",
    "image_file",
    "file_name",
    "filename",
    "image_bytes",
    "image_base64",
    "path",
)
QUESTION_CANDIDATES: tuple[str, ...] = ("question", "query", "prompt", "instruction", "text")
ANSWER_CANDIDATES: tuple[str, ...] = ("answer", "gt_answer", "ground_truth", "label", "target", "solution")
OPTIONS_CANDIDATES: tuple[str, ...] = ("options", "choices")
OPTION_LETTERS: str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class Columns:
    """The resolved column of each role; ``id`` is ``None`` when rows are identified by their number."""

    image: str
    id: str | None = None
    question: str | None = None
    answer: str | None = None
    options: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready mapping, as written to the manifest."""
        return {
            "id": self.id,
            "image": self.image,
            "question": self.question,
            "answer": self.answer,
            "options": list(self.options),
        }


def _pick(given: str | None, candidates: Sequence[str], available: Sequence[str], flag: str) -> str | None:
    if given is not None:
        if given not in available:
            raise ClearConfigError(
                f"{flag} {given!r} is not a column of the source; its columns are {', '.join(available)}. "
                f"Pass one of them as {flag}."
            )
        return given
    lowered = {name.lower(): name for name in available}
    for candidate in candidates:
        if candidate in lowered:
            return lowered[candidate]
    return None


def _option_columns(available: Sequence[str]) -> tuple[str, ...]:
    """VLMEvalKit-style option columns A, B, C, ... (contiguous from A), else an ``options``/``choices`` column."""
    letters: list[str] = []
    for letter in OPTION_LETTERS:
        if letter not in available:
            break
        letters.append(letter)
    if len(letters) >= 2:
        return tuple(letters)
    lowered = {name.lower(): name for name in available}
    for candidate in OPTIONS_CANDIDATES:
        if candidate in lowered:
            return (lowered[candidate],)
    return ()


def resolve_columns(
    available: Sequence[str],
    *,
    id_column: str | None = None,
    image_column: str | None = None,
    question_column: str | None = None,
    answer_column: str | None = None,
) -> Columns:
    """Resolve each role to a column, honouring explicit names and auto-detecting the rest.

    Raises:
        ClearConfigError: an explicit column is missing, or no image column can be found.
    """
    available = list(available)
    image = _pick(image_column, IMAGE_CANDIDATES, available, "--image-column")
    if image is None:
        raise ClearConfigError(
            f"no image column found among {', '.join(available) or '(no columns)'}; name it with --image-column "
            f"(it may hold a path relative to the source file, image bytes, or base64)."
        )
    return Columns(
        image=image,
        id=_pick(id_column, ID_CANDIDATES, available, "--id-column"),
        question=_pick(question_column, QUESTION_CANDIDATES, available, "--question-column"),
        answer=_pick(answer_column, ANSWER_CANDIDATES, available, "--answer-column"),
        options=_option_columns(available),
    )
