"""``data build`` end to end on a 40-row fixture through a real OpenAI-compatible HTTP server on 127.0.0.1."""

from __future__ import annotations

import base64
import io
import json
import logging

import pytest
from data_fixtures import fake_prober, write_source
from PIL import Image
from trace_server import COMPLETION_TOKENS, PROMPT_TOKENS, Action, TraceServer

from clear_plugins.data.build import build_dataset
from clear_plugins.data.config import ENV_TRACE_API_KEY, DataBuildConfig, TraceEndpointConfig
from clear_plugins.data.prompts import DIRECT_PROMPT, RESTORE_PROMPT
from clear_plugins.data.schema import TrainingRow, read_jsonl, row_problem
from clear_plugins.rewards.judge_rules import RuleJudge

SECRET = "sk-test-SECRET-4242"
MALFORMED = "<think>The letter is A <answer>A</answer>"
RETRY_AFTER = 1.0


def scripted(row: str, n: int) -> Action:
    """The fixture's special rows (even rows answer A and go direct, odd rows answer B and go restore)."""
    if row == "q01" and n == 0:  # wrong answer, regenerated, then accepted
        return Action(
            "<think>Blurry; restoring.</think>\n<image_restore>\n<think>Now clear.</think><answer>A</answer>"
        )
    if row == "q02":  # always wrong: dropped after 3 traces
        return Action("<think>Readable.</think><answer>B</answer>")
    if row == "q03" and n == 0:
        return Action(status=429, headers={"Retry-After": str(RETRY_AFTER)})
    if row == "q04" and n == 0:
        return Action(status=500, echo_authorization=True)
    if row == "q05" and n == 0:
        return Action(hang=30.0)
    if row == "q06" and n == 0:  # malformed: rejected by validation, regenerated
        return Action(MALFORMED)
    return Action()


def endpoint(server: TraceServer, **overrides) -> TraceEndpointConfig:
    values = dict(
        base_url=server.base_url,
        model="trace-model",
        concurrency=4,
        timeout=1.5,
        max_retries=3,
        backoff=0.05,
        backoff_max=5.0,
        price_input=2.0,
        price_output=8.0,
    )
    values.update(overrides)
    return TraceEndpointConfig(**values)


@pytest.fixture
def source(tmp_path):
    return write_source(tmp_path / "src", 40)


def test_build_end_to_end_through_http(tmp_path, source, monkeypatch, caplog):
    monkeypatch.setenv(ENV_TRACE_API_KEY, SECRET)
    caplog.set_level(logging.DEBUG, logger="clear_plugins")
    out = tmp_path / "out"
    with TraceServer(scripted) as server:
        config = DataBuildConfig(sources=(str(source),), output_dir=str(out), endpoint=endpoint(server))
        report = build_dataset(config, prober=fake_prober(), judge=RuleJudge())
    assert report.status == "complete", report.message

    # Retries: the 429 waited Retry-After, the 500 and the hang were retried; every request carried the key.
    assert [r.n for r in server.rows("q03")] == [0, 1]
    assert server.rows("q03")[1].at - server.rows("q03")[0].at >= RETRY_AFTER * 0.9
    assert len(server.rows("q04")) == 2 and len(server.rows("q05")) == 2
    assert {r.headers["authorization"] for r in server.received} == {f"Bearer {SECRET}"}
    # Regenerations: q01 twice, q02 three times then dropped, q06 twice.
    assert len(server.rows("q01")) == 2 and len(server.rows("q02")) == 3 and len(server.rows("q06")) == 2

    # The Fig. 7 prompt for restore rows, its direct variant otherwise; both images as base64 PNG.
    first = server.rows("q10")[0]
    assert first.body["messages"][0]["content"] == DIRECT_PROMPT
    assert server.rows("q11")[0].body["messages"][0]["content"] == RESTORE_PROMPT
    images = [p["image_url"]["url"] for p in first.body["messages"][1]["content"] if p["type"] == "image_url"]
    degraded = Image.open(io.BytesIO(base64.b64decode(images[0].split(",", 1)[1])))
    clean = Image.open(io.BytesIO(base64.b64decode(images[1].split(",", 1)[1])))
    assert degraded.size == clean.size == (24, 24)
    assert clean.tobytes() == Image.open(source.parent / "img10.png").convert("RGB").tobytes()
    assert degraded.tobytes() != clean.tobytes()
    assert "Ground-truth answer: A" in first.body["messages"][1]["content"][0]["text"]

    sets = {
        name: [TrainingRow.from_mapping(r) for _, r, _ in read_jsonl(out / f"{name}.jsonl")]
        for name in ("sft", "grpo")
    }
    ids = {name: {r.id for r in rows} for name, rows in sets.items()}
    assert not ids["sft"] & ids["grpo"]
    assert len(ids["sft"]) == 20 and len(ids["grpo"]) == 18
    every = sets["sft"] + sets["grpo"]
    assert all(row_problem(r) is None for r in every)
    assert "vqa-q02" not in ids["sft"] | ids["grpo"]
    traces = {r["id"]: r for _, r, _ in read_jsonl(out / "stages" / "traces.jsonl")}  # later lines win
    verdicts = {
        i: [a["verdict"] for a in traces[f"vqa-{i}"]["attempts"]] for i in ("q00", "q01", "q02", "q06")
    }
    assert verdicts == {
        "q00": ["ok"],
        "q01": ["wrong", "ok"],
        "q02": ["wrong", "wrong", "wrong"],
        "q06": ["malformed", "ok"],
    }
    assert "malformed" in traces["vqa-q06"]["attempts"][0]["problem"]
    assert "inside the <think> block" in traces["vqa-q06"]["attempts"][0]["problem"]
    assert traces["vqa-q02"]["status"] == "dropped" and traces["vqa-q01"]["status"] == "accepted"
    assert all(r.trace_writer == "llm:trace-model" for r in every)
    assert all((out / r.degraded_image).is_file() and (out / r.clean_image).is_file() for r in every)
    for rows in sets.values():
        assert sum(r.pathway == "direct" for r in rows) == sum(r.pathway == "restore" for r in rows)

    stats = json.loads((out / "stats.json").read_text())
    assert stats == report.stats
    pipeline = stats["pipeline"]
    assert pipeline["sampled"] == 40 and pipeline["probe_correct"] == 20 and pipeline["probe_wrong"] == 20
    assert pipeline["trace_attempts"] == 44
    assert pipeline["rejected_wrong_answer"] == 4 and pipeline["rejected_by_validation"] == 1
    assert pipeline["accepted"] == 39 and pipeline["accepted_after_regeneration"] == 2
    assert pipeline["dropped"] == 1 and pipeline["dropped_ids"] == ["vqa-q02"]
    assert pipeline["removed_by_balance"] == 1
    table = stats["table8"]["sft"]
    assert (table["total_samples"], table["direct_samples"], table["generate_then_answer_samples"]) == (
        20,
        10,
        10,
    )
    direct = [len(r.trajectory) for r in sets["sft"] if r.pathway == "direct"]
    assert table["mean_trace_chars_direct"] == round(sum(direct) / len(direct), 1)
    assert sum(table["per_type"].values()) == 20 and sum(table["per_level"].values()) == 20
    cells = [c for levels in table["type_level_pathway"].values() for c in levels.values()]
    assert sum(c["restore"] for c in cells) == 10
    assert stats["offline"] is False and stats["trace_writer"] == "llm:trace-model"
    usage = stats["usage"]
    assert usage["requests"] == 47 and usage["retries"] == 3 == len(server.received) - 44
    assert usage["http_errors"] == {"429": 1, "500": 1} and usage["timeouts"] == 1
    assert (
        usage["prompt_tokens"] == 44 * PROMPT_TOKENS and usage["completion_tokens"] == 44 * COMPLETION_TOKENS
    )
    assert usage["cost_usd"] == pytest.approx((44 * PROMPT_TOKENS * 2.0 + 44 * COMPLETION_TOKENS * 8.0) / 1e6)
    assert (out / "distribution.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The key is in no log line and no output file, even though the server echoed it in an error body.
    assert SECRET not in caplog.text
    assert "sha256" in caplog.text and "base64" not in caplog.text
    for path in out.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_offline_writer_needs_no_endpoint_and_is_labelled(tmp_path, source):
    config = DataBuildConfig(sources=(str(source),), output_dir=str(tmp_path / "out"), writer="offline")
    report = build_dataset(config, prober=fake_prober(), judge=RuleJudge())
    assert report.status == "complete"
    rows = [TrainingRow.from_mapping(r) for _, r, _ in read_jsonl(tmp_path / "out" / "sft.jsonl")]
    assert all(row_problem(r) is None and r.trace_writer == "offline-template" for r in rows)
    assert len({r.trajectory.split("</think>")[0] for r in rows}) > len(rows) // 2  # varied, not one template
    assert report.stats["offline"] is True and "offline template" in report.stats["note"]
    assert report.stats["usage"]["requests"] == 0
