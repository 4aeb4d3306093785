"""The exception tree of clear-plugins.

Every message names the bad value and says how to fix it. Catch :class:`ClearError` to catch them all.
"""

from __future__ import annotations


class ClearError(Exception):
    """Base class of every error raised on purpose by clear-plugins."""


class ClearConfigError(ClearError, ValueError):
    """A configuration field (or a combination of fields) has an invalid value."""


class PluginError(ClearError):
    """A plugin could not be loaded, or registered something invalid."""


class AdapterNotFoundError(PluginError, LookupError):
    """No registered backbone adapter matches a model or ``model_type``."""


class UnknownNameError(PluginError, KeyError):
    """A name (degradation, reward, judge) is not registered.

    ``KeyError`` quotes its message; ``__str__`` is overridden so the sentence reads as written.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class CheckpointError(ClearError):
    """A checkpoint directory or weight file does not have the expected layout."""


class TrajectoryError(ClearError, ValueError):
    """A trajectory could not be built from the given parts."""


class ImageInputError(ClearError, ValueError):
    """An image could not be read or has an unsupported type, shape or dtype."""


class JudgeError(ClearError):
    """A judge could not score an answer (outage, timeout, unparsable reply)."""


class JudgeUnavailableError(JudgeError):
    """A judge endpoint cannot be reached at all (connection refused, unknown host): retrying at once is futile.

    :class:`~clear_plugins.rewards.judges.FallbackJudge` rests such a judge for its cooldown right away.
    """
