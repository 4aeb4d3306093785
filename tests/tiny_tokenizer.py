"""The offline tokenizer of the tests: the tiny byte-level BPE shipped in the package (re-exported here)."""

from __future__ import annotations

from clear_plugins.adapters.bagel.testing import SEGMENT_TOKENS, TINY_TOKENIZER_CORPUS, tiny_tokenizer

CORPUS = list(TINY_TOKENIZER_CORPUS)

__all__ = ["CORPUS", "SEGMENT_TOKENS", "tiny_tokenizer"]
