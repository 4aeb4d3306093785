"""Shared helpers of the degradation tests: PSNR, resizing, flat images and the 128 x 128 photo."""

from __future__ import annotations

import cv2
import numpy as np
from skimage import data

LEVEL_NAMES = ("low", "mid", "hard")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB between two uint8 images (capped for identical ones)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10.0 * np.log10(255.0**2 / max(mse, 1e-12))


def resized(image: np.ndarray, side: int) -> np.ndarray:
    """``image`` shrunk to ``side`` x ``side`` (area interpolation)."""
    return cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)


def grey(h: int, w: int, value: int) -> np.ndarray:
    """A flat ``h`` x ``w`` RGB image of ``value``."""
    return np.full((h, w, 3), value, dtype=np.uint8)


def astronaut_128() -> np.ndarray:
    """A real photo (scikit-image's astronaut, shipped offline) at 128 x 128."""
    return resized(data.astronaut(), 128)
