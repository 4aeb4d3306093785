"""The trace endpoint client: the ``openai`` client with retries, a request budget, and token/cost counting.

* Retries: timeouts, connection errors and HTTP 408/409/429/5xx are retried up to ``max_retries`` times, waiting
  ``Retry-After`` when the server sends it (capped at ``backoff_max``), else an exponential backoff with jitter.
  The ``openai`` client's own retries are off, so these are the only ones, and every one is counted.
* Budget: ``max_requests`` bounds the HTTP requests of a run; when it is spent :class:`BudgetExhausted` is raised
  before the next request is sent. A stop event (SIGTERM) ends waits and stops new requests the same way.
* Secrets: the key comes from :meth:`TraceEndpointConfig.api_key` (environment or file) and is never logged,
  never in ``repr``, and never in an error message or its chain (errors are raised outside the ``except`` block
  that saw the ``openai`` exception, whose request carries the key). Prompts and images are logged as SHA-256
  hashes unless ``log_payloads`` is set.
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import openai

from clear_plugins.data.config import TraceEndpointConfig
from clear_plugins.data.prompts import describe, sha256
from clear_plugins.errors import ClearError

_LOG = logging.getLogger("clear_plugins.data")
_RETRYABLE_STATUS = frozenset({408, 409, 429})
_NO_KEY = "no-key"
_MILLION = 1_000_000


class TraceRequestError(ClearError):
    """A trace request failed for good (retries exhausted, or refused with a non-retryable status)."""


class BudgetExhausted(ClearError):
    """The ``max_requests`` budget of this run is spent (or a stop was requested); rerun to continue."""


@dataclass
class Usage:
    """What the endpoint was asked and what it cost (summed over threads; see :meth:`TraceClient.usage`)."""

    requests: int = 0
    retries: int = 0
    timeouts: int = 0
    connection_errors: int = 0
    http_errors: dict[str, int] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return asdict(self)


class TraceClient:
    """Sends chat requests for traces to an OpenAI-compatible endpoint; safe to share between threads."""

    def __init__(
        self,
        config: TraceEndpointConfig,
        *,
        stop: threading.Event | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.base_url = config.resolved_base_url()
        self.model = config.resolved_model()
        self._key = config.api_key()
        self._stop = stop or threading.Event()
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._usage = Usage()
        self._client = openai.OpenAI(
            base_url=self.base_url, api_key=self._key or _NO_KEY, timeout=config.timeout, max_retries=0
        )

    def __repr__(self) -> str:
        """Endpoint and model; never the key."""
        state = "set" if self._key else "unset"
        return f"TraceClient(base_url={self.base_url!r}, model={self.model!r}, api_key=<{state}>)"

    def usage(self) -> Usage:
        """A snapshot of the counters."""
        with self._lock:
            return Usage(**{**asdict(self._usage), "http_errors": dict(self._usage.http_errors)})

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()

    def _reserve(self) -> None:
        """Count one request against the budget, or raise :class:`BudgetExhausted`."""
        with self._lock:
            budget = self.config.max_requests
            if self._stop.is_set():
                raise BudgetExhausted("a stop was requested; finished work is saved, rerun to continue")
            if budget is not None and self._usage.requests >= budget:
                self._stop.set()
                raise BudgetExhausted(
                    f"the request budget --max-requests {budget} is spent; finished work is saved, rerun (with a "
                    f"new budget) to continue"
                )
            self._usage.requests += 1

    def complete(self, messages: list[dict[str, Any]], *, seed: int | None = None, label: str = "") -> str:
        """The reply text to ``messages``; retries what is retryable.

        Raises:
            BudgetExhausted: the budget is spent or a stop was requested (nothing more is sent).
            TraceRequestError: the request failed for good; the message never holds the key.
        """
        attempts = self.config.max_retries + 1
        _LOG.debug(
            "trace request %s to %s: %s", label, self.model, describe(messages, self.config.log_payloads)
        )
        last = ""
        for attempt in range(attempts):
            self._reserve()
            reply, failure, retry_after = self._send(messages, seed)
            if failure is None:
                return reply
            last = failure
            if failure.startswith("refused"):
                break
            if attempt + 1 < attempts:
                with self._lock:
                    self._usage.retries += 1
                delay = self._delay(attempt, retry_after)
                _LOG.debug("trace request %s failed (%s); retrying in %.3f s", label, failure, delay)
                if self._stop.wait(delay):
                    raise BudgetExhausted("a stop was requested; finished work is saved, rerun to continue")
        raise TraceRequestError(
            f"the trace request {label or ''} to {self.model!r} at {self.base_url!r} failed: {last}. Check the "
            f"endpoint and model, or raise --timeout / --max-retries; rerun to retry the samples left."
        )

    def _send(self, messages: list[dict[str, Any]], seed: int | None) -> tuple[str, str | None, float | None]:
        """One request: ``(reply, None, None)`` or ``("", failure text, Retry-After seconds)``."""
        extra: dict[str, Any] = {} if seed is None else {"seed": seed}
        try:
            response = self._client.chat.completions.create(
                model=self.model,
                messages=messages,
                temperature=self.config.temperature,
                max_tokens=self.config.max_tokens,
                **extra,
            )
        except openai.APIStatusError as err:
            status = err.status_code
            with self._lock:
                self._usage.http_errors[str(status)] = self._usage.http_errors.get(str(status), 0) + 1
            kind = "" if status in _RETRYABLE_STATUS or status >= 500 else "refused: "
            return "", self._redact(f"{kind}HTTP {status} {_detail(err)}"), _retry_after(err.response)
        except openai.APITimeoutError:
            with self._lock:
                self._usage.timeouts += 1
            return "", f"timed out after {self.config.timeout} s", None
        except openai.APIError as err:
            with self._lock:
                self._usage.connection_errors += 1
            return "", self._redact(f"{type(err).__name__}: {err}"), None
        self._count(getattr(response, "usage", None))
        choices = getattr(response, "choices", None) or []
        text = (choices[0].message.content if choices else None) or ""
        _LOG.debug("trace reply: %s", text if self.config.log_payloads else f"sha256={sha256(text)}")
        return text, None, None

    def _count(self, usage: Any) -> None:
        prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion = int(getattr(usage, "completion_tokens", 0) or 0)
        cost = (prompt * self.config.price_input + completion * self.config.price_output) / _MILLION
        with self._lock:
            self._usage.prompt_tokens += prompt
            self._usage.completion_tokens += completion
            self._usage.cost_usd += cost

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """``Retry-After`` when given (capped), else doubling from ``backoff``, capped, stretched by jitter."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.config.backoff_max)
        base = min(self.config.backoff * 2.0**attempt, self.config.backoff_max)
        return base * (1.0 + self.config.backoff_jitter * self._rng.random())

    def _redact(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text


def _detail(err: openai.APIStatusError) -> str:
    body = err.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"][:200]
    return str(err.message)[:200]


def _retry_after(response: Any) -> float | None:
    """Seconds from ``Retry-After`` (seconds or an HTTP date) or ``retry-after-ms``; ``None`` when absent."""
    headers = getattr(response, "headers", None) or {}
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return float(millis) / 1000.0
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(parsed.timestamp() - time.time(), 0.0)
