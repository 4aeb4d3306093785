"""An interrupted ``data build`` (spent budget, SIGTERM) resumes to exactly the output of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from data_fixtures import fake_prober, write_source
from test_data_build import scripted
from trace_server import Action, TraceServer

from clear_plugins.data.build import build_dataset
from clear_plugins.data.config import DataBuildConfig, TraceEndpointConfig
from clear_plugins.rewards.judge_rules import RuleJudge

HERE = Path(__file__).resolve().parent
SLOW = 0.08  # seconds each reply is held, so a run lasts long enough to be interrupted halfway


def slow(row: str, n: int) -> Action:
    action = scripted(row, n)
    return action if action.hang or action.status != 200 else Action(action.content, hang=SLOW)


def _config(source: Path, out: Path, server: TraceServer, **endpoint) -> DataBuildConfig:
    values = dict(base_url=server.base_url, model="trace-model", concurrency=2, timeout=1.5, backoff=0.05)
    values.update(endpoint)
    return DataBuildConfig(
        sources=(str(source),), output_dir=str(out), endpoint=TraceEndpointConfig(**values)
    )


def _run(source: Path, out: Path, server: TraceServer, **endpoint):
    return build_dataset(_config(source, out, server, **endpoint), prober=fake_prober(), judge=RuleJudge())


def snapshot(out: Path) -> dict[str, bytes]:
    """Every output file's bytes, stats without the usage counters (they add up what each run paid)."""
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    files = {k: v for k, v in files.items() if not k.startswith("stages/")}
    stats = json.loads(files.pop("stats.json"))
    stats.pop("usage")
    files["stats.json"] = json.dumps(stats, sort_keys=True).encode()
    return files


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    source = write_source(root / "src", 40)
    with TraceServer(scripted) as server:
        report = _run(source, root / "full", server)
    assert report.status == "complete"
    return source, snapshot(root / "full")


def test_budget_stop_then_rerun_gives_the_uninterrupted_output(tmp_path, reference):
    source, expected = reference
    out = tmp_path / "out"
    with TraceServer(scripted) as server:
        stopped = _run(source, out, server, max_requests=15)
        assert stopped.status == "incomplete" and "--max-requests 15" in stopped.message
        assert len(server.received) == 15 and not (out / "sft.jsonl").exists()
        done = _run(source, out, server)
    assert done.status == "complete"
    assert snapshot(out) == expected
    usage = json.loads((out / "stats.json").read_text())["usage"]
    assert usage["requests"] == len(server.received) == 47  # nothing was asked twice across the two runs


def test_sigterm_then_rerun_gives_the_uninterrupted_output(tmp_path, reference):
    source, expected = reference
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    with TraceServer(slow) as server:
        child = subprocess.Popen(
            [sys.executable, str(HERE / "data_build_child.py"), str(source), str(out), server.base_url],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 240
        while len(server.received) < 12 and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=60)
        assert child.returncode == 143, err
        assert "rerun to continue" in err
        sent = len(server.received)
        assert 12 <= sent < 47 and not (out / "sft.jsonl").exists()
        done = _run(source, out, server)
    assert done.status == "complete"
    assert snapshot(out) == expected
