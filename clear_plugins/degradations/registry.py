"""The 16 built-in degradations by category, the three levels, and :func:`apply`.

The category table below is the single source of truth: :mod:`clear_plugins.degradations.plugin` registers
exactly these functions through the degradation hook, and :func:`apply` resolves built-in names from it
without building a plugin manager. Category modules (and OpenCV) are imported only when a function is used.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

from clear_plugins.degradations._common import check_intensity
from clear_plugins.degradations.io import ImageLike, to_rgb
from clear_plugins.errors import ClearConfigError, PluginError, UnknownNameError

if TYPE_CHECKING:
    from clear_plugins.plugins import Plugins

DegradationFn: TypeAlias = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]
SeedLike: TypeAlias = int | Sequence[int] | np.random.SeedSequence | np.random.Generator | None

LEVELS: Mapping[str, float] = MappingProxyType({"low": 0.23, "mid": 0.45, "hard": 0.9})
"""MMD-Bench severity levels and their intensities (paper App. B; Fig. 6 labels 0.23 / 0.45 / 0.9)."""

CATEGORY_TABLE: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "capture",
        "clear_plugins.degradations.capture",
        ("lens_blur", "lens_flare", "motion_blur", "dirty_lens", "hsv_saturation"),
    ),
    (
        "transmission",
        "clear_plugins.degradations.transmission",
        ("jpeg_compression", "block_exchange", "mean_shift", "scan_lines"),
    ),
    (
        "environmental",
        "clear_plugins.degradations.environmental",
        ("dark_illumination", "atmospheric_turbulence", "gaussian_noise", "color_diffusion"),
    ),
    (
        "post_processing",
        "clear_plugins.degradations.post_processing",
        ("sharpness_change", "graffiti", "watermark_damage"),
    ),
)
"""(category, module, type names) of the 16 built-in degradations in paper order (App. B, Table 7)."""

_MODULE_OF: Mapping[str, str] = MappingProxyType(
    {name: module for _, module, group in CATEGORY_TABLE for name in group}
)
_CATEGORY_OF: Mapping[str, str] = MappingProxyType(
    {name: category for category, _, group in CATEGORY_TABLE for name in group}
)


def names() -> tuple[str, ...]:
    """The 16 built-in degradation names, grouped by category in paper order."""
    return tuple(_MODULE_OF)


def categories() -> dict[str, list[str]]:
    """``{category: [names]}`` for the built-ins: capture, transmission, environmental, post_processing."""
    return {category: list(group) for category, _, group in CATEGORY_TABLE}


def category_of(name: str) -> str:
    """The category of a built-in degradation; :class:`UnknownNameError` for any other name."""
    try:
        return _CATEGORY_OF[name]
    except KeyError:
        raise UnknownNameError(_unknown_message(name)) from None


def builtin(name: str) -> DegradationFn:
    """The function of a built-in degradation, importing its category module on first use."""
    try:
        module = _MODULE_OF[name]
    except KeyError:
        raise UnknownNameError(_unknown_message(name)) from None
    return getattr(importlib.import_module(module), name)


def _unknown_message(name: object) -> str:
    return f"unknown degradation {name!r}; built-in degradations: {', '.join(_MODULE_OF)}."


def resolve_intensity(level: str | float) -> float:
    """The intensity in [0, 1] of a level name (``'low'``, ``'mid'``, ``'hard'``, any case) or a number.

    Raises:
        ClearConfigError: unknown level name, or a number that is not finite or lies outside [0, 1].
    """
    if isinstance(level, str):
        try:
            return LEVELS[level.strip().lower()]
        except KeyError:
            raise ClearConfigError(
                f"unknown level {level!r}; use one of {', '.join(LEVELS)} or an intensity in [0, 1]."
            ) from None
    return check_intensity(level)


def make_rng(seed: SeedLike = None) -> np.random.Generator:
    """The generator a degradation draws from: ``np.random.default_rng(seed)``.

    A :class:`numpy.random.Generator` is used as given (and advanced); ``None`` draws fresh OS entropy (not
    reproducible); an int, a sequence of ints or a :class:`numpy.random.SeedSequence` always gives the same
    stream, so ``apply(image, name, level, seed=s)`` returns the same bytes every time.
    """
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool):
        raise ClearConfigError(f"seed={seed!r} is a bool; pass a non-negative int, a Generator or None.")
    try:
        return np.random.default_rng(seed)
    except (TypeError, ValueError) as exc:
        raise ClearConfigError(
            f"seed={seed!r} cannot seed numpy ({exc}); pass a non-negative int, a sequence of them, a "
            "numpy SeedSequence or Generator, or None."
        ) from None


def _resolve(name: str, plugins: Plugins | None) -> DegradationFn:
    if not isinstance(name, str):
        raise ClearConfigError(f"degradation name {name!r} is not a string; use one of {', '.join(names())}.")
    if plugins is None and name in _MODULE_OF:
        return builtin(name)
    if plugins is None:
        from clear_plugins.plugins import load_plugins

        plugins = load_plugins()
    return plugins.degradation(name).fn


def _accepts_exact(fn: Callable[..., Any]) -> bool:
    try:
        return "exact" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def apply(
    image: ImageLike,
    name: str,
    level: str | float,
    seed: SeedLike = None,
    *,
    exact: bool = False,
    plugins: Plugins | None = None,
) -> ImageLike:
    """Degrade ``image`` with the degradation ``name`` at ``level``.

    Args:
        image: a ``uint8`` numpy array or a PIL image; grayscale and alpha follow the rule of
            :mod:`clear_plugins.degradations.io`. It is never modified.
        name: a built-in name (:func:`names`) or one registered by a plugin.
        level: ``'low'``, ``'mid'``, ``'hard'`` (0.23 / 0.45 / 0.9) or any intensity in [0, 1].
        seed: see :func:`make_rng`; the same seed gives the same bytes.
        exact: run the reference algorithm where the default is a faster approximation (``mean_shift``,
            ``watermark_damage``; forwarded to any degradation that takes an ``exact`` keyword).
        plugins: resolve ``name`` in this :class:`~clear_plugins.plugins.Plugins` view; by default built-ins
            are looked up directly and other names through :func:`~clear_plugins.plugins.load_plugins`.

    Returns:
        The degraded image, of the input's type, mode, shape and dtype.

    Raises:
        ImageInputError: unsupported image. ClearConfigError: bad level or seed.
        UnknownNameError: no such degradation. PluginError: a plugin returned a malformed array.
    """
    intensity = resolve_intensity(level)
    fn = _resolve(name, plugins)
    source = to_rgb(image)
    rgb = source.rgb.view()
    rgb.flags.writeable = False
    options = {"exact": True} if exact and _accepts_exact(fn) else {}
    out = fn(rgb, intensity, make_rng(seed), **options)
    if not isinstance(out, np.ndarray) or out.dtype != np.uint8 or out.shape != rgb.shape:
        got = f"{out.dtype} {out.shape}" if isinstance(out, np.ndarray) else type(out).__name__
        raise PluginError(
            f"degradation {name!r} returned {got}; it must return a new uint8 array of shape {rgb.shape}. "
            "Fix the plugin that registers it."
        )
    if np.may_share_memory(out, rgb):
        out = out.copy()
    return source.restore(out)
