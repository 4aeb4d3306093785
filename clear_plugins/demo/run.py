"""The demo's orchestration: stage 0 (shipped base or ``--from-scratch``), stages 1–5, caching and the report.

Every stage writes ``OUT/stages/<stage>.json`` when it finishes; a rerun with the same settings skips finished
stages (``OUT/settings.json`` must match, else the run is refused). A stage whose API is missing is recorded as
``unavailable`` with the reason, and the stages that need its output are recorded as ``skipped``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .stages import StageSizes, StageUnavailable

SHIPPED_BASE = Path(__file__).parent / "resources" / "base"
"""The shipped stage-0 checkpoint (model.safetensors, config, tokenizer, train_log.txt, stage0.json, SHA256)."""


@dataclass
class DemoOptions:
    """What ``clear-plugins demo`` runs."""

    out: Path
    quick: bool = False
    seed: int = 0
    from_scratch: bool = False
    threads: int = 1


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_shipped_base(folder: Path = SHIPPED_BASE) -> str:
    """The shipped base's checksum after comparing it with the recorded one; raises when they differ."""
    recorded = (folder / "SHA256").read_text(encoding="utf-8").split()[0]
    actual = sha256(folder / "model.safetensors")
    if actual != recorded:
        raise RuntimeError(
            f"the shipped stage-0 checkpoint {folder / 'model.safetensors'} has SHA-256 {actual}, but {recorded} "
            "was recorded; reinstall clear-plugins or rerun stage 0 with --from-scratch."
        )
    return actual


def machine() -> dict[str, Any]:
    """Where the run happened (recorded in the report)."""
    import torch

    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "processor": platform.machine(),
    }


class Stages:
    """Runs and caches the stages of one demo run under ``options.out``."""

    def __init__(self, options: DemoOptions, say: Callable[[str], None]) -> None:
        self.options = options
        self.say = say
        self.sizes = StageSizes.quick() if options.quick else StageSizes()
        self.out = options.out
        self.status: dict[str, Any] = {}

    def cached(self, name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
        """Run stage ``name`` unless ``stages/<name>.json`` records it; record its result, time or why it did not run."""
        done = self.out / "stages" / f"{name}.json"
        if done.is_file():
            record = json.loads(done.read_text(encoding="utf-8"))
            self.say(f"[{name}] cached ({record['seconds']:.0f}s when it ran)")
            self.status[name] = {"status": "done", "seconds": record["seconds"], "cached": True}
            return record["result"]
        self.say(f"[{name}] running ...")
        start = time.process_time(), time.time()
        try:
            result = fn()
        except StageUnavailable as exc:
            self.say(f"[{name}] UNAVAILABLE: {exc}")
            self.status[name] = {"status": "unavailable", "reason": str(exc)}
            return None
        seconds = time.time() - start[1]
        record = {"seconds": seconds, "cpu_seconds": time.process_time() - start[0], "result": result}
        done.parent.mkdir(parents=True, exist_ok=True)
        done.write_text(json.dumps(record, indent=1, default=str), encoding="utf-8")
        self.status[name] = {"status": "done", "seconds": seconds, "cpu_seconds": record["cpu_seconds"]}
        self.say(f"[{name}] done in {seconds:.0f}s")
        return result

    def skip(self, name: str, why: str) -> None:
        """Record that stage ``name`` did not run because an earlier one did not."""
        self.say(f"[{name}] skipped: {why}")
        self.status[name] = {"status": "skipped", "reason": why}


def load_model(folder: Path, tokenizer_folder: Path, restore_steps: int) -> Any:
    """A demo model from a ``save_pretrained`` folder, wrapped in its adapter (eval mode)."""
    from transformers import PreTrainedTokenizerFast

    from clear_plugins.adapters.bagel.adapter import BagelAdapter
    from clear_plugins.adapters.bagel.modeling_bagel import BagelForConditionalGeneration
    from clear_plugins.adapters.bagel.restore import BagelRestoreConfig

    model = BagelForConditionalGeneration.from_pretrained(folder).eval()
    tokenizer = PreTrainedTokenizerFast.from_pretrained(tokenizer_folder)
    config = BagelRestoreConfig(num_timesteps=restore_steps + 1, timestep_shift=3.0)
    return BagelAdapter(model, tokenizer, restore_config=config)


def check_settings(options: DemoOptions) -> None:
    """Refuse to resume a folder made with other settings (the caches would mix)."""
    path = options.out / "settings.json"
    settings = {"quick": options.quick, "seed": options.seed, "from_scratch": options.from_scratch}
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        if old != settings:
            raise ValueError(
                f"{options.out} holds a demo run with settings {old}, not {settings}; pass another --out or "
                "delete the folder."
            )
    options.out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings), encoding="utf-8")


def stage0(stages: Stages) -> tuple[Path, dict[str, Any]]:
    """The base checkpoint folder and its record (shipped and checksum-checked, or trained now)."""
    options = stages.options
    if not options.from_scratch:
        digest = check_shipped_base()
        record = json.loads((SHIPPED_BASE / "stage0.json").read_text(encoding="utf-8"))
        stages.say(f"[stage0] shipped base, SHA-256 {digest[:16]}… verified")
        stages.status["stage0"] = {"status": "shipped", "sha256": digest}
        return SHIPPED_BASE, {**record, "sha256": digest, "source": "shipped"}
    from .base import BaseTrainConfig, pretrain_base

    folder = options.out / "stage0"
    cfg = BaseTrainConfig.quick(options.seed) if options.quick else BaseTrainConfig(seed=options.seed)
    result = stages.cached("stage0", lambda: pretrain_base(folder / "model", cfg))
    return folder / "model", {**(result or {}), "source": "trained in this run"}


def run_demo(options: DemoOptions, say: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> dict:
    """Run (or resume) the whole demo; returns ``results.json``'s content."""
    import torch

    torch.set_num_threads(options.threads)
    torch.manual_seed(options.seed)
    check_settings(options)
    stages = Stages(options, say)
    wall = time.time()
    base_dir, base_record = stage0(stages)
    results: dict[str, Any] = {
        "seed": options.seed,
        "quick": options.quick,
        "machine": machine(),
        "stage0": base_record,
        "sizes": asdict(stages.sizes),
    }
    from .pipeline import run_stages

    run_stages(stages, base_dir, results)
    results["stages"] = stages.status
    results["wall_seconds"] = time.time() - wall
    from .report import write_report

    write_report(options.out, results)
    return results
