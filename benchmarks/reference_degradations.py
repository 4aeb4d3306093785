"""The reference degradations, rebuilt for timing only (used by ``benchmarks/degradations.py``; never by the product).

The CLEAR authors published their 16 degradations as one OpenCV script, ``add_degradation.py`` (Robust-R1 ships a
copy); it is not a package, so this module re-implements each function from what that script does, operation for
operation: the same OpenCV calls on the same dtypes (full 2-D kernels filtered channel by channel, 3-channel
``float32`` overlay layers, ``float64`` products from NumPy scalars), Python's ``random`` for the shapes and
NumPy's legacy generator (``RandomState``) for the noise, and no input conversion. Timing these functions is
therefore timing the reference.

Deliberate differences, none of which changes the cost:

- randomness comes from the :class:`Draws` passed in (a ``random.Random`` and an ``np.random.RandomState``, the
  same algorithms as the module-level ones the reference calls), so runs repeat;
- ``lens_blur``'s kernel side is capped at 101 as in CLEAR's copy (Robust-R1's copy has no cap: 273 x 273 at
  Hard, a different output at about the same cost at 512x512, since OpenCV filters large kernels by DFT);
- the reference is BGR; the benchmark times it on the same arrays as ours (the cost does not depend on the
  channel order) and flips channels only where it compares outputs (hsv_saturation, jpeg_compression and the
  colours of lens_flare and graffiti depend on the order).

Like the reference, ``block_exchange`` fails on an image with a side shorter than one block (11, 18 and 32 px at
Low, Mid and Hard) and ``watermark_damage`` on a side under 50 px.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class Draws:
    """The two random sources the reference draws from: Python's ``random`` and NumPy's legacy generator."""

    py: random.Random
    np: np.random.RandomState


def make_draws(seed: int) -> Draws:
    """Both random sources seeded with ``seed``."""
    return Draws(random.Random(seed), np.random.RandomState(seed))


def _per_channel_filter(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``cv2.filter2D`` of each channel, converted to ``float32`` first, with the full 2-D ``kernel``."""
    out = np.zeros_like(img, dtype=np.float32)
    for channel in range(img.shape[2]):
        out[..., channel] = cv2.filter2D(img[..., channel].astype(np.float32), -1, kernel)
    return out


def motion_blur(img: np.ndarray, i: float, draws: Draws) -> np.ndarray:
    """Line kernel of side max(5, 30 i): the identity matrix rotated by a random angle, normalised."""
    side = max(5, int(30 * i))
    rotation = cv2.getRotationMatrix2D((side / 2, side / 2), draws.py.uniform(0, 360), 1)
    line = cv2.warpAffine(np.diag(np.ones(side)), rotation, (side, side))
    line /= np.sum(line)
    return cv2.filter2D(img, -1, line)


def lens_blur(img: np.ndarray, i: float, draws: Draws) -> np.ndarray:
    """Full 2-D Gaussian of side min(101, (3 + 300 i) | 1), sigma 20 i; blended (1 - 0.7 i) / 0.9 i."""
    column = cv2.getGaussianKernel(min(101, int(3 + 300 * i) | 1), 20 * i)
    blurred = _per_channel_filter(img, column @ column.T)
    return cv2.addWeighted(img, 1 - 0.7 * i, blurred.astype(np.uint8), 0.9 * i, 0)


def gaussian_noise(img: np.ndarray, i: float, draws: Draws) -> np.ndarray:
    """``float64`` normal noise of std 75 i added to the ``float32`` image, clipped and truncated."""
    noise = draws.np.normal(0, 75 * i, img.shape)
    return np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)


def block_exchange(img: np.ndarray, i: float, draws: Draws) -> np.ndarray:
    """int(35 i) swaps, one at a time, of two random grid blocks of side min(32, 5 + 30 i)."""
    h, w = img.shape[:2]
    side = min(32, int(5 + 30 * i))
    out = img.copy()
    for _ in range(int(35 * i)):
        rows = (draws.py.randint(0, h // side - 1), draws.py.randint(0, w // side - 1))
        cols = (draws.py.randint(0, h // side - 1), draws.py.randint(0, w // side - 1))
        a = (slice(rows[0] * side, (rows[0] + 1) * side), slice(rows[1] * side, (rows[1] + 1) * side))
        b = (slice(cols[0] * side, (cols[0] + 1) * side), slice(cols[1] * side, (cols[1] + 1) * side))
        kept = out[a].copy()
        out[a] = out[b]
        out[b] = kept
    return out


def jpeg_compression(img: np.ndarray, i: float, draws: Draws) -> np.ndarray:
    """OpenCV JPEG round trip at quality max(5, 100 - 95 i) (the array is taken as BGR)."""
    quality = max(5, min(100, int(100 - 95 * i)))
    _, encoded = cv2.imencode(".jpg", img, [int(cv2.IMWRITE_JPEG_QUALITY), quality])
    return cv2.imdecode(encoded, cv2.IMREAD_COLOR)


def mean_shift(img: np.ndarray, i: float, draws: Draws) -> np.ndarray:
    """``cv2.pyrMeanShiftFiltering`` with spatial and colour radius int(40 i) (OpenCV's other defaults)."""
    radius = int(40 * i)
    return cv2.pyrMeanShiftFiltering(img, radius, radius)


def color_diffusion(img: np.ndarray, i: float, draws: Draws) -> np.ndarray:
    """Full 2-D Gaussian (3 + 2 int(20 i), sigma 50 i) times i**2; discs above 0.9; blended."""
    column = cv2.getGaussianKernel(3 + 2 * int(20 * i), 50 * i)
    diffused = _per_channel_filter(img, column @ column.T * i**2)
    if i > 0.9:
        h, w = img.shape[:2]
        for _ in range(int(100 * i)):
            centre = (draws.np.randint(0, w), draws.np.randint(0, h))
            radius = draws.np.randint(5, 20)
            cv2.circle(diffused, centre, radius, (draws.np.randint(0, 255),) * 3, -1)
    out = cv2.addWeighted(img, max(0.1, 1 - 0.9 * i), diffused.astype(np.uint8), min(0.9, 0.9 * i), 0)
    return np.clip(out, 0, 255).astype(np.uint8)


def sharpness_change(img: np.ndarray, i: float, draws: Draws) -> np.ndarray:
    """Laplacian sharpening kernel times 80 i on the ``uint8`` image (saturating), blended 0.7 / 0.3."""
    if i > 0:
        layer = cv2.filter2D(img, -1, np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]]) * (80 * i))
    else:
        side = int(3 + abs(i) * 5) | 1
        layer = cv2.GaussianBlur(img, (side, side), 0)
    return cv2.addWeighted(img, 0.7, layer, 0.3, 0)


def dark_illumination(img: np.ndarray, i: float, draws: Draws) -> np.ndarray:
    """The image times 1 - i**2 in ``float64``, clipped and truncated."""
    return (img * (1 - i**2)).clip(0, 255).astype(np.uint8)


def hsv_saturation(img: np.ndarray, i: float, draws: Draws) -> np.ndarray:
    """BGR to HSV, the ``float32`` saturation times 1 - i, clipped, truncated, and back."""
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV).astype(np.float32)
    hsv[..., 1] *= 1 - i
    return cv2.cvtColor(hsv.clip(0, 255).astype(np.uint8), cv2.COLOR_HSV2BGR)


def atmospheric_turbulence(img: np.ndarray, i: float, draws: Draws) -> np.ndarray:
    """Full ``float64`` coordinate grids shifted by 40 i sin(y / 30 + 5 i) (0.7 of it vertically), remapped."""
    h, w = img.shape[:2]
    xs, ys = np.meshgrid(np.arange(w), np.arange(h))
    shift = 40 * i * np.sin(ys / 30 + 5 * i)
    map_x = np.clip(xs + shift, 0, w - 1).astype(np.float32)
    map_y = np.clip(ys + 0.7 * shift, 0, h - 1).astype(np.float32)
    return cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR)


def dirty_lens(img: np.ndarray, i: float, draws: Draws) -> np.ndarray:
    """Ellipses, spots and blobs on a 3-channel ``float32`` layer, blurred (sigma 30), blended."""
    h, w = img.shape[:2]
    dirt = np.zeros((h, w, 3), dtype=np.float32)
    rnd = draws.py
    if i > 0.1:
        for _ in range(int(10 * i)):
            centre = (rnd.randint(0, w), rnd.randint(0, h))
            axes = (rnd.randint(150, 300), rnd.randint(100, 200))
            cv2.ellipse(dirt, centre, axes, rnd.randint(0, 180), 0, 360, (50, 50, 50), -1)
    for _ in range(int(300 * i)):
        centre = (rnd.randint(0, w), rnd.randint(0, h))
        cv2.circle(dirt, centre, rnd.randint(4, 20), (rnd.randint(50, 100),) * 3, -1)
    if i > 0.5:
        for _ in range(int(5 * i)):
            centre = (rnd.randint(0, w), rnd.randint(0, h))
            cv2.circle(dirt, centre, rnd.randint(20, 50), (80, 80, 80), -1)
            cv2.circle(dirt, centre, rnd.randint(10, 30), (120, 120, 120), -1)
    dirt = cv2.GaussianBlur(dirt, (0, 0), 30).astype(np.uint8)
    out = cv2.addWeighted(img, 1 - 0.7 * i, dirt, 0.8 * i, 0)
    return np.clip(out, 0, 255).astype(np.uint8)


def scan_lines(img: np.ndarray, i: float, draws: Draws) -> np.ndarray:
    """Every max(3, 20 / (i + 0.1)) rows, max(5, 7 i) rows multiplied by 0.01 (``float64``, truncated back)."""
    period, height = max(3, int(20 / (i + 0.1))), max(5, int(7 * i))
    out = img.copy()
    for start in range(0, img.shape[0], period):
        stop = min(start + height, img.shape[0])
        out[start:stop] = out[start:stop] * 0.01
    return out


def graffiti(img: np.ndarray, i: float, draws: Draws) -> np.ndarray:
    """int(10 i) random lines; above 0.55 a red (BGR) Hershey word where it fits."""
    h, w = img.shape[:2]
    rnd = draws.py
    out = img.copy()
    for _ in range(int(10 * i)):
        colour = (rnd.randint(0, 255), rnd.randint(0, 255), rnd.randint(0, 255))
        start = (rnd.randint(0, w - 1), rnd.randint(0, h - 1))
        end = (rnd.randint(0, w - 1), rnd.randint(0, h - 1))
        cv2.line(out, start, end, colour, rnd.randint(1, max(1, int(5 * i))))
    if i > 0.55:
        text = rnd.choice(["X", "FAKE", "COPY", "VOID", "COPYRIGHT", str(rnd.randint(1, 100))])
        scale = max(0.5, 5 * i)
        stroke = max(1, int(scale))
        (text_w, text_h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, stroke)
        if h - 10 > text_h + 10:
            origin = (rnd.randint(0, max(1, w - text_w - 10)), rnd.randint(text_h + 10, h - 10))
            cv2.putText(out, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 255), stroke)
    return out


def watermark_damage(img: np.ndarray, i: float, draws: Draws) -> np.ndarray:
    """int(1 + 15 i) rectangles on a ``float32`` mask, full-resolution Telea inpainting, blended; outlines."""
    h, w = img.shape[:2]
    rnd = draws.py
    mask = np.zeros((h, w), dtype=np.float32)
    for _ in range(int(1 + 15 * i)):
        x, y = rnd.randint(0, w - 50), rnd.randint(0, h - 50)
        cv2.rectangle(mask, (x, y), (x + rnd.randint(50, 200), y + rnd.randint(20, 80)), 1, -1)
    filled = cv2.inpaint(img, (mask * 255).astype(np.uint8), 3, cv2.INPAINT_TELEA)
    out = cv2.addWeighted(img, 1 - i, filled, i, 0)
    if i > 0.5:
        edges = cv2.Canny((mask * 255).astype(np.uint8), 50, 150) > 0
        out[edges] = out[edges] * 0.8
    return out


def lens_flare(img: np.ndarray, i: float, draws: Draws) -> np.ndarray:
    """3 + int(30 i) discs with 2-px streaks on a 3-channel ``float32`` layer, 3x3 blur, added with 0.9 i."""
    h, w = img.shape[:2]
    rnd = draws.py
    flare = np.zeros((h, w, 3), dtype=np.float32)
    colour = [255, 255, 235]
    for _ in range(3 + int(30 * i)):
        x, y = rnd.randint(0, w), rnd.randint(0, h)
        cv2.circle(flare, (x, y), rnd.randint(10, 50), colour, -1)
        angle, length = rnd.uniform(0, 2 * np.pi), rnd.randint(30, 150)
        end = (int(x + length * np.cos(angle)), int(y + length * np.sin(angle)))
        cv2.line(flare, (x, y), end, colour, 2)
    flare = cv2.GaussianBlur(flare, (3, 3), 20 * i)
    out = cv2.addWeighted(img.astype(np.float32), 1, flare, 0.9 * i, 0)
    return np.clip(out, 0, 255).astype(np.uint8)


REFERENCE: dict[str, Callable[[np.ndarray, float, Draws], np.ndarray]] = {
    "lens_blur": lens_blur,
    "lens_flare": lens_flare,
    "motion_blur": motion_blur,
    "dirty_lens": dirty_lens,
    "hsv_saturation": hsv_saturation,
    "jpeg_compression": jpeg_compression,
    "block_exchange": block_exchange,
    "mean_shift": mean_shift,
    "scan_lines": scan_lines,
    "dark_illumination": dark_illumination,
    "atmospheric_turbulence": atmospheric_turbulence,
    "gaussian_noise": gaussian_noise,
    "color_diffusion": color_diffusion,
    "sharpness_change": sharpness_change,
    "graffiti": graffiti,
    "watermark_damage": watermark_damage,
}
"""The 16 reference functions by our type names (same order as ``clear_plugins.degradations.names()``)."""

BGR_DEPENDENT = frozenset({"hsv_saturation", "jpeg_compression", "lens_flare", "graffiti"})
"""Types whose output depends on the channel order: compare ``ref(rgb[..., ::-1])[..., ::-1]`` with ours."""
