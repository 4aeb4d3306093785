"""NIQE (Mittal, Soundararajan and Bovik, "Making a 'completely blind' image quality analyzer", 2013), offline.

The features follow the paper and the authors' MATLAB release: MSCN coefficients over a 7x7 Gaussian window
(sigma 7/6, replicate borders, ``C = 1``), 96x96 blocks without overlap, per block an AGGD fit of the MSCN
coefficients and of their four neighbour products (18 numbers), at full and half scale (MATLAB-style bicubic
``imresize`` with antialiasing), then the distance between the image's multivariate Gaussian and the pristine
model's. The pristine model (mean, covariance, window) is shipped in ``clear_plugins/resources`` as
``niqe_pristine_params.npz``: the parameters of the MATLAB release as converted by BasicSR (Apache-2.0);
nothing is downloaded. Lower is better.
"""

from __future__ import annotations

import math
from functools import cache
from importlib import resources

import numpy as np

BLOCK = 96
"""Block side in pixels (the release's recommended 96 x 96, no overlap)."""

PARAMS_RESOURCE = ("resources", "niqe_pristine_params.npz")
"""Where the pristine model lives inside the ``clear_plugins`` package."""

_GAMMAS = np.arange(0.2, 10.001, 0.001)


@cache
def pristine_model() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The shipped pristine model: mean ``[36]``, covariance ``[36, 36]`` and the 7x7 Gaussian window."""
    path = resources.files("clear_plugins").joinpath(*PARAMS_RESOURCE)
    with resources.as_file(path) as file, np.load(file, allow_pickle=False) as data:
        return (
            np.asarray(data["mu_pris_param"], np.float64).ravel(),
            np.asarray(data["cov_pris_param"], np.float64),
            np.asarray(data["gaussian_window"], np.float64),
        )


@cache
def _r_gamma() -> np.ndarray:
    from scipy.special import gamma

    inverse = 1.0 / _GAMMAS
    return gamma(2 * inverse) ** 2 / (gamma(inverse) * gamma(3 * inverse))


def _aggd(values: np.ndarray) -> tuple[float, float, float]:
    """Shape and left/right scales of an asymmetric generalised Gaussian (moment matching on a grid)."""
    from scipy.special import gamma

    values = values.ravel()
    left = math.sqrt(np.mean(values[values < 0] ** 2))
    right = math.sqrt(np.mean(values[values > 0] ** 2))
    ratio = left / right
    rhat = np.mean(np.abs(values)) ** 2 / np.mean(values**2)
    normalised = rhat * (ratio**3 + 1) * (ratio + 1) / (ratio**2 + 1) ** 2
    alpha = float(_GAMMAS[np.argmin((_r_gamma() - normalised) ** 2)])
    scale = math.sqrt(gamma(1 / alpha) / gamma(3 / alpha))
    return alpha, left * scale, right * scale


def _block_features(block: np.ndarray) -> list[float]:
    """The 18 features of one block of MSCN coefficients."""
    from scipy.special import gamma

    alpha, left, right = _aggd(block)
    features = [alpha, (left + right) / 2]
    for shift in ((0, 1), (1, 0), (1, 1), (1, -1)):
        alpha, left, right = _aggd(block * np.roll(block, shift, axis=(0, 1)))
        mean = (right - left) * gamma(2 / alpha) / gamma(1 / alpha)
        features += [alpha, mean, left, right]
    return features


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    return (1.5 * ax**3 - 2.5 * ax**2 + 1) * (ax <= 1) + (-0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2) * (
        (ax > 1) & (ax <= 2)
    )


def _resize_axis(image: np.ndarray, axis: int, scale: float) -> np.ndarray:
    """MATLAB ``imresize(..., 'bicubic')`` along one axis, antialiased when shrinking, symmetric borders."""
    size = image.shape[axis]
    out = math.ceil(size * scale)
    width = 4.0 / scale if scale < 1 else 4.0
    centres = np.arange(1, out + 1) / scale + 0.5 * (1 - 1 / scale)
    first = np.floor(centres - width / 2)
    taps = math.ceil(width) + 2
    indices = first[:, None] + np.arange(taps)[None, :]
    distance = centres[:, None] - indices
    weights = scale * _cubic(distance * scale) if scale < 1 else _cubic(distance)
    weights /= weights.sum(axis=1, keepdims=True)
    zero_based = indices.astype(np.int64) - 1
    mirrored = np.concatenate([np.arange(size), np.arange(size - 1, -1, -1)])
    zero_based = mirrored[np.mod(zero_based, 2 * size)]
    moved = np.moveaxis(image, axis, 0)
    result = np.einsum("ot,ot...->o...", weights, moved[zero_based])
    return np.moveaxis(result, 0, axis)


def matlab_imresize_half(image: np.ndarray) -> np.ndarray:
    """Halve a 2-D float image as MATLAB's default ``imresize(image, 0.5)`` does (bicubic, antialiased)."""
    return _resize_axis(_resize_axis(image, 0, 0.5), 1, 0.5)


def luma(rgb: np.ndarray) -> np.ndarray:
    """MATLAB ``rgb2ycbcr``'s Y channel of a uint8 RGB array, rounded, as float64 in [16, 235]."""
    rgb = np.asarray(rgb, np.float64)
    if rgb.ndim == 2:
        return rgb
    y = 16.0 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255.0
    return np.round(y)


def niqe(image: np.ndarray) -> float:
    """NIQE of an RGB uint8 (or 2-D luminance) array; needs at least 192 x 192 pixels (two blocks a side).

    Raises:
        ValueError: the image is smaller than two blocks on a side.
    """
    from scipy.ndimage import convolve

    mu_pristine, cov_pristine, window = pristine_model()
    gray = luma(image)
    rows, cols = gray.shape[0] // BLOCK, gray.shape[1] // BLOCK
    if rows < 2 or cols < 2:
        raise ValueError(
            f"NIQE needs an image of at least {2 * BLOCK}x{2 * BLOCK} pixels; got {gray.shape[1]}x{gray.shape[0]}."
        )
    gray = gray[: rows * BLOCK, : cols * BLOCK]
    scales = []
    for factor in (1, 2):
        mean = convolve(gray, window, mode="nearest")
        deviation = np.sqrt(np.abs(convolve(gray**2, window, mode="nearest") - mean**2))
        mscn = (gray - mean) / (deviation + 1)
        side = BLOCK // factor
        scales.append(
            np.array(
                [
                    _block_features(mscn[r * side : (r + 1) * side, c * side : (c + 1) * side])
                    for c in range(cols)
                    for r in range(rows)
                ]
            )
        )
        if factor == 1:
            gray = matlab_imresize_half(gray / 255.0) * 255.0
    features = np.concatenate(scales, axis=1)
    mu = np.nanmean(features, axis=0)
    cov = np.cov(features[~np.isnan(features).any(axis=1)], rowvar=False)
    difference = mu_pristine - mu
    distance = difference @ np.linalg.pinv((cov_pristine + cov) / 2) @ difference
    return float(np.sqrt(distance))
