"""Two-process DDP on CPU through ``accelerate launch``: training runs and the replicas stay identical."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sft_helpers import write_rows

SCRIPT = Path(__file__).parent / "sft_ddp_script.py"


@pytest.mark.slow
def test_two_process_accelerate_launch_keeps_replicas_identical(tmp_path):
    data = write_rows(tmp_path / "data", 8)
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
        str(SCRIPT), str(data), str(out),
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    reports = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world"] == 2 and "MULTI_CPU" in r["distributed"] for r in reports)
    assert reports[0]["changed"] > 0
    assert reports[0]["params"] == reports[1]["params"], "DDP replicas diverged (gradients not synchronised)"
    assert len(reports[0]["losses"]) == 3
