"""``InterleavedGRPOTrainer``: Stage 2 of CLEAR, text and image optimised together through the bridge (Sec. 3.4).

A thin subclass of TRL's ``GRPOTrainer`` overriding three methods (``shared/reference/trl-subclassing.md``):

- ``_generate_and_score_completions``: G rollouts per prompt through the adapter (:mod:`.rollout`; one shared
  prefill), TRL's own ``_calculate_rewards``, group advantages (:func:`.grpo_losses.group_advantages`, shared by
  both losses), one chosen step per restored trajectory (:mod:`.step_selection`), the dict TRL's loss reads;
- ``_get_per_token_logps_and_entropies``: one packed forward per batch through ``adapter.pack_rollouts`` +
  ``adapter.training_forward`` — the rollout's context replayed, the chosen step's ``x_t`` as a noise block — giving
  the text log-probs TRL clips and the velocities the image loss needs;
- ``_compute_loss``: TRL's text loss (any ``loss_type``; the paper's Eq. 8 is ``"grpo"``) + λ·Flow-GRPO image loss
  (:func:`.grpo_losses.flow_grpo_loss`), a non-finite loss skipped with a warning.

β > 0 works for a model built in memory: the reference is a copy made before TRL patches the model, wrapped by a
second adapter (TRL would rebuild it from ``_name_or_path``). The trainer talks to the model only through the
adapter contract; it imports no backbone.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
from trl import GRPOTrainer

from clear_plugins.adapters.base import BackboneAdapter, RolloutSample
from clear_plugins.errors import ClearConfigError, ImageInputError
from clear_plugins.hub_cards.trainer import ClearModelCardMixin
from clear_plugins.rewards import RewardConfig, make_reward_functions
from clear_plugins.tags import sampling_vocabulary, tag_mode

from . import grpo_batch
from .grpo_config import InterleavedGRPOConfig
from .grpo_losses import flow_grpo_loss, group_advantages, image_log_probs
from .model_utils import (
    frozen_modules,
    routed_forward,
    select_trainable,
    set_frozen_eval,
    trainable_names,
    zero_loss,
)
from .rollout import RolloutOptions, Trajectory, rollout_group, rollout_seed
from .sft import find_adapter
from .step_selection import StepSelector

logger = logging.getLogger(__name__)

STATE_FILE = "clear_grpo_state.json"
"""Checkpoint file holding the step selector's state, so a resumed run chooses the same steps."""


def _with_fallback(judge: Any, enabled: bool) -> Any:
    """``judge`` wrapped so that an outage falls back to the rule judge (unless already a rule/fallback judge)."""
    from clear_plugins.rewards.judge_rules import RuleJudge
    from clear_plugins.rewards.judges import FallbackJudge, JudgeConfig, build_judge

    if judge is None:
        return build_judge(JudgeConfig(fallback=enabled))
    if not enabled or isinstance(judge, RuleJudge | FallbackJudge):
        return judge
    return FallbackJudge(judge, RuleJudge())


class InterleavedGRPOTrainer(ClearModelCardMixin, GRPOTrainer):
    """GRPO over interleaved generate-then-answer trajectories (module docstring).

    Args:
        model: the policy (a backbone an adapter is registered for).
        reward_funcs: TRL reward functions; ``None`` builds accuracy/format/decision (0.75/0.1/0.15, the decision
            reward per ``args.decision_reward``) with ``judge`` (one judge call per completion).
        args: :class:`~.grpo_config.InterleavedGRPOConfig`.
        train_dataset: rows with ``prompt``, the image column, the question column and ``answer``.
        processing_class: the tokenizer.
        adapter: the backbone adapter (default: found through the registered plugins).
        judge: the accuracy judge for the default rewards (default: ``build_judge()``); wrapped in a fallback to
            the rule judge when ``args.judge_fallback``.
        ref_model / ref_adapter: the KL reference for β > 0 (default: a copy of ``model`` made here).
    """

    clear_stage = "grpo"

    def __init__(
        self,
        model: Any,
        reward_funcs: Any = None,
        args: InterleavedGRPOConfig | None = None,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        processing_class: Any = None,
        *,
        adapter: BackboneAdapter | None = None,
        judge: Any = None,
        ref_model: Any = None,
        ref_adapter: BackboneAdapter | None = None,
        callbacks: Any = None,
        optimizers: tuple = (None, None),
    ) -> None:
        if args is None or not isinstance(args, InterleavedGRPOConfig):
            raise ClearConfigError(
                "args must be an InterleavedGRPOConfig (TRL's GRPOConfig plus CLEAR's fields)."
            )
        if processing_class is None:
            raise ClearConfigError("processing_class must be the model's tokenizer.")
        adapter = adapter if adapter is not None else find_adapter(model, processing_class)
        if reward_funcs is None:
            reward_config = RewardConfig() if args.decision_reward else RewardConfig(decision_weight=0.0)
            judge = _with_fallback(judge, args.judge_fallback)
            reward_funcs = make_reward_functions(reward_config, judge)
            if args.reward_weights is None:
                args.reward_weights = reward_config.reward_weights
        select_trainable(model, trainable_names(adapter, model, args.trainable_groups))
        beta = args.beta
        if beta and ref_model is None and ref_adapter is None:
            ref_model = copy.deepcopy(model)  # before TRL patches model.forward (trl-subclassing.md)
        args.beta = 0.0  # TRL would rebuild the reference from config._name_or_path
        try:
            super().__init__(
                model=model,
                reward_funcs=reward_funcs,
                args=args,
                train_dataset=train_dataset,
                eval_dataset=eval_dataset,
                processing_class=processing_class,
                callbacks=callbacks,
                optimizers=optimizers,
            )
        finally:
            args.beta = beta
        self.beta = beta
        self.adapter = adapter
        self.ref_adapter = None
        if beta:
            if ref_adapter is None:
                ref_model = self.accelerator.prepare_model(ref_model.eval(), evaluation_mode=True)
                ref_adapter = type(adapter)(ref_model, processing_class)
            self.ref_model, self.ref_adapter = ref_adapter.model, ref_adapter
        self._frozen = frozen_modules(adapter, model)
        self.sde = args.sde_config()
        self.selector = StepSelector(args.step_selection, seed=args.seed)
        self._forward: dict[str, Any] = {}

    @property
    def _pad_id(self) -> int:
        pad = self.processing_class.pad_token_id
        return int(pad if pad is not None else self.processing_class.eos_token_id)

    # -- rollouts ---------------------------------------------------------------------------------------------
    def _load_image(self, value: Any) -> Any:
        from PIL import Image

        if isinstance(value, str | Path):
            path = Path(value)
            if not path.is_absolute() and self.args.image_root is not None:
                path = Path(self.args.image_root) / path
            try:
                with Image.open(path) as image:
                    return image.convert("RGB")
            except OSError as exc:
                raise ImageInputError(
                    f"cannot read the image {str(path)!r} of a training row ({exc.__class__.__name__}); fix or drop "
                    "the row (clear-plugins train grpo skips such rows up front)."
                ) from None
        if isinstance(value, dict) and value.get("bytes") is not None:  # datasets' Image feature, undecoded
            import io

            return Image.open(io.BytesIO(value["bytes"])).convert("RGB")
        return value

    def _rollout_options(self, row: dict[str, Any]) -> RolloutOptions:
        args = self.args
        return RolloutOptions(
            max_new_tokens=args.max_completion_length,
            temperature=args.temperature,
            top_p=args.top_p,
            sde=self.sde,
            bridge_mode=args.bridge_mode,
            force_restore=args.force_restore,
            system_prompt=row.get("system_prompt") or args.system_prompt,
            placeholder_id=self._pad_id,
        )

    def _rollouts(self, inputs: list[dict[str, Any]], group: int) -> tuple[list[Trajectory], float]:
        """Rollouts of the local rows; returns trajectories (in row order) and the prefill time.

        TRL lays the generation batch out as each prompt repeated ``group`` times, split across processes in
        order, so global row ``i`` belongs to prompt ``i // group``; each run of local rows of one prompt shares
        one prefill (a group cut by a process boundary is prefilled on both sides). Seeds come from the global row
        index, so every rollout of a step differs.
        """
        trajectories, prefill = [], 0.0
        offset = self.accelerator.process_index * len(inputs)
        runs: dict[int, list[int]] = {}
        for i in range(len(inputs)):
            runs.setdefault((offset + i) // group, []).append(offset + i)
        was_training = self.adapter.model.training
        self.adapter.model.eval()
        try:
            for rows in runs.values():
                row = inputs[rows[0] - offset]
                result = rollout_group(
                    self.adapter,
                    self._load_image(row[self.args.image_column]),
                    str(row[self.args.question_column]),
                    num_generations=len(rows),
                    options=self._rollout_options(row),
                    seeds=[rollout_seed(self.args.seed, self.state.global_step, 0, i) for i in rows],
                )
                trajectories.extend(result.trajectories)
                prefill += result.prefill_seconds
        finally:
            self.adapter.model.train(was_training)
        return trajectories, prefill

    def _chosen(self, trajectory: Trajectory) -> RolloutSample:
        """The trajectory's replay record with the steps its image loss uses (none when λ = 0)."""
        sample = trajectory.sample
        if not trajectory.restored or not self.args.image_loss_weight:
            return sample
        steps = trajectory.restore.steps or []
        if self.args.image_loss_steps == "all":
            chosen = list(steps)
        else:
            chosen = [steps[self.selector.choose(len(steps))]]
        return RolloutSample(sample.prompt, sample.segments, sample.restored, sample.bridge_mode, chosen)

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        """Rollouts, rewards, shared advantages and the loss dict (module docstring)."""
        mode = "train" if self.model.training else "eval"
        group = self.num_generations if mode == "train" else self.num_generations_eval
        tick = time.perf_counter()
        trajectories, prefill = self._rollouts(inputs, group)
        rollout_seconds = time.perf_counter() - tick
        prompts = [row["prompt"] for row in inputs]
        completions = [t.text for t in trajectories]
        rewards_per_func = self._calculate_rewards(
            inputs, prompts, completions, [t.completion_ids for t in trajectories]
        )
        weights = self.reward_weights.to(rewards_per_func.device)
        rewards = (rewards_per_func * weights).nansum(dim=1)
        rewards[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan
        advantages = group_advantages(rewards, group, self.scale_rewards)
        local = slice(
            self.accelerator.process_index * len(inputs), (self.accelerator.process_index + 1) * len(inputs)
        )
        samples = [self._chosen(t) for t in trajectories]
        out = grpo_batch.trl_inputs(
            trajectories, samples, advantages[local], self._pad_id, self.accelerator.device
        )
        out["num_items_in_batch"] = self.accelerator.gather(out["completion_mask"].sum()).sum()
        if self.beta:
            with torch.no_grad():
                out["ref_per_token_logps"] = self._logps(self.ref_adapter, out, False)[0].detach()
        self._log_rollouts(
            mode, trajectories, rewards_per_func, rewards, advantages, rollout_seconds, prefill
        )
        return out

    def _log_rollouts(
        self, mode, trajectories, rewards_per_func, rewards, advantages, seconds, prefill
    ) -> None:
        metrics = self._metrics[mode]
        for i, name in enumerate(self.reward_func_names):
            metrics[f"rewards/{name}/mean"].append(torch.nanmean(rewards_per_func[:, i]).item())
        metrics["reward"].append(torch.nanmean(rewards).item())
        metrics["advantage_abs_mean"].append(advantages.abs().mean().item())
        restored = [t for t in trajectories if t.restored]
        metrics["trigger_rate"].append(
            self.accelerator.gather(torch.tensor([len(restored) / len(trajectories)])).mean().item()
        )
        metrics["forced_restore_rate"].append(sum(t.forced for t in trajectories) / len(trajectories))
        metrics["completions/mean_length"].append(
            sum(sum(t.completion_mask) for t in trajectories) / len(trajectories)
        )
        log_probs = [s.log_prob for t in restored for s in (t.restore.steps or [])]
        if log_probs:
            values = torch.cat([v.float().reshape(-1) for v in log_probs])
            metrics["sde/log_prob_mean"].append(values.mean().item())
            metrics["sde/log_prob_std"].append(values.std().item() if values.numel() > 1 else 0.0)
        metrics["time/rollout"].append(seconds)
        metrics["time/prefill"].append(prefill)
        metrics["time/restore"].append(sum(t.seconds.get("restore", 0.0) for t in trajectories))

    # -- training forward and loss -------------------------------------------------------------------------------
    def _logps(
        self, adapter: BackboneAdapter, inputs: dict[str, Any], compute_entropy: bool, model: Any = None
    ) -> tuple:
        """One packed forward of the batch's rollouts: per-token log-probs/entropies ``[B, T]`` and the outputs.

        With ``model`` (the policy as TRL wrapped it) the forward runs through the wrapper, so DDP syncs the
        gradients (trl-subclassing.md's silent-divergence trap)."""
        batch = adapter.pack_rollouts(inputs["rollout_samples"])
        with self.accelerator.autocast():
            if model is None:
                outputs = adapter.training_forward(batch)
            else:
                with routed_forward(model, adapter.training_forward) as routed:
                    outputs = routed(batch)
        logps, entropies = grpo_batch.token_logps(
            outputs,
            inputs["token_positions"],
            inputs["completion_ids"].shape[1],
            temperature=self.temperature,
            vocabulary=sampling_vocabulary(self.processing_class, tag_mode(adapter.model.config)),
            compute_entropy=compute_entropy,
        )
        return logps, entropies, outputs

    def _get_per_token_logps_and_entropies(
        self, model, input_ids, attention_mask, logits_to_keep, *args, **kwargs
    ):
        """The policy's log-probs from the packed rollout replay (TRL's signature; the ids are bookkeeping)."""
        inputs = self._forward["inputs"]
        tick = time.perf_counter()
        set_frozen_eval(self._frozen)
        logps, entropies, outputs = self._logps(
            self.adapter, inputs, kwargs.get("compute_entropy", False), model=model
        )
        self._forward.update(outputs=outputs, logps=logps, seconds=time.perf_counter() - tick)
        return logps, entropies, None

    def _image_loss(self, inputs: dict[str, Any], advantages: torch.Tensor) -> torch.Tensor | None:
        """λ-free Flow-GRPO loss of the injected steps, or ``None`` when the batch has none."""
        steps, rows = grpo_batch.flat_steps(inputs["rollout_samples"])
        if not steps:
            return None
        outputs = self._forward["outputs"]
        device = outputs.image_output.device
        data = grpo_batch.step_tensors(steps, self.sde, device)
        new = image_log_probs(
            data["x_t"],
            outputs.image_output.float(),
            data["x_next"],
            data["t"],
            data["t_next"],
            data["sigma"],
            data["index"],
        )
        row_index = torch.tensor(rows, device=device)
        clip = self.args.image_clip
        result = flow_grpo_loss(
            new,
            data["old"],
            advantages.to(device)[row_index],
            grpo_batch.step_weights(rows, device),
            clip,
            clip,
        )
        mode = "train" if self.model.training else "eval"
        self._metrics[mode]["image/ratio_mean"].append(result.ratio_mean)
        self._metrics[mode]["image/clip_fraction"].append(result.clip_fraction)
        self._metrics[mode]["image/log_ratio_abs_max"].append(result.log_ratio_abs_max)
        self._metrics[mode]["image/loss"].append(float(result.loss.detach()))
        return result.loss

    def _compute_loss(self, model, inputs):
        """TRL's text loss + λ·image loss; a non-finite total skips the micro-step with a warning."""
        self._forward = {"inputs": inputs}
        text_loss = super()._compute_loss(model, inputs)
        mode = "train" if self.model.training else "eval"
        metrics = self._metrics[mode]
        metrics["text/loss"].append(float(text_loss.detach()))
        logps, old, mask = self._forward["logps"], inputs["old_per_token_logps"], inputs["completion_mask"]
        log_ratio = ((logps.detach() - old) * mask).abs()
        metrics["text/log_ratio_abs_max"].append(float(log_ratio.max()) if mask.any() else 0.0)
        metrics["text/ratio_mean"].append(
            float((torch.exp(logps.detach() - old) * mask).sum() / mask.sum().clamp(min=1))
        )
        metrics["time/training_forward"].append(self._forward["seconds"])
        loss = text_loss
        if self.args.image_loss_weight:
            image_loss = self._image_loss(inputs, inputs["advantages"])
            if image_loss is not None:
                scale = self.current_gradient_accumulation_steps if mode == "train" else 1.0
                loss = loss + self.args.image_loss_weight * image_loss / scale
        if not torch.isfinite(loss):
            logger.warning(
                "non-finite GRPO loss (%s) at step %d: this micro-step is skipped.",
                loss.item(),
                self.state.global_step,
            )
            metrics["skipped_nonfinite"].append(1.0)
            return zero_loss(model)
        return loss

    # -- checkpoints --------------------------------------------------------------------------------------------
    def _save_checkpoint(self, model, trial) -> None:
        """TRL's checkpoint (safetensors weights, optimizer, RNG) plus the step selector's state."""
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            folder = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
            (folder / STATE_FILE).write_text(json.dumps(self.selector.state_dict()))

    def _load_rng_state(self, checkpoint: str | None) -> None:
        """Restore RNG states and, when saved, the step selector's (resume chooses the same steps)."""
        super()._load_rng_state(checkpoint)
        path = Path(checkpoint) / STATE_FILE if checkpoint else None
        if path is not None and path.is_file():
            self.selector.load_state_dict(json.loads(path.read_text()))
