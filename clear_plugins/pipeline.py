"""ClearPipeline: the interleaved restore-then-answer loop, generic over backbone adapters.

For each (degraded image, question) the loop is (Sec. 3.1, Fig. 2)::

    context = adapter.start_context(image, question, system_prompt=...)     # prefill, KV cache kept
    text    = adapter.generate_text(context, stop=["<image_restore>"])       # <think> ... </think> <image_restore>
    if restoration was requested (and fewer than K restores so far):
        latent  = adapter.restore(context, image, num_steps=...)             # denoise in latent space
        context = adapter.bridge(latent, context, mode)                      # bridge | decode_reencode | degraded_latent
        text   += adapter.generate_text(context, ...)                        # continue from the same cache
    answer  = parse(text).answer

There is one loop: the injected model's ``generate(images=...)`` and the exported remote-code model call this
class. Several questions are answered one after another (``__call__`` takes lists); each keeps its own cache.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from clear_plugins.adapters.base import BackboneAdapter, TextSampling
from clear_plugins.bridge import BridgeMode
from clear_plugins.errors import ClearConfigError
from clear_plugins.flow import SDEConfig
from clear_plugins.trajectory import RESTORE_TAG, ParsedTrajectory, parse, system_prompt

DEFAULT_GUIDANCE = "default"
"""``PipelineConfig.guidance`` value meaning the adapter's own inference guidance."""


@dataclass
class PipelineConfig:
    """How :class:`ClearPipeline` answers. Defaults follow the paper's inference setting."""

    num_steps: int = field(
        default=30, metadata={"help": "Denoising time-grid points per restore (Sec. 4.1 and App. H: 30)."}
    )
    bridge_mode: str = field(
        default="bridge",
        metadata={"help": "bridge (Sec. 3.3), decode_reencode or degraded_latent (ablations, Sec. 4.4)."},
    )
    max_restores: int = field(default=1, metadata={"help": "Restores allowed per answer, K (App. D: 1)."})
    max_new_tokens: int = field(default=512, metadata={"help": "Text tokens generated per answer, in total."})
    system_prompt: str | None = field(
        default=None, metadata={"help": "System prompt text; None uses the shipped one (App. D structure)."}
    )
    sampling: TextSampling = field(
        default_factory=TextSampling, metadata={"help": "Text decoding: greedy by default."}
    )
    sde: SDEConfig | None = field(
        default=None, metadata={"help": "Stochastic denoising (RL rollouts, App. A.2); None uses the ODE."}
    )
    guidance: Any = field(
        default=DEFAULT_GUIDANCE,
        metadata={
            "help": "Classifier-free guidance of restores: 'default' uses the adapter's inference guidance (its "
            "`default_guidance` attribute, e.g. Bagel's clear_eval preset CFG; none when it has none), None "
            "samples without guidance (RL rollouts, SPEC Stage 2; the default when `sde` is set), or a "
            "backbone-specific guidance object."
        },
    )
    decode_restored: bool = field(
        default=False, metadata={"help": "Decode each restored latent to a PIL image in the output."}
    )

    def __post_init__(self) -> None:
        """Check each field; errors name the field, its value and the fix."""
        self.bridge_mode = BridgeMode.parse(self.bridge_mode).value
        if self.sde is not None:
            if isinstance(self.guidance, str) and self.guidance == DEFAULT_GUIDANCE:
                self.guidance = (
                    None  # RL rollouts sample without guidance (SPEC Stage 2), so ratios are 1 on-policy
                )
            if self.sde.num_timesteps != self.num_steps:
                raise ClearConfigError(
                    f"num_steps={self.num_steps} but sde.num_timesteps={self.sde.num_timesteps}; both count grid "
                    f"points of the same restore, so set them equal."
                )
        for name, minimum, why in (
            ("num_steps", 2, "a time grid needs two points"),
            ("max_restores", 0, "0 disables restoration"),
            ("max_new_tokens", 1, "at least one token"),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ClearConfigError(f"{name}={value!r} must be an integer >= {minimum} ({why}).")


@dataclass
class PipelineOutput:
    """The answer to one question and how it was reached.

    Attributes:
        answer: the ``<answer>`` content, or ``None`` when the text has none.
        text: the whole generated trajectory text.
        parsed: the parsed trajectory (well-formedness, think segments).
        num_restores: how many times restoration ran.
        restored_images: decoded restored images (only with ``decode_restored=True``).
        restore_results: the adapter's :class:`~clear_plugins.adapters.base.RestoreResult` of each restore.
        seconds: wall-clock time per phase: ``prefill``, ``text``, ``restore``, ``bridge``, ``total``.
        events: the trajectory in order, JSON-ready: ``{"type": "text", "text", "seconds", "stopped_on", "tokens"}`` for each
            generated piece (with its ``tokens`` count) and ``{"type": "restore", "index", "seconds", "bridge_seconds", "bridge_mode",
            "num_steps"}`` for each restore (``num_steps`` is ``None`` for the degraded-latent ablation).
    """

    answer: str | None
    text: str
    parsed: ParsedTrajectory
    num_restores: int
    restored_images: list[Any] = field(default_factory=list)
    restore_results: list[Any] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def triggered(self) -> bool:
        """Whether restoration ran at least once."""
        return self.num_restores > 0

    def to_dict(self) -> dict[str, Any]:
        """The output, JSON-ready (images and tensors left out): answer, text, parse result, events, seconds."""
        return {
            "answer": self.answer,
            "text": self.text,
            "well_formed": self.parsed.well_formed,
            "problem": self.parsed.problem,
            "thinks": list(self.parsed.thinks),
            "restored": self.triggered,
            "num_restores": self.num_restores,
            "events": [dict(event) for event in self.events],
            "seconds": dict(self.seconds),
        }


class ClearPipeline:
    """Answer questions about degraded images with restore-then-answer, through any backbone adapter."""

    def __init__(self, adapter: BackboneAdapter, config: PipelineConfig | None = None) -> None:
        self.adapter = adapter
        self.config = config or PipelineConfig()

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, *, plugins: Any = None, **config: Any) -> ClearPipeline:
        """Find the adapter for ``model`` among the registered plugins and build a pipeline."""
        if plugins is None:
            from clear_plugins.plugins import load_plugins

            plugins = load_plugins()
        adapter = plugins.adapter_for(model)(model, tokenizer)
        return cls(adapter, PipelineConfig(**config))

    @classmethod
    def from_injection(cls, injection: Any, **overrides: Any) -> ClearPipeline:
        """The pipeline of an :class:`~clear_plugins.injection.Injection` (its adapter and options)."""
        config = injection.options.pipeline or PipelineConfig()
        return cls(injection.adapter, replace(config, **overrides) if overrides else config)

    def __call__(self, images: Sequence[Any] | Any, questions: Sequence[str] | str, **overrides: Any) -> Any:
        """Answer one question (``image``, ``str``) or several (two lists of equal length).

        Keyword arguments override fields of :class:`PipelineConfig` for this call.
        """
        config = replace(self.config, **overrides) if overrides else self.config
        if isinstance(questions, str):
            return self.answer(images, questions, config=config)
        images = list(images)
        if len(images) != len(questions):
            raise ClearConfigError(
                f"got {len(images)} images for {len(questions)} questions; pass one image per question."
            )
        return [
            self.answer(image, question, config=config)
            for image, question in zip(images, questions, strict=True)
        ]

    def answer(self, image: Any, question: str, *, config: PipelineConfig | None = None) -> PipelineOutput:
        """Run the restore-then-answer loop for one image and question, without autograd (inference)."""
        import torch

        with torch.no_grad():
            return self._answer(image, question, config or self.config)

    def _answer(self, image: Any, question: str, config: PipelineConfig) -> PipelineOutput:
        mode = BridgeMode.parse(config.bridge_mode)
        seconds = dict.fromkeys(("prefill", "text", "restore", "bridge"), 0.0)
        start = time.perf_counter()
        context = self.adapter.start_context(
            image, question, system_prompt=system_prompt(config.system_prompt)
        )
        seconds["prefill"] = time.perf_counter() - start
        text, restores, results, restored_images, events = "", 0, [], [], []
        budget = config.max_new_tokens
        while budget > 0:
            stop = (RESTORE_TAG,) if restores < config.max_restores else ()
            tick = time.perf_counter()
            result = self.adapter.generate_text(
                context, max_new_tokens=budget, stop=stop, sampling=config.sampling
            )
            elapsed = time.perf_counter() - tick
            seconds["text"] += elapsed
            events.append(
                {
                    "type": "text",
                    "text": result.text,
                    "seconds": elapsed,
                    "stopped_on": result.stopped_on,
                    "tokens": len(result.token_ids),
                }
            )
            text, context = text + result.text, result.context
            budget -= max(len(result.token_ids), 1)
            if result.stopped_on != RESTORE_TAG or restores >= config.max_restores:
                break
            before = (seconds["restore"], seconds["bridge"])
            context, restore_result = self._restore(context, image, mode, config, seconds)
            restores += 1
            events.append(
                {
                    "type": "restore",
                    "index": restores,
                    "seconds": seconds["restore"] - before[0],
                    "bridge_seconds": seconds["bridge"] - before[1],
                    "bridge_mode": mode.value,
                    "num_steps": None if restore_result is None else config.num_steps,
                }
            )
            if restore_result is not None:
                results.append(restore_result)
                if config.decode_restored:
                    restored_images.extend(self.adapter.decode_latent(restore_result.latent))
        parsed = parse(text, max_restores=max(config.max_restores, 1))
        seconds["total"] = time.perf_counter() - start
        return PipelineOutput(
            answer=parsed.answer,
            text=text,
            parsed=parsed,
            num_restores=restores,
            restored_images=restored_images,
            restore_results=results,
            seconds=seconds,
            events=events,
        )

    def _restore(
        self, context: Any, image: Any, mode: BridgeMode, config: PipelineConfig, seconds: dict[str, float]
    ) -> tuple[Any, Any]:
        """Denoise (except for the degraded-latent ablation) and bridge the latent into the context."""
        tick = time.perf_counter()
        if mode is BridgeMode.DEGRADED_LATENT:
            result, latent = None, self.adapter.encode_latent([image])
        else:
            guidance = config.guidance
            if isinstance(guidance, str) and guidance == DEFAULT_GUIDANCE:
                guidance = self.adapter.default_guidance
            result = self.adapter.restore(
                context, image, num_steps=config.num_steps, sde=config.sde, guidance=guidance
            )
            latent = result.latent
        seconds["restore"] += time.perf_counter() - tick
        tick = time.perf_counter()
        context = self.adapter.bridge(latent, context, mode)
        seconds["bridge"] += time.perf_counter() - tick
        return context, result
