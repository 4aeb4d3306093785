"""Transmission degradations (App. B, Table 7): jpeg_compression, block_exchange, mean_shift, scan_lines.

Severity parameters follow the reference implementation the CLEAR authors published (intensity ``i`` in
[0, 1]; Low/Mid/Hard = 0.23/0.45/0.9). Every function takes a ``uint8`` RGB array ``(H, W, 3)``, an intensity
and a :class:`numpy.random.Generator`, returns a new array of the same shape, and never modifies its input.

``mean_shift`` runs a faster approximation of the reference's OpenCV filter by default (see
:class:`MeanShiftApprox`); ``mean_shift(..., exact=True)`` (or ``apply(..., exact=True)``) runs the reference's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from clear_plugins.degradations._common import check_intensity, check_rgb, scale_table
from clear_plugins.errors import ClearConfigError, ImageInputError

# jpeg_compression: OpenCV JPEG at quality max(5, 100 - 95 i) (Low 78, Mid 57, Hard 14).
JPEG_MAX_QUALITY = 100
JPEG_QUALITY_LOSS_PER_INTENSITY = 95
JPEG_MIN_QUALITY = 5

# block_exchange: int(35 i) swaps of grid-aligned square blocks of side min(32, 5 + 30 i) (11, 18, 32 px at
# Low, Mid, Hard). Along an axis shorter than two blocks, the block side is cut to half that axis (at least 1 px),
# so there are two blocks along it to exchange, or one on a 1-px axis: a 1-pixel-high strip swaps 1 x side runs
# and a 1 x 1 image comes back unchanged. The reference keeps the full square block: an axis between one and two
# blocks long holds a single block (an image under two blocks both ways has one block, swapped with itself: a
# no-op), and an axis shorter than one block (under 11, 18, 32 px) crashes it.
BLOCK_BASE_SIZE = 5
BLOCK_SIZE_PER_INTENSITY = 30
BLOCK_MAX_SIZE = 32
BLOCK_SWAPS_PER_INTENSITY = 35

# mean_shift: OpenCV pyramid mean-shift filtering with spatial and colour radius 40 i.
MEAN_SHIFT_RADIUS_PER_INTENSITY = 40
MEAN_SHIFT_REFERENCE_LEVELS = 1
MEAN_SHIFT_REFERENCE_ITERATIONS = 5
MEAN_SHIFT_EPSILON = 1.0

# scan_lines: near-black bands (values scaled by 0.01 and truncated) of height max(5, 7 i) rows every
# max(3, 20 / (i + 0.1)) rows, starting at row 0.
SCAN_BASE_PERIOD = 20.0
SCAN_PERIOD_OFFSET = 0.1
SCAN_MIN_PERIOD = 3
SCAN_MIN_HEIGHT = 5
SCAN_HEIGHT_PER_INTENSITY = 7
SCAN_DARKENING = 0.01


@dataclass(frozen=True)
class MeanShiftApprox:
    """How the default (fast) ``mean_shift`` approximates the reference's ``cv2.pyrMeanShiftFiltering``.

    The reference filters with spatial radius ``sp`` and colour radius ``sr`` (both ``40 i``) on a two-level
    pyramid with at most 5 iterations per pixel; its cost grows with ``sp**2``. The approximation adds a
    pyramid level, divides the spatial radius by ``radius_divisor`` (each level halves the image, so the
    coarsest level still spans about the same scene extent) and caps the iterations.

    Measured with ``python benchmarks/degradations.py --types mean_shift --sizes 512`` on a 2-core CPU (one
    core used; ``--image chelsea``/``coffee`` and ``--sizes 128,256,1024`` for the other photos and sizes), at
    Hard (``sp = sr = 36``) against the exact filter, scikit-image photos resized to squares: astronaut
    512x512 5.8-6.1x faster (0.8 s against 4.8-4.9 s) at 30.7 dB PSNR; chelsea and coffee 512x512 7.9x and
    7.6x at 31.7 and 31.9 dB; astronaut 1024x1024 6.5-6.8x at 32.2 dB, 256x256 about 5x at 30.1 dB. Low and
    Mid are 4.4-6.7x faster and stay above 35 dB from 256x256 up. On small images the radius is large for the
    image and the error grows (27.7 dB at 128x128 Hard): pass ``exact=True`` where bit-exactness with the
    reference matters.
    """

    pyramid_levels: int = field(
        default=2,
        metadata={"help": "OpenCV maxLevel of the fast filter (the reference uses 1); must be >= 0."},
    )
    radius_divisor: float = field(
        default=2.0,
        metadata={"help": "The spatial radius is divided by this (the colour radius is kept); must be >= 1."},
    )
    max_iterations: int = field(
        default=3,
        metadata={"help": "Mean-shift iterations per pixel at most (the reference allows 5); must be >= 1."},
    )

    def __post_init__(self) -> None:
        if self.pyramid_levels < 0:
            raise ClearConfigError(
                f"MeanShiftApprox.pyramid_levels={self.pyramid_levels} is negative; use 0 or more (default 2)."
            )
        if not self.radius_divisor >= 1.0:
            raise ClearConfigError(
                f"MeanShiftApprox.radius_divisor={self.radius_divisor} is below 1; use 1 or more (default 2)."
            )
        if self.max_iterations < 1:
            raise ClearConfigError(
                f"MeanShiftApprox.max_iterations={self.max_iterations} is below 1; use 1 or more (default 3)."
            )


FAST_MEAN_SHIFT = MeanShiftApprox()
"""The default approximation used by :func:`mean_shift` when ``exact`` is false."""


def jpeg_quality(intensity: float) -> int:
    """The JPEG quality the reference uses at ``intensity``: ``max(5, 100 - 95 i)``, truncated."""
    quality = int(JPEG_MAX_QUALITY - JPEG_QUALITY_LOSS_PER_INTENSITY * intensity)
    return max(JPEG_MIN_QUALITY, min(JPEG_MAX_QUALITY, quality))


def jpeg_compression(image: np.ndarray, intensity: float, rng: np.random.Generator) -> np.ndarray:
    """Compression artefacts: an OpenCV JPEG round trip (deterministic; ``rng`` is unused)."""
    check_rgb(image)
    quality = jpeg_quality(check_intensity(intensity))
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ImageInputError(
            f"OpenCV could not JPEG-encode an image of shape {image.shape}; pass a smaller image."
        )
    return cv2.imdecode(encoded, cv2.IMREAD_COLOR_RGB)


def block_side(intensity: float) -> int:
    """The nominal block side of ``block_exchange`` at ``intensity``: ``min(32, 5 + 30 i)``, truncated."""
    return min(BLOCK_MAX_SIZE, int(BLOCK_BASE_SIZE + BLOCK_SIZE_PER_INTENSITY * intensity))


def block_exchange(image: np.ndarray, intensity: float, rng: np.random.Generator) -> np.ndarray:
    """Packet loss: swap pairs of randomly chosen grid-aligned blocks, one swap after another.

    Along an axis shorter than two blocks the block side shrinks to half that axis (at least 1 px), so there are
    two blocks along it (one on a 1-px axis). The reference keeps the full side: a single block along such an
    axis (an image under two blocks both ways has one block, swapped with itself: a no-op), and a crash on an
    axis shorter than one block (11, 18, 32 px at Low, Mid, Hard).
    """
    check_rgb(image)
    i = check_intensity(intensity)
    h, w = image.shape[:2]
    side = block_side(i)
    bh, bw = min(side, max(1, h // 2)), min(side, max(1, w // 2))
    swaps = int(BLOCK_SWAPS_PER_INTENSITY * i)
    cells = rng.integers(0, [h // bh, w // bw, h // bh, w // bw], size=(swaps, 4))
    out = image.copy()
    for r1, c1, r2, c2 in cells.tolist():
        first = (slice(r1 * bh, (r1 + 1) * bh), slice(c1 * bw, (c1 + 1) * bw))
        second = (slice(r2 * bh, (r2 + 1) * bh), slice(c2 * bw, (c2 + 1) * bw))
        kept = out[first].copy()
        out[first] = out[second]
        out[second] = kept
    return out


def mean_shift_radius(intensity: float) -> int:
    """Spatial and colour radius of ``mean_shift`` at ``intensity``: ``40 i``, truncated."""
    return int(MEAN_SHIFT_RADIUS_PER_INTENSITY * intensity)


def mean_shift(
    image: np.ndarray,
    intensity: float,
    rng: np.random.Generator,
    *,
    exact: bool = False,
    approx: MeanShiftApprox = FAST_MEAN_SHIFT,
) -> np.ndarray:
    """Posterisation by mean-shift filtering (deterministic; ``rng`` is unused).

    ``exact=True`` runs the reference's ``cv2.pyrMeanShiftFiltering(image, 40 i, 40 i)``; the default runs the
    faster ``approx`` (about 6x at 512x512 Hard, >= 30 dB PSNR against the exact filter on photos of side
    >= 256, measured with ``python benchmarks/degradations.py --types mean_shift --sizes 512`` on a 2-core CPU;
    see :class:`MeanShiftApprox`).
    """
    check_rgb(image)
    radius = mean_shift_radius(check_intensity(intensity))
    if exact:
        levels, spatial, iterations = MEAN_SHIFT_REFERENCE_LEVELS, radius, MEAN_SHIFT_REFERENCE_ITERATIONS
    else:
        levels, iterations = approx.pyramid_levels, approx.max_iterations
        spatial = max(1, int(radius / approx.radius_divisor)) if radius > 0 else 0
    criteria = (cv2.TERM_CRITERIA_MAX_ITER | cv2.TERM_CRITERIA_EPS, iterations, MEAN_SHIFT_EPSILON)
    return cv2.pyrMeanShiftFiltering(image, spatial, radius, maxLevel=levels, termcrit=criteria)


def scan_period(intensity: float) -> int:
    """Rows from one scan-line band to the next at ``intensity``: ``max(3, 20 / (i + 0.1))``, truncated."""
    return max(SCAN_MIN_PERIOD, int(SCAN_BASE_PERIOD / (intensity + SCAN_PERIOD_OFFSET)))


def scan_height(intensity: float) -> int:
    """Rows per scan-line band at ``intensity``: ``max(5, 7 i)``, truncated."""
    return max(SCAN_MIN_HEIGHT, int(SCAN_HEIGHT_PER_INTENSITY * intensity))


def scan_lines(image: np.ndarray, intensity: float, rng: np.random.Generator) -> np.ndarray:
    """Display/scan banding: periodic near-black row bands (deterministic; ``rng`` is unused)."""
    check_rgb(image)
    i = check_intensity(intensity)
    period, height = scan_period(i), scan_height(i)
    table = scale_table(SCAN_DARKENING)
    out = image.copy()
    for start in range(0, out.shape[0], period):
        band = out[start : start + height]  # whole rows of a C-contiguous copy: contiguous, updated in place
        cv2.LUT(band, table, dst=band)
    return out
