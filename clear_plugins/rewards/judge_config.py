"""Configuration of the accuracy judge behind ``R_acc`` (Sec. 3.4, App. I.1).

The paper scores answers with GPT-4.1-mini prompted as an impartial judge (Fig. 9). Here any
OpenAI-compatible endpoint can play that role; when none is configured a rule-based judge scores instead.
The API key is deliberately **not** a field: configs are saved next to checkpoints and printed in logs, so the
key is read from the environment (or passed to :class:`~clear_plugins.rewards.judge_llm.LLMJudge` directly).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from clear_plugins.errors import ClearConfigError

#: Environment variable naming the judge endpoint (an OpenAI-compatible ``/v1`` base URL).
ENV_BASE_URL = "CLEAR_JUDGE_BASE_URL"
#: Environment variable naming the judge model.
ENV_MODEL = "CLEAR_JUDGE_MODEL"
#: Environment variable holding the judge's API key; read before ``api_key_env``.
ENV_API_KEY = "CLEAR_JUDGE_API_KEY"


@dataclass
class JudgeConfig:
    """How ``R_acc`` is judged: endpoint, model, prompt, retries and the rule-based fallback."""

    base_url: str | None = field(
        default=None,
        metadata={
            "help": "OpenAI-compatible endpoint of the LLM judge, e.g. 'http://localhost:8000/v1'. "
            f"Unset: read ${ENV_BASE_URL}; if that is unset too, answers are scored by the rule-based judge "
            "only. There is no default endpoint."
        },
    )
    model: str | None = field(
        default=None,
        metadata={
            "help": f"Judge model name. Unset: read ${ENV_MODEL}. The paper uses 'gpt-4.1-mini' (App. I.1)."
        },
    )
    api_key_env: str = field(
        default="OPENAI_API_KEY",
        metadata={
            "help": f"Environment variable read for the API key when ${ENV_API_KEY} is unset. The key itself "
            "is never a config field, so it is never saved or printed."
        },
    )
    prompt_path: str | None = field(
        default=None,
        metadata={
            "help": "Text file with a custom judge prompt containing the placeholders {answer} and "
            "{ground_truth} (and optionally {question}). Unset: the shipped prompt, same structure as Fig. 9."
        },
    )
    timeout: float = field(
        default=30.0,
        metadata={"help": "Seconds one judge request may take before it counts as failed (and is retried)."},
    )
    max_retries: int = field(
        default=3,
        metadata={
            "help": "Retries after a failed judge request (timeout, dropped connection, HTTP 408/409/429/5xx, "
            "unparsable or out-of-range reply). The OpenAI client's own retries are switched off. A refused "
            "connection or unknown host is never retried: the fallback takes over at once."
        },
    )
    backoff: float = field(
        default=1.0,
        metadata={"help": "Seconds before the first retry; doubled after every further failure."},
    )
    backoff_max: float = field(
        default=30.0,
        metadata={"help": "Upper bound, in seconds, of one wait between retries."},
    )
    backoff_jitter: float = field(
        default=0.1,
        metadata={
            "help": "Each wait is stretched by a random fraction in [0, backoff_jitter], so parallel "
            "reward workers do not retry in lockstep."
        },
    )
    temperature: float | None = field(
        default=0.0,
        metadata={"help": "Sampling temperature sent to the judge; None leaves it to the server."},
    )
    max_tokens: int | None = field(
        default=16,
        metadata={
            "help": "Longest judge reply in tokens (a score needs a few); None leaves it to the server."
        },
    )
    fallback: bool = field(
        default=True,
        metadata={
            "help": "Wrap the LLM judge in a FallbackJudge that scores with the rule-based judge "
            "whenever the LLM judge fails, so an outage never stops training. False: failures raise "
            "JudgeError."
        },
    )
    fallback_after_failures: int = field(
        default=5,
        metadata={
            "help": "Consecutive LLM-judge failures after which the fallback stops calling it for "
            "fallback_cooldown seconds (then tries it again once)."
        },
    )
    fallback_cooldown: float = field(
        default=300.0,
        metadata={
            "help": "Seconds the LLM judge is skipped after fallback_after_failures failures in a row, or after "
            "one failure to reach it at all (connection refused, unknown host)."
        },
    )

    def __post_init__(self) -> None:
        """Check every field and the fields that depend on each other."""
        _require("timeout", self.timeout, self.timeout > 0, "use a positive number of seconds")
        _require("fallback_cooldown", self.fallback_cooldown, self.fallback_cooldown >= 0)
        _require("max_retries", self.max_retries, self.max_retries >= 0, "use 0 to disable retries")
        _require("backoff", self.backoff, self.backoff >= 0)
        _require(
            "backoff_jitter", self.backoff_jitter, 0 <= self.backoff_jitter <= 1, "use a value in [0, 1]"
        )
        _require(
            "fallback_after_failures",
            self.fallback_after_failures,
            self.fallback_after_failures >= 1,
            "use 1 or more",
        )
        if self.backoff_max < self.backoff:
            raise ClearConfigError(
                f"JudgeConfig.backoff_max={self.backoff_max!r} is smaller than backoff={self.backoff!r}; "
                "set backoff_max >= backoff."
            )
        if self.temperature is not None:
            _require("temperature", self.temperature, 0 <= self.temperature <= 2, "use a value in [0, 2]")
        if self.max_tokens is not None:
            _require("max_tokens", self.max_tokens, self.max_tokens >= 1, "use at least 1, or None")
        if self.prompt_path is not None and not Path(self.prompt_path).is_file():
            raise ClearConfigError(
                f"JudgeConfig.prompt_path={self.prompt_path!r} is not a file; point it at a text file with "
                "the judge prompt, or leave it unset to use the shipped prompt."
            )

    def read_prompt(self) -> str | None:
        """The custom prompt text from ``prompt_path``, or ``None`` for the shipped prompt."""
        if self.prompt_path is None:
            return None
        return Path(self.prompt_path).read_text(encoding="utf-8")


def _require(name: str, value: object, ok: bool, fix: str = "use a non-negative number") -> None:
    """Raise :class:`ClearConfigError` naming ``JudgeConfig.<name>`` when ``ok`` is false."""
    if not ok:
        raise ClearConfigError(f"JudgeConfig.{name}={value!r} is invalid; {fix}.")
