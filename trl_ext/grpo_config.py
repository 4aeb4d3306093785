"""``InterleavedGRPOConfig``: TRL's ``GRPOConfig`` plus CLEAR's Stage-2 settings (Sec. 3.4, App. A; SPEC Stage 2).

Defaults are the paper's: G = 4 trajectories per prompt, λ = 0.3, lr 1e-6, ε = 0.2, TRL's ``loss_type="grpo"``
(Eq. 8: per-sequence token mean, group-normalised advantages), restores over 30 grid points with the constant
σ = 0.3 SDE. ``preset="reference"`` switches to the authors' published script
(``scripts/train_reason_interleave_grpo.sh``): G 8, lr 5e-6, β 0.04, image weight 0.5, σ 0.3 constant, 20 SDE grid
points (``--num_timesteps_train 20``), ``loss_type="dr_grpo"`` with ``scale_rewards="none"``
(``--scale_rewards False``), round-robin step selection and the decision reward off.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Final

from trl import GRPOConfig

from clear_plugins.adapters.base import PARAMETER_GROUPS
from clear_plugins.bridge import BridgeMode
from clear_plugins.errors import ClearConfigError
from clear_plugins.flow import SDEConfig

PRESETS: Final[tuple[str, ...]] = ("paper", "reference")
STEP_SELECTIONS: Final[tuple[str, ...]] = ("uniform", "round_robin", "weighted")
IMAGE_LOSS_STEPS: Final[tuple[str, ...]] = ("one", "all")
GRPO_BRIDGE_MODES: Final[tuple[str, ...]] = (BridgeMode.BRIDGE.value, BridgeMode.DECODE_REENCODE.value)

REFERENCE_PRESET: Final[dict[str, Any]] = {
    "num_generations": 8,
    "learning_rate": 5e-6,
    "beta": 0.04,
    "image_loss_weight": 0.5,
    "sde_sigma_schedule": "constant",
    "sde_sigma": 0.3,
    "num_timesteps": 20,
    "loss_type": "dr_grpo",
    "scale_rewards": "none",
    "step_selection": "round_robin",
    "decision_reward": False,
}
"""The published script's values (scripts/train_reason_interleave_grpo.sh of the CLEAR repository)."""


@dataclass
class InterleavedGRPOConfig(GRPOConfig):
    """Configuration of :class:`~clear_plugins.trl_ext.grpo.InterleavedGRPOTrainer` (module docstring).

    Every ``GRPOConfig`` field keeps its meaning; ``max_completion_length`` bounds the text tokens of a
    trajectory (both segments together), ``temperature`` and ``top_p`` its text sampling.
    """

    preset: str = field(
        default="paper",
        metadata={
            "help": "'paper' (Sec. 3.4 / SPEC defaults) or 'reference' (the authors' published script: G 8, lr 5e-6, "
            "beta 0.04, image weight 0.5, sigma 0.3, 20 grid points, dr_grpo, round-robin, decision reward off). "
            "The preset overrides those fields."
        },
    )
    num_generations: int | None = field(
        default=4, metadata={"help": "G: trajectories per prompt (Sec. 3.4 / Table 13: 4)."}
    )
    learning_rate: float = field(default=1e-6, metadata={"help": "Learning rate (Sec. 4.1: 1e-6)."})
    loss_type: str = field(
        default="grpo",
        metadata={"help": "TRL's text loss type; 'grpo' is the paper's Eq. 8 (see GRPOConfig.loss_type)."},
    )
    image_loss_weight: float = field(
        default=0.3,
        metadata={"help": "λ in L = L_GRPO(text) + λ·L_FlowGRPO(image) (Sec. 3.4: 0.3); 0 trains text only."},
    )
    image_epsilon: float | None = field(
        default=None,
        metadata={"help": "Clip range of the image ratio; None uses `epsilon` (ε = 0.2, Sec. 3.4)."},
    )
    num_timesteps: int = field(
        default=30,
        metadata={
            "help": "Restore grid points in rollouts, t=1 to t=0 (Sec. 4.1: 30); num_timesteps−1 SDE steps are "
            "recorded."
        },
    )
    timestep_shift: float = field(
        default=3.0, metadata={"help": "Grid shift s·t/(1+(s−1)·t) of rollouts (Bagel/SPEC: 3.0)."}
    )
    sde_sigma_schedule: str = field(
        default="constant",
        metadata={
            "help": "σ_t of the rollout SDE (App. A.2): 'constant' (sde_sigma; the reference's 0.3) or 'flow_grpo' "
            "(sde_a·sqrt(t/(1−t)))."
        },
    )
    sde_sigma: float = field(default=0.3, metadata={"help": "Constant σ_t (the reference: 0.3)."})
    sde_a: float = field(default=0.7, metadata={"help": "a of Flow-GRPO's a·sqrt(t/(1−t)) (0.7)."})
    step_selection: str = field(
        default="uniform",
        metadata={
            "help": "Which recorded step a trajectory's image loss uses: 'uniform' (Sec. 3.4: one step at "
            "random), 'round_robin' (the reference's default) or 'weighted' (middle steps favoured)."
        },
    )
    image_loss_steps: str = field(
        default="one",
        metadata={
            "help": "'one': one chosen step per trajectory (Sec. 3.4); 'all': every step (the naive baseline of "
            "App. H.1, N noise blocks per forward)."
        },
    )
    bridge_mode: str = field(
        default="bridge",
        metadata={
            "help": "How the restored latent enters the context: 'bridge' (Sec. 3.3) or 'decode_reencode' (the "
            "Table 3 ablation: decode, ViT re-encode; no gradient from text into generation)."
        },
    )
    force_restore: bool = field(
        default=False,
        metadata={
            "help": "Restore after the first text segment of every rollout even when the model did not emit "
            "<image_restore> (warm-up from a model that never restores; always-restore ablation). Forced "
            "trajectories are logged as such; their text is unchanged, so the decision reward sees no request."
        },
    )
    decision_reward: bool = field(
        default=True,
        metadata={
            "help": "Use R_dec when the trainer builds the default rewards (Sec. 3.4; off in the reference script)."
        },
    )
    judge_fallback: bool = field(
        default=True,
        metadata={
            "help": "Wrap a given judge in FallbackJudge over the rule judge, so a judge outage falls back to rules "
            "instead of stopping training."
        },
    )
    trainable_groups: list[str] | None = field(
        default=None,
        metadata={
            "help": "Parameter groups to train (understanding, generation, bridge, vision, vae); None: the "
            "adapter's default (LLM experts + connectors; SigLIP, VAE and position tables frozen), as in SFT."
        },
    )
    image_column: str = field(
        default="degraded_image",
        metadata={
            "help": "Dataset column of the degraded image (a path or a PIL image; training-row schema)."
        },
    )
    question_column: str = field(default="question", metadata={"help": "Dataset column of the question."})
    image_root: str | None = field(
        default=None, metadata={"help": "Folder that relative image paths are resolved against."}
    )
    system_prompt: str | None = field(
        default=None,
        metadata={
            "help": "System prompt text; None uses the shipped one (a row's system_prompt column wins)."
        },
    )

    def __post_init__(self) -> None:
        """Apply the preset, then TRL's checks, then ours (errors name the field, the value and the fix)."""
        if self.preset not in PRESETS:
            raise ClearConfigError(f"preset={self.preset!r} is not one of {PRESETS}.")
        if self.preset == "reference":
            defaults = {f.name: f.default for f in dataclasses.fields(self)}
            for name, value in REFERENCE_PRESET.items():
                if getattr(self, name) == defaults[name]:  # a value the user set explicitly wins
                    setattr(self, name, value)
        super().__post_init__()
        self._check_choices()
        if not (self.image_loss_weight >= 0):
            raise ClearConfigError(
                f"image_loss_weight={self.image_loss_weight!r} must be >= 0 (0 trains the text loss only)."
            )
        if self.image_epsilon is not None and not self.image_epsilon > 0:
            raise ClearConfigError(f"image_epsilon={self.image_epsilon!r} must be > 0 or None (use epsilon).")
        if self.num_generations is None or self.num_generations < 2:
            raise ClearConfigError(
                f"num_generations={self.num_generations!r}: group-normalised advantages need G >= 2 (paper: 4)."
            )
        self.sde_config()  # validates the grid and σ with named errors

    def _check_choices(self) -> None:
        unknown = [g for g in self.trainable_groups or () if g not in PARAMETER_GROUPS]
        if unknown:
            raise ClearConfigError(
                f"trainable_groups has unknown group(s) {unknown}; use {PARAMETER_GROUPS}."
            )
        for name, allowed in (
            ("step_selection", STEP_SELECTIONS),
            ("image_loss_steps", IMAGE_LOSS_STEPS),
            ("bridge_mode", GRPO_BRIDGE_MODES),
        ):
            if getattr(self, name) not in allowed:
                raise ClearConfigError(f"{name}={getattr(self, name)!r} is not one of {allowed}.")

    def sde_config(self) -> SDEConfig:
        """The rollout SDE: schedule, σ, a, grid points and shift."""
        return SDEConfig(
            sigma_schedule=self.sde_sigma_schedule,
            sigma=self.sde_sigma,
            a=self.sde_a,
            num_timesteps=self.num_timesteps,
            shift=self.timestep_shift,
        )

    @property
    def image_clip(self) -> float:
        """ε of the image ratio."""
        return self.epsilon if self.image_epsilon is None else self.image_epsilon
