"""Apply MMD-Bench degradations (App. B, Table 7) to an image or a folder, or draw the Fig. 6 grid.

Examples:
  clear-plugins degrade photo.jpg --type motion_blur --level hard   -> photo_motion_blur_hard.png next to photo.jpg
  clear-plugins degrade photos/ --type gaussian_noise --level 0.3   -> photos_gaussian_noise_0.3/ (same sub-folders)
  clear-plugins degrade photo.jpg out/ --all                        -> out/photo_<type>_<level>.png, 16 types x 3 levels
  clear-plugins degrade --grid photo.jpg -o grid.png                -> rows = types, columns = clean/low/mid/hard

Outputs are PNG (lossless) unless OUT names another format. No output may be an input: such a command is refused.
In a folder, images sharing a stem (a.png, a.jpg) keep their extension in the output name (a_png.png, a_jpg.png).
Unreadable files are left out and listed in OUT/skipped.txt; the exit status is then 1 unless --skip-bad.
Every image gets the same --seed, so clear_plugins.degradations.apply(image, TYPE, LEVEL, seed=SEED) reproduces
any output exactly.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Callable
from pathlib import Path

from clear_plugins.commands import skipping

HELP = "Apply MMD-Bench degradations to an image or a folder, or draw the Fig. 6 grid."

USAGE_ERROR = 2
IO_ERROR = 1
SKIPPED_LIST = "skipped.txt"
"""Name of the list of left-out files a folder run writes into its output folder (only when it left some out)."""


class _Failure(Exception):
    """A user-facing failure: the message and the exit status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``clear-plugins degrade`` arguments."""
    parser.add_argument("input", nargs="?", metavar="IN", help="An image file or a folder of images.")
    parser.add_argument(
        "output",
        nargs="?",
        metavar="OUT",
        help="Output file or folder (default: next to IN, with the type and level appended).",
    )
    parser.add_argument(
        "-o", "--output", dest="output_option", metavar="OUT", help="Same as the OUT argument."
    )
    parser.add_argument("-t", "--type", dest="type", help="Degradation type (see the list below).")
    parser.add_argument(
        "-l",
        "--level",
        default="hard",
        help="low, mid, hard (0.23 / 0.45 / 0.9) or an intensity in [0, 1] (default: hard).",
    )
    parser.add_argument("-s", "--seed", type=int, default=0, help="Seed of the random parts (default 0).")
    parser.add_argument("--all", action="store_true", help="Write all 16 types x 3 levels into OUT.")
    parser.add_argument(
        "--exact",
        action="store_true",
        help="Use the reference's exact filters where the default is a faster approximation (mean_shift, "
        "watermark_damage's inpainting).",
    )
    parser.add_argument("--grid", metavar="IMAGE", help="Draw the Fig. 6 grid of IMAGE into -o (a PNG).")
    parser.add_argument(
        "--cell", type=int, default=160, help="Grid cell size in pixels (long side; default 160)."
    )
    parser.add_argument(
        "--work-size",
        type=int,
        default=512,
        help="Grid: degrade IMAGE with its long side shrunk to this many pixels first (default 512).",
    )
    skipping.add_skip_bad_argument(parser)
    parser.add_argument("--no-progress", action="store_true", help="Hide the progress bar.")
    parser.epilog = (
        "types (category): lens_blur lens_flare motion_blur dirty_lens hsv_saturation (capture); jpeg_compression "
        "block_exchange mean_shift scan_lines (transmission); dark_illumination atmospheric_turbulence "
        "gaussian_noise color_diffusion (environmental); sharpness_change graffiti watermark_damage (post_processing)"
    )


def _check_type(name: str | None, names: list[str]) -> str:
    if name is None:
        raise _Failure(
            "pass --type TYPE (or --all for every type, or --grid IMAGE for the Fig. 6 grid).", USAGE_ERROR
        )
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise _Failure(
            f"unknown degradation type {name!r}.{hint} Choose one of: {', '.join(names)}.", USAGE_ERROR
        )
    return name


def _check_level(text: str, levels: dict[str, float]) -> tuple[str | float, str]:
    """The level to pass to ``apply`` and its label in file names."""
    if text in levels:
        return text, text
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise _Failure(
            f"--level {text!r} is neither a level name ({', '.join(levels)}) nor an intensity in [0, 1].",
            USAGE_ERROR,
        )
    return value, f"{value:g}"


def _open_image(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise _Failure(
            f"cannot read image {str(path)!r} ({reason}); pass an image file Pillow can open (PNG, JPEG, WebP, ...).",
            IO_ERROR,
        ) from exc
    return image


def _save(image, path: Path) -> None:
    from PIL import Image

    file_format = Image.registered_extensions().get(path.suffix.lower())
    if file_format is None or file_format not in Image.SAVE:
        raise _Failure(
            f"output {str(path)!r} has no image suffix Pillow can write; end it in .png.", USAGE_ERROR
        )
    if file_format == "JPEG" and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def _image_files(folder: Path) -> list[Path]:
    from PIL import Image

    suffixes = set(Image.registered_extensions())
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)


def _unique_stems(files: list[Path]) -> dict[Path, str]:
    """Each file's output stem: its own stem, or ``<stem>_<ext>`` when a sibling image shares the stem.

    ``a.png`` and ``a.jpg`` in one folder become ``a_png`` and ``a_jpg``, so neither output overwrites the other;
    the name depends only on the folder's contents, never on the processing order.
    """
    groups: dict[tuple[Path, str], int] = {}
    for file in files:
        key = (file.parent, file.stem.lower())
        groups[key] = groups.get(key, 0) + 1
    return {
        file: f"{file.stem}_{file.suffix.lstrip('.').lower()}"
        if groups[(file.parent, file.stem.lower())] > 1
        else file.stem
        for file in files
    }


def _target(
    source: Path, file: Path, stem: str, out: Path | None, all_types: bool, name: str, label: str
) -> Path:
    """Where one degraded image goes (see the module docstring for the defaults)."""
    tagged = f"{stem}_{name}_{label}.png"
    if source.is_file():
        if all_types:
            return (out or source.with_name(f"{source.stem}_degradations")) / tagged
        if out is None:
            return source.with_name(tagged)
        return out if out.suffix else out / tagged
    relative = file.relative_to(source)
    if all_types:
        return (out or source.with_name(f"{source.name}_degradations")) / relative.parent / tagged
    return (out or source.with_name(f"{source.name}_{name}_{label}")) / relative.parent / f"{stem}.png"


def _plan(
    source: Path, files: list[Path], out: Path | None, all_types: bool, pairs
) -> dict[Path, dict[tuple[str, str], Path]]:
    """Every output path, by input file and (type, level label); refuses overwriting an input or another output."""
    stems = _unique_stems(files)
    inputs = {file.resolve(): file for file in files}
    plan: dict[Path, dict[tuple[str, str], Path]] = {}
    claimed: dict[Path, Path] = {}
    for file in files:
        targets = {}
        for name, _, label in pairs:
            target = _target(source, file, stems[file], out, all_types, name, label)
            resolved = target.resolve()
            if resolved in inputs:
                raise _Failure(
                    f"output {str(target)!r} is the input {str(inputs[resolved])!r}: degrading would overwrite "
                    f"it. Pass another OUT (or leave OUT out to write next to the input).",
                    USAGE_ERROR,
                )
            if resolved in claimed:
                raise _Failure(
                    f"inputs {str(claimed[resolved])!r} and {str(file)!r} would both be written to "
                    f"{str(target)!r}; rename one of them or pass another OUT.",
                    USAGE_ERROR,
                )
            claimed[resolved] = file
            targets[(name, label)] = target
        plan[file] = targets
    return plan


def _pairs(args: argparse.Namespace) -> list[tuple[str, str | float, str]]:
    """(type, level, level label) of every image to make from each input."""
    from clear_plugins import degradations

    names = list(degradations.names())
    if args.all:
        if args.type is not None:
            raise _Failure("pass either --type or --all, not both.", USAGE_ERROR)
        return [(name, level, level) for name in names for level in degradations.LEVELS]
    level, label = _check_level(args.level, dict(degradations.LEVELS))
    return [(_check_type(args.type, names), level, label)]


def _degrade_file(
    image, file: Path, pairs, target: Callable[[str, str], Path], seed: int, exact: bool = False
) -> Path:
    """Write every (type, level) of one opened image; a degradation that refuses the image is a failure."""
    from clear_plugins import degradations
    from clear_plugins.errors import ClearError

    path = file
    for name, level, label in pairs:
        try:
            degraded = degradations.apply(image, name, level, seed=seed, exact=exact)
        except ClearError as exc:
            raise _Failure(f"cannot degrade {str(file)!r}: {exc}", IO_ERROR) from exc
        path = target(name, label)
        _save(degraded, path)
    return path


def _skipped_list(source: Path, out: Path | None, args: argparse.Namespace, pairs) -> Path:
    """Where a folder run lists the files it left out: ``skipped.txt`` in its output folder."""
    if args.all:
        root = out or source.with_name(f"{source.name}_degradations")
    else:
        name, _, label = pairs[0]
        root = out or source.with_name(f"{source.name}_{name}_{label}")
    return root / SKIPPED_LIST


def _degrade(args: argparse.Namespace, out: Path | None) -> int:
    from tqdm.auto import tqdm

    source = Path(args.input)
    if not source.exists():
        raise _Failure(f"{str(source)!r} does not exist; pass an image file or a folder of images.", IO_ERROR)
    pairs = _pairs(args)
    files = [source] if source.is_file() else _image_files(source)
    if not files:
        raise _Failure(
            f"folder {str(source)!r} holds no image files; pass a folder with PNG/JPEG/... images.", IO_ERROR
        )
    plan = _plan(source, files, out, args.all, pairs)
    skipped: list[str] = []
    last = None
    for file in tqdm(files, unit="image", disable=True if args.no_progress else None):
        try:
            image = _open_image(file)
            last = _degrade_file(
                image, file, pairs, lambda name, label, f=file: plan[f][(name, label)], args.seed, args.exact
            )
        except _Failure as failure:
            if source.is_file():
                raise
            print(f"clear-plugins degrade: skipped: {failure}", file=sys.stderr)
            skipped.append(f"{file}\t{failure}")
    written = (len(files) - len(skipped)) * len(pairs)
    print(
        f"clear-plugins degrade: wrote {written} image(s)" + (f", the last to {last}" if last else ""),
        file=sys.stderr,
    )
    if not skipped:
        return 0
    listing = _skipped_list(source, out, args, pairs)
    listing.parent.mkdir(parents=True, exist_ok=True)
    listing.write_text("".join(line + "\n" for line in skipped), encoding="utf-8")
    return skipping.finish("degrade", len(skipped), "file(s)", str(listing), args.skip_bad)


def _grid(args: argparse.Namespace, out: Path | None) -> int:
    from clear_plugins.bench.grid import draw_grid

    if args.input is not None:
        raise _Failure(
            f"--grid takes the image itself; drop the extra argument {args.input!r} (use -o for the output).",
            USAGE_ERROR,
        )
    if args.cell < 8 or args.work_size < 8:
        raise _Failure(
            f"--cell {args.cell} and --work-size {args.work_size} must be at least 8 pixels.", USAGE_ERROR
        )
    source = Path(args.grid)
    if not source.is_file():
        raise _Failure(f"{str(source)!r} is not a file; pass an image file to --grid.", IO_ERROR)
    image = _open_image(source)
    target = out if out is not None else source.with_name(f"{source.stem}_grid.png")
    if target.resolve() == source.resolve():
        raise _Failure(
            f"-o {str(target)!r} is the input image: drawing the grid would overwrite it. Pass another -o.",
            USAGE_ERROR,
        )
    _save(draw_grid(image, seed=args.seed, cell=args.cell, work_size=args.work_size), target)
    print(f"clear-plugins degrade: wrote the grid to {target}", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``clear-plugins degrade``; returns the exit status."""
    if args.output and args.output_option and args.output != args.output_option:
        print(
            "clear-plugins degrade: error: OUT given twice (as an argument and with -o); pass it once.",
            file=sys.stderr,
        )
        return USAGE_ERROR
    out_text = args.output_option or args.output
    out = Path(out_text) if out_text else None
    try:
        if args.grid is not None:
            return _grid(args, out)
        if args.input is None:
            raise _Failure("pass an image file or folder (IN), or --grid IMAGE.", USAGE_ERROR)
        return _degrade(args, out)
    except _Failure as failure:
        print(f"clear-plugins degrade: error: {failure}", file=sys.stderr)
        return failure.status
