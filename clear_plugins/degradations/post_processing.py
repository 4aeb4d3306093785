"""Post-processing degradations (App. B, Table 7): sharpness_change, graffiti, watermark_damage.

Severity parameters follow the reference implementation the CLEAR authors published (intensity ``i`` in
[0, 1]; Low/Mid/Hard = 0.23/0.45/0.9). Every function takes a ``uint8`` RGB array ``(H, W, 3)``, an intensity
and a :class:`numpy.random.Generator`, returns a new array of the same shape, and never modifies its input.

``watermark_damage`` inpaints at half resolution on images of side >= 128 by default (the full-resolution
Telea inpainting of the reference costs about 50 ms at 512x512); ``exact=True`` inpaints at full resolution.
"""

from __future__ import annotations

import cv2
import numpy as np

from clear_plugins.degradations._common import blend, check_intensity, check_rgb, randint, scale_table

# sharpness_change: the 3x3 Laplacian sharpening kernel [[0,-1,0],[-1,5,-1],[0,-1,0]] scaled by 80 i
# (saturating, so strong edges clip to black/white), blended image * 0.7 + sharpened * 0.3. At i = 0 the
# reference blurs with a 3x3 Gaussian instead.
SHARPEN_KERNEL = np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], dtype=np.float64)
SHARPEN_GAIN_PER_INTENSITY = 80.0
SHARPEN_IMAGE_WEIGHT = 0.7
SHARPEN_LAYER_WEIGHT = 0.3
SHARPEN_ZERO_BLUR_SIZE = 3

# graffiti: int(10 i) random-colour lines (thickness 1 to max(1, 5 i)); strictly above i = 0.55 also one red
# word from STAMP_WORDS (or a number 1-100), Hershey simplex at scale max(0.5, 5 i), stroke max(1, scale),
# placed at random where it fits vertically (10 px margins); it is skipped on images too short for it.
GRAFFITI_LINES_PER_INTENSITY = 10
GRAFFITI_THICKNESS_PER_INTENSITY = 5
STAMP_MIN_INTENSITY = 0.55
STAMP_WORDS = ("X", "FAKE", "COPY", "VOID", "COPYRIGHT")
STAMP_NUMBER_RANGE = (1, 100)
STAMP_MIN_SCALE = 0.5
STAMP_SCALE_PER_INTENSITY = 5.0
STAMP_MARGIN = 10
STAMP_RGB = (255, 0, 0)
STAMP_FONT = cv2.FONT_HERSHEY_SIMPLEX

# watermark_damage: int(1 + 15 i) filled rectangles (50-200 x 20-80 px, top-left corner at least 50 px from
# the right and bottom edges where the image allows; at 0 on smaller images) inpainted with Telea (radius 3),
# blended image * (1 - i) + inpainted * i; strictly above i = 0.5 the rectangle outlines are darkened to 80%.
WATERMARK_BASE_COUNT = 1
WATERMARK_COUNT_PER_INTENSITY = 15
WATERMARK_WIDTH = (50, 200)
WATERMARK_HEIGHT = (20, 80)
WATERMARK_CORNER_MARGIN = 50
INPAINT_RADIUS = 3
OUTLINE_MIN_INTENSITY = 0.5
OUTLINE_DARKENING = 0.8
CANNY_THRESHOLDS = (50, 150)
INPAINT_DOWNSCALE_MIN_SIDE = 128
INPAINT_DOWNSCALED_RADIUS = 2


def sharpness_change(image: np.ndarray, intensity: float, rng: np.random.Generator) -> np.ndarray:
    """Over-sharpening: a saturating Laplacian sharpening blended with the image (deterministic)."""
    check_rgb(image)
    i = check_intensity(intensity)
    if i > 0:
        sharpened = cv2.filter2D(image, -1, SHARPEN_KERNEL * (SHARPEN_GAIN_PER_INTENSITY * i))
    else:
        sharpened = cv2.GaussianBlur(image, (SHARPEN_ZERO_BLUR_SIZE, SHARPEN_ZERO_BLUR_SIZE), 0)
    return cv2.addWeighted(image, SHARPEN_IMAGE_WEIGHT, sharpened, SHARPEN_LAYER_WEIGHT, 0.0, dst=sharpened)


def _stamp(out: np.ndarray, i: float, number: int, choice: int, rng: np.random.Generator) -> None:
    """Draw the red graffiti word (``STAMP_WORDS`` then ``number``, picked by ``choice``) on ``out`` where it fits."""
    h, w = out.shape[:2]
    text = (*STAMP_WORDS, str(number))[choice]
    scale = max(STAMP_MIN_SCALE, STAMP_SCALE_PER_INTENSITY * i)
    thickness = max(1, int(scale))
    (text_w, text_h), _ = cv2.getTextSize(text, STAMP_FONT, scale, thickness)
    if h - STAMP_MARGIN > text_h + STAMP_MARGIN:
        low = (0, text_h + STAMP_MARGIN)
        high = (max(1, w - text_w - STAMP_MARGIN), h - STAMP_MARGIN)
        x, y = rng.integers(low, high, endpoint=True).tolist()
        cv2.putText(out, text, (x, y), STAMP_FONT, scale, STAMP_RGB, thickness)


def graffiti(image: np.ndarray, intensity: float, rng: np.random.Generator) -> np.ndarray:
    """Vandalism: random coloured strokes and, above ``i = 0.55``, a red stamped word."""
    check_rgb(image)
    i = check_intensity(intensity)
    h, w = image.shape[:2]
    count = int(GRAFFITI_LINES_PER_INTENSITY * i)
    # all lines' colour (3), start (2), end (2) and thickness in one call, both ends included, then the stamp's
    # number and word: one vectorised draw instead of one per value
    thickest = max(1, int(GRAFFITI_THICKNESS_PER_INTENSITY * i))
    low = [0, 0, 0, 0, 0, 0, 0, 1] * count + [STAMP_NUMBER_RANGE[0], 0]
    high = [255, 255, 255, w - 1, h - 1, w - 1, h - 1, thickest] * count + [
        STAMP_NUMBER_RANGE[1],
        len(STAMP_WORDS),
    ]
    values = rng.integers(low, high, endpoint=True).tolist()
    out = image.copy()
    for r, g, b, x1, y1, x2, y2, thickness in zip(*[iter(values[: 8 * count])] * 8, strict=True):
        cv2.line(out, (x1, y1), (x2, y2), (r, g, b), thickness)
    if i > STAMP_MIN_INTENSITY:
        _stamp(out, i, values[-2], values[-1], rng)
    return out


def watermark_mask(h: int, w: int, intensity: float, rng: np.random.Generator) -> np.ndarray:
    """The ``uint8`` 0/255 mask of the damaged rectangles of :func:`watermark_damage`.

    Images with a side under ``2 * WATERMARK_CORNER_MARGIN`` (100 px) get rectangles scaled by that side over
    100, so the rectangles do not cover the whole image (which would leave nothing to inpaint from).
    """
    mask = np.zeros((h, w), dtype=np.uint8)
    scale = min(1.0, min(h, w) / (2 * WATERMARK_CORNER_MARGIN))
    for _ in range(int(WATERMARK_BASE_COUNT + WATERMARK_COUNT_PER_INTENSITY * intensity)):
        x = randint(rng, 0, max(0, w - WATERMARK_CORNER_MARGIN))
        y = randint(rng, 0, max(0, h - WATERMARK_CORNER_MARGIN))
        size = (randint(rng, *WATERMARK_WIDTH), randint(rng, *WATERMARK_HEIGHT))
        corner = (x + max(1, round(size[0] * scale)), y + max(1, round(size[1] * scale)))
        cv2.rectangle(mask, (x, y), corner, 255, -1)
    return mask


def inpaint(image: np.ndarray, mask: np.ndarray, *, exact: bool = False) -> np.ndarray:
    """Telea inpainting of the ``mask`` pixels; at half resolution unless ``exact`` or the image is small.

    The half-resolution path inpaints a 2x-downscaled copy (radius 2) and upsamples the filled pixels only;
    outside the mask the image is returned unchanged either way.
    """
    h, w = mask.shape
    if exact or min(h, w) < INPAINT_DOWNSCALE_MIN_SIDE:
        return cv2.inpaint(image, mask, INPAINT_RADIUS, cv2.INPAINT_TELEA)
    half = ((w + 1) // 2, (h + 1) // 2)
    small = cv2.resize(image, half, interpolation=cv2.INTER_AREA)
    small_mask = np.where(cv2.resize(mask, half, interpolation=cv2.INTER_AREA) > 0, 255, 0).astype(np.uint8)
    filled = cv2.inpaint(small, small_mask, INPAINT_DOWNSCALED_RADIUS, cv2.INPAINT_TELEA)
    upsampled = cv2.resize(filled, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.where(mask[..., None] > 0, upsampled, image)


def watermark_damage(
    image: np.ndarray, intensity: float, rng: np.random.Generator, *, exact: bool = False
) -> np.ndarray:
    """Removed watermarks: rectangles inpainted and blended in, with darkened outlines above ``i = 0.5``."""
    check_rgb(image)
    i = check_intensity(intensity)
    mask = watermark_mask(image.shape[0], image.shape[1], i, rng)
    out = blend(image, 1.0 - i, inpaint(image, mask, exact=exact), i)
    if i > OUTLINE_MIN_INTENSITY:
        edges = cv2.Canny(mask, *CANNY_THRESHOLDS) > 0
        out[edges] = scale_table(OUTLINE_DARKENING)[out[edges]]
    return out
