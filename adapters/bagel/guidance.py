"""Classifier-free guidance for Bagel's image-conditioned generation (editing), as the official sampler applies it.

Three contexts are evaluated at each denoising step (reference §5.7) — the full (conditional) context → ``v``, a
*text-uncond* context → ``v_text_uncond`` and an *image-uncond* context → ``v_image_uncond`` — batched into one
forward (:mod:`.denoise`). What the two unconditional contexts hold is :attr:`BagelGuidance.uncond_contexts`:

- ``"clear"`` (default; the CLEAR reference's ``inferencer.py``, ``interleave_reason_tool_condition``):
  text-uncond = everything but the model's own think segment (system prompt, images, question); image-uncond =
  every text, the think segment included, and no image block. After a *latent* bridge (``bridge``,
  ``degraded_latent``) text-uncond is the whole context and so is image-uncond (the reference's
  ``edit_cfg_img_context = deepcopy(gen_context)``), so a second restore (K ≥ 2) is image-guided against a context
  that holds every image; after a *ViT* bridge (``decode_reencode``) image-uncond gains the restored ViT block.
- ``"official"`` (official Bagel's ``interleave_inference``): text-uncond = system prompt and images (no question,
  no generated text); image-uncond = system prompt and question only (no think text, no image). After a bridge
  text-uncond is the whole context and image-uncond is unchanged.

Rules of the official sampler (``Bagel.generate_image`` / ``_forward_flow``), restated:

- guidance runs only while ``lo < t <= hi`` (the ``interval``); outside it both scales count as 1;
- nothing is guided unless the text scale exceeds 1; the image scale acts only when it also exceeds 1;
- ``text_channel``: ``v_txt = v_tu + s_text·(v − v_tu)`` is rescaled per token so its norm does not exceed ``v``'s
  (ratio clamped to ``[renorm_min, 1]``), then ``v_iu + s_image·(v_txt − v_iu)`` when the image scale acts;
- ``global`` / ``channel``: both guidance terms first, ``v' = v_iu + s_image·(v_tu + s_text·(v − v_tu) − v_iu)``,
  then ``v'`` is rescaled by ``‖v‖/‖v'‖`` clamped to ``[renorm_min, 1]``, the norms taken over the whole image
  (``global``) or per token (``channel``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import torch
from torch import Tensor

from clear_plugins.errors import ClearConfigError

RENORM_TYPES: Final[tuple[str, ...]] = ("global", "channel", "text_channel")
"""The official renormalisation modes."""
UNCOND_CONTEXTS: Final[tuple[str, ...]] = ("clear", "official")
"""What the unconditional branches hold: CLEAR's inferencer or official Bagel's (module docstring)."""
NORM_EPS: Final[float] = 1e-8
"""Added to the guided norm before dividing (the official sampler's value)."""


@dataclass
class BagelGuidance:
    """Classifier-free guidance of a restore; defaults are Bagel's image-editing settings (reference §5.7).

    Pass ``None`` instead of a ``BagelGuidance`` to sample without guidance (RL rollouts, SPEC Stage 2).
    """

    text_scale: float = field(
        default=4.0,
        metadata={
            "help": "Text CFG scale (Bagel editing default 4.0, reference §5.7). Guidance runs only when it "
            "exceeds 1; 1.0 disables all guidance."
        },
    )
    image_scale: float = field(
        default=2.0,
        metadata={
            "help": "Image CFG scale (Bagel editing default 2.0, reference §5.7); acts only when it exceeds 1 "
            "and the text scale does too (the official rule)."
        },
    )
    interval: tuple[float, float] = field(
        default=(0.0, 1.0),
        metadata={
            "help": "Guidance runs for lo < t <= hi (t = 1 noise, 0 clean). Bagel editing: (0, 1]; text-to-image "
            "and the CLEAR reference's tool-call inferencer use (0.4, 1] (reference §5.7)."
        },
    )
    renorm_type: str = field(
        default="text_channel",
        metadata={
            "help": "Norm rescaling of the guided velocity: 'global', 'channel' (per token) or 'text_channel' "
            "(per token, text term only; Bagel's editing default, reference §5.7). The CLEAR reference's "
            "tool-call inferencer uses 'global'."
        },
    )
    renorm_min: float = field(
        default=0.0,
        metadata={"help": "Lower clamp of the renorm ratio ‖v‖/‖v_guided‖ (upper clamp is 1); editing: 0."},
    )
    uncond_contexts: str = field(
        default="clear",
        metadata={
            "help": "What the unconditional branches hold (module docstring): 'clear' follows the CLEAR reference's "
            "inferencer (text-uncond drops the model's think segment, image-uncond the image blocks); 'official' "
            "follows official Bagel (text-uncond also drops the question, image-uncond holds only the system "
            "prompt and question)."
        },
    )

    def __post_init__(self) -> None:
        """Check each field; errors name the field, its value and the fix."""
        for name in ("text_scale", "image_scale"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 1.0):
                raise ClearConfigError(
                    f"{name}={value!r} is invalid: pass a finite number >= 1 (Bagel guides only with scales "
                    "above 1; 1.0 switches this term off)."
                )
        lo, hi = (float(v) for v in self.interval)
        if not 0.0 <= lo <= hi <= 1.0:
            raise ClearConfigError(
                f"interval={self.interval!r} is invalid: pass (lo, hi) with 0 <= lo <= hi <= 1 (guidance runs "
                "for lo < t <= hi)."
            )
        self.interval = (lo, hi)
        if self.renorm_type not in RENORM_TYPES:
            raise ClearConfigError(
                f"renorm_type={self.renorm_type!r} is unknown: use one of {', '.join(RENORM_TYPES)}."
            )
        if not 0.0 <= self.renorm_min <= 1.0:
            raise ClearConfigError(f"renorm_min={self.renorm_min!r} is invalid: pass a number in [0, 1].")
        if self.uncond_contexts not in UNCOND_CONTEXTS:
            raise ClearConfigError(
                f"uncond_contexts={self.uncond_contexts!r} is unknown: use one of {', '.join(UNCOND_CONTEXTS)}."
            )

    @property
    def branch_names(self) -> tuple[str, str]:
        """The :class:`~.context.BagelContext` attributes of the text-uncond and image-uncond branches."""
        if self.uncond_contexts == "official":
            return "official_text_uncond", "official_image_uncond"
        return "text_uncond", "image_uncond"

    @classmethod
    def coerce(cls, value: BagelGuidance | Mapping[str, Any] | None) -> BagelGuidance | None:
        """``None`` (no guidance), a ``BagelGuidance``, or a mapping of its fields."""
        if value is None or isinstance(value, cls):
            return value
        if isinstance(value, Mapping):
            return cls(**value)
        raise ClearConfigError(
            f"guidance of type {type(value).__name__} is not supported by Bagel; pass None, a BagelGuidance "
            "or a dict of its fields."
        )

    def scales_at(self, t: float) -> tuple[float, float]:
        """``(text_scale, image_scale)`` in force at time ``t``: the configured ones inside the interval, else 1."""
        lo, hi = self.interval
        if lo < t <= hi:
            return self.text_scale, self.image_scale
        return 1.0, 1.0


def _norm(x: Tensor, per_token: bool) -> Tensor:
    return torch.linalg.vector_norm(x, dim=-1, keepdim=True) if per_token else torch.linalg.vector_norm(x)


def _renormed(guided: Tensor, reference: Tensor, per_token: bool, renorm_min: float) -> Tensor:
    """``guided`` scaled by ``‖reference‖ / (‖guided‖ + eps)`` clamped to ``[renorm_min, 1]``."""
    ratio = _norm(reference, per_token) / (_norm(guided, per_token) + NORM_EPS)
    return guided * ratio.clamp(min=renorm_min, max=1.0)


def guided_velocity(
    v: Tensor,
    v_text_uncond: Tensor | None,
    v_image_uncond: Tensor | None,
    *,
    text_scale: float,
    image_scale: float,
    renorm_type: str = "text_channel",
    renorm_min: float = 0.0,
) -> Tensor:
    """Combine the three branch velocities ``[tokens, dim]`` as the official sampler does (module docstring).

    ``v_text_uncond`` is needed when ``text_scale > 1``, ``v_image_uncond`` when both scales exceed 1; with
    ``text_scale <= 1`` ``v`` is returned unchanged. Computed in fp32, returned in ``v.dtype``.
    """
    if text_scale <= 1.0:
        return v
    use_image = image_scale > 1.0
    if v_text_uncond is None or (use_image and v_image_uncond is None):
        raise ClearConfigError(
            "guided_velocity needs v_text_uncond when text_scale > 1 and v_image_uncond when image_scale > 1 too; "
            "evaluate those branches or lower the scales to 1."
        )
    cond, text_u = v.float(), v_text_uncond.float()
    text_guided = text_u + text_scale * (cond - text_u)
    if renorm_type == "text_channel":
        text_guided = _renormed(text_guided, cond, per_token=True, renorm_min=renorm_min)
        if not use_image:
            return text_guided.to(v.dtype)
        image_u = v_image_uncond.float()
        return (image_u + image_scale * (text_guided - image_u)).to(v.dtype)
    if renorm_type not in RENORM_TYPES:
        raise ClearConfigError(
            f"renorm_type={renorm_type!r} is unknown: use one of {', '.join(RENORM_TYPES)}."
        )
    guided = text_guided
    if use_image:
        image_u = v_image_uncond.float()
        guided = image_u + image_scale * (text_guided - image_u)
    return _renormed(guided, cond, per_token=renorm_type == "channel", renorm_min=renorm_min).to(v.dtype)
