"""The judge's key never leaves through an exception chain, a traceback or a log line, and an endpoint that
cannot be reached is not retried: the fallback takes over at once, with one line saying when it is retried."""

from __future__ import annotations

import logging
import socket
import traceback

import pytest
from judge_server import JudgeServer, Reply

from clear_plugins.errors import JudgeError, JudgeUnavailableError
from clear_plugins.rewards import judge_llm
from clear_plugins.rewards.judges import FallbackJudge, JudgeConfig, LLMJudge, RuleJudge, build_judge

KEY = "sk-test-SECRET-echoed-0123456789"
MODEL = "judge-model-x"
LOGGER = "clear_plugins.judges"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CLEAR_JUDGE_BASE_URL", "CLEAR_JUDGE_MODEL", "CLEAR_JUDGE_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The backoff waits the judge asks for (recorded, not slept)."""
    waits: list[float] = []
    monkeypatch.setattr(judge_llm.time, "sleep", waits.append)
    return waits


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and every exception reachable through ``__cause__`` and ``__context__``."""
    seen, todo = [], [exc]
    while todo:
        current = todo.pop()
        if current is None or any(current is s for s in seen):
            continue
        seen.append(current)
        todo += [current.__cause__, current.__context__]
    return seen


def _judge(base_url: str, **kwargs) -> LLMJudge:
    return LLMJudge(base_url=base_url, model=MODEL, api_key=KEY, timeout=2.0, backoff=0.001, **kwargs)


@pytest.mark.parametrize(
    "reply",
    [
        Reply(status=401, echo_authorization=True),
        Reply(status=503, echo_authorization=True),
        Reply("no score here", echo_authorization=True),
    ],
    ids=["refused-401", "server-error-503", "reply-without-score"],
)
def test_an_echoed_key_is_in_no_exception_chain_traceback_or_log(caplog, sleeps, reply) -> None:
    caplog.set_level(logging.DEBUG)
    with JudgeServer(reply) as server:
        llm = _judge(server.base_url, max_retries=1)
        with pytest.raises(JudgeError) as info:
            llm.score("What is it?", "a cat", "cat")
        assert FallbackJudge(llm, RuleJudge()).score("What is it?", "a cat", "cat") == 1.0
    assert KEY in server.received[0].headers["authorization"]  # sent, and echoed back by the server
    chain = _chain(info.value)
    assert [type(e) for e in chain] == [JudgeError]  # nothing from openai/httpx is attached
    printed = "".join(traceback.format_exception(info.value))
    texts = [printed, caplog.text, *(repr(e.args) for e in chain)]
    assert "***" in printed
    assert all(KEY not in text for text in texts)


def _refused_url() -> str:
    """A loopback port nobody listens on (bound, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


@pytest.mark.parametrize("where", ["refused port", "unknown host"])
def test_an_unreachable_judge_is_not_retried(sleeps, where) -> None:
    url = _refused_url() if where == "refused port" else "http://clear-judge.invalid:9/v1"
    llm = _judge(url, max_retries=3)
    with pytest.raises(JudgeUnavailableError, match="cannot be reached") as info:
        llm.score("q", "a", "t")
    assert sleeps == []  # no retry, no backoff
    assert [type(e) for e in _chain(info.value)] == [JudgeUnavailableError]


def test_fallback_rests_an_unreachable_judge_at_once_with_one_line(caplog, sleeps) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    config = JudgeConfig(base_url=_refused_url(), model=MODEL, fallback_cooldown=120.0)
    judge = build_judge(config, api_key=KEY)
    calls = []
    original = judge.primary.score

    def counted(*args):
        calls.append(args)
        return original(*args)

    judge.primary.score = counted
    assert [judge.score("How many?", a, "3") for a in ("three", "four", "3", "3", "3")] == [1, 0, 1, 1, 1]
    assert len(calls) == 1 and judge.resting and sleeps == []
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(lines) == 1
    assert "is down" in lines[0] and "trying it again in 120.0 s (at " in lines[0] and KEY not in lines[0]


def test_timeouts_and_server_errors_are_still_retried(sleeps) -> None:
    with JudgeServer(Reply(status=429), Reply(status=502), Reply(hang=5.0), Reply("0.5")) as server:
        llm = LLMJudge(base_url=server.base_url, model=MODEL, api_key=KEY, timeout=0.3, max_retries=3)
        assert llm.score("q", "a", "t") == 0.5
    assert len(server.received) == 4 and len(sleeps) == 3
