"""Accuracy judges: the OpenAI-compatible LLM judge, score parsing, the fallback and the factory."""

from __future__ import annotations

import logging

import pytest
from judge_server import JudgeServer, Reply

from clear_plugins.errors import ClearConfigError, JudgeError
from clear_plugins.rewards.judge_llm import render_judge_prompt
from clear_plugins.rewards.judges import (
    FallbackJudge,
    Judge,
    JudgeConfig,
    LLMJudge,
    RuleJudge,
    build_judge,
    default_judge_prompt,
    parse_score,
)

KEY = "sk-test-SECRET-0123456789"
MODEL = "judge-model-x"
LOGGER = "clear_plugins.judges"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No judge settings leak in from the machine's environment."""
    for name in ("CLEAR_JUDGE_BASE_URL", "CLEAR_JUDGE_MODEL", "CLEAR_JUDGE_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)


def fast_judge(server: JudgeServer, *, timeout: float = 2.0, max_retries: int = 2, **kwargs) -> LLMJudge:
    """An LLM judge on the test server with tiny backoff."""
    return LLMJudge(
        base_url=server.base_url,
        model=MODEL,
        api_key=KEY,
        timeout=timeout,
        max_retries=max_retries,
        backoff=0.001,
        backoff_max=0.005,
        **kwargs,
    )


def test_llm_judge_satisfies_the_protocol() -> None:
    with JudgeServer() as server:
        assert isinstance(fast_judge(server), Judge)


# --- parsing and prompt ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "score"),
    [("0.8", 0.8), ("Score: 1", 1.0), ("0.75\n", 0.75), ("**0.5**", 0.5), ("80%", 0.8), ("4/5", 0.8),
     ("<think>maybe 1.5</think>0.3", 0.3), ("1.0.", 1.0), ("0", 0.0)],
)  # fmt: skip
def test_parse_score_reads_numbers(reply: str, score: float) -> None:
    assert parse_score(reply) == pytest.approx(score)


@pytest.mark.parametrize("reply", ["", None, "great answer", "1.5", "-0.2", "3/0"])
def test_parse_score_rejects_unusable_replies(reply: str | None) -> None:
    with pytest.raises(JudgeError):
        parse_score(reply)


def test_default_prompt_and_custom_prompt_checks() -> None:
    prompt = default_judge_prompt()
    for placeholder in ("{question}", "{answer}", "{ground_truth}"):
        assert placeholder in prompt
    with JudgeServer() as server, pytest.raises(ClearConfigError, match="ground_truth"):
        fast_judge(server, prompt="Rate {answer}.")


def test_render_keeps_braces_in_texts() -> None:
    text = render_judge_prompt("Q={question} A={answer} T={ground_truth}", "is {answer} a set?", "{x}", "{}")
    assert text == "Q=is {answer} a set? A={x} T={}"


# --- LLMJudge against the scripted server -----------------------------------------------------------------


def test_llm_judge_scores_and_sends_the_item() -> None:
    with JudgeServer(Reply("0.9")) as server:
        score = fast_judge(server).score("What colour is the car?", "It is crimson.", "red")
    assert score == pytest.approx(0.9)
    assert len(server.received) == 1
    request = server.received[0]
    assert request.body["model"] == MODEL
    assert request.body["temperature"] == JudgeConfig.temperature
    content = request.body["messages"][0]["content"]
    for text in ("What colour is the car?", "It is crimson.", "red"):
        assert text in content
    assert request.headers["authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize("bad", ["Great answer!", "1.7", ""])
def test_llm_judge_retries_unusable_reply(bad: str) -> None:
    with JudgeServer(Reply(bad), Reply("0.25")) as server:
        assert fast_judge(server).score("q", "a", "t") == pytest.approx(0.25)
    assert len(server.received) == 2


def test_llm_judge_gives_up_after_bounded_retries() -> None:
    with JudgeServer(Reply("no idea")) as server, pytest.raises(JudgeError, match=MODEL):
        fast_judge(server, max_retries=2).score("q", "a", "t")
    assert len(server.received) == 3


@pytest.mark.parametrize("status", [500, 503, 429])
def test_llm_judge_retries_server_errors(status: int) -> None:
    with JudgeServer(Reply(status=status), Reply("1")) as server:
        assert fast_judge(server).score("q", "a", "t") == 1.0
    assert len(server.received) == 2


def test_llm_judge_client_retries_are_off() -> None:
    with JudgeServer(Reply(status=500)) as server, pytest.raises(JudgeError, match="HTTP 500"):
        fast_judge(server, max_retries=1).score("q", "a", "t")
    assert len(server.received) == 2  # ours only: the openai client would add two more per attempt


def test_llm_judge_does_not_retry_client_errors() -> None:
    with JudgeServer(Reply(status=401)) as server, pytest.raises(JudgeError, match="HTTP 401") as info:
        fast_judge(server, max_retries=3).score("q", "a", "t")
    assert len(server.received) == 1
    assert KEY not in str(info.value)


def test_llm_judge_times_out_a_hanging_server() -> None:
    with JudgeServer(Reply(hang=3.0)) as server:
        with pytest.raises(JudgeError, match=r"Timeout|timed out"):
            fast_judge(server, timeout=0.2, max_retries=0).score("q", "a", "t")
        assert len(server.received) == 1
    with JudgeServer(Reply(hang=3.0), Reply("0.5")) as server:
        assert fast_judge(server, timeout=0.2, max_retries=1).score("q", "a", "t") == 0.5


def test_llm_judge_reads_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with JudgeServer(Reply("0.6")) as server:
        monkeypatch.setenv("CLEAR_JUDGE_BASE_URL", server.base_url)
        monkeypatch.setenv("CLEAR_JUDGE_MODEL", "env-model")
        monkeypatch.setenv("MY_JUDGE_KEY", "key-from-custom-env")
        assert LLMJudge(api_key_env="MY_JUDGE_KEY", backoff=0.001).score("q", "a", "t") == 0.6
        monkeypatch.setenv("CLEAR_JUDGE_API_KEY", "key-from-clear-env")
        LLMJudge(api_key_env="MY_JUDGE_KEY").score("q", "a", "t")
    assert server.received[0].body["model"] == "env-model"
    assert server.received[0].headers["authorization"] == "Bearer key-from-custom-env"
    assert server.received[1].headers["authorization"] == "Bearer key-from-clear-env"


def test_llm_judge_needs_endpoint_and_model(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ClearConfigError, match="CLEAR_JUDGE_BASE_URL"):
        LLMJudge(model=MODEL)
    with pytest.raises(ClearConfigError, match="CLEAR_JUDGE_MODEL"):
        LLMJudge(base_url="http://127.0.0.1:9/v1")
    with pytest.raises(ClearConfigError, match=r"JudgeConfig\.timeout"):
        LLMJudge(base_url="http://127.0.0.1:9/v1", model=MODEL, timeout=0)


def test_custom_prompt_file_is_sent(tmp_path) -> None:
    path = tmp_path / "prompt.txt"
    path.write_text("CUSTOM truth={ground_truth} answer={answer}", encoding="utf-8")
    with JudgeServer(Reply("0.4")) as server:
        config = JudgeConfig(base_url=server.base_url, model=MODEL, prompt_path=str(path), fallback=False)
        assert build_judge(config, api_key=KEY).score("q", "ans", "truth") == 0.4
    assert server.received[0].body["messages"][0]["content"] == "CUSTOM truth=truth answer=ans"


def test_api_key_never_in_logs_or_repr(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with JudgeServer(Reply(status=500, echo_authorization=True)) as server:
        llm = fast_judge(server, max_retries=1)
        judge = FallbackJudge(llm, RuleJudge())
        assert judge.score("What is it?", "a cat", "cat") == 1.0
        with pytest.raises(JudgeError) as info:
            llm.score("q", "a", "t")
    assert KEY in server.received[0].headers["authorization"]  # the key was sent, and echoed back
    assert "Authorization: Bearer ***" in caplog.text
    for text in (caplog.text, repr(llm), repr(judge), str(info.value)):
        assert KEY not in text


# --- FallbackJudge ------------------------------------------------------------------------------------------


class ScriptedJudge:
    """A judge returning (or raising) scripted results, counting its calls."""

    def __init__(self, *results: float | Exception) -> None:
        self.results = list(results)
        self.calls = 0

    def score(self, question: str, answer: str, ground_truth: str) -> float:
        self.calls += 1
        result = self.results.pop(0) if len(self.results) > 1 else self.results[0]
        if isinstance(result, Exception):
            raise result
        return result


class FakeClock:
    """A settable monotonic clock."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


def test_fallback_scores_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    primary = ScriptedJudge(JudgeError("endpoint down"))
    judge = FallbackJudge(primary, RuleJudge(), max_consecutive_failures=10)
    assert [judge.score("q", a, "cat") for a in ("cat", "dog", "a cat")] == [1.0, 0.0, 1.0]
    assert primary.calls == 3
    assert judge.fallback_uses == 3 and judge.primary_failures == 3
    warnings = _warnings(caplog)
    assert len(warnings) == 1 and "endpoint down" in warnings[0] and "RuleJudge" in warnings[0]


def test_fallback_rests_the_primary_after_repeated_failures(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    clock = FakeClock()
    primary = ScriptedJudge(JudgeError("down"), JudgeError("down"), JudgeError("down"), 0.7)
    judge = FallbackJudge(primary, RuleJudge(), max_consecutive_failures=2, cooldown=30.0, clock=clock)
    for _ in range(5):
        judge.score("q", "x", "y")
    assert primary.calls == 2 and judge.resting
    assert any("2 times in a row" in w and "30.0 s" in w for w in _warnings(caplog))
    clock.now += 31.0
    judge.score("q", "x", "y")  # one probe, fails again: rests at once
    assert primary.calls == 3 and judge.resting
    judge.score("q", "x", "y")
    assert primary.calls == 3
    clock.now += 31.0
    assert judge.score("q", "x", "y") == 0.7
    assert not judge.resting and judge.fallback_uses == 7
    assert any("answers again" in r.getMessage() for r in caplog.records)


def test_fallback_lets_bugs_propagate() -> None:
    judge = FallbackJudge(ScriptedJudge(RuntimeError("bug")), RuleJudge())
    with pytest.raises(RuntimeError, match="bug"):
        judge.score("q", "a", "t")
    with pytest.raises(ClearConfigError, match="max_consecutive_failures"):
        FallbackJudge(RuleJudge(), RuleJudge(), max_consecutive_failures=0)


def test_outage_falls_back_through_build_judge(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    with JudgeServer(Reply(status=500)) as server:
        config = JudgeConfig(base_url=server.base_url, model=MODEL, max_retries=1, backoff=0.001)
        judge = build_judge(config, api_key=KEY)
        assert isinstance(judge, FallbackJudge)
        assert isinstance(judge.primary, LLMJudge) and isinstance(judge.fallback, RuleJudge)
        assert judge.score("How many?", "three", "3") == 1.0
        assert judge.score("How many?", "four", "3") == 0.0
    assert len(server.received) == 4
    assert len(_warnings(caplog)) == 1


# --- config and factory -------------------------------------------------------------------------------------


def test_build_judge_without_endpoint_is_rule_based(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    assert isinstance(build_judge(), RuleJudge)
    assert "No judge endpoint" in caplog.text


def test_build_judge_without_fallback_and_env_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLEAR_JUDGE_BASE_URL", "http://127.0.0.1:9/v1")
    with pytest.raises(ClearConfigError, match="CLEAR_JUDGE_MODEL"):
        build_judge(JudgeConfig())
    judge = build_judge(JudgeConfig(model=MODEL, fallback=False))
    assert isinstance(judge, LLMJudge) and judge.base_url == "http://127.0.0.1:9/v1"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timeout", 0.0),
        ("max_retries", -1),
        ("backoff", -0.5),
        ("backoff_jitter", 2.0),
        ("temperature", 3.0),
        ("max_tokens", 0),
        ("fallback_after_failures", 0),
        ("fallback_cooldown", -1.0),
        ("prompt_path", "/nonexistent/prompt.txt"),
    ],
)
def test_judge_config_validation_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ClearConfigError, match=rf"JudgeConfig\.{field}={value!r}"):
        JudgeConfig(**{field: value})


def test_judge_config_backoff_max_below_backoff() -> None:
    with pytest.raises(ClearConfigError, match="backoff_max"):
        JudgeConfig(backoff=5.0, backoff_max=1.0)


def test_auto_judge_is_registered_and_falls_back_to_rules_without_an_endpoint(monkeypatch):
    from clear_plugins.plugins import load_plugins

    for name in ("CLEAR_JUDGE_BASE_URL", "CLEAR_JUDGE_MODEL"):
        monkeypatch.delenv(name, raising=False)
    judge = load_plugins().judge("auto")()
    assert judge.score("What colour is the car?", "red", "Red") == 1.0
    assert judge.score("What colour is the car?", "blue", "Red") == 0.0
