"""Two-process DDP on CPU through ``accelerate launch``: GRPO trains and the replicas stay identical (the
training forward runs through the DDP wrapper, so gradients are synchronised)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from grpo_helpers import grpo_dataset

SCRIPT = Path(__file__).parent / "grpo_ddp_script.py"


@pytest.mark.slow
def test_two_process_grpo_keeps_replicas_identical(tmp_path):
    grpo_dataset(tmp_path)  # writes the image the rows name
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
        str(SCRIPT), str(tmp_path),
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world"] == 2 and "MULTI_CPU" in r["distributed"] for r in reports)
    assert reports[0]["changed"] > 0 and len(reports[0]["image_loss"]) == 2
    assert reports[0]["params"] == reports[1]["params"], "DDP replicas diverged (gradients not synchronised)"
