"""Environmental degradations (App. B, Table 7): dark_illumination, atmospheric_turbulence, gaussian_noise,
color_diffusion.

Severity parameters follow the reference implementation the CLEAR authors published (intensity ``i`` in
[0, 1]; Low/Mid/Hard = 0.23/0.45/0.9). Every function takes a ``uint8`` RGB array ``(H, W, 3)``, an intensity
and a :class:`numpy.random.Generator`, returns a new array of the same shape, and never modifies its input.
"""

from __future__ import annotations

import cv2
import numpy as np

from clear_plugins.degradations._common import (
    blend,
    check_intensity,
    check_rgb,
    gaussian_kernel,
    randint,
    scale_lut,
    separable_filter,
    truncate_u8,
)

# atmospheric_turbulence: a row-wise sinusoidal remap. Row y is displaced by d(y) = 40 i sin(y / 30 + 5 i),
# horizontally by d and vertically by 0.7 d, with the sampling positions clamped to the image.
TURBULENCE_AMPLITUDE_PER_INTENSITY = 40.0
TURBULENCE_WAVELENGTH = 30.0
TURBULENCE_PHASE_PER_INTENSITY = 5.0
TURBULENCE_VERTICAL_RATIO = 0.7

# gaussian_noise: additive N(0, (75 i)**2) noise on the 0-255 scale, clipped and truncated.
NOISE_STD_PER_INTENSITY = 75.0

# color_diffusion: a Gaussian blur (side 3 + 2 floor(20 i), sigma 50 i) scaled by i**2, blended
# image * max(0.1, 1 - 0.9 i) + diffused * min(0.9, 0.9 i). Strictly above i = 0.9, 100 i grey discs
# (radius 5-19, grey 0-254) are also painted on the diffused layer, as in the reference (so not at Hard = 0.9).
DIFFUSION_BASE_SIZE = 3
DIFFUSION_SIZE_STEPS_PER_INTENSITY = 20
DIFFUSION_SIGMA_PER_INTENSITY = 50.0
DIFFUSION_MIN_IMAGE_WEIGHT = 0.1
DIFFUSION_WEIGHT_PER_INTENSITY = 0.9
DIFFUSION_MAX_WEIGHT = 0.9
DIFFUSION_DISC_MIN_INTENSITY = 0.9
DIFFUSION_DISCS_PER_INTENSITY = 100
DIFFUSION_DISC_RADIUS = (5, 19)
DIFFUSION_DISC_GREY = (0, 254)


def dark_illumination(image: np.ndarray, intensity: float, rng: np.random.Generator) -> np.ndarray:
    """Low light: every value scaled by ``1 - i**2`` and truncated; Hard keeps 19% (deterministic, ``rng`` unused)."""
    check_rgb(image)
    i = check_intensity(intensity)
    return scale_lut(image, 1.0 - i * i)


def turbulence_maps(h: int, w: int, intensity: float) -> tuple[np.ndarray, np.ndarray]:
    """The ``cv2.remap`` sampling maps (x, y) of :func:`atmospheric_turbulence`, ``float32`` of shape (h, w)."""
    rows = np.arange(h, dtype=np.float64)
    phase = TURBULENCE_PHASE_PER_INTENSITY * intensity
    shift = TURBULENCE_AMPLITUDE_PER_INTENSITY * intensity * np.sin(rows / TURBULENCE_WAVELENGTH + phase)
    map_x = np.clip(np.arange(w, dtype=np.float64)[None, :] + shift[:, None], 0, w - 1)
    map_y = np.clip(rows + TURBULENCE_VERTICAL_RATIO * shift, 0, h - 1)
    return map_x.astype(np.float32), np.broadcast_to(map_y.astype(np.float32)[:, None], (h, w)).copy()


def atmospheric_turbulence(image: np.ndarray, intensity: float, rng: np.random.Generator) -> np.ndarray:
    """Heat haze: a sinusoidal geometric warp of the rows (deterministic; ``rng`` is unused)."""
    check_rgb(image)
    i = check_intensity(intensity)
    map_x, map_y = turbulence_maps(image.shape[0], image.shape[1], i)
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR)


def gaussian_noise(image: np.ndarray, intensity: float, rng: np.random.Generator) -> np.ndarray:
    """Sensor noise: independent Gaussian noise of standard deviation ``75 i`` per value."""
    check_rgb(image)
    i = check_intensity(intensity)
    noisy = rng.standard_normal(image.shape, dtype=np.float32)
    noisy *= np.float32(NOISE_STD_PER_INTENSITY * i)
    noisy += image
    return truncate_u8(noisy)


def color_diffusion(image: np.ndarray, intensity: float, rng: np.random.Generator) -> np.ndarray:
    """Colour bleeding: a dimmed wide blur blended over the image (random only strictly above ``i = 0.9``)."""
    check_rgb(image)
    i = check_intensity(intensity)
    size = DIFFUSION_BASE_SIZE + 2 * int(DIFFUSION_SIZE_STEPS_PER_INTENSITY * i)
    kernel = gaussian_kernel(size, DIFFUSION_SIGMA_PER_INTENSITY * i)
    diffused = separable_filter(image, kernel, scale=i * i)
    if i > DIFFUSION_DISC_MIN_INTENSITY:
        h, w = image.shape[:2]
        for _ in range(int(DIFFUSION_DISCS_PER_INTENSITY * i)):
            center = (randint(rng, 0, w - 1), randint(rng, 0, h - 1))
            grey = float(randint(rng, *DIFFUSION_DISC_GREY))
            cv2.circle(diffused, center, randint(rng, *DIFFUSION_DISC_RADIUS), (grey, grey, grey), -1)
    image_weight = max(DIFFUSION_MIN_IMAGE_WEIGHT, 1.0 - DIFFUSION_WEIGHT_PER_INTENSITY * i)
    layer_weight = min(DIFFUSION_MAX_WEIGHT, DIFFUSION_WEIGHT_PER_INTENSITY * i)
    return blend(image, image_weight, truncate_u8(diffused), layer_weight)
