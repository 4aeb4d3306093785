"""The parts of ``data build``: config checks, caches, sampling, offline traces, balance/split, the trace client."""

from __future__ import annotations

import json
import logging
import threading
from email.utils import formatdate

import pytest
from data_fixtures import fake_prober, write_source
from trace_server import Action, TraceServer

from clear_plugins.data.build import build_dataset
from clear_plugins.data.cache import StageCache
from clear_plugins.data.client import BudgetExhausted, TraceClient, TraceRequestError, _retry_after
from clear_plugins.data.config import ENV_TRACE_API_KEY, DataBuildConfig, TraceEndpointConfig
from clear_plugins.data.finalize import balance, split
from clear_plugins.data.offline import SYMPTOMS, offline_trace
from clear_plugins.data.sample import allocate
from clear_plugins.data.schema import TrainingRow, row_problem
from clear_plugins.degradations import names
from clear_plugins.errors import ClearConfigError, JudgeError
from clear_plugins.rewards.judge_rules import RuleJudge

SECRET = "sk-chain-SECRET-777"
MESSAGES = [{"role": "user", "content": [{"type": "text", "text": "[q00] hello"}]}]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"writer": "gpt"}, "writer='gpt'"),
        ({"trace_attempts": 0}, "trace_attempts=0"),
        ({"num_samples": 1}, "num_samples=1"),
        ({"weighting": "heavy"}, "weighting='heavy'"),
        ({"sources": ()}, "sources is empty"),
        ({"balance": True}, "balance=True"),
    ],
)
def test_build_config_errors_name_the_field(tmp_path, kwargs, match):
    values = {"sources": (str(tmp_path / "a.jsonl"),), "output_dir": str(tmp_path / "out"), **kwargs}
    with pytest.raises(ClearConfigError, match=match):
        DataBuildConfig(**values)


def test_output_folder_equal_to_a_source_is_refused(tmp_path):
    with pytest.raises(ClearConfigError, match="is or contains the source"):
        DataBuildConfig(sources=(str(tmp_path),), output_dir=str(tmp_path))
    with pytest.raises(ClearConfigError, match="is or contains the source"):
        DataBuildConfig(sources=(str(tmp_path / "sft.jsonl"),), output_dir=str(tmp_path))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"concurrency": 0}, "concurrency=0"),
        ({"backoff": 2.0, "backoff_max": 1.0}, "backoff_max"),
        ({"max_requests": -1}, "max_requests=-1"),
        ({"price_input": float("nan")}, "price_input"),
    ],
)
def test_endpoint_config_errors_name_the_field(kwargs, match):
    with pytest.raises(ClearConfigError, match=match):
        TraceEndpointConfig(**kwargs)


def test_api_key_from_file_and_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_TRACE_API_KEY, raising=False)
    monkeypatch.setenv("MY_KEY", "from-env")
    assert TraceEndpointConfig(api_key_env="MY_KEY").api_key() == "from-env"
    monkeypatch.setenv(ENV_TRACE_API_KEY, "from-clear-env")
    assert TraceEndpointConfig(api_key_env="MY_KEY").api_key() == "from-clear-env"
    key = tmp_path / "key.txt"
    key.write_text("from-file\n")
    assert TraceEndpointConfig(api_key_file=str(key)).api_key() == "from-file"
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ClearConfigError, match="empty"):
        TraceEndpointConfig(api_key_file=str(tmp_path / "empty.txt")).api_key()


def test_cache_skips_a_torn_last_line_and_appends_after_it(tmp_path):
    path = tmp_path / "stage.jsonl"
    cache = StageCache(path)
    cache.append({"id": "a", "v": 1})
    cache.append({"id": "b", "v": 2})
    with path.open("a") as handle:
        handle.write('{"id": "c", "v"')  # killed mid-write
    again = StageCache(path)
    assert set(again.records) == {"a", "b"}
    again.append({"id": "a", "v": 3})
    assert StageCache(path).get("a") == {"id": "a", "v": 3} and len(StageCache(path)) == 2


def test_allocate_is_proportional_with_largest_remainder():
    assert allocate([30, 10], 20) == [15, 5]
    assert allocate([5, 5, 5], 4) == [2, 1, 1]
    assert allocate([3, 4], None) == [3, 4] and allocate([3, 4], 100) == [3, 4]


def test_two_sources_are_sampled_stratified(tmp_path):
    first = write_source(tmp_path / "a", 30, name="first.jsonl")
    second = write_source(tmp_path / "b", 10, name="second.jsonl")
    config = DataBuildConfig(
        sources=(str(first), str(second)), output_dir=str(tmp_path / "out"), num_samples=20, writer="offline"
    )
    report = build_dataset(config, prober=fake_prober(), judge=RuleJudge())
    samples = [json.loads(line) for line in (tmp_path / "out/stages/sample.jsonl").read_text().splitlines()]
    assert report.stats["pipeline"]["sampled"] == len(samples) == 20
    assert sum(s["source"] == "first.jsonl" for s in samples) == 15
    assert sum(s["source"] == "second.jsonl" for s in samples) == 5
    assert len({s["source_row"] for s in samples if s["source"] == "first.jsonl"}) == 15


def test_unreadable_images_are_reported_with_their_row_and_replaced(tmp_path):
    source = write_source(tmp_path / "src", 8, bad_rows=(3, 5))
    config = DataBuildConfig(sources=(str(source),), output_dir=str(tmp_path / "out"), writer="offline")
    report = build_dataset(config, prober=fake_prober(), judge=RuleJudge())
    unreadable = report.stats["pipeline"]["unreadable"]
    assert [u["id"] for u in unreadable] == ["vqa-q03", "vqa-q05"]
    assert "row 3" in unreadable[0]["reason"] and "cannot be decoded" in unreadable[0]["reason"]
    assert all("0x" not in u["reason"] for u in unreadable)  # no object addresses: reruns compare equal
    assert report.stats["pipeline"]["sampled"] == 6
    samples = [json.loads(line) for line in (tmp_path / "out/stages/sample.jsonl").read_text().splitlines()]
    assert sorted(s["source_row"] for s in samples if "error" in s) == [3, 5]


@pytest.mark.parametrize("name", names())
def test_offline_traces_are_valid_for_every_degradation(name):
    assert name in SYMPTOMS
    sample = {
        "id": "x",
        "question": "What is <answer> shown?\nA. a",
        "answer": "a <think> cat",
        "degradation": name,
        "level": "hard",
    }
    for pathway in ("direct", "restore"):
        texts = {offline_trace(sample, pathway, seed=seed) for seed in range(6)}
        assert len(texts) > 1
        for text in texts:
            row = TrainingRow("x", "q", "a", "d.png", text, pathway, clean_image="c.png")
            assert row_problem(row) is None, text


def _rows(direct: int, restore: int) -> list[TrainingRow]:
    rows = [TrainingRow(f"d{i}", "q", "a", "x.png", "t", "direct") for i in range(direct)]
    return rows + [
        TrainingRow(f"r{i}", "q", "a", "x.png", "t", "restore", clean_image="c.png") for i in range(restore)
    ]


def test_balance_subsamples_the_larger_pathway_and_split_halves_each_pathway():
    kept, removed = balance(_rows(7, 4), seed=0)
    assert removed == 3 and sum(r.pathway == "direct" for r in kept) == 4 == sum(
        r.pathway == "restore" for r in kept
    )
    assert balance(_rows(7, 4), seed=0)[0] == kept and balance(_rows(7, 4), seed=1)[0] != kept
    halves = split(kept, seed=0)
    assert not {r.id for r in halves["sft"]} & {r.id for r in halves["grpo"]}
    assert len(halves["sft"]) + len(halves["grpo"]) == 8
    for rows in halves.values():
        assert sum(r.pathway == "direct" for r in rows) == 2


def test_retry_after_seconds_milliseconds_and_http_date():
    class Response:
        def __init__(self, headers):
            self.headers = headers

    assert _retry_after(Response({"retry-after": "2.5"})) == 2.5
    assert _retry_after(Response({"retry-after-ms": "300"})) == 0.3
    assert (
        50
        < _retry_after(Response({"retry-after": formatdate(__import__("time").time() + 60, usegmt=True)}))
        <= 60
    )
    assert _retry_after(Response({"retry-after": "soon"})) is None and _retry_after(Response({})) is None


def _chain(exc: BaseException) -> list[BaseException]:
    seen = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def test_exhausted_retries_raise_an_error_without_the_key_anywhere_in_its_chain(monkeypatch, caplog):
    monkeypatch.setenv(ENV_TRACE_API_KEY, SECRET)
    caplog.set_level(logging.DEBUG, logger="clear_plugins")
    with TraceServer(lambda row, n: Action(status=503, echo_authorization=True)) as server:
        client = TraceClient(
            TraceEndpointConfig(base_url=server.base_url, model="m", max_retries=2, backoff=0.01)
        )
        with pytest.raises(TraceRequestError) as info:
            client.complete(MESSAGES, label="q00")
    assert len(server.received) == 3 and server.received[0].headers["authorization"] == f"Bearer {SECRET}"
    assert "HTTP 503" in str(info.value) and "***" in str(info.value)
    for exc in _chain(info.value):
        assert SECRET not in str(exc) and SECRET not in repr(exc.args)
    assert info.value.__context__ is None and info.value.__cause__ is None
    assert SECRET not in repr(client) and SECRET not in caplog.text
    assert client.usage().http_errors == {"503": 3} and client.usage().retries == 2


def test_a_refused_request_is_not_retried(monkeypatch):
    monkeypatch.delenv(ENV_TRACE_API_KEY, raising=False)
    with TraceServer(lambda row, n: Action(status=401)) as server:
        client = TraceClient(
            TraceEndpointConfig(base_url=server.base_url, model="m", max_retries=3, backoff=0.01)
        )
        with pytest.raises(TraceRequestError, match="HTTP 401"):
            client.complete(MESSAGES)
    assert len(server.received) == 1


def test_budget_stops_before_sending_and_a_stop_event_ends_a_retry_wait():
    with TraceServer(lambda row, n: Action(status=500)) as server:
        client = TraceClient(
            TraceEndpointConfig(base_url=server.base_url, model="m", max_requests=2, backoff=0.01)
        )
        with pytest.raises(BudgetExhausted, match="--max-requests 2"):
            client.complete(MESSAGES)
        assert len(server.received) == 2
        stop = threading.Event()
        waiting = TraceClient(
            TraceEndpointConfig(base_url=server.base_url, model="m", backoff=30, backoff_max=60), stop=stop
        )
        threading.Timer(0.3, stop.set).start()
        with pytest.raises(BudgetExhausted, match="stop was requested"):
            waiting.complete(MESSAGES)
    assert len(server.received) == 3


def test_dry_run_prints_hashed_requests_and_sends_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_TRACE_API_KEY, SECRET)
    source = write_source(tmp_path / "src", 6)
    with TraceServer() as server:
        endpoint = TraceEndpointConfig(base_url=server.base_url, model="trace-model")
        config = DataBuildConfig(
            sources=(str(source),), output_dir=str(tmp_path / "out"), endpoint=endpoint, dry_run=True
        )
        report = build_dataset(config, prober=fake_prober(), judge=RuleJudge())
    assert report.status == "dry-run" and server.received == []
    assert "6 trace request(s)" in report.message and "trace-model" in report.message
    assert "sha256" in report.message and "base64" not in report.message and "[q0" not in report.message
    assert SECRET not in report.message and not (tmp_path / "out" / "sft.jsonl").exists()


class FlakyJudge:
    """Rule judge that raises JudgeError for the first ``failures`` calls on trace answers."""

    def __init__(self, failures: int) -> None:
        self.failures, self.rules = failures, RuleJudge()

    def score(self, question, answer, ground_truth):
        if "[q03]" in question and self.failures:
            self.failures -= 1
            raise JudgeError("judge endpoint down")
        return self.rules.score(question, answer, ground_truth)


def test_a_judge_outage_leaves_the_sample_for_a_rerun(tmp_path):
    source = write_source(tmp_path / "src", 6)
    config = DataBuildConfig(sources=(str(source),), output_dir=str(tmp_path / "out"), writer="offline")
    judge = FlakyJudge(failures=2)  # the probe's call and the first trace check fail
    first = build_dataset(config, prober=fake_prober(), judge=judge)
    assert first.status == "incomplete" and "1 sample(s) unfinished" in first.message
    second = build_dataset(config, prober=fake_prober(), judge=judge)
    assert second.status == "incomplete"  # the probe succeeded now, the trace check failed once more
    third = build_dataset(config, prober=fake_prober(), judge=judge)
    assert third.status == "complete" and third.stats["pipeline"]["probed"] == 6


def test_rerun_with_other_settings_is_refused_unless_overwrite(tmp_path):
    source = write_source(tmp_path / "src", 6)
    base = {"sources": (str(source),), "output_dir": str(tmp_path / "out"), "writer": "offline"}
    assert (
        build_dataset(DataBuildConfig(**base), prober=fake_prober(), judge=RuleJudge()).status == "complete"
    )
    with pytest.raises(ClearConfigError, match="seed differ"):
        build_dataset(DataBuildConfig(**base, seed=5), prober=fake_prober(), judge=RuleJudge())
    again = build_dataset(
        DataBuildConfig(**base, seed=5, overwrite=True), prober=fake_prober(), judge=RuleJudge()
    )
    assert again.status == "complete" and again.stats["settings"]["seed"] == 5


def test_balance_before_traces_sends_no_request_for_balanced_out_samples(tmp_path):
    source = write_source(tmp_path / "src", 10)
    for row in ("q03", "q05"):  # two more rows probed correct: 7 direct, 3 restore
        text = source.read_text().replace(
            f'"[{row}] Which letter is shown?", "options": {{"A": "alpha", "B": "beta"}}, "answer": "B"',
            f'"[{row}] Which letter is shown?", "options": {{"A": "alpha", "B": "beta"}}, "answer": "A"',
        )
        source.write_text(text)
    with TraceServer() as server:
        endpoint = TraceEndpointConfig(base_url=server.base_url, model="m", concurrency=2)
        config = DataBuildConfig(
            sources=(str(source),), output_dir=str(tmp_path / "out"), endpoint=endpoint, balance="before"
        )
        report = build_dataset(config, prober=fake_prober(), judge=RuleJudge())
    assert report.status == "complete"
    assert (
        report.stats["pipeline"]["probe_correct"] == 7 and report.stats["pipeline"]["removed_by_balance"] == 4
    )
    assert len(server.received) == 6  # 3 direct + 3 restore traces, none for the 4 balanced out
    sizes = [report.stats["table8"][name]["total_samples"] for name in ("sft", "grpo")]
    assert sizes == [4, 2]


def test_a_code_fenced_reply_is_unwrapped_before_validation():
    from clear_plugins.data.traces import unfence

    trace = "<think>Blurred.</think>\n<answer>A</answer>"
    assert unfence(f"```xml\n{trace}\n```") == trace
    assert unfence(f"  ```\n{trace}```  ") == trace
    assert unfence(f"Sure:\n```\n{trace}\n```") == f"Sure:\n```\n{trace}\n```"  # prose around it: left as is


@pytest.mark.parametrize("log_payloads", [False, True])
def test_payloads_are_logged_as_hashes_unless_asked(log_payloads, monkeypatch, caplog):
    monkeypatch.delenv(ENV_TRACE_API_KEY, raising=False)
    caplog.set_level(logging.DEBUG, logger="clear_plugins")
    with TraceServer() as server:
        config = TraceEndpointConfig(base_url=server.base_url, model="m", log_payloads=log_payloads)
        reply = TraceClient(config).complete(MESSAGES, label="q00")
    assert "<answer>" in reply
    assert ("[q00] hello" in caplog.text) is log_payloads
    assert ("<answer>" in caplog.text) is log_payloads
    assert ("sha256" in caplog.text) is not log_payloads
