"""Run by ``tests/test_sft_ddp.py`` under ``accelerate launch`` (2 CPU processes): 3 ClearSFTTrainer steps, then
each rank writes a digest of its parameters so the test can check the replicas stayed identical."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from bagel_helpers import build_tiny_bagel
from sft_helpers import tiny_config

from clear_plugins.trl_ext.sft import ClearSFTTrainer


def main(data: str, out: str) -> None:
    import faulthandler

    faulthandler.dump_traceback_later(400, exit=True)  # a DDP hang fails instead of blocking
    model, tokenizer = build_tiny_bagel()
    start = torch.cat([p.detach().flatten() for p in model.parameters()]).clone()
    args = tiny_config(out, max_steps=3, per_device_train_batch_size=2, vit_drop_prob=0.0)
    trainer = ClearSFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
    trainer.train()
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    rank = trainer.accelerator.process_index
    logs = [h for h in trainer.state.log_history if "ce" in h]
    report = {
        "world": trainer.accelerator.num_processes,
        "distributed": str(trainer.accelerator.distributed_type),
        "changed": float((flat - start).abs().sum()),
        "params": flat.tolist(),
        "losses": [[h["ce"], h["mse"], h["kl"]] for h in logs],
    }
    Path(out, f"rank{rank}.json").write_text(json.dumps(report), encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
