"""Speed of the 16 MMD-Bench degradations on one core, and ratios to other implementations.

Prints, from one run:
  1. ms per image for each type and level at each size (median of --repeat calls, seeds 0..repeat-1);
  2. for gaussian_noise, motion_blur and jpeg_compression, the time of the ``imagecorruptions`` package on the
     same images (severity 1 / 3 / 5 for low / mid / hard) and its ratio to ours;
  3. for mean_shift, our default (fast) mode against its ``exact=True`` mode, which is the reference's
     full-resolution ``cv2.pyrMeanShiftFiltering`` at the same radii (spatial = colour = int(40 x intensity)):
     the speed ratio and the PSNR between the two outputs. The exact filter is timed once per cell (it is slow).

The test image is scikit-image's ``astronaut`` resized to each size. Everything runs on one thread
(``OMP_NUM_THREADS=1``, ``cv2.setNumThreads(1)``) and torch is never imported (checked at the end).

    python benchmarks/degradations.py --sizes 512,1024 --repeat 5
    python benchmarks/degradations.py --types mean_shift,graffiti --sizes 512 --repeat 3

``imagecorruptions`` (pip install imagecorruptions --no-deps) imports ``pkg_resources``, removed from current
setuptools, and uses ``np.float_``, removed in NumPy 2; this script installs small shims for both before
importing it (here only, never in the product). Without the package, part 2 is skipped with a note.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402
from collections.abc import Callable  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from clear_plugins import degradations  # noqa: E402

LEVELS = ("low", "mid", "hard")
SEVERITY = {"low": 1, "mid": 3, "hard": 5}
"""imagecorruptions severity compared with each of our levels."""
COMPARED = ("gaussian_noise", "motion_blur", "jpeg_compression")
BUDGET_MS = 50.0
"""Issue goal at 512 x 512, hard, one core: every type but mean_shift under 50 ms."""


def test_image(size: int) -> np.ndarray:
    """``astronaut`` (512 x 512 RGB) resized to ``size`` x ``size``."""
    from skimage import data

    image = data.astronaut()
    if image.shape[0] == size:
        return image.copy()
    interpolation = cv2.INTER_AREA if size < image.shape[0] else cv2.INTER_CUBIC
    return cv2.resize(image, (size, size), interpolation=interpolation)


def time_ms(call: Callable[[int], object], repeat: int) -> float:
    """Median wall time in ms of ``call(seed)`` over ``repeat`` seeds, after one warm-up call."""
    call(0)
    times = []
    for seed in range(repeat):
        start = time.perf_counter()
        call(seed)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def load_imagecorruptions():
    """Import ``imagecorruptions`` with shims for ``pkg_resources`` and ``np.float_``; ``None`` if absent."""
    if "pkg_resources" not in sys.modules:
        try:
            import pkg_resources  # noqa: F401
        except ImportError:
            shim = types.ModuleType("pkg_resources")
            shim.resource_filename = lambda package, name: os.path.join(
                os.path.dirname(sys.modules[package].__file__), name
            )
            sys.modules["pkg_resources"] = shim
    if not hasattr(np, "float_"):
        np.float_ = np.float64
    try:
        import imagecorruptions
    except ImportError as exc:
        print(f"imagecorruptions not available ({exc}); pip install imagecorruptions --no-deps to compare.")
        return None
    return imagecorruptions


def table_ours(names: list[str], sizes: list[int], repeat: int) -> dict[tuple[str, int, str], float]:
    """Print and return ms per image for every type, size and level."""
    results = {}
    header = "type".ljust(24) + "".join(f"{size}²:{level}".rjust(13) for size in sizes for level in LEVELS)
    print(header)
    print("-" * len(header))
    for name in names:
        cells = []
        for size in sizes:
            image = test_image(size)
            for level in LEVELS:
                ms = time_ms(
                    lambda seed, n=name, lv=level, im=image: degradations.apply(im, n, lv, seed=seed), repeat
                )
                results[(name, size, level)] = ms
                cells.append(f"{ms:13.2f}")
        print(name.ljust(24) + "".join(cells))
    return results


def check_budget(results: dict[tuple[str, int, str], float]) -> None:
    """Print which types meet the 50 ms goal at 512², hard (mean_shift excluded)."""
    over = {
        n: ms
        for (n, size, level), ms in results.items()
        if size == 512 and level == "hard" and ms > BUDGET_MS
    }
    over.pop("mean_shift", None)
    if any(size == 512 for _, size, _ in results):
        verdict = (
            "all within" if not over else "over: " + ", ".join(f"{n} {ms:.1f} ms" for n, ms in over.items())
        )
        print(f"\ngoal (512², hard, one core, all but mean_shift < {BUDGET_MS:.0f} ms): {verdict}")


def table_imagecorruptions(names: list[str], sizes: list[int], repeat: int, ours: dict) -> None:
    """Print imagecorruptions' time on the same images and its ratio to ours."""
    package = load_imagecorruptions()
    if package is None:
        return
    print("\nvs imagecorruptions (severity 1/3/5 for low/mid/hard); ratio = theirs / ours (> 1: ours faster)")
    print(
        "type".ljust(20)
        + "size".rjust(6)
        + "level".rjust(7)
        + "ours ms".rjust(10)
        + "theirs ms".rjust(11)
        + "ratio".rjust(8)
    )
    for name in [n for n in COMPARED if n in names]:
        for size in sizes:
            image = test_image(size)
            for level in LEVELS:

                def theirs(seed: int, n=name, lv=level, im=image) -> object:
                    np.random.seed(seed)
                    return package.corrupt(im, severity=SEVERITY[lv], corruption_name=n)

                their_ms = time_ms(theirs, repeat)
                our_ms = ours[(name, size, level)]
                print(f"{name:20}{size:6}{level:>7}{our_ms:10.2f}{their_ms:11.2f}{their_ms / our_ms:8.2f}")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB between two uint8 images."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def table_mean_shift(sizes: list[int], repeat: int, ours: dict) -> None:
    """Print our mean_shift (default, fast) against the exact mode: full-resolution OpenCV mean-shift."""
    from clear_plugins.degradations.transmission import mean_shift_radius

    print(
        "\nmean_shift: ours (default) vs exact=True (cv2.pyrMeanShiftFiltering at full resolution, same radii)"
    )
    print(
        "size".rjust(6)
        + "level".rjust(7)
        + "radius".rjust(8)
        + "ours ms".rjust(10)
        + "exact ms".rjust(11)
        + "speed-up".rjust(10)
        + "PSNR dB".rjust(9)
    )
    for size in sizes:
        image = test_image(size)
        for level in LEVELS:
            start = time.perf_counter()
            exact = degradations.apply(image, "mean_shift", level, seed=0, exact=True)
            exact_ms = (time.perf_counter() - start) * 1000
            our_ms = ours.get(("mean_shift", size, level))
            if our_ms is None:
                our_ms = time_ms(
                    lambda seed, im=image, lv=level: degradations.apply(im, "mean_shift", lv, seed=seed),
                    repeat,
                )
            fast = degradations.apply(image, "mean_shift", level, seed=0)
            radius = mean_shift_radius(degradations.LEVELS[level])
            print(
                f"{size:6}{level:>7}{radius:8d}{our_ms:10.1f}{exact_ms:11.1f}{exact_ms / our_ms:10.2f}"
                f"{psnr(fast, exact):9.2f}"
            )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", default="512,1024", help="Comma-separated square sizes (default 512,1024)."
    )
    parser.add_argument("--repeat", type=int, default=5, help="Timed calls per cell (median; default 5).")
    parser.add_argument("--types", default=None, help="Comma-separated types (default: all 16).")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its tables."""
    args = parse_args(argv)
    cv2.setNumThreads(1)
    names = list(degradations.names())
    chosen = names if args.types is None else [t.strip() for t in args.types.split(",") if t.strip()]
    unknown = [t for t in chosen if t not in names]
    if unknown:
        print(f"unknown type(s) {', '.join(unknown)}; choose from {', '.join(names)}", file=sys.stderr)
        return 2
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    print(
        f"one core (cv2 threads {cv2.getNumThreads()}, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}); "
        f"median of {args.repeat}; ms per image\n"
    )
    ours = table_ours(chosen, sizes, args.repeat)
    check_budget(ours)
    if any(name in chosen for name in COMPARED):
        table_imagecorruptions(chosen, sizes, args.repeat, ours)
    if "mean_shift" in chosen:
        table_mean_shift(sizes, args.repeat, ours)
    print(f"\ntorch imported: {'torch' in sys.modules}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
