"""Run by ``tests/test_grpo_ddp.py`` under ``accelerate launch`` (2 CPU processes): 2 InterleavedGRPOTrainer steps,
then each rank writes its parameters so the test can check the replicas stayed identical."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from bagel_helpers import tiny_adapter
from grpo_helpers import build_trainer


def main(root: str) -> None:
    import faulthandler

    faulthandler.dump_traceback_later(300, exit=True)
    adapter = tiny_adapter()
    start = torch.cat([p.detach().flatten() for p in adapter.model.parameters()]).clone()
    trainer = build_trainer(
        Path(root), adapter=adapter, per_device_train_batch_size=2, ddp_find_unused_parameters=True
    )
    trainer.train()
    flat = torch.cat([p.detach().flatten() for p in adapter.model.parameters()])
    rank = trainer.accelerator.process_index
    report = {
        "world": trainer.accelerator.num_processes,
        "distributed": str(trainer.accelerator.distributed_type),
        "changed": float((flat - start).abs().sum()),
        "params": flat.tolist(),
        "image_loss": [h["image/loss"] for h in trainer.state.log_history if "image/loss" in h],
    }
    Path(root, f"rank{rank}.json").write_text(json.dumps(report), encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1])
