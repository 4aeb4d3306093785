"""Answer a question about an image with a CLEAR model (restore-then-answer), from the shell.

Examples:
  clear-plugins answer photo.jpg "What does the sign say?" --model BAGEL-7B-MoT --weights CLEAR
  clear-plugins answer photo.jpg "What does the sign say?" --model DIR --save-restored restored.png --json
  clear-plugins answer photos/ --questions questions.jsonl --model DIR --output answers.jsonl
  clear-plugins answer photos/ "Is it raining?" --model DIR              (the same question for every image)

One image prints the trajectory (each text piece and restore with its seconds), the answer, whether it restored
and the seconds per phase; --json prints one JSON object instead (answer, text, events, seconds, settings).
A folder answers every image (rows of --questions: {"image": "name.png", "question": "..."}) with a progress
bar, one JSON line per image to --output (default stdout); rerunning with the same --output skips the images
already answered. The model is loaded once per call.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from clear_plugins.commands.model_options import add_model_arguments, load_setup

HELP = "Answer a question about an image with a CLEAR model (restore-then-answer), from the shell."

OK, FAILED, USAGE_ERROR = 0, 1, 2
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
"""Files of a folder that are answered."""


class _Failure(Exception):
    """A user-facing failure: the message and the exit status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``clear-plugins answer`` arguments."""
    parser.add_argument("image", metavar="IMAGE", type=Path, help="An image file, or a folder of images.")
    parser.add_argument(
        "question", metavar="QUESTION", nargs="?", help="The question (for a folder: asked of every image)."
    )
    parser.add_argument(
        "--questions",
        type=Path,
        metavar="FILE",
        help='With a folder: JSONL rows {"image": "name.png", "question": "..."} (image relative to the folder).',
    )
    parser.add_argument(
        "--save-restored",
        type=Path,
        metavar="PATH",
        help="Save the restored image: a PNG file for one image, a folder for a batch (NAME_restored.png).",
    )
    parser.add_argument(
        "--json", action="store_true", help="Print JSON (one object; a batch: one line per image)."
    )
    parser.add_argument(
        "--output",
        type=Path,
        metavar="FILE",
        help="Batch: append JSON lines here (resumable); default stdout.",
    )
    parser.add_argument("--no-progress", action="store_true", help="Hide the batch progress bar.")
    add_model_arguments(parser)


def _open_image(path: Path) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise _Failure(
            f"cannot read the image {str(path)!r} ({err}); pass a PNG/JPEG/... file.", FAILED
        ) from None


def _jobs(args: argparse.Namespace) -> list[tuple[Path, str]]:
    """``(image path, question)`` pairs the arguments ask for."""
    if not args.image.exists():
        raise _Failure(f"IMAGE {str(args.image)!r} does not exist.", USAGE_ERROR)
    if args.image.is_file():
        if args.questions is not None:
            raise _Failure(
                "--questions goes with a folder of images; for one image pass QUESTION.", USAGE_ERROR
            )
        if not (args.question or "").strip():
            raise _Failure('QUESTION is missing or empty; pass e.g. "What does the sign say?".', USAGE_ERROR)
        return [(args.image, args.question)]
    if args.questions is None:
        if not (args.question or "").strip():
            raise _Failure("a folder needs --questions FILE or one QUESTION for every image.", USAGE_ERROR)
        images = sorted(p for p in args.image.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        return [(p, args.question) for p in images]
    return _question_rows(args.image, args.questions)


def _question_rows(folder: Path, file: Path) -> list[tuple[Path, str]]:
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise _Failure(f"cannot read --questions {str(file)!r} ({err}).", USAGE_ERROR) from None
    jobs = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            image, question = row["image"], row["question"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise _Failure(
                f'{file}:{number}: not a row {{"image": ..., "question": ...}} ({err}); fix or remove the line.',
                USAGE_ERROR,
            ) from None
        if not isinstance(question, str) or not question.strip():
            raise _Failure(f"{file}:{number}: the question is empty; give each row a question.", USAGE_ERROR)
        jobs.append((folder / str(image), question))
    return jobs


def _record(setup: Any, image: Path, question: str, output: Any, restored: Path | None) -> dict[str, Any]:
    return {
        "image": str(image),
        "question": question,
        **output.to_dict(),
        "restored_image": str(restored) if restored is not None else None,
        "settings": setup.settings,
    }


def _answer_one(setup: Any, image_path: Path, question: str, save: Path | None) -> dict[str, Any]:
    image = _open_image(image_path)
    output = setup.pipeline.answer(image, question, config=_config(setup, save))
    restored = None
    if save is not None and output.restored_images:
        save.parent.mkdir(parents=True, exist_ok=True)
        output.restored_images[0].save(save)
        restored = save
    return _record(setup, image_path, question, output, restored)


def _config(setup: Any, save: Path | None) -> Any:
    from dataclasses import replace

    config = setup.pipeline.config
    return replace(config, decode_restored=True) if save is not None else config


def print_human(record: dict[str, Any], stream: Any = None) -> None:
    """The trajectory, the answer, the restore flag and the seconds of one answer, for people (to stdout)."""
    stream = stream or sys.stdout
    print("trajectory:", file=stream)
    for event in record["events"]:
        if event["type"] == "text":
            print(f"  [text {event['seconds']:.2f} s] {event['text'].strip()}", file=stream)
        else:
            steps = f", {event['num_steps']} grid points" if event["num_steps"] else ""
            print(
                f"  [restore {event['index']}: {event['seconds']:.2f} s{steps}, {event['bridge_mode']} "
                f"{event['bridge_seconds']:.2f} s]",
                file=stream,
            )
    print(
        f"answer: {record['answer'] if record['answer'] is not None else '(none: ' + str(record['problem']) + ')'}",
        file=stream,
    )
    count = record["num_restores"]
    print(f"restored: {'yes' if count else 'no'} ({count} restore{'s' if count != 1 else ''})", file=stream)
    print("seconds: " + " · ".join(f"{k} {v:.2f}" for k, v in record["seconds"].items()), file=stream)
    settings = record["settings"]
    print(
        f"preset: {settings['preset']} ({settings['num_steps']} grid points, tag mode {settings['tag_mode']})",
        file=stream,
    )
    if record["restored_image"]:
        print(f"restored image: {record['restored_image']}", file=stream)


def _done_jobs(output: Path | None) -> set[tuple[str, str]]:
    """``(image, question)`` pairs already answered in ``output`` (a half-written last line is ignored)."""
    if output is None or not output.is_file():
        return set()
    done = set()
    for line in output.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
            done.add((row["image"], row["question"]))
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    return done


def _run_batch(args: argparse.Namespace, setup: Any, jobs: list[tuple[Path, str]]) -> int:
    from tqdm import tqdm

    from clear_plugins.errors import ClearError

    done = _done_jobs(args.output)
    todo = [job for job in jobs if (str(job[0]), job[1]) not in done]
    sink = args.output.open("a", encoding="utf-8") if args.output is not None else sys.stdout
    if (
        args.output is not None
        and args.output.stat().st_size
        and not args.output.read_bytes().endswith(b"\n")
    ):
        sink.write("\n")  # an interrupted run left half a line: start on a fresh one
    failures = 0
    try:
        for image, question in tqdm(
            todo, desc="answer", unit="image", disable=args.no_progress, file=sys.stderr
        ):
            save = args.save_restored / f"{image.stem}_restored.png" if args.save_restored else None
            try:
                record = _answer_one(setup, image, question, save)
            except (_Failure, ClearError) as failure:
                failures += 1
                print(f"clear-plugins answer: {image}: {failure}", file=sys.stderr)
                continue
            sink.write(json.dumps(record) + "\n")
            sink.flush()
    finally:
        if sink is not sys.stdout:
            sink.close()
    return FAILED if failures else OK


def run(args: argparse.Namespace) -> int:
    """Run ``clear-plugins answer``; returns the exit status (errors are printed without a traceback)."""
    from clear_plugins.errors import ClearError

    try:
        jobs = _jobs(args)
        if args.image.is_file() and args.output is not None:
            raise _Failure(
                "--output is for a folder of images; use --json and a redirect for one image.", USAGE_ERROR
            )
        setup = load_setup(args)
        if args.image.is_dir():
            return _run_batch(args, setup, jobs)
        record = _answer_one(setup, *jobs[0], args.save_restored)
    except _Failure as failure:
        print(f"clear-plugins answer: {failure}", file=sys.stderr)
        return failure.status
    except ClearError as err:
        print(f"clear-plugins answer: {err}", file=sys.stderr)
        return FAILED
    if args.json:
        print(json.dumps(record, indent=2))
    else:
        print_human(record)
    return OK
