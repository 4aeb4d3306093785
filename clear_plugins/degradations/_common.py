"""Shared pieces of the corruption modules: argument checks, OpenCV-style blending, random draws, blurs.

Every corruption works on a ``uint8`` RGB array of shape ``(H, W, 3)`` and returns a new array of the same
shape; these helpers keep that contract in one place. Rounding follows the reference implementation's
conventions: ``cv2.addWeighted`` rounds to nearest and saturates (:func:`blend`), while ``astype(np.uint8)`` after
a clip truncates (:func:`truncate_u8`).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from clear_plugins.errors import ClearConfigError, ImageInputError


def check_rgb(image: np.ndarray) -> None:
    """Raise :class:`ImageInputError` unless ``image`` is a non-empty ``uint8`` array of shape ``(H, W, 3)``."""
    if not isinstance(image, np.ndarray):
        raise ImageInputError(
            f"a degradation function got a {type(image).__name__}; it takes a uint8 numpy array of shape "
            "(H, W, 3). Use clear_plugins.degradations.apply() to pass PIL images or grayscale/RGBA arrays."
        )
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
        raise ImageInputError(
            f"a degradation function got an array of dtype {image.dtype} and shape {image.shape}; it takes a "
            "non-empty uint8 RGB array of shape (H, W, 3). Use clear_plugins.degradations.apply() to convert "
            "other inputs."
        )


def check_intensity(intensity: float) -> float:
    """Return ``intensity`` as a float, or raise :class:`ClearConfigError` unless it is finite and in [0, 1]."""
    if isinstance(intensity, bool) or not isinstance(intensity, int | float | np.integer | np.floating):
        raise ClearConfigError(
            f"intensity={intensity!r} is not a number; pass a float in [0, 1] or a level name "
            "('low', 'mid', 'hard')."
        )
    value = float(intensity)
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ClearConfigError(
            f"intensity={intensity!r} is outside [0, 1]; pass a float in [0, 1] (Low/Mid/Hard are 0.23/0.45/0.9)."
        )
    return value


def randint(rng: np.random.Generator, low: int, high: int) -> int:
    """A random integer in ``[low, high]``, both ends included (Python's ``random.randint``)."""
    return int(rng.integers(low, high, endpoint=True))


def blend(a: np.ndarray, weight_a: float, b: np.ndarray, weight_b: float) -> np.ndarray:
    """``a * weight_a + b * weight_b`` rounded to nearest and saturated, via ``cv2.addWeighted``.

    Both are ``uint8``; ``b`` may be a single-channel ``(H, W)`` layer, applied to every channel of ``a``.
    """
    if b.ndim == a.ndim - 1:
        b = cv2.merge([b] * a.shape[2])
    return cv2.addWeighted(a, float(weight_a), b, float(weight_b), 0.0)


def truncate_u8(values: np.ndarray) -> np.ndarray:
    """Clip to ``[0, 255]`` and truncate toward zero as ``uint8`` (NumPy's ``astype`` after a clip)."""
    return np.clip(values, 0, 255).astype(np.uint8)


def scale_table(factor: float, dtype: type[np.floating] = np.float64) -> np.ndarray:
    """The 256-entry lookup table of ``truncate(v * factor)`` for every ``uint8`` value ``v``.

    ``dtype`` is the float precision of the product (the reference scales HSV saturation in ``float32``).
    """
    return truncate_u8(np.arange(256, dtype=dtype) * dtype(factor))


def scale_lut(image: np.ndarray, factor: float) -> np.ndarray:
    """Multiply every value by ``factor`` and truncate, through a lookup table (fast, and exact)."""
    return cv2.LUT(image, scale_table(factor))


def gaussian_kernel(size: int, sigma: float) -> np.ndarray:
    """The 1-D normalised Gaussian kernel OpenCV uses (``sigma <= 0`` derives sigma from ``size``)."""
    return cv2.getGaussianKernel(int(size), float(sigma), cv2.CV_32F)


def separable_filter(image: np.ndarray, kernel_1d: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Convolve with ``outer(kernel_1d, kernel_1d) * scale`` as two 1-D passes; returns ``float32``.

    Equal (up to float rounding) to ``cv2.filter2D`` with the full 2-D kernel and OpenCV's default border
    (reflect-101), at a fraction of the cost for the large kernels of lens_blur and color_diffusion.
    """
    kernel_x = kernel_1d.astype(np.float32) * np.float32(scale)
    return cv2.sepFilter2D(image, cv2.CV_32F, kernel_x, kernel_1d.astype(np.float32))


def odd(value: int) -> int:
    """``value`` made odd by setting its lowest bit (the reference's ``| 1``)."""
    return int(value) | 1
