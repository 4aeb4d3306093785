"""Stages 1–5 of the demo in order, each cached (see :mod:`.run`); models pass from stage to stage on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .evaluate import EvalItem, eval_items, evaluate_base, evaluate_clear, hard_only
from .stages import build_data, export, train_grpo, train_sft

ABLATION_MODES: tuple[str, ...] = ("bridge", "decode_reencode", "degraded_latent")
"""Bridge modes compared on the hard level (Sec. 4.4)."""


def _progress(say: Any, label: str) -> Any:
    """A progress callback printing every 25% (tqdm-like, one line each)."""

    def tick(done: int, total: int) -> None:
        if done == total or done % max(total // 4, 1) == 0:
            say(f"  {label}: {done}/{total}")

    return tick


def _strip(result: dict[str, Any]) -> dict[str, Any]:
    """The JSON part of an evaluation (images are kept aside for the triptychs)."""
    return {k: v for k, v in result.items() if k != "examples"}


def _eval_clear(stages: Any, name: str, folder: Path, tokenizer: Path, items: list[EvalItem]) -> Any:
    from .run import load_model

    sizes, seed, out = stages.sizes, stages.options.seed, stages.out
    kept: dict[str, Any] = {}

    def run() -> dict[str, Any]:
        adapter = load_model(folder, tokenizer, sizes.restore_steps)
        result = evaluate_clear(
            adapter, items, "bridge", sizes.restore_steps, seed, _progress(stages.say, name)
        )
        kept["examples"] = result["examples"]
        return _strip(result)

    result = stages.cached(f"eval_{name}", run)
    if result is not None and "examples" in kept:
        save_examples(out / f"eval_{name}", kept["examples"])
    return result


def save_examples(folder: Path, examples: list[Any]) -> None:
    """Degraded / restored / clean triptychs of the hard level as PNGs (decoded from the restored latents)."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for k, (degraded, restored, clean, name) in enumerate(examples):
        strip = np.concatenate([degraded, restored, clean], axis=1)
        Image.fromarray(strip).save(folder / f"triptych_{k}_{name}.png")


def run_stages(stages: Any, base_dir: Path, results: dict[str, Any]) -> None:
    """Stages 1–5 (module docstring); fills ``results``."""
    from .run import load_model

    sizes, seed, out = stages.sizes, stages.options.seed, stages.out
    items = eval_items(sizes.eval_questions, seed)
    base = load_model(base_dir, base_dir, sizes.restore_steps)
    results["data"] = stages.cached("data", lambda: build_data(base, out / "data", sizes, seed))
    results["eval_base"] = stages.cached("eval_base", lambda: evaluate_base(base, items))
    sft_dir, rl_dir = out / "sft" / "model", out / "rl" / "model"
    if results["data"] is None:
        for name in ("sft", "rl", "eval_sft", "eval_rl", "ablations", "export"):
            stages.skip(name, "stage 1 (data) did not run")
        return
    results["sft"] = stages.cached(
        "sft",
        lambda: train_sft(
            load_model(base_dir, base_dir, sizes.restore_steps),
            results["data"]["sft"],
            out / "sft",
            sizes,
            seed,
        ),
    )
    if results["sft"] is None:
        for name in ("rl", "eval_sft", "eval_rl", "ablations", "export"):
            stages.skip(name, "stage 2 (SFT) did not run")
        return
    results["eval_sft"] = _eval_clear(stages, "sft", sft_dir, base_dir, items)
    results["rl"] = stages.cached(
        "rl",
        lambda: train_grpo(
            load_model(sft_dir, base_dir, sizes.restore_steps),
            results["data"]["grpo"],
            out / "rl",
            sizes,
            seed,
        ),
    )
    final = rl_dir if results["rl"] is not None else sft_dir
    if results["rl"] is not None:
        results["eval_rl"] = _eval_clear(stages, "rl", rl_dir, base_dir, items)
    else:
        stages.skip("eval_rl", "stage 3 (GRPO) did not run")
    results["ablations"] = stages.cached("ablations", lambda: ablations(stages, final, base_dir, items))
    results["final_model"] = "rl" if results["rl"] is not None else "sft"
    results["export"] = stages.cached(
        "export", lambda: export(load_model(final, base_dir, sizes.restore_steps), out / "export", None)
    )


def ablations(stages: Any, folder: Path, tokenizer: Path, items: list[EvalItem]) -> dict[str, Any]:
    """Hard-level accuracy of the final model with each bridge mode."""
    from .run import load_model

    sizes, seed = stages.sizes, stages.options.seed
    adapter = load_model(folder, tokenizer, sizes.restore_steps)
    hard = hard_only(items)
    table = {}
    for mode in ABLATION_MODES:
        result = evaluate_clear(adapter, hard, mode, sizes.restore_steps, seed, _progress(stages.say, mode))
        table[mode] = result["levels"]["hard"]
    return table
