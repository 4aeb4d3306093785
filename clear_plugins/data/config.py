"""Configuration of ``clear-plugins data build`` (App. C): what to sample, how to probe, who writes the traces.

The API key of the trace endpoint is deliberately **not** a field: configs are written next to the output and
printed in logs, so the key is read from an environment variable or a file (:meth:`TraceEndpointConfig.api_key`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from clear_plugins.errors import ClearConfigError

WRITERS: tuple[str, ...] = ("llm", "offline")
"""Trace writers: an LLM behind an OpenAI-compatible endpoint (App. C.2), or the offline templates."""

ENV_TRACE_BASE_URL = "CLEAR_TRACE_BASE_URL"
"""Environment variable naming the trace endpoint when ``base_url`` is unset."""
ENV_TRACE_MODEL = "CLEAR_TRACE_MODEL"
"""Environment variable naming the trace model when ``model`` is unset."""
ENV_TRACE_API_KEY = "CLEAR_TRACE_API_KEY"
"""Environment variable read first for the trace endpoint's API key."""


@dataclass
class TraceEndpointConfig:
    """The OpenAI-compatible endpoint that writes traces, and how hard to push it."""

    base_url: str | None = field(
        default=None,
        metadata={"help": f"OpenAI-compatible '/v1' base URL. Unset: ${ENV_TRACE_BASE_URL}."},
    )
    model: str | None = field(
        default=None,
        metadata={
            "help": f"Trace model name (the paper uses 'gpt-4.1', App. C.2). Unset: ${ENV_TRACE_MODEL}."
        },
    )
    api_key_env: str = field(
        default="OPENAI_API_KEY",
        metadata={"help": f"Environment variable read for the key when ${ENV_TRACE_API_KEY} is unset."},
    )
    api_key_file: str | None = field(
        default=None,
        metadata={"help": "File holding the API key (first line); read instead of the environment."},
    )
    concurrency: int = field(
        default=8, metadata={"help": "Requests in flight at once (bounded thread pool)."}
    )
    timeout: float = field(
        default=120.0, metadata={"help": "Seconds one request may take before it is retried."}
    )
    max_retries: int = field(
        default=5,
        metadata={
            "help": "Retries of one request after a timeout, connection error or HTTP 408/409/429/5xx."
        },
    )
    backoff: float = field(
        default=1.0, metadata={"help": "Seconds before the first retry; doubled after each further failure."}
    )
    backoff_max: float = field(
        default=60.0, metadata={"help": "Longest wait between two retries, in seconds."}
    )
    backoff_jitter: float = field(
        default=0.25, metadata={"help": "Each wait is stretched by a random fraction in [0, backoff_jitter]."}
    )
    max_requests: int | None = field(
        default=None,
        metadata={
            "help": "Budget: HTTP requests this run may send (retries included). The build stops cleanly when it "
            "is spent; rerun to continue. None: no limit."
        },
    )
    temperature: float = field(
        default=0.3,
        metadata={"help": "Sampling temperature of the trace model (the reference script's 0.3)."},
    )
    max_tokens: int = field(
        default=1024, metadata={"help": "Longest trace in tokens (the reference script's 1024)."}
    )
    price_input: float = field(
        default=0.0, metadata={"help": "USD per million prompt tokens, for the cost counter (0: not priced)."}
    )
    price_output: float = field(
        default=0.0,
        metadata={"help": "USD per million completion tokens, for the cost counter (0: not priced)."},
    )
    log_payloads: bool = field(
        default=False,
        metadata={
            "help": "Log prompts and images in full; by default they are logged as SHA-256 hashes only."
        },
    )

    def __post_init__(self) -> None:
        """Check every number; errors name the field, its value and the fix."""
        for name, ok, fix in (
            ("concurrency", self.concurrency >= 1, "use 1 or more"),
            ("timeout", self.timeout > 0, "use a positive number of seconds"),
            ("max_retries", self.max_retries >= 0, "use 0 to disable retries"),
            ("backoff", self.backoff >= 0, "use seconds >= 0"),
            ("backoff_jitter", 0 <= self.backoff_jitter <= 1, "use a value in [0, 1]"),
            ("temperature", 0 <= self.temperature <= 2, "use a value in [0, 2]"),
            ("max_tokens", self.max_tokens >= 1, "use at least 1"),
            ("price_input", math.isfinite(self.price_input) and self.price_input >= 0, "use USD >= 0"),
            ("price_output", math.isfinite(self.price_output) and self.price_output >= 0, "use USD >= 0"),
        ):
            if not ok:
                raise ClearConfigError(
                    f"TraceEndpointConfig.{name}={getattr(self, name)!r} is invalid; {fix}."
                )
        if self.backoff_max < self.backoff:
            raise ClearConfigError(
                f"TraceEndpointConfig.backoff_max={self.backoff_max!r} < backoff={self.backoff!r}; raise backoff_max."
            )
        if self.max_requests is not None and self.max_requests < 0:
            raise ClearConfigError(
                f"TraceEndpointConfig.max_requests={self.max_requests!r} is invalid; use 0 or more, or None."
            )

    def resolved_base_url(self) -> str:
        """``base_url``, else ``$CLEAR_TRACE_BASE_URL``; a config error naming both when neither is set."""
        value = self.base_url or os.environ.get(ENV_TRACE_BASE_URL)
        if not value:
            raise ClearConfigError(
                f"the LLM trace writer has no endpoint; pass --base-url (e.g. https://api.openai.com/v1) or set "
                f"${ENV_TRACE_BASE_URL}, or use --writer offline."
            )
        return value

    def resolved_model(self) -> str:
        """``model``, else ``$CLEAR_TRACE_MODEL``; a config error when neither is set."""
        value = self.model or os.environ.get(ENV_TRACE_MODEL)
        if not value:
            raise ClearConfigError(
                f"the LLM trace writer has no model; pass --model (the paper uses gpt-4.1) or set ${ENV_TRACE_MODEL}."
            )
        return value

    def api_key(self) -> str | None:
        """The key from ``api_key_file``, else ``$CLEAR_TRACE_API_KEY``, else ``$<api_key_env>``; ``None`` if unset."""
        if self.api_key_file is not None:
            path = Path(self.api_key_file)
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise ClearConfigError(
                    f"cannot read the API key file {str(path)!r} ({exc.strerror or type(exc).__name__}); pass a "
                    f"readable file whose first line is the key."
                ) from None
            key = lines[0].strip() if lines else ""
            if not key:
                raise ClearConfigError(
                    f"the API key file {str(path)!r} is empty; put the key on its first line."
                )
            return key
        return os.environ.get(ENV_TRACE_API_KEY) or os.environ.get(self.api_key_env) or None


@dataclass
class DataBuildConfig:
    """Settings of ``clear-plugins data build``: the App. C pipeline from VQA pairs to the SFT and GRPO sets."""

    sources: tuple[str, ...] = field(
        metadata={
            "help": "VQA sources in any format 'bench build' reads (.jsonl/.json/.csv/.tsv/.parquet or a saved "
            "datasets folder); several are sampled stratified by source (App. C.1 uses LLaVA-OneVision)."
        }
    )
    output_dir: str = field(
        metadata={"help": "Folder of the build: stage caches, images, the two sets, stats."}
    )
    num_samples: int | None = field(
        default=None,
        metadata={
            "help": "Pairs to sample before probing (App. C.1: 48k); None takes every row. Shared among the "
            "sources in proportion to their sizes (largest remainder)."
        },
    )
    seed: int = field(
        default=0, metadata={"help": "Seed of the sampling, degradations, balancing and split."}
    )
    weighting: str = field(
        default="training",
        metadata={
            "help": "Degradation sampler weighting: training (reference script), uniform or benchmark."
        },
    )
    writer: str = field(
        default="llm",
        metadata={"help": "Who writes traces: 'llm' (an OpenAI-compatible endpoint, App. C.2) or 'offline'."},
    )
    trace_attempts: int = field(
        default=3,
        metadata={
            "help": "Traces written per sample before it is dropped: a trace whose answer the judge rejects, or "
            "that fails validation, is regenerated (App. C.2: 'regenerated up to three times')."
        },
    )
    probe_batch_size: int = field(
        default=8, metadata={"help": "Samples probed per batch (the unit of the probe stage's cache)."}
    )
    probe_max_new_tokens: int = field(
        default=256, metadata={"help": "Text tokens the probed base model may generate per answer."}
    )
    probe_system_prompt: str | None = field(
        default=None, metadata={"help": "System prompt of the probe; None uses the shipped one."}
    )
    correct_threshold: float = field(
        default=0.5, metadata={"help": "A judge score above this counts as correct (SPEC: R_acc > 0.5)."}
    )
    balance: str = field(
        default="after",
        metadata={
            "help": "When the larger pathway is subsampled to 1:1 (App. C.1): 'after' the trace filter (an exact "
            "1:1), 'before' writing traces (the paper's order: no requests for samples balanced out; drops "
            "after filtering leave it near 1:1, as Table 8's 12,267 / 12,619), or 'none'."
        },
    )
    id_column: str | None = field(default=None, metadata={"help": "Id column of the sources (auto)."})
    image_column: str | None = field(default=None, metadata={"help": "Image column of the sources (auto)."})
    question_column: str | None = field(default=None, metadata={"help": "Question column (auto)."})
    answer_column: str | None = field(default=None, metadata={"help": "Answer column (auto)."})
    dry_run: bool = field(
        default=False,
        metadata={
            "help": "Sample, degrade and probe, then print the trace requests instead of sending them."
        },
    )
    overwrite: bool = field(
        default=False, metadata={"help": "Discard a previous build in output_dir made with other settings."}
    )
    progress: bool = field(default=True, metadata={"help": "Show progress bars (on a terminal)."})
    endpoint: TraceEndpointConfig = field(
        default_factory=TraceEndpointConfig, metadata={"help": "The trace endpoint (writer 'llm')."}
    )

    def __post_init__(self) -> None:
        """Check fields and their combinations; errors name the field, its value and the fix."""
        self.sources = tuple(str(s) for s in self.sources)
        if not self.sources:
            raise ClearConfigError("DataBuildConfig.sources is empty; pass at least one VQA source.")
        out = Path(self.output_dir).resolve()
        for source in self.sources:
            path = Path(source).resolve()
            if path == out or out in path.parents:
                raise ClearConfigError(
                    f"output_dir={self.output_dir!r} is or contains the source {source!r}, and the build writes "
                    f"(and with overwrite deletes) files there; write the build to another folder."
                )
        if self.balance not in ("after", "before", "none"):
            raise ClearConfigError(
                f"balance={self.balance!r} is not one of after, before, none; pick one of them."
            )
        if self.writer not in WRITERS:
            raise ClearConfigError(f"writer={self.writer!r} is not one of {', '.join(WRITERS)}.")
        if self.weighting not in ("training", "uniform", "benchmark"):
            raise ClearConfigError(
                f"weighting={self.weighting!r} is not one of training, uniform, benchmark; pick one of them."
            )
        for name, value, minimum in (
            ("trace_attempts", self.trace_attempts, 1),
            ("probe_batch_size", self.probe_batch_size, 1),
            ("probe_max_new_tokens", self.probe_max_new_tokens, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ClearConfigError(f"{name}={value!r} must be an integer >= {minimum}.")
        if self.num_samples is not None and self.num_samples < 2:
            raise ClearConfigError(
                f"num_samples={self.num_samples!r} must be >= 2 (two halves), or None for all."
            )
        if not 0 <= self.correct_threshold < 1:
            raise ClearConfigError(f"correct_threshold={self.correct_threshold!r} must lie in [0, 1).")

    def fingerprint(self) -> dict[str, object]:
        """The settings that decide the output (not concurrency, budget, progress or payload logging)."""
        return {
            "sources": [str(Path(s).resolve()) for s in self.sources],
            "num_samples": self.num_samples,
            "seed": self.seed,
            "weighting": self.weighting,
            "writer": self.writer,
            "model": self.endpoint.model if self.writer == "llm" else None,
            "trace_attempts": self.trace_attempts,
            "probe_system_prompt": self.probe_system_prompt,
            "probe_max_new_tokens": self.probe_max_new_tokens,
            "correct_threshold": self.correct_threshold,
            "balance": self.balance,
            "columns": [self.id_column, self.image_column, self.question_column, self.answer_column],
        }
