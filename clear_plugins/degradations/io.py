"""Bring any supported input image to the ``uint8`` RGB array the degradations work on, and back.

The rule (documented once here, used by :func:`clear_plugins.degradations.apply`):

- **numpy arrays** must be ``uint8`` (0-255) of shape ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` (RGB) or
  ``(H, W, 4)`` (RGBA), with ``H, W >= 1``.
- **PIL images** may have mode ``RGB``, ``RGBA``, ``L``, ``LA``, ``1``, ``P``, ``CMYK`` or ``YCbCr``.
- **Grayscale** (``(H, W)``, ``(H, W, 1)``, ``L``, ``1``) is replicated to three channels, degraded, and brought
  back with the ITU-R 601 luma (OpenCV's ``RGB2GRAY`` for arrays, Pillow's ``convert("L")`` for images), so a
  grey input stays grey where the degradation is colourless.
- **Alpha** (``(H, W, 4)``, ``RGBA``, ``LA``): the colour is composited over white first (as Bagel's inferencer
  does), degraded, and the original alpha channel is put back unchanged.
- **Other PIL modes** (``P``, ``CMYK``, ``YCbCr``) go through ``convert("RGB")`` and back to their mode (``P``
  with an adaptive 256-colour palette; a ``P`` image's transparency is composited over white and not kept).

The output always has the input's type, mode, shape and dtype. High-bit-depth PIL modes (``I``, ``F``,
``I;16``) and non-``uint8`` arrays are refused with :class:`ImageInputError`: scale them to 8 bits first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

import cv2
import numpy as np
from PIL import Image

from clear_plugins.errors import ImageInputError

ImageLike: TypeAlias = np.ndarray | Image.Image
"""What :func:`clear_plugins.degradations.apply` accepts and returns."""

PIL_MODES: tuple[str, ...] = ("RGB", "RGBA", "L", "LA", "1", "P", "CMYK", "YCbCr")
"""PIL modes accepted by :func:`to_rgb`."""

ARRAY_SHAPES = "(H, W), (H, W, 1), (H, W, 3) RGB or (H, W, 4) RGBA"
WHITE = 255


@dataclass(frozen=True)
class RGBInput:
    """An input converted to ``uint8`` RGB, with what is needed to convert a degraded copy back.

    Attributes:
        rgb: the ``(H, W, 3)`` ``uint8`` array to degrade.
        layout: ``"rgb"``, ``"gray"`` (``(H, W)``), ``"gray1"`` (``(H, W, 1)``) or ``"rgba"`` for arrays; the
            PIL mode for images.
        is_pil: whether the input was a PIL image.
        alpha: the original alpha channel, put back by :meth:`restore`, or ``None``.
    """

    rgb: np.ndarray
    layout: str
    is_pil: bool
    alpha: np.ndarray | None = None

    def restore(self, degraded: np.ndarray) -> ImageLike:
        """The degraded ``(H, W, 3)`` RGB array in the input's type, mode, shape and dtype."""
        return _restore_pil(self, degraded) if self.is_pil else _restore_array(self, degraded)


def to_rgb(image: Any) -> RGBInput:
    """Convert a numpy array or PIL image to ``uint8`` RGB following the module's rule.

    Raises:
        ImageInputError: unsupported type, dtype, shape, mode, or an empty image; the message names the fix.
    """
    if isinstance(image, Image.Image):
        return _from_pil(image)
    if isinstance(image, np.ndarray):
        return _from_array(image)
    raise ImageInputError(
        f"cannot degrade an object of type {type(image).__name__}; pass a numpy uint8 array "
        f"({ARRAY_SHAPES}) or a PIL image (modes {', '.join(PIL_MODES)})."
    )


def composite_over_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``rgb`` composited over a white background with the ``uint8`` ``alpha`` (rounded to nearest)."""
    a = alpha.astype(np.uint32)[..., None]
    mixed = rgb.astype(np.uint32) * a + WHITE * (255 - a) + 127
    return (mixed // 255).astype(np.uint8)


def _from_array(image: np.ndarray) -> RGBInput:
    if image.dtype != np.uint8:
        raise ImageInputError(
            f"image array has dtype {image.dtype}; degradations take uint8 values 0-255. Convert a [0, 1] float "
            "image with np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)."
        )
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise ImageInputError(f"image array has shape {image.shape}; expected {ARRAY_SHAPES}.")
    if image.size == 0:
        raise ImageInputError(f"image array has shape {image.shape} (empty); pass an image at least 1x1.")
    if image.ndim == 2:
        return RGBInput(np.repeat(image[..., None], 3, axis=2), "gray", is_pil=False)
    channels = image.shape[2]
    if channels == 1:
        return RGBInput(np.repeat(image, 3, axis=2), "gray1", is_pil=False)
    if channels == 4:
        alpha = image[..., 3].copy()
        return RGBInput(composite_over_white(image[..., :3], alpha), "rgba", is_pil=False, alpha=alpha)
    return RGBInput(np.ascontiguousarray(image), "rgb", is_pil=False)


def _restore_array(source: RGBInput, degraded: np.ndarray) -> np.ndarray:
    if source.layout == "rgb":
        return degraded
    if source.layout == "rgba":
        return np.concatenate([degraded, source.alpha[..., None]], axis=2)
    gray = cv2.cvtColor(degraded, cv2.COLOR_RGB2GRAY)
    return gray[..., None] if source.layout == "gray1" else gray


def _from_pil(image: Image.Image) -> RGBInput:
    mode = image.mode
    if mode not in PIL_MODES:
        raise ImageInputError(
            f"PIL image mode {mode!r} is not supported; supported modes are {', '.join(PIL_MODES)}. Convert "
            "first, e.g. image.convert('RGB') (scale high-bit-depth images to 8 bits)."
        )
    if image.width == 0 or image.height == 0:
        raise ImageInputError(f"PIL image has size {image.size} (empty); pass an image at least 1x1.")
    if mode in ("RGBA", "LA"):
        rgba = np.asarray(image.convert("RGBA"))
        alpha = rgba[..., 3].copy()
        return RGBInput(composite_over_white(rgba[..., :3], alpha), mode, is_pil=True, alpha=alpha)
    if mode == "P" and "transparency" in image.info:
        rgba = np.asarray(image.convert("RGBA"))
        return RGBInput(composite_over_white(rgba[..., :3], rgba[..., 3]), mode, is_pil=True)
    return RGBInput(np.array(image.convert("RGB")), mode, is_pil=True)


def _restore_pil(source: RGBInput, degraded: np.ndarray) -> Image.Image:
    rgb = Image.fromarray(degraded)
    mode = source.layout
    if mode == "RGB":
        return rgb
    if mode in ("RGBA", "LA"):
        colour = rgb if mode == "RGBA" else rgb.convert("L")
        colour.putalpha(Image.fromarray(source.alpha))
        return colour
    if mode == "1":
        return rgb.convert("L").convert("1", dither=Image.Dither.NONE)
    if mode == "P":
        return rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=256)
    return rgb.convert(mode)
