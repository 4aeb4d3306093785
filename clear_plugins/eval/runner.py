"""Run a model over benchmarks x levels: batched, resumable, with a progress bar.

The run folder holds ``run.json`` (the model's description and the settings) and ``predictions.jsonl``: one
line per finished row, written and flushed after every batch. A rerun with the same model and settings skips
the rows already there; one with another model or settings stops with an error unless ``overwrite`` is set.
A row whose image cannot be read is recorded with ``error`` set and left out of every score.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clear_plugins.errors import ClearConfigError, ImageInputError
from clear_plugins.eval.config import EvalConfig
from clear_plugins.eval.items import Benchmark, EvalItem, iter_items
from clear_plugins.eval.models import EvalModel, ModelAnswer, Request
from clear_plugins.eval.scoring import build_prompt, question_kind, score_answer

RUN_NAME = "run.json"
PREDICTIONS_NAME = "predictions.jsonl"
RESTORED_DIR = "restored"
FORMAT_VERSION = 1


@dataclass
class RunResult:
    """What a run did: rows evaluated now, rows found finished, and where the records are."""

    output_dir: Path
    predictions: Path
    evaluated: int
    skipped: int
    errors: int


def read_predictions(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every record of a run folder; a torn last line (an interrupted write) is ignored."""
    path = Path(run_dir) / PREDICTIONS_NAME
    if not path.is_file():
        raise ClearConfigError(f"{run_dir} holds no {PREDICTIONS_NAME}; run 'clear-plugins eval run' first.")
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def _trim_torn_tail(path: Path) -> None:
    """Cut an unfinished last line (no newline) so appended lines start clean."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])


def describe_judge(judge: Any) -> dict[str, Any]:
    """What scores open answers: the judge class, its model name, and a fallback's parts (never a key or URL)."""
    entry: dict[str, Any] = {"type": type(judge).__name__}
    model = getattr(getattr(judge, "config", None), "model", None)
    if model:
        entry["model"] = model
    for part in ("primary", "fallback"):
        if hasattr(judge, part):
            entry[part] = describe_judge(getattr(judge, part))
    return entry


def _prepare(config: EvalConfig, model: EvalModel, judge: Any) -> tuple[Path, set[str]]:
    """Check the run folder against the model, judge and settings; returns the predictions path and finished keys."""
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    header = {
        "format_version": FORMAT_VERSION,
        "model": model.describe(),
        "judge": describe_judge(judge),
        "settings": config.fingerprint(),
    }
    header = json.loads(json.dumps(header, default=str))
    run_path, predictions = out / RUN_NAME, out / PREDICTIONS_NAME
    if run_path.is_file():
        previous = json.loads(run_path.read_text(encoding="utf-8"))
        if previous != header:
            if not config.overwrite:
                changed = sorted(k for k in header if previous.get(k) != header[k])
                raise ClearConfigError(
                    f"{out} holds a run of another model, judge or settings (changed: {', '.join(changed)}; it "
                    f"was {previous.get('model')}); pass another output folder, or overwrite=True (--overwrite) "
                    f"to discard it."
                )
            predictions.unlink(missing_ok=True)
            shutil.rmtree(out / RESTORED_DIR, ignore_errors=True)
    run_path.write_text(json.dumps(header, indent=1) + "\n", encoding="utf-8")
    if not predictions.is_file():
        return predictions, set()
    _trim_torn_tail(predictions)
    return predictions, {record["key"] for record in read_predictions(out)}


def _items(config: EvalConfig) -> Iterator[tuple[int, EvalItem]]:
    for folder in config.benchmarks:
        bench = Benchmark.open(folder)
        for level in config.levels:
            if level not in bench.levels:
                raise ClearConfigError(
                    f"benchmark {bench.name!r} has no level {level!r} (it has {', '.join(bench.levels)}); "
                    f"drop it from levels."
                )
            for position, item in enumerate(iter_items(bench, level, config.types)):
                if config.limit is not None and position >= config.limit:
                    break
                yield position, item


def _record(item: EvalItem, position: int, answer: ModelAnswer | None, score: float | None) -> dict[str, Any]:
    record = {
        "key": item.key,
        "benchmark": item.benchmark,
        "bench_dir": item.bench_dir,
        "level": item.level,
        "position": position,
        "row_id": item.row_id,
        "source_id": item.source_id,
        "type": item.type,
        "corruption_category": item.corruption_category,
        "category": item.category,
        "kind": question_kind(item),
        "circular_group": item.circular_group,
        "question": item.question,
        "ground_truth": item.answer,
    }
    if answer is None:
        return record
    return {
        **record,
        "prediction": answer.answer,
        "text": answer.text,
        "score": score,
        "num_restores": answer.num_restores,
        "restored": answer.num_restores > 0,
        "seconds": answer.seconds,
        "restored_images": [],
    }


def _save_restored(out: Path, item: EvalItem, position: int, images: Sequence[Any]) -> list[str]:
    paths = []
    for n, image in enumerate(images):
        relative = f"{RESTORED_DIR}/{item.benchmark}/{item.level}/{position:07d}_{n}.png"
        (out / relative).parent.mkdir(parents=True, exist_ok=True)
        image.save(out / relative)
        paths.append(relative)
    return paths


def _batches(pending: list[tuple[int, EvalItem]], size: int) -> Iterator[list[tuple[int, EvalItem]]]:
    for start in range(0, len(pending), size):
        yield pending[start : start + size]


def _run_batch(batch, model: EvalModel, judge: Any, out: Path, save: bool) -> list[dict[str, Any]]:
    """Answer and score one batch; rows with unreadable images become error records."""
    records, requests, readable = [], [], []
    for position, item in batch:
        try:
            requests.append(Request(item.image(), build_prompt(item)))
            readable.append((position, item))
        except ImageInputError as exc:
            records.append({**_record(item, position, None, None), "error": str(exc)})
    answers = model.answer(requests) if requests else []
    for (position, item), answer in zip(readable, answers, strict=True):
        record = _record(item, position, answer, score_answer(item, answer.answer, judge))
        if save and answer.restored_images:
            record["restored_images"] = _save_restored(out, item, position, answer.restored_images)
        records.append(record)
    return records


def run_eval(model: EvalModel, config: EvalConfig, judge: Any = None) -> RunResult:
    """Evaluate ``model`` on every benchmark and level of ``config``, resuming a previous run.

    ``judge`` scores open-ended answers (default: :func:`~clear_plugins.rewards.judges.build_judge`, the rule
    judge when no endpoint is configured). Errors of the model or judge propagate; the rows finished before
    them are on disk and a rerun continues from there.
    """
    from tqdm.auto import tqdm

    if judge is None:
        from clear_plugins.rewards.judges import build_judge

        judge = build_judge()
    predictions, done = _prepare(config, model, judge)
    every = list(_items(config))
    pending = [(p, item) for p, item in every if item.key not in done]
    evaluated = errors = 0
    bar = tqdm(
        total=len(every),
        initial=len(every) - len(pending),
        unit="row",
        desc="eval",
        disable=None if config.progress else True,
    )
    with bar, predictions.open("a", encoding="utf-8") as handle:
        for batch in _batches(pending, config.batch_size):
            records = _run_batch(batch, model, judge, Path(config.output_dir), config.save_restored)
            handle.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
            handle.flush()
            os.fsync(handle.fileno())
            evaluated += len(records)
            errors += sum(1 for r in records if "error" in r)
            bar.update(len(records))
    return RunResult(Path(config.output_dir), predictions, evaluated, len(every) - len(pending), errors)
