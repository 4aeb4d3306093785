"""An interrupted ``clear-plugins bench build`` with several workers keeps its finished shards and resumes to the
very bytes of an uninterrupted build (Ctrl-C to the whole process group, or SIGTERM to the command alone)."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time

import pytest
from bench_fixtures import _config, _tree, make_source

from clear_plugins.bench.builder import build_benchmark

ROWS = 16
HANG_GUARD_S = 120
"""Only a guard against a hung child; no speed is asserted."""


def _cli(argv: list[str]) -> list[str]:
    return [sys.executable, "-m", "clear_plugins", *argv]


@pytest.mark.parametrize("how", ["ctrl-c to the process group", "sigterm to the command"])
def test_interrupted_build_with_workers_resumes_to_identical_output(tmp_path, how):
    source = make_source(tmp_path / "src", "jsonl_paths", rows=ROWS)
    out = tmp_path / "interrupted"
    argv = ["bench", "build", str(source), "-o", str(out), "--mode", "full", "--shard-size", "1"]
    argv += ["--workers", "3", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen(_cli(argv), stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    shards = out / "shards"
    while not list(shards.glob("shard-*.json")) and child.poll() is None:
        time.sleep(0.01)
    if how.startswith("ctrl-c"):
        os.killpg(child.pid, signal.SIGINT)
    else:
        child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=HANG_GUARD_S)

    done = len(list(shards.glob("shard-*.json")))
    assert 0 < done < ROWS, f"the interrupt should land mid-build ({done} of {ROWS} shards marked)"
    assert child.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert (
        f"interrupted; {done} of {ROWS} shard(s) are done and kept. Resume with: clear-plugins " in lines[0]
    )
    assert not (out / "manifest.json").exists()

    resume = shlex.split(lines[0].split("Resume with: ", 1)[1])
    assert resume == ["clear-plugins", *argv]
    finished = subprocess.run(_cli(resume[1:]), capture_output=True, text=True, env=env, timeout=HANG_GUARD_S)
    assert finished.returncode == 0, finished.stderr
    assert f"({ROWS - done} shard(s) built, {done} already done)" in finished.stderr

    uninterrupted = build_benchmark(_config(source, tmp_path / "whole", mode="full", shard_size=1))
    assert _tree(out) == _tree(uninterrupted.output_dir)
    assert len(_tree(out)) == 2 + ROWS + 3 * (1 + ROWS * 16)  # build/manifest, markers, tables and images
