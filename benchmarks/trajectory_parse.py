"""Parse time of megabyte-sized adversarial trajectories (the cases of tests/test_trajectory.py).

``clear_plugins.trajectory.parse`` must stay linear in the text length: a model can emit a runaway stream of
tags, and a regular expression that backtracks would stall training on it. This prints, for each 1 MB case, the
median parse time over ``--repeats`` calls and the rate in MB/s, from one run (pure Python: ``--threads`` only
pins the environment for comparability).

Usage: ``python benchmarks/trajectory_parse.py [--repeats N] [--threads N]``
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

from threads import add_threads_argument, pin  # this script's folder is on sys.path

from clear_plugins.trajectory import parse

CASES: dict[str, str] = {
    "opens": "<think>" * 150_000,
    "restores": "<think> a </think>" + "<image_restore>" * 70_000,
    "angles": "<" * 1_000_000,
    "near-misses": "<think" * 170_000,
    "long-think": "<think> " + "x" * 1_000_000 + " </think> <answer> y </answer>",
    "open-images": "<think>a</think><image_restore><|vision_start|>" * 25_000,
}


def main(argv: list[str] | None = None) -> int:
    """Time each case and print one line per case."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="Timed calls per case (median; default 5).")
    add_threads_argument(parser)
    args = parser.parse_args(argv)
    print(
        f"{pin(args.threads)}; {platform.processor() or platform.machine()}; median of {args.repeats} calls"
    )
    for name, text in CASES.items():
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            parse(text, max_restores=10**9)
            times.append(time.perf_counter() - start)
        median = statistics.median(times)
        print(
            f"  {name:12s} {len(text) / 1e6:5.2f} MB  {median * 1e3:8.1f} ms  {len(text) / 1e6 / median:7.1f} MB/s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
