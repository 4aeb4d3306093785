"""The Bagel backbone (BAGEL-7B-MoT): a transformers-native model and its CLEAR adapter.

Importing this package is light (no torch); the public names load on first access.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .adapter import BagelAdapter
    from .checkpoint import from_official_checkpoint, load_official_tokenizer
    from .configuration_bagel import BagelConfig
    from .context import BagelContext
    from .guidance import BagelGuidance
    from .modeling_bagel import BagelForConditionalGeneration, ClearBagelForConditionalGeneration
    from .restore import BagelRestoreConfig

_EXPORTS = {
    "BagelConfig": ".configuration_bagel",
    "BagelForConditionalGeneration": ".modeling_bagel",
    "ClearBagelForConditionalGeneration": ".modeling_bagel",
    "BagelAdapter": ".adapter",
    "BagelContext": ".context",
    "BagelGuidance": ".guidance",
    "BagelRestoreConfig": ".restore",
    "from_official_checkpoint": ".checkpoint",
    "load_official_tokenizer": ".checkpoint",
}

__all__ = [
    "BagelAdapter",
    "BagelConfig",
    "BagelContext",
    "BagelForConditionalGeneration",
    "BagelGuidance",
    "BagelRestoreConfig",
    "ClearBagelForConditionalGeneration",
    "from_official_checkpoint",
    "load_official_tokenizer",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
