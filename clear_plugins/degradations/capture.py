"""Capture degradations (App. B, Table 7): lens_blur, lens_flare, motion_blur, dirty_lens, hsv_saturation.

Severity parameters follow the reference implementation the CLEAR authors published (intensity ``i`` in
[0, 1]; Low/Mid/Hard = 0.23/0.45/0.9). Every function takes a ``uint8`` RGB array ``(H, W, 3)``, an intensity
and a :class:`numpy.random.Generator`, returns a new array of the same shape, and never modifies its input.
All randomness comes from the generator, so a seed reproduces the output exactly.
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np

from clear_plugins.degradations._common import (
    blend,
    check_intensity,
    check_rgb,
    gaussian_kernel,
    odd,
    randint,
    scale_table,
    separable_filter,
    truncate_u8,
)

# lens_blur: Gaussian kernel of side min(101, 3 + 300 i) made odd, sigma 20 i, blended
# image * (1 - 0.7 i) + blur * 0.9 i (the weights sum above one, so the image also brightens, as in the reference).
LENS_BLUR_BASE_SIZE = 3
LENS_BLUR_SIZE_PER_INTENSITY = 300
LENS_BLUR_MAX_SIZE = 101
LENS_BLUR_SIGMA_PER_INTENSITY = 20.0
LENS_BLUR_IMAGE_LOSS = 0.7
LENS_BLUR_WEIGHT = 0.9

# lens_flare: 3 + 30 i filled circles (radius 10-50 px) each with a 2 px streak (30-150 px) at a random angle,
# softened by a 3x3 Gaussian (sigma 20 i) and added with weight 0.9 i. The colour is the one the reference's
# output images show: its BGR triple (255, 255, 235) is RGB (235, 255, 255), a slightly cool white.
FLARE_BASE_COUNT = 3
FLARE_COUNT_PER_INTENSITY = 30
FLARE_RADIUS = (10, 50)
FLARE_STREAK_LENGTH = (30, 150)
FLARE_STREAK_THICKNESS = 2
FLARE_RGB = (235.0, 255.0, 255.0)
FLARE_BLUR_SIZE = 3
FLARE_BLUR_SIGMA_PER_INTENSITY = 20.0
FLARE_WEIGHT = 0.9

# motion_blur: a line kernel of length max(5, 30 i) pixels at a uniformly random angle in [0, 360) degrees.
MOTION_MIN_LENGTH = 5
MOTION_LENGTH_PER_INTENSITY = 30

# dirty_lens: grey smudges drawn on a dark layer, blurred with sigma 30 and blended
# image * (1 - 0.7 i) + dirt * 0.8 i. Above i = 0.1: 10 i large ellipses (grey 50); always: 300 i spots
# (radius 4-20, grey 50-100); above i = 0.5: 5 i blobs (radius 20-50 grey 80 with a radius 10-30 grey 120 core).
DIRT_ELLIPSE_MIN_INTENSITY = 0.1
DIRT_ELLIPSES_PER_INTENSITY = 10
DIRT_ELLIPSE_AXES = ((150, 300), (100, 200))
DIRT_ELLIPSE_GREY = 50.0
DIRT_SPOTS_PER_INTENSITY = 300
DIRT_SPOT_RADIUS = (4, 20)
DIRT_SPOT_GREY = (50, 100)
DIRT_BLOB_MIN_INTENSITY = 0.5
DIRT_BLOBS_PER_INTENSITY = 5
DIRT_BLOB_OUTER = ((20, 50), 80.0)
DIRT_BLOB_INNER = ((10, 30), 120.0)
DIRT_BLUR_SIGMA = 30.0
DIRT_IMAGE_LOSS = 0.7
DIRT_WEIGHT = 0.8


def lens_blur(image: np.ndarray, intensity: float, rng: np.random.Generator) -> np.ndarray:
    """Defocus: a wide Gaussian blur blended with the image (deterministic; ``rng`` is unused)."""
    check_rgb(image)
    i = check_intensity(intensity)
    size = min(LENS_BLUR_MAX_SIZE, odd(int(LENS_BLUR_BASE_SIZE + LENS_BLUR_SIZE_PER_INTENSITY * i)))
    kernel = gaussian_kernel(size, LENS_BLUR_SIGMA_PER_INTENSITY * i)
    blurred = truncate_u8(separable_filter(image, kernel))
    return blend(image, 1.0 - LENS_BLUR_IMAGE_LOSS * i, blurred, LENS_BLUR_WEIGHT * i)


def lens_flare(image: np.ndarray, intensity: float, rng: np.random.Generator) -> np.ndarray:
    """Bright flare discs with streaks added on top of the image."""
    check_rgb(image)
    i = check_intensity(intensity)
    h, w = image.shape[:2]
    count = FLARE_BASE_COUNT + int(FLARE_COUNT_PER_INTENSITY * i)
    # every disc's x, y, radius and streak length in one call (bounds per column, both ends included)
    low = (0, 0, FLARE_RADIUS[0], FLARE_STREAK_LENGTH[0])
    high = (w, h, FLARE_RADIUS[1], FLARE_STREAK_LENGTH[1])
    discs = rng.integers(low, high, size=(count, 4), endpoint=True)
    angles = rng.uniform(0.0, 2.0 * math.pi, size=count)
    ends_x = (discs[:, 0] + discs[:, 3] * np.cos(angles)).astype(np.int64)  # truncated toward zero, as int()
    ends_y = (discs[:, 1] + discs[:, 3] * np.sin(angles)).astype(np.int64)
    # one colour everywhere: draw a single-channel 0/1 mask, blur it, and scale it per channel. Adding a
    # non-negative layer to integers and truncating equals adding its truncation, so the layer is truncated to
    # uint8 per channel and added with saturation: the same output as the reference's float32 sum (up to float
    # rounding) with far smaller temporaries.
    mask = np.zeros((h, w), dtype=np.float32)
    for (x, y, radius, _), end_x, end_y in zip(discs.tolist(), ends_x.tolist(), ends_y.tolist(), strict=True):
        cv2.circle(mask, (x, y), radius, 1.0, -1)
        cv2.line(mask, (x, y), (end_x, end_y), 1.0, FLARE_STREAK_THICKNESS)
    blur_sigma = FLARE_BLUR_SIGMA_PER_INTENSITY * i
    cv2.GaussianBlur(mask, (FLARE_BLUR_SIZE, FLARE_BLUR_SIZE), blur_sigma, dst=mask)
    layers: dict[float, np.ndarray] = {}
    for value in FLARE_RGB:
        if value not in layers:
            layers[value] = truncate_u8(mask * np.float32(FLARE_WEIGHT * i * value))
    return cv2.add(image, cv2.merge([layers[value] for value in FLARE_RGB]))


def motion_kernel(length: int, angle_degrees: float) -> np.ndarray:
    """A normalised ``length x length`` line kernel: the diagonal rotated by ``angle_degrees`` about its centre."""
    rotation = cv2.getRotationMatrix2D((length / 2, length / 2), angle_degrees, 1.0)
    kernel = cv2.warpAffine(np.eye(length, dtype=np.float64), rotation, (length, length))
    total = float(kernel.sum())
    if total <= 0.0:
        kernel[length // 2, length // 2] = 1.0
        total = 1.0
    return kernel / total


def motion_blur(image: np.ndarray, intensity: float, rng: np.random.Generator) -> np.ndarray:
    """Camera shake: a straight line kernel at a random angle."""
    check_rgb(image)
    i = check_intensity(intensity)
    length = max(MOTION_MIN_LENGTH, int(MOTION_LENGTH_PER_INTENSITY * i))
    kernel = motion_kernel(length, rng.uniform(0.0, 360.0))
    return cv2.filter2D(image, -1, kernel)


def _dirt_layer(h: int, w: int, i: float, rng: np.random.Generator) -> np.ndarray:
    """The single-channel grey dirt layer of :func:`dirty_lens`, before blurring."""
    dirt = np.zeros((h, w), dtype=np.float32)
    if i > DIRT_ELLIPSE_MIN_INTENSITY:
        for _ in range(int(DIRT_ELLIPSES_PER_INTENSITY * i)):
            center = (randint(rng, 0, w), randint(rng, 0, h))
            axes = (randint(rng, *DIRT_ELLIPSE_AXES[0]), randint(rng, *DIRT_ELLIPSE_AXES[1]))
            cv2.ellipse(dirt, center, axes, randint(rng, 0, 180), 0, 360, DIRT_ELLIPSE_GREY, -1)
    for _ in range(int(DIRT_SPOTS_PER_INTENSITY * i)):
        center = (randint(rng, 0, w), randint(rng, 0, h))
        cv2.circle(dirt, center, randint(rng, *DIRT_SPOT_RADIUS), float(randint(rng, *DIRT_SPOT_GREY)), -1)
    if i > DIRT_BLOB_MIN_INTENSITY:
        for _ in range(int(DIRT_BLOBS_PER_INTENSITY * i)):
            center = (randint(rng, 0, w), randint(rng, 0, h))
            for radius_range, grey in (DIRT_BLOB_OUTER, DIRT_BLOB_INNER):
                cv2.circle(dirt, center, randint(rng, *radius_range), grey, -1)
    return dirt


def dirty_lens(image: np.ndarray, intensity: float, rng: np.random.Generator) -> np.ndarray:
    """Smudges and spots on the lens: a blurred grey dirt layer blended over a dimmed image."""
    check_rgb(image)
    i = check_intensity(intensity)
    dirt = _dirt_layer(image.shape[0], image.shape[1], i, rng)
    dirt = truncate_u8(cv2.GaussianBlur(dirt, (0, 0), DIRT_BLUR_SIGMA))
    return blend(image, 1.0 - DIRT_IMAGE_LOSS * i, dirt, DIRT_WEIGHT * i)


def hsv_saturation(image: np.ndarray, intensity: float, rng: np.random.Generator) -> np.ndarray:
    """Washed-out colour: HSV saturation scaled by ``1 - i`` (deterministic; ``rng`` is unused)."""
    check_rgb(image)
    i = check_intensity(intensity)
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    cv2.LUT(hsv, _saturation_table(1.0 - i), dst=hsv)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB, dst=hsv)


@functools.lru_cache(maxsize=64)
def _saturation_table(scale: float) -> np.ndarray:
    """The 3-channel lookup table of :func:`hsv_saturation`: H and V unchanged, S scaled (read-only, cached)."""
    identity = np.arange(256, dtype=np.uint8)
    table = np.stack([identity, scale_table(scale, np.float32), identity], axis=-1)[None]
    table.flags.writeable = False
    return table
