"""Bagel's image preprocessing (reference §5.1), sized from the config so tiny models can use small images.

The resize rule (official ``MaxLongEdgeMinShortEdgeResize``): scale the long side down to ``max_size`` (never up),
raise the scale so the short side reaches ``min_size``, round each side to a multiple of ``stride`` (at least one
stride), then shrink again if the area exceeds ``max_pixels`` or the long side still exceeds ``max_size``.
Resampling is bicubic (PIL's bicubic is antialiased on downscaling, as the official torchvision call is), and
pixels are normalised to ``[-1, 1]`` (mean 0.5, std 0.5).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from clear_plugins.errors import ClearConfigError, ImageInputError

TRANSFORM_KEYS: tuple[str, ...] = ("max_size", "min_size", "stride", "max_pixels")
"""The keys of ``BagelConfig.vit_transform`` / ``vae_transform``."""


@dataclass(frozen=True)
class ResizeSpec:
    """Sizes of one image path: long-side cap, short-side floor, side multiple and area cap (pixels)."""

    max_size: int
    min_size: int
    stride: int
    max_pixels: int

    @classmethod
    def from_mapping(cls, spec: Mapping[str, Any], name: str = "transform") -> ResizeSpec:
        """Build from a config dict; the error names the missing or invalid key."""
        missing = [k for k in TRANSFORM_KEYS if k not in spec]
        if missing:
            raise ClearConfigError(f"{name} is missing {missing}; give all of {list(TRANSFORM_KEYS)}.")
        values = {k: int(spec[k]) for k in TRANSFORM_KEYS}
        bad = [k for k, v in values.items() if v <= 0]
        if bad:
            raise ClearConfigError(f"{name} has non-positive {bad} ({values}); all sizes must be > 0.")
        if values["min_size"] > values["max_size"]:
            raise ClearConfigError(
                f"{name}.min_size={values['min_size']} exceeds max_size={values['max_size']}; lower min_size."
            )
        return cls(**values)

    def clipped(self, largest: int) -> ResizeSpec:
        """This spec with both sides capped at ``largest`` px (a position table's reach), rounded down to the
        stride (at least one stride); the short-side floor never exceeds the new cap."""
        top = max(self.stride, min(self.max_size, largest) // self.stride * self.stride)
        return ResizeSpec(
            max_size=top, min_size=min(self.min_size, top), stride=self.stride, max_pixels=self.max_pixels
        )

    def as_dict(self) -> dict[str, int]:
        """The spec as a ``BagelConfig`` transform dict."""
        return {key: getattr(self, key) for key in TRANSFORM_KEYS}

    def _round(self, value: float) -> int:
        return max(self.stride, int(round(value / self.stride) * self.stride))

    def _scaled(self, width: int, height: int, scale: float) -> tuple[int, int]:
        return self._round(round(width * scale)), self._round(round(height * scale))

    def target_size(self, width: int, height: int) -> tuple[int, int]:
        """The ``(width, height)`` an image of the given size is resized to."""
        scale = min(self.max_size / max(width, height), 1.0)
        scale = max(scale, self.min_size / min(width, height))
        new_w, new_h = self._scaled(width, height, scale)
        if new_w * new_h > self.max_pixels:
            new_w, new_h = self._scaled(new_w, new_h, self.max_pixels / (new_w * new_h))
        if max(new_w, new_h) > self.max_size:
            new_w, new_h = self._scaled(new_w, new_h, self.max_size / max(new_w, new_h))
        return new_w, new_h


def to_rgb(image: Any) -> Image.Image:
    """A PIL RGB image; transparent images are composited over white (as the official inferencer does)."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ImageInputError(
                f"array image of dtype {image.dtype} and shape {image.shape} is not supported; pass a uint8 "
                "(H, W, 3) RGB array or a PIL image."
            )
        return Image.fromarray(image)
    if not isinstance(image, Image.Image):
        raise ImageInputError(f"image of type {type(image).__name__} is not supported; pass a PIL image.")
    if image.mode == "RGBA" or image.info.get("transparency") is not None:
        rgba = image.convert("RGBA")
        white = Image.new("RGB", rgba.size, (255, 255, 255))
        white.paste(rgba, mask=rgba.split()[3])
        return white
    return image.convert("RGB")


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL RGB → float ``[3, H, W]`` in ``[-1, 1]``."""
    array = np.asarray(image, dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous() * 2.0 - 1.0


def tensor_to_pil(pixels: torch.Tensor) -> Image.Image:
    """Float ``[3, H, W]`` in ``[-1, 1]`` → PIL RGB, clamped and truncated to uint8 as the official decode does."""
    x = ((pixels.detach().float().cpu() * 0.5 + 0.5).clamp(0, 1) * 255.0).to(torch.uint8)
    return Image.fromarray(x.permute(1, 2, 0).numpy())


class ImageTransform:
    """Resize + normalise for one path (ViT or VAE), built from a ``BagelConfig`` transform dict."""

    def __init__(self, spec: Mapping[str, Any] | ResizeSpec, name: str = "transform") -> None:
        self.spec = spec if isinstance(spec, ResizeSpec) else ResizeSpec.from_mapping(spec, name)

    def resize(self, image: Any, size: tuple[int, int] | None = None) -> Image.Image:
        """Resize to ``size`` = ``(width, height)`` if given, else to the spec's target size."""
        rgb = to_rgb(image)
        width, height = size if size is not None else self.spec.target_size(*rgb.size)
        if (width, height) == rgb.size:
            return rgb
        return rgb.resize((width, height), Image.Resampling.BICUBIC)

    def __call__(self, image: Any, size: tuple[int, int] | None = None) -> torch.Tensor:
        """Resized, normalised ``[3, H, W]`` tensor in ``[-1, 1]``."""
        return pil_to_tensor(self.resize(image, size))


def matched_vit_size(latent_grid: tuple[int, int], vit_patch: int) -> tuple[int, int]:
    """``(width, height)`` of the ViT input whose patch grid equals a latent token grid ``(rows, cols)``.

    Used for the SFT distillation loss (SPEC Stage 1): the ViT input is resized to ``(H_vae/16)·14 × (W_vae/16)·14``
    so the ViT and the clean VAE block of one image have the same number of tokens.
    """
    rows, cols = latent_grid
    return cols * vit_patch, rows * vit_patch
