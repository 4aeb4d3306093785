"""Guidance and size presets of a Bagel restore, as data: the values and the reference file each comes from.

- ``clear_eval`` (default): the CLEAR reference's evaluation model class (VLMEvalKit ``BagelInference``): text CFG
  3.0, image CFG 1.5, interval (0.4, 1], ``text_channel`` renorm, ViT images 224–518 px, VAE images 512–1024 px.
  Its grid has the paper's 30 points (App. H); the class itself passes ``num_timesteps=50``.
- ``clear_demo``: the CLEAR reference demo (``demo.py`` → ``inferencer.py``'s
  ``interleave_reason_tool_condition`` defaults): 4.0 / 2.0 / (0.4, 1] / ``global``, 30 points.
- ``bagel_edit``: official Bagel's image-editing defaults (``app.py`` ``edit_image``): 4.0 / 2.0 / (0, 1] /
  ``text_channel``, 50 points, ViT images 224–980 px.

All three shift the grid by 3.0 and use renorm minimum 0. :func:`apply_preset` puts a preset on a
:class:`~.adapter.BagelAdapter` (guidance, shift, image transforms clipped to the model's position tables) and
returns the :class:`~clear_plugins.pipeline.PipelineConfig` fields it sets. Which tokens each guidance branch
holds is not a preset value (see :mod:`.guidance`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from clear_plugins.errors import ClearConfigError

from .guidance import BagelGuidance
from .image_transforms import ImageTransform, ResizeSpec

if TYPE_CHECKING:
    from collections.abc import Mapping


REFERENCE_MAX_PIXELS: Final[int] = 14 * 14 * 9 * 1024
"""``ImageTransform``'s default area cap in both references (1,806,336 px)."""
PAPER_GRID_POINTS: Final[int] = 30
"""Denoising grid points of the paper's inference (App. H)."""


@dataclass(frozen=True)
class BagelPreset:
    """One named set of restore settings (module docstring). Values only; :func:`apply_preset` uses them."""

    name: str = field(metadata={"help": "Preset name."})
    source: str = field(metadata={"help": "Reference file (repository: path) the values come from."})
    text_scale: float = field(metadata={"help": "Text CFG scale (BagelGuidance.text_scale)."})
    image_scale: float = field(metadata={"help": "Image CFG scale (BagelGuidance.image_scale)."})
    interval: tuple[float, float] = field(metadata={"help": "Guidance runs for lo < t <= hi."})
    renorm_type: str = field(metadata={"help": "'global', 'channel' or 'text_channel'."})
    renorm_min: float = field(default=0.0, metadata={"help": "Lower clamp of the renorm ratio."})
    num_steps: int = field(default=PAPER_GRID_POINTS, metadata={"help": "Grid points of a restore."})
    source_num_steps: int = field(
        default=PAPER_GRID_POINTS, metadata={"help": "Grid points the source itself passes (for the record)."}
    )
    timestep_shift: float = field(default=3.0, metadata={"help": "Grid shift s·t/(1+(s−1)·t)."})
    vit_max_size: int = field(default=518, metadata={"help": "Long-side cap of ViT images (px)."})
    vit_min_size: int = field(default=224, metadata={"help": "Short-side floor of ViT images (px)."})
    vae_max_size: int = field(default=1024, metadata={"help": "Long-side cap of VAE images (px)."})
    vae_min_size: int = field(default=512, metadata={"help": "Short-side floor of VAE images (px)."})
    max_pixels: int = field(default=REFERENCE_MAX_PIXELS, metadata={"help": "Area cap of both paths (px)."})

    def guidance(self) -> BagelGuidance:
        """The preset's classifier-free guidance."""
        return BagelGuidance(
            text_scale=self.text_scale,
            image_scale=self.image_scale,
            interval=self.interval,
            renorm_type=self.renorm_type,
            renorm_min=self.renorm_min,
        )

    def as_dict(self) -> dict[str, Any]:
        """Every value, JSON-ready (recorded in the outputs of ``answer`` and ``serve``)."""
        values = asdict(self)
        values["interval"] = list(self.interval)
        return values


PRESETS: Final[Mapping[str, BagelPreset]] = MappingProxyType(
    {
        "clear_eval": BagelPreset(
            name="clear_eval",
            source="haoxiangzhao12138/CLEAR: VLMEvalKit/vlmeval/vlm/bagel/bagel_inference.py (BagelInference)",
            text_scale=3.0,
            image_scale=1.5,
            interval=(0.4, 1.0),
            renorm_type="text_channel",
            source_num_steps=50,
        ),
        "clear_demo": BagelPreset(
            name="clear_demo",
            source="haoxiangzhao12138/CLEAR: demo.py → inferencer.py (interleave_reason_tool_condition defaults)",
            text_scale=4.0,
            image_scale=2.0,
            interval=(0.4, 1.0),
            renorm_type="global",
        ),
        "bagel_edit": BagelPreset(
            name="bagel_edit",
            source="ByteDance-Seed/Bagel: app.py (edit_image defaults, ImageTransform(980, 224, 14))",
            text_scale=4.0,
            image_scale=2.0,
            interval=(0.0, 1.0),
            renorm_type="text_channel",
            num_steps=50,
            source_num_steps=50,
            vit_max_size=980,
        ),
    }
)
"""Every preset by name."""
DEFAULT_PRESET: Final[str] = "clear_eval"
"""The preset ``answer`` and ``serve`` use unless told otherwise."""


def get_preset(name: str) -> BagelPreset:
    """The preset called ``name``; the error lists the known ones."""
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        raise ClearConfigError(
            f"preset={name!r} is unknown; use one of {', '.join(PRESETS)} (default {DEFAULT_PRESET})."
        ) from None


def clipped_spec(max_size: int, min_size: int, stride: int, max_pixels: int, largest: int) -> ResizeSpec:
    """A resize spec whose sides never exceed ``largest`` px (the model's position table), strides kept."""
    return ResizeSpec(max_size, min(min_size, max_size), stride, max_pixels).clipped(largest)


def apply_preset(adapter: Any, preset: str | BagelPreset) -> dict[str, Any]:
    """Put ``preset`` on ``adapter`` and return the pipeline fields it sets (``num_steps``, ``guidance``).

    The image sizes are clipped to what the model's position tables hold (a tiny test model has small tables).
    """
    chosen = get_preset(preset) if isinstance(preset, str) else preset
    config = adapter.model.config
    vit_patch = config.vit_config.patch_size
    adapter.vit_transform = ImageTransform(
        clipped_spec(
            chosen.vit_max_size,
            chosen.vit_min_size,
            vit_patch,
            chosen.max_pixels,
            config.vit_max_num_patch_per_side * vit_patch,
        )
    )
    step = config.latent_downsample
    adapter.vae_transform = ImageTransform(
        clipped_spec(
            chosen.vae_max_size, chosen.vae_min_size, step, chosen.max_pixels, config.max_latent_size * step
        )
    )
    adapter.default_guidance = chosen.guidance()
    adapter.restore_config.timestep_shift = chosen.timestep_shift
    adapter.restore_config.num_timesteps = chosen.num_steps
    return {"num_steps": chosen.num_steps, "guidance": adapter.default_guidance}
