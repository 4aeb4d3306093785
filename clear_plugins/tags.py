"""How a model holds the trajectory tags: its *tag mode*, recorded in the model config as ``clear_tag_mode``.

- ``"text"``: the tags (``<think>``, ``</think>``, ``<image_restore>``, ``<answer>``, ``</answer>``) are ordinary
  BPE text, as the CLEAR reference tokenizes them; nothing is added to the tokenizer and no embedding row changes.
  The pipeline finds the tags in the decoded text.
- ``"token"``: each tag is one added (non-special) token on a spare embedding row (grown when none is spare).

Either way, text generation samples only ids the tokenizer knows, minus the ids of tags that the mode does not
train (see :func:`sampling_vocabulary`), so the spare rows of a checkpoint (Bagel: 152,064 rows for 151,665
tokens) are never sampled. ``save_pretrained`` writes the mode with the config, ``from_pretrained`` reads it back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from clear_plugins.errors import ClearConfigError
from clear_plugins.trajectory import SPECIAL_TAGS

TAG_MODE_ATTRIBUTE: Final[str] = "clear_tag_mode"
"""The model-config attribute that records the tag mode."""
TAG_MODES: Final[tuple[str, ...]] = ("text", "token")
"""The tag modes (module docstring)."""
LEGACY_TAG_MODE: Final[str] = "token"
"""The mode of a config that records none (checkpoints written before the attribute existed)."""


def check_tag_mode(mode: object, where: str = TAG_MODE_ATTRIBUTE) -> str:
    """Return ``mode`` when it is a known tag mode; the error names ``where``, the value and the choices."""
    if mode not in TAG_MODES:
        raise ClearConfigError(
            f"{where}={mode!r} is not a tag mode; use 'text' (tags as plain BPE text, the CLEAR reference) or "
            "'token' (one added token per tag on a spare embedding row)."
        )
    return str(mode)


def tag_mode(config: Any) -> str:
    """The tag mode a model config records (``"token"`` when it records none)."""
    return check_tag_mode(getattr(config, TAG_MODE_ATTRIBUTE, None) or LEGACY_TAG_MODE)


@dataclass(frozen=True)
class SamplingVocabulary:
    """The ids text generation may produce: ``[0, size)`` minus ``excluded``.

    Attributes:
        size: the tokenizer's length (``len(tokenizer)``); rows at or above it are spare and never sampled.
        excluded: ids below ``size`` that must not be sampled either (tag tokens in ``"text"`` mode).
    """

    size: int
    excluded: tuple[int, ...] = ()

    @property
    def base_size(self) -> int:
        """How many ids may be sampled (``size`` minus the excluded ids)."""
        return self.size - len(self.excluded)


def sampling_vocabulary(tokenizer: Any, mode: str, tags: Sequence[str] = SPECIAL_TAGS) -> SamplingVocabulary:
    """Which ids generation may sample for a model in tag ``mode`` with this ``tokenizer``.

    In ``"token"`` mode every id of the tokenizer may be sampled (the tag rows are trained). In ``"text"`` mode
    the tags are spelled in BPE, so a tag that happens to be an added token of the tokenizer (e.g. a tokenizer
    saved in token mode) is excluded: its row was never trained in this mode.
    """
    check_tag_mode(mode)
    size = len(tokenizer)
    if mode == "token":
        return SamplingVocabulary(size)
    added = getattr(tokenizer, "get_added_vocab", dict)()
    excluded = tuple(sorted(added[tag] for tag in tags if tag in added and added[tag] < size))
    return SamplingVocabulary(size, excluded)
