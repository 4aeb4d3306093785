"""Configuration of the transformers-native Bagel (BAGEL-7B-MoT) model.

Defaults are the official BAGEL-7B-MoT values (reference ``bagel-checkpoint.md`` §1): a Qwen2.5-7B language model
with Mixture-of-Transformers layers and QK-norm, a 26-layer SigLIP so400m vision tower without head or RoPE, and the
FLUX VAE. ``model_type`` is ``"clear_bagel"`` so it never collides with a future upstream ``bagel``.
"""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any, ClassVar

from transformers import PreTrainedConfig, Qwen2Config, SiglipVisionConfig
from transformers.configuration_utils import SubConfigSpec

from clear_plugins.errors import ClearConfigError
from clear_plugins.tags import check_tag_mode

from .image_transforms import ResizeSpec

MOT_LAYER_MODULE = "Qwen2MoTDecoderLayer"
"""The official ``layer_module`` value: every decoder layer holds an understanding and a generation expert."""

OFFICIAL_LLM_CONFIG: dict[str, Any] = {
    "vocab_size": 152064,
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "hidden_act": "silu",
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0,
    "tie_word_embeddings": False,
    "use_sliding_window": False,
    "sliding_window": 131072,
    "max_window_layers": 28,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "qk_norm": True,
    "layer_module": MOT_LAYER_MODULE,
}
"""``llm_config.json`` of BAGEL-7B-MoT plus the loader's overrides (reference §1.1)."""

OFFICIAL_VIT_CONFIG: dict[str, Any] = {
    "hidden_size": 1152,
    "intermediate_size": 4304,
    "num_hidden_layers": 26,
    "num_attention_heads": 16,
    "num_channels": 3,
    "patch_size": 14,
    "image_size": 980,
    "hidden_act": "gelu_pytorch_tanh",
    "layer_norm_eps": 1e-6,
    "attention_dropout": 0.0,
    "rope": False,
    "vision_use_head": False,
}
"""``vit_config.json`` of BAGEL-7B-MoT after the loader's overrides: 27 − 1 = 26 layers built, no RoPE (§1.2)."""


def flux_vae_config() -> dict[str, Any]:
    """diffusers ``AutoencoderKL`` kwargs of the FLUX VAE (reference §6.3), read from the shipped
    ``resources/flux_vae_config.json`` (the one copy of these numbers; the checkpoint loader reads it too)."""
    text = (
        resources.files(__package__).joinpath("resources", "flux_vae_config.json").read_text(encoding="utf-8")
    )
    return {key: value for key, value in json.loads(text).items() if not key.startswith("_")}


def official_vit_transform() -> dict[str, int]:
    """ViT path sizes of the official inference (reference §5.1): 224–980 px, stride 14, 1,806,336 px."""
    return {"max_size": 980, "min_size": 224, "stride": 14, "max_pixels": 14 * 14 * 9 * 1024}


def official_vae_transform() -> dict[str, int]:
    """VAE path sizes of the official inference (reference §5.1): 512–1024 px, stride 16, 1,806,336 px."""
    return {"max_size": 1024, "min_size": 512, "stride": 16, "max_pixels": 14 * 14 * 9 * 1024}


class BagelConfig(PreTrainedConfig):
    r"""Configuration of :class:`~clear_plugins.adapters.bagel.modeling_bagel.BagelForConditionalGeneration`.

    Args:
        llm_config: the language model, a transformers ``Qwen2Config`` (or its dict). It also carries
            ``qk_norm=True`` and ``layer_module="Qwen2MoTDecoderLayer"`` (the only variant built).
        vit_config: the vision tower, a ``SiglipVisionConfig`` (or its dict); ``num_hidden_layers`` is the number of
            layers actually built (26 for BAGEL-7B-MoT), ``rope`` is False.
        vae_config: kwargs of diffusers ``AutoencoderKL``; defaults to the FLUX VAE.
        latent_patch_size: latent pixels per token side (2 → 2×2×16 = 64-dim tokens).
        max_latent_size: side of the latent position table (64 in the official inference → 64² rows).
        vit_max_num_patch_per_side: side of the ViT position tables (70 → 4,900 rows).
        connector_act: activation of the ViT→LLM connector.
        timestep_shift: shift applied to training timesteps (1.0 = none, the official training value).
        vit_transform / vae_transform: ``{max_size, min_size, stride, max_pixels}`` of each image path.
        vae_sample_posterior: sample the VAE posterior on encode (official); False takes its mean.
        clear_tag_mode: how the trajectory tags are held (:mod:`clear_plugins.tags`): ``"text"`` (plain BPE text,
            as the CLEAR reference; the default) or ``"token"`` (one added token per tag).
    """

    model_type: ClassVar[str] = "clear_bagel"
    sub_configs_defaults: ClassVar[dict[str, SubConfigSpec]] = {
        "llm_config": SubConfigSpec(config_class=Qwen2Config, init_kwargs=OFFICIAL_LLM_CONFIG),
        "vit_config": SubConfigSpec(config_class=SiglipVisionConfig, init_kwargs=OFFICIAL_VIT_CONFIG),
    }

    llm_config: dict | PreTrainedConfig | None = None
    vit_config: dict | PreTrainedConfig | None = None
    vae_config: dict | None = None
    latent_patch_size: int = 2
    max_latent_size: int = 64
    vit_max_num_patch_per_side: int = 70
    connector_act: str = "gelu_pytorch_tanh"
    timestep_shift: float = 1.0
    vit_transform: dict | None = None
    vae_transform: dict | None = None
    vae_sample_posterior: bool = True
    tie_word_embeddings: bool = False
    clear_tag_mode: str = "text"

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        if self.vae_config is None:
            self.vae_config = flux_vae_config()
        if self.vit_transform is None:
            self.vit_transform = official_vit_transform()
        if self.vae_transform is None:
            self.vae_transform = official_vae_transform()
        if getattr(self.llm_config, "qk_norm", None) is None:
            self.llm_config.qk_norm = True
        if getattr(self.llm_config, "layer_module", None) is None:
            self.llm_config.layer_module = MOT_LAYER_MODULE
        if getattr(self.vit_config, "rope", None) is None:
            self.vit_config.rope = False
        self.vit_config.vision_use_head = False
        self._validate()

    def _validate(self) -> None:
        check_tag_mode(self.clear_tag_mode)
        llm, vit = self.llm_config, self.vit_config
        if llm.qk_norm is not True or llm.layer_module != MOT_LAYER_MODULE:
            raise ClearConfigError(
                f"llm_config.qk_norm={llm.qk_norm!r}, llm_config.layer_module={llm.layer_module!r}: only the "
                f"Mixture-of-Transformers variant with QK-norm is built; set qk_norm=True and "
                f"layer_module={MOT_LAYER_MODULE!r}."
            )
        if vit.rope:
            raise ClearConfigError(
                "vit_config.rope=True is not supported; Bagel uses rope=False (learned positions)."
            )
        if llm.hidden_size % 4:
            raise ClearConfigError(
                f"llm_config.hidden_size={llm.hidden_size} must be a multiple of 4 for the 2-D sin-cos tables."
            )
        if vit.image_size // vit.patch_size != self.vit_max_num_patch_per_side:
            raise ClearConfigError(
                f"vit_config.image_size // patch_size = {vit.image_size} // {vit.patch_size} must equal "
                f"vit_max_num_patch_per_side={self.vit_max_num_patch_per_side} (both index the same position grid); "
                f"set vit_config.image_size={self.vit_max_num_patch_per_side * vit.patch_size}."
            )
        self._validate_transform(
            "vit_transform", vit.patch_size, self.vit_max_num_patch_per_side * vit.patch_size
        )
        self._validate_transform(
            "vae_transform", self.latent_downsample, self.max_latent_size * self.latent_downsample
        )

    def _validate_transform(self, name: str, stride: int, largest: int) -> None:
        spec = ResizeSpec.from_mapping(getattr(self, name), name)
        if spec.stride != stride:
            raise ClearConfigError(
                f"{name}.stride={spec.stride} must be {stride} (pixels per token); set it to {stride}."
            )
        if spec.max_size > largest:
            raise ClearConfigError(
                f"{name}.max_size={spec.max_size} exceeds the position table ({largest} px per side); lower it to "
                f"at most {largest} or enlarge the table."
            )

    @property
    def latent_channels(self) -> int:
        """Channels of the VAE latent (16 for FLUX)."""
        return int(self.vae_config.get("latent_channels", 4))

    @property
    def vae_downsample(self) -> int:
        """Image pixels per latent pixel: 2^(number of VAE blocks − 1) (8 for FLUX)."""
        return 2 ** (len(self.vae_config.get("block_out_channels", [64])) - 1)

    @property
    def latent_downsample(self) -> int:
        """Image pixels per latent token side: ``vae_downsample · latent_patch_size`` (16)."""
        return self.vae_downsample * self.latent_patch_size

    @property
    def patch_latent_dim(self) -> int:
        """Width of one latent token: ``latent_patch_size² · latent_channels`` (64)."""
        return self.latent_patch_size**2 * self.latent_channels

    def get_text_config(self, decoder: bool | None = None, encoder: bool | None = None) -> PreTrainedConfig:
        """The language model's config (``llm_config``), used by generation and embedding resizing."""
        return self.llm_config

    @classmethod
    def from_official(
        cls, llm_config: dict[str, Any], vit_config: dict[str, Any], **overrides: Any
    ) -> BagelConfig:
        """Build from the official ``llm_config.json`` / ``vit_config.json`` dicts, applying the official loader's
        overrides: ``qk_norm=True``, ``tie_word_embeddings=False``, ``layer_module="Qwen2MoTDecoderLayer"``,
        ViT ``rope=False`` and ``num_hidden_layers − 1``, and ``max_latent_size=64`` (reference §1).

        A ``vit_max_num_patch_per_side`` override sets the ViT ``image_size`` to match (both index one grid), and
        the official image transforms (unless overridden) are clipped to what the position tables reach.
        """
        llm = {
            k: v
            for k, v in copy.deepcopy(dict(llm_config)).items()
            if k not in ("model_type", "architectures")
        }
        llm.update(qk_norm=True, tie_word_embeddings=False, layer_module=MOT_LAYER_MODULE)
        vit = {
            k: v
            for k, v in copy.deepcopy(dict(vit_config)).items()
            if k not in ("model_type", "architectures")
        }
        if "num_hidden_layers" not in vit:
            raise ClearConfigError(
                "vit_config has no 'num_hidden_layers'; pass the official vit_config.json content (27 layers)."
            )
        vit.update(rope=False, vision_use_head=False, num_hidden_layers=int(vit["num_hidden_layers"]) - 1)
        kwargs: dict[str, Any] = {"max_latent_size": 64, **overrides}
        patch = int(vit.get("patch_size", OFFICIAL_VIT_CONFIG["patch_size"]))
        if "vit_max_num_patch_per_side" in overrides:
            vit["image_size"] = int(overrides["vit_max_num_patch_per_side"]) * patch
        vit_side = int(vit.get("image_size", OFFICIAL_VIT_CONFIG["image_size"])) // patch
        kwargs.setdefault("vit_max_num_patch_per_side", vit_side)
        vae = kwargs.get("vae_config") or flux_vae_config()
        latent_step = 2 ** (len(vae.get("block_out_channels", [64])) - 1) * int(
            kwargs.get("latent_patch_size", 2)
        )
        kwargs.setdefault(
            "vit_transform",
            ResizeSpec.from_mapping(official_vit_transform()).clipped(vit_side * patch).as_dict(),
        )
        kwargs.setdefault(
            "vae_transform",
            ResizeSpec.from_mapping(official_vae_transform())
            .clipped(kwargs["max_latent_size"] * latent_step)
            .as_dict(),
        )
        return cls(llm_config=llm, vit_config=vit, **kwargs)


__all__ = ["BagelConfig", "flux_vae_config"]
