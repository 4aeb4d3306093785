"""A rule-based accuracy judge: the offline default and the fallback of the LLM judge.

It scores 1.0 or 0.0, never partial credit, and errs towards 0.0 when an answer is ambiguous. The rules,
first match wins:

1. empty answer: 0.0;
2. normalised exact match (case, punctuation, articles, whitespace): 1.0;
3. multiple choice, when the ground truth is a letter (``"B"``, ``"(B)"``, ``"B. cat"``) or options are known
   (passed in, or read from ``A. …`` / ``(B) …`` lines of the question): the answer's letter (``"B"``,
   ``"(B)"``, ``"B. cat"``, ``"The answer is B"``) or option text must match;
4. yes/no ground truth: the answer must say exactly one of yes or no, the same one;
5. numeric ground truth: the answer's only number (digits, or words up to ninety) must equal it within a
   tolerance, so ``"3.0"``, ``"three"`` and ``"There are 3."`` match ``"3"``;
6. containment: the ground truth appears as whole words in a short answer without negations or
   conjunctions that could change its meaning (``"a black cat"`` matches ``"cat"``, ``"not a cat"`` does not).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from clear_plugins.errors import JudgeError

_TOKEN = re.compile(r"-?\d+(?:\.\d+)?|[^\W_]+")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_ARTICLES = frozenset({"a", "an", "the"})
_LETTERS = "ABCDEFGH"
_LONE_LETTER = re.compile(r"^\s*[(\[]?([A-Ha-h])[)\]]?[.:]?\s*$")
_LEADING_LETTER = re.compile(r"^\s*(?:[(\[]([A-H])[)\]]|([A-H])[.):])(?:\s+|$)")
_SENTENCE_LETTER = re.compile(
    r"(?i:\b(?:answer|option|choice)\b)\s*(?i:is)?\s*:?\s*(?i:option\s+)?[(\[]?([A-H])\b[)\]]?"
)
_OPTION_LINE = re.compile(r"^\s*(?:\(([A-H])\)|([A-H])[.):])\s*(\S.*?)\s*$", re.MULTILINE)
_PREAMBLE = re.compile(r"^\s*(?:the\s+)?(?:final\s+|correct\s+)?answer\s*(?:is|:)\s*", re.IGNORECASE)
_SMALL_NUMBER_WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty"
)
_SMALL_NUMBERS = _SMALL_NUMBER_WORDS.split()
_TENS = {"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
_NUMBER_WORDS = {word: value for value, word in enumerate(_SMALL_NUMBERS)} | _TENS
# Words that can flip or widen an answer's meaning: their presence (beyond the ground truth's own words)
# denies containment credit. "t" is what tokenising "isn't", "don't", … leaves behind.
_BLOCKER_WORDS = (
    "not no never none nor neither without cannot or but and t isn aren wasn weren doesn don didn won"
)
_BLOCKERS = frozenset(_BLOCKER_WORDS.split())

Options = Mapping[str, str] | Sequence[str]


def normalize_tokens(text: str) -> tuple[str, ...]:
    """Lower-cased word and number tokens of ``text``, punctuation dropped, articles dropped unless alone."""
    text = _THOUSANDS.sub("", unicodedata.normalize("NFKC", text).lower())
    tokens = tuple(_TOKEN.findall(text))
    content = tuple(token for token in tokens if token not in _ARTICLES)
    return content or tokens


def parse_options(question: str) -> dict[str, str]:
    """Options listed one per line in ``question`` (``"A. cat"``, ``"(B) dog"``, ``"C) bird"``), by letter.

    Only a run of at least two lines lettered ``A``, ``B``, … in order counts; otherwise ``{}``.
    """
    found: dict[str, str] = {}
    expected = iter(_LETTERS)
    for match in _OPTION_LINE.finditer(question):
        letter = match.group(1) or match.group(2)
        if letter != next(expected, None):
            break
        found[letter] = match.group(3)
    return found if len(found) >= 2 else {}


def answer_letter(answer: str) -> str | None:
    """The option letter an answer picks (``"B"``, ``"(b)"``, ``"B. cat"``, ``"The answer is B"``), or None.

    A lone letter may be lower case; inside a sentence only a capital letter counts, and two different
    letters make the answer ambiguous (None).
    """
    for pattern in (_LONE_LETTER, _LEADING_LETTER):
        match = pattern.match(answer)
        if match:
            return next(group for group in match.groups() if group).upper()
    letters = {match.group(1) for match in _SENTENCE_LETTER.finditer(answer)}
    return letters.pop() if len(letters) == 1 else None


def parse_number(tokens: Sequence[str]) -> float | None:
    """The value of a single number token (``"3"``, ``"-2.5"``, ``"three"``), else None."""
    if len(tokens) != 1:
        return None
    return _token_value(tokens[0])


def _token_value(token: str) -> float | None:
    """The number a token stands for, if any."""
    if token in _NUMBER_WORDS:
        return float(_NUMBER_WORDS[token])
    try:
        return float(token)
    except ValueError:
        return None


def _as_options(options: Options | None) -> dict[str, str]:
    """Options as ``{letter: text}``; a sequence is lettered ``A``, ``B``, … in order."""
    if options is None:
        return {}
    if isinstance(options, Mapping):
        return {str(letter).strip().upper(): str(text) for letter, text in options.items()}
    return {_LETTERS[i]: str(text) for i, text in enumerate(options)}


def _contains(haystack: Sequence[str], needle: Sequence[str]) -> bool:
    """Whether ``needle`` occurs as a contiguous run in ``haystack``."""
    width = len(needle)
    return any(tuple(haystack[i : i + width]) == tuple(needle) for i in range(len(haystack) - width + 1))


@dataclass(frozen=True)
class RuleJudge:
    """Scores 1.0 or 0.0 by the conservative rules of this module's docstring; no network, no model."""

    rel_tol: float = field(
        default=1e-6, metadata={"help": "Relative tolerance when comparing a numeric answer to the truth."}
    )
    abs_tol: float = field(
        default=1e-9, metadata={"help": "Absolute tolerance when comparing a numeric answer to the truth."}
    )
    containment_extra_words: int = field(
        default=6,
        metadata={
            "help": "Containment credit needs the answer to hold at most this many words besides the ground "
            "truth's; longer answers need an exact, choice, yes/no or numeric match."
        },
    )

    def score(
        self, question: str, answer: str, ground_truth: str, *, options: Options | None = None
    ) -> float:
        """1.0 if ``answer`` matches ``ground_truth`` by one of the rules, else 0.0.

        ``options`` (``{"A": "cat", …}`` or ``["cat", …]``) overrides the options read from ``question``.
        Raises :class:`JudgeError` when the ground truth is empty.
        """
        truth_text = str(ground_truth).strip()
        if not truth_text:
            raise JudgeError(
                f"The ground truth for question {str(question)[:80]!r} is empty; fix the dataset's ground "
                "truth column (the rule judge has nothing to compare with)."
            )
        return 1.0 if self._matches(str(question), str(answer), truth_text, options) else 0.0

    def _matches(self, question: str, answer: str, truth_text: str, options: Options | None) -> bool:
        """Apply the rules in order; the first that decides wins."""
        reply, truth = normalize_tokens(answer), normalize_tokens(truth_text)
        if not reply:
            return False
        if reply == truth:
            return True
        choice = self._choice_verdict(question, answer, truth_text, options)
        if choice is not None:
            return choice
        if truth in (("yes",), ("no",)):
            said = {token for token in reply if token in ("yes", "no")}
            return said == {truth[0]}
        truth_value = parse_number(truth)
        if truth_value is not None:
            values = {value for value in map(_token_value, reply) if value is not None}
            return len(values) == 1 and math.isclose(
                values.pop(), truth_value, rel_tol=self.rel_tol, abs_tol=self.abs_tol
            )
        return self._contained(reply, truth)

    def _choice_verdict(
        self, question: str, answer: str, truth_text: str, options: Options | None
    ) -> bool | None:
        """The multiple-choice verdict, or None when the item is not multiple choice."""
        choices = _as_options(options) or parse_options(question)
        by_text = {normalize_tokens(text): letter for letter, text in choices.items()}
        truth_letter = _truth_letter(truth_text, choices)
        if truth_letter is None:
            truth_letter = by_text.get(normalize_tokens(truth_text))
        if truth_letter is None:
            return None
        picked = answer_letter(answer)
        if picked is None and choices:
            picked = by_text.get(normalize_tokens(_PREAMBLE.sub("", answer)))
        if picked is None and choices:
            # The answer names an option in other words: exactly one option's text may be contained in it.
            reply = normalize_tokens(answer)
            named = [
                letter for letter, text in choices.items() if self._contained(reply, normalize_tokens(text))
            ]
            picked = named[0] if len(named) == 1 else None
        return picked == truth_letter

    def _contained(self, reply: Sequence[str], truth: Sequence[str]) -> bool:
        """Containment rule: ``truth`` inside a short ``reply`` with no blocker word of its own."""
        if not truth or len(reply) - len(truth) > self.containment_extra_words:
            return False
        if any(token in _BLOCKERS and token not in truth for token in reply):
            return False
        return _contains(reply, truth)


def _truth_letter(truth_text: str, choices: Mapping[str, str]) -> str | None:
    """The letter a ground truth names: a capital letter, or any letter when options are known."""
    lone = _LONE_LETTER.match(truth_text)
    if lone and (lone.group(1).isupper() or choices):
        return lone.group(1).upper()
    leading = _LEADING_LETTER.match(truth_text)
    return next((group for group in leading.groups() if group), None) if leading else None
