"""LLM-as-judge accuracy scoring over any OpenAI-compatible endpoint (Sec. 3.4, App. I.1, Fig. 9).

The paper prompts GPT-4.1-mini to rate an answer against the ground truth on a 0-1 scale. :class:`LLMJudge`
does the same through the ``openai`` client's ``chat.completions`` API, so a hosted model, vLLM, TGI, SGLang
or llama.cpp's server all work. Failures it can recover from (timeouts, dropped connections, HTTP 408/409/429
and 5xx, replies without a score in ``[0, 1]``) are retried with exponential backoff; the client's own retries
are off, so these are the only ones. An endpoint that cannot be reached at all (connection refused, unknown
host) is not retried: :class:`~clear_plugins.errors.JudgeUnavailableError` is raised at once. What is left
raises :class:`~clear_plugins.errors.JudgeError`.

No exception this module raises carries the ``openai``/``httpx`` exception it came from (no ``__cause__``, no
``__context__``): those can quote a server's error body, and a server may echo the API key. Messages are
redacted instead, and name the exception type.
"""

from __future__ import annotations

import logging
import os
import random
import re
import socket
import time
from importlib import resources
from typing import Any

import openai

from clear_plugins.errors import ClearConfigError, JudgeError, JudgeUnavailableError
from clear_plugins.rewards.judge_config import ENV_API_KEY, ENV_BASE_URL, ENV_MODEL, JudgeConfig

_LOG = logging.getLogger("clear_plugins.judges")

_PLACEHOLDER = re.compile(r"\{(question|answer|ground_truth)\}")
_REQUIRED_PLACEHOLDERS = ("answer", "ground_truth")
_RETRYABLE_STATUS = frozenset({408, 409, 429})  # and every 5xx, as the openai client's own policy
_NO_KEY = "no-key"  # sent when no key is configured: local servers without auth accept any key
_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_SCORE = re.compile(r"(?<![\w.])([-+]?(?:\d+(?:\.\d*)?|\.\d+))(?:\s*(%)|\s*/\s*(\d+(?:\.\d+)?))?")


def default_judge_prompt() -> str:
    """The shipped judge prompt (``clear_plugins/resources/judge_prompt.txt``), same structure as Fig. 9."""
    path = resources.files("clear_plugins").joinpath("resources", "judge_prompt.txt")
    return path.read_text(encoding="utf-8")


def check_judge_prompt(prompt: str) -> str:
    """Return ``prompt`` if it holds the ``{answer}`` and ``{ground_truth}`` placeholders; raise otherwise."""
    missing = ["{" + name + "}" for name in _REQUIRED_PLACEHOLDERS if "{" + name + "}" not in prompt]
    if missing:
        raise ClearConfigError(
            f"The judge prompt lacks the placeholder(s) {', '.join(missing)}; add them "
            "where the model answer and the ground truth go ({question} is optional)."
        )
    return prompt


def render_judge_prompt(prompt: str, question: str, answer: str, ground_truth: str) -> str:
    """Fill the placeholders in one pass, so braces inside the texts are kept verbatim."""
    values = {"question": question, "answer": answer, "ground_truth": ground_truth}
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], prompt)


def parse_score(reply: str | None) -> float:
    """The score in a judge reply: its first number, as in ``"0.8"``, ``"Score: 1"`` or ``"0.75\\n"``.

    ``<think>…</think>`` blocks are skipped; ``"80%"`` and ``"4/5"`` are read as fractions. Raises
    :class:`JudgeError` when the reply holds no number or the number lies outside ``[0, 1]``.
    """
    text = _THINK_BLOCK.sub(" ", reply or "")
    match = _SCORE.search(text)
    if match is None:
        raise JudgeError(f"The judge reply {_clip(reply)!r} holds no score; expected one number in [0, 1].")
    value = float(match.group(1))
    if match.group(2):
        value /= 100.0
    elif match.group(3):
        denominator = float(match.group(3))
        if denominator == 0:
            raise JudgeError(
                f"The judge reply {_clip(reply)!r} divides by zero; expected a number in [0, 1]."
            )
        value /= denominator
    if not 0.0 <= value <= 1.0:
        raise JudgeError(f"The judge reply {_clip(reply)!r} gives {value!r}, outside [0, 1].")
    return value


class _RetryableFailure(Exception):
    """A judge request that failed in a way worth retrying (internal to :class:`LLMJudge`)."""


class LLMJudge:
    """Scores an answer with an LLM behind an OpenAI-compatible ``/v1/chat/completions`` endpoint.

    ``base_url`` and ``model`` default to ``$CLEAR_JUDGE_BASE_URL`` and ``$CLEAR_JUDGE_MODEL``; the key to
    ``$CLEAR_JUDGE_API_KEY``, then ``$<api_key_env>``; with none, a placeholder is sent (local servers without
    authentication accept any key). The key is never logged, shown in ``repr`` or put in an error message.
    ``prompt`` is a template with ``{answer}``, ``{ground_truth}`` and optionally ``{question}``; the default
    is :func:`default_judge_prompt`.
    """

    def __init__(
        self,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        api_key_env: str = JudgeConfig.api_key_env,
        timeout: float = JudgeConfig.timeout,
        max_retries: int = JudgeConfig.max_retries,
        backoff: float = JudgeConfig.backoff,
        prompt: str | None = None,
        *,
        backoff_max: float = JudgeConfig.backoff_max,
        backoff_jitter: float = JudgeConfig.backoff_jitter,
        temperature: float | None = JudgeConfig.temperature,
        max_tokens: int | None = JudgeConfig.max_tokens,
    ) -> None:
        base_url = _from_env(base_url, ENV_BASE_URL, "base_url", "e.g. 'http://localhost:8000/v1'")
        model = _from_env(model, ENV_MODEL, "model", "e.g. 'gpt-4.1-mini', the paper's judge")
        # Building the config validates every number with the same messages as JudgeConfig.
        self.config = JudgeConfig(
            base_url=base_url,
            model=model,
            api_key_env=api_key_env,
            timeout=timeout,
            max_retries=max_retries,
            backoff=backoff,
            backoff_max=backoff_max,
            backoff_jitter=backoff_jitter,
            temperature=temperature,
            max_tokens=max_tokens,
        )
        self.prompt = check_judge_prompt(default_judge_prompt() if prompt is None else prompt)
        self._api_key = api_key or os.environ.get(ENV_API_KEY) or os.environ.get(api_key_env) or None
        self._rng = random.Random()
        self._client = openai.OpenAI(
            base_url=base_url, api_key=self._api_key or _NO_KEY, timeout=timeout, max_retries=0
        )

    @classmethod
    def from_config(cls, config: JudgeConfig, api_key: str | None = None) -> LLMJudge:
        """Build the judge a :class:`JudgeConfig` describes (the key from ``api_key`` or the environment)."""
        return cls(
            base_url=config.base_url,
            model=config.model,
            api_key=api_key,
            api_key_env=config.api_key_env,
            timeout=config.timeout,
            max_retries=config.max_retries,
            backoff=config.backoff,
            prompt=config.read_prompt(),
            backoff_max=config.backoff_max,
            backoff_jitter=config.backoff_jitter,
            temperature=config.temperature,
            max_tokens=config.max_tokens,
        )

    @property
    def base_url(self) -> str:
        """The endpoint requests go to."""
        return str(self.config.base_url)

    @property
    def model(self) -> str:
        """The judge model name sent with every request."""
        return str(self.config.model)

    def __repr__(self) -> str:
        """Endpoint, model and limits; never the key."""
        key_state = "set" if self._api_key else "unset"
        return (
            f"LLMJudge(base_url={self.base_url!r}, model={self.model!r}, timeout={self.config.timeout!r}, "
            f"max_retries={self.config.max_retries!r}, api_key=<{key_state}>)"
        )

    def score(self, question: str, answer: str, ground_truth: str) -> float:
        """Rate ``answer`` against ``ground_truth`` in ``[0, 1]``; :class:`JudgeError` when it cannot."""
        content = render_judge_prompt(self.prompt, str(question), str(answer), str(ground_truth))
        messages = [{"role": "user", "content": content}]
        attempts = self.config.max_retries + 1
        last_error: _RetryableFailure | None = None
        for attempt in range(attempts):
            try:
                return self._request(messages)  # JudgeError (incl. JudgeUnavailableError) propagates at once
            except _RetryableFailure as err:
                last_error = err
                if attempt + 1 < attempts:
                    delay = self._delay(attempt)
                    _LOG.debug(
                        "Judge request %d/%d failed (%s); retrying in %.3f s.",
                        attempt + 1,
                        attempts,
                        err,
                        delay,
                    )
                    time.sleep(delay)
        raise JudgeError(
            f"The LLM judge {self.model!r} at {self.base_url!r} failed {attempts} time(s); last error: "
            f"{last_error}. Check that the endpoint serves this model, or raise "
            "JudgeConfig.timeout / max_retries; FallbackJudge scores with the rule judge meanwhile."
        ) from None

    def close(self) -> None:
        """Close the HTTP connections of the underlying client."""
        self._client.close()

    def __enter__(self) -> LLMJudge:
        """Use the judge as a context manager that closes its client."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close the client."""
        self.close()

    def _request(self, messages: list[dict[str, str]]) -> float:
        """One request; return its score or raise :class:`_RetryableFailure` / :class:`JudgeError`."""
        sampling: dict[str, Any] = {}
        if self.config.temperature is not None:
            sampling["temperature"] = self.config.temperature
        if self.config.max_tokens is not None:
            sampling["max_tokens"] = self.config.max_tokens
        failure: Exception | None = None
        response = None
        try:
            response = self._client.chat.completions.create(model=self.model, messages=messages, **sampling)
        except openai.APIStatusError as err:
            failure = self._status_failure(err)
        except openai.APIConnectionError as err:  # timeouts (a subclass), refused, DNS, dropped connections
            failure = self._connection_failure(err)
        except openai.APIError as err:  # malformed response bodies
            failure = _RetryableFailure(self._redact(f"{type(err).__name__}: {err}"))
        if failure is not None:
            raise failure  # outside the except blocks: no __context__ holding the openai exception
        choices = getattr(response, "choices", None) or []
        reply = choices[0].message.content if choices else None
        try:
            return parse_score(reply)
        except JudgeError as err:
            failure = _RetryableFailure(self._redact(str(err)))
        raise failure

    def _status_failure(self, err: openai.APIStatusError) -> Exception:
        """The failure for an HTTP error status: retryable for 408/409/429/5xx, else a :class:`JudgeError`."""
        detail = self._redact(f"HTTP {err.status_code}: {_status_detail(err)}")
        if err.status_code in _RETRYABLE_STATUS or err.status_code >= 500:
            return _RetryableFailure(detail)
        return JudgeError(
            f"The LLM judge at {self.base_url!r} refused the request ({detail}). Check the model name "
            f"{self.model!r} and the API key (${ENV_API_KEY} or ${self.config.api_key_env})."
        )

    def _connection_failure(self, err: openai.APIConnectionError) -> Exception:
        """Timeouts and dropped connections are retryable; an endpoint that cannot be reached is not."""
        reason = self._redact(f"{type(err).__name__}: {err}")
        cause = None if isinstance(err, openai.APITimeoutError) else _unreachable_cause(err)
        if cause is not None:
            cause = self._redact(str(cause) or type(cause).__name__)
            return JudgeUnavailableError(
                f"The LLM judge at {self.base_url!r} cannot be reached ({cause}): connection refused or unknown "
                f"host. Start the server or fix JudgeConfig.base_url / ${ENV_BASE_URL}."
            )
        return _RetryableFailure(reason)

    def _delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (0-based): doubling, capped, with jitter."""
        base = min(self.config.backoff * 2.0**attempt, self.config.backoff_max)
        return base * (1.0 + self.config.backoff_jitter * self._rng.random())

    def _redact(self, text: str) -> str:
        """``text`` with the API key, should a server echo it, replaced by ``***``."""
        return text.replace(self._api_key, "***") if self._api_key else text


def _from_env(value: str | None, env: str, name: str, example: str) -> str:
    """``value``, else the environment variable ``env``; raise a config error naming both when unset."""
    resolved = value or os.environ.get(env)
    if not resolved:
        raise ClearConfigError(f"The LLM judge has no {name}; pass {name}=... ({example}) or set ${env}.")
    return resolved


def _unreachable_cause(err: BaseException) -> BaseException | None:
    """The exception in ``err``'s chain saying the host cannot be reached at all, or ``None``.

    That is a refused connection, a failed DNS lookup, or the HTTP transport's ``ConnectError`` (raised before a
    single byte was sent; the ``openai`` client wraps it in ``APIConnectionError``).
    """
    seen: list[BaseException] = []
    current: BaseException | None = err.__cause__ or err.__context__
    while current is not None and not any(current is s for s in seen):
        if (
            isinstance(current, ConnectionRefusedError | socket.gaierror)
            or type(current).__name__ == "ConnectError"
        ):
            return current
        seen.append(current)
        current = current.__cause__ or current.__context__
    return None


def _status_detail(err: openai.APIStatusError) -> str:
    """The server's own error message when its body has one, else the client's summary."""
    body = err.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"]
    return err.message


def _clip(text: str | None, limit: int = 80) -> str | None:
    """``text`` cut to ``limit`` characters for error messages."""
    if text is None or len(text) <= limit:
        return text
    return text[:limit] + "…"
