"""Per-step cost of Bagel's restore loop and per-token cost of decoding, against another revision of the code.

For each size (``tiny``, ``mid`` from ``benchmarks/bridge.py``) it prefills the shipped system prompt + a
degraded image + a question + a first assistant segment ending in ``<image_restore><|im_end|>``, then times
(best of ``--repeats`` × ``--rounds``, after one warm-up, in process CPU time by default: with one thread
that is robust to other processes on a shared machine; ``--clock wall`` for wall time):

1. a restore of ``--steps`` grid points with Bagel's editing guidance (three branches, ``BagelGuidance()``) and
   without guidance, reported per velocity evaluation (``steps − 1`` per restore), with the number of language-model
   forwards per step (counted by a hook on the decoder);
2. ``--tokens`` greedily decoded tokens after the restore's context, reported per token.

With ``--baseline REV`` the same measurements also run on the package as it was at git revision ``REV`` (exported
with ``git archive`` to a temporary folder and imported through ``PYTHONPATH`` in a subprocess of this very
script), alternating revision and working tree ``--rounds`` times, and the ratios baseline/current are printed: both
sides are measured in one run, on the same machine, under the same load.

Usage: ``python benchmarks/restore_step.py [--sizes tiny mid] [--baseline REV] [--threads 1] [--steps 8]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = {"clear_plugins": "", "adapters": "adapters", "trl_ext": "trl_ext", "hub_cards": "hub_cards"}
"""Repository folder → where it sits inside the importable ``clear_plugins`` package (pyproject's package-dir)."""


CLOCKS: dict[str, Callable[[], float]] = {"cpu": time.process_time, "wall": time.perf_counter}
"""``cpu``: this process's CPU time (with one thread, robust to other processes on a shared machine); ``wall``."""


def best_seconds(
    fn: Callable[[], Any], repeats: int, clock: Callable[[], float] = time.process_time
) -> float:
    """Shortest time of ``fn`` on ``clock`` over ``repeats`` runs after one warm-up run (the least disturbed by
    other processes on a shared machine)."""
    fn()
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append(clock() - start)
    return min(times)


def measure(size: str, steps: int, tokens: int, repeats: int, clock: str = "cpu") -> dict[str, float]:
    """Seconds per restore step (guided, unguided), forwards per step, and seconds per decoded token."""
    import numpy as np
    import torch
    from PIL import Image

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bridge import SIZES, build, restore_ready_context

    from clear_plugins.adapters.bagel.guidance import BagelGuidance

    device = torch.device("cpu")
    adapter = build(size, device)
    side = SIZES[size]["image"]
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8))
    calls: list[int] = []
    adapter.model.language_model.model.register_forward_pre_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        context = restore_ready_context(adapter, image)
        numbers: dict[str, float] = {"context_tokens": float(context.num_tokens)}
        for name, guidance in (("guided", BagelGuidance()), ("unguided", None)):

            def restore(guidance: Any = guidance) -> Any:
                return adapter.restore(context, num_steps=steps, guidance=guidance, generator=None)

            restore()  # forwards the branches' pending items once, outside the timing
            calls.clear()
            restore()
            numbers[f"{name}_forwards_per_step"] = len(calls) / (steps - 1)
            numbers[f"{name}_step"] = best_seconds(restore, repeats, CLOCKS[clock]) / (steps - 1)

        def decode() -> Any:
            return adapter.generate_text(context, max_new_tokens=tokens)

        numbers["decode_token"] = best_seconds(decode, repeats, CLOCKS[clock]) / tokens
    return numbers


def export(revision: str, into: Path) -> Path:
    """The package at ``revision`` laid out as an importable ``clear_plugins`` folder under ``into``."""
    archive = into / "src.tar"
    subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", "-o", str(archive), revision, *PACKAGE_DIRS],
        check=True,
    )
    source = into / "src"
    with tarfile.open(archive) as tar:
        tar.extractall(source, filter="data")
    package = into / "site" / "clear_plugins"
    shutil.copytree(source / "clear_plugins", package)
    for folder, inside in PACKAGE_DIRS.items():
        if inside and (source / folder).is_dir():
            shutil.copytree(source / folder, package / inside)
    return into / "site"


def use_site(site: str) -> None:
    """Import ``clear_plugins`` from ``site``: put it first on the path and drop an editable install's finder."""
    sys.path.insert(0, site)
    sys.meta_path[:] = [
        f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")
    ]
    import clear_plugins

    if not Path(clear_plugins.__file__).is_relative_to(site):
        raise SystemExit(f"clear_plugins was imported from {clear_plugins.__file__}, not from {site}")


def worker_run(args: argparse.Namespace, pythonpath: Path | None) -> dict[str, dict[str, float]]:
    """Run :func:`measure` for every size in a fresh interpreter (``pythonpath`` first on its path, if given)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    command = [sys.executable, __file__, "--worker", "--sizes", *args.sizes, "--threads", str(args.threads)]
    if pythonpath is not None:
        command += ["--site", str(pythonpath)]
    command += ["--steps", str(args.steps), "--tokens", str(args.tokens), "--repeats", str(args.repeats)]
    command += ["--clock", args.clock]
    out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def report(results: dict[str, list[dict[str, dict[str, float]]]], sizes: list[str]) -> None:
    """Print per size: the best over rounds of each number, per side, and baseline/current ratios."""
    sides = list(results)
    for size in sizes:
        merged = {
            side: {k: min(r[size][k] for r in runs) for k in runs[0][size]} for side, runs in results.items()
        }
        tokens = int(merged[sides[0]]["context_tokens"])
        print(f"[{size}] context {tokens} tokens")
        for key, unit in (
            ("guided_step", "ms/step"),
            ("unguided_step", "ms/step"),
            ("decode_token", "ms/token"),
        ):
            cells = " | ".join(f"{side} {merged[side][key] * 1e3:.2f}" for side in sides)
            ratio = (
                f" -> {sides[0]}/{sides[-1]} = {merged[sides[0]][key] / merged[sides[-1]][key]:.2f}x"
                if len(sides) > 1
                else ""
            )
            print(f"  {key} ({unit}): {cells}{ratio}")
        for key in ("guided_forwards_per_step", "unguided_forwards_per_step"):
            print(f"  {key}: " + " | ".join(f"{side} {merged[side][key]:g}" for side in sides))


def main(argv: list[str] | None = None) -> None:
    """Parse arguments; measure the working tree (and ``--baseline``) in subprocesses; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["tiny", "mid"], choices=["tiny", "mid"])
    parser.add_argument("--steps", type=int, default=8, help="grid points per restore (default 8; paper: 30)")
    parser.add_argument("--tokens", type=int, default=16, help="decoded tokens timed (default 16)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per round (default 3)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per side (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument(
        "--clock",
        default="cpu",
        choices=list(CLOCKS),
        help="cpu: process CPU time (default); wall: wall time",
    )
    parser.add_argument("--baseline", default=None, help="git revision to compare with (default: none)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--site", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        if args.site:
            use_site(args.site)
        import torch

        torch.set_num_threads(args.threads)
        numbers = {
            size: measure(size, args.steps, args.tokens, args.repeats, args.clock) for size in args.sizes
        }
        print(json.dumps(numbers))
        return
    print(
        f"python {sys.version.split()[0]}; {os.cpu_count()} CPUs; threads={args.threads}; steps={args.steps}"
    )
    results: dict[str, list[dict[str, dict[str, float]]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        site = export(args.baseline, Path(tmp)) if args.baseline else None
        for _ in range(args.rounds):
            if site is not None:
                results.setdefault(f"baseline({args.baseline})", []).append(worker_run(args, site))
            results.setdefault("current", []).append(worker_run(args, None))
    report(results, args.sizes)


if __name__ == "__main__":
    main()
