"""The run files a model card reads: what trainers and the evaluator write, and how they are read back.

A card states only numbers found in these files (never retyped). Three JSON files, all optional:

``clear_training.json`` (:data:`TRAINING_FILE`; written by the trainers through :func:`record_training_stage`)::

    {"format": "clear-training/1",
     "run_id": "sft-2026-12-01T15-30-00",          # id of the latest stage's run
     "base_model": "ByteDance-Seed/BAGEL-7B-MoT",   # Hub id of the weights training started from, or null
     "base_model_license": null,                     # optional; else looked up in cards.BASE_MODEL_LICENSES
     "stages": [                                     # in training order; each trainer appends its stage
       {"stage": "sft",                              # "sft" | "grpo" | any later stage name
        "trainer": "ClearSFTTrainer", "run_id": "...", "preset": "paper",   # config preset, or null
        "hyperparameters": {"learning_rate": 2e-05, "num_train_epochs": 3, ...},   # JSON scalars only
        "dataset": {"name": null, "path": "data/sft.jsonl", "num_rows": 24886,
                    "trace_source": "llm",           # "llm" (an LLM wrote the traces) | "offline" (offline writer)
                    "trace_model": "gpt-4.1"},       # the LLM, or null
        "finished_at": "2026-12-01T16:02:11+00:00"}]}

``trainer_state.json`` (transformers' ``Trainer``): ``global_step``, ``epoch`` and the final ``train_loss`` of
``log_history`` are cited per stage when present.

``clear_eval_report.json`` (:data:`EVAL_FILE`; the evaluator's summary)::

    {"format": "clear-eval/1", "run_id": "eval-…", "judge": "rule",          # judge: optional
     "levels": ["clean", "low", "mid", "hard"],                                # column order of the table
     "results": [{"benchmark": "MMBench", "metric": "accuracy",
                  "scores": {"clean": 72.1, "low": 70.3, "mid": 68.0, "hard": 64.2},
                  "trigger_rate": {"clean": 0.01, "low": 0.05, ...},          # fraction of answers that restored
                  "num_rows": {"clean": 100, ...}}],                           # optional
     "trigger_rate": {"clean": 0.01, "low": 0.05, "mid": 0.12, "hard": 0.36}} # optional, over all benchmarks

Scores are reported in the unit the evaluator wrote; the card repeats them as they are.

Also read, so checkpoints and runs of the other tools work as they are: the flat ``clear_training.json`` that
``ClearSFTTrainer.write_metadata`` writes (``stage``, ``preset`` and the loss setup as top-level keys: one stage,
every key listed as recorded), and the evaluator's ``report.json`` (``accuracy`` and ``trigger_rate`` as
``{benchmark: {level: percent}}``).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clear_plugins.errors import ClearConfigError

TRAINING_FILE = "clear_training.json"
TRAINING_FORMAT = "clear-training/1"
EVAL_FILE = "clear_eval_report.json"
EVAL_FORMAT = "clear-eval/1"
TRAINER_STATE_FILE = "trainer_state.json"
COPIED_FILES = (TRAINING_FILE, TRAINER_STATE_FILE, EVAL_FILE)
"""Run files an export copies from the checkpoint folder (JSON only), so the card's sources travel with it."""

TRACE_SOURCES = ("llm", "offline")
"""Who wrote a dataset's reasoning traces: an LLM (App. C) or the offline trace writer."""

CORE_TRAINING_ARGS = (
    "learning_rate",
    "num_train_epochs",
    "max_steps",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "lr_scheduler_type",
    "warmup_ratio",
    "warmup_steps",
    "weight_decay",
    "adam_beta1",
    "adam_beta2",
    "max_grad_norm",
    "seed",
    "bf16",
    "num_generations",
    "beta",
    "epsilon",
    "temperature",
    "max_completion_length",
)
"""transformers / TRL arguments recorded for every stage (when the config has them), besides every field that a
clear-plugins config class declares itself."""


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ClearConfigError(f"{path} is not valid JSON ({err}); rewrite or remove it.") from err


def _check_format(data: Any, path: Path, expected: str) -> dict[str, Any]:
    if not isinstance(data, dict) or data.get("format") != expected:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ClearConfigError(
            f"{path}: format {found!r} is not {expected!r}; see clear_plugins.hub_cards.metadata."
        )
    return data


@dataclass
class TrainingRecord:
    """``clear_training.json``: the stages that produced the weights."""

    run_id: str | None
    base_model: str | None
    base_model_license: str | None
    stages: list[dict[str, Any]] = field(default_factory=list)


def read_training(folder: Path) -> TrainingRecord | None:
    """``folder``'s ``clear_training.json``, checked, or ``None`` when absent."""
    path = folder / TRAINING_FILE
    if not path.is_file():
        return None
    data = _read_json(path)
    if isinstance(data, dict) and "format" not in data and isinstance(data.get("stage"), str):
        data = _from_trainer_metadata(data)
    data = _check_format(data, path, TRAINING_FORMAT)
    stages = data.get("stages", [])
    if not isinstance(stages, list) or not all(isinstance(s, dict) and "stage" in s for s in stages):
        raise ClearConfigError(f"{path}: 'stages' must be a list of objects with a 'stage' key.")
    for stage in stages:
        source = (stage.get("dataset") or {}).get("trace_source")
        if source is not None and source not in TRACE_SOURCES:
            raise ClearConfigError(
                f"{path}: stage {stage['stage']!r} has trace_source={source!r}; use one of {TRACE_SOURCES} or null."
            )
    return TrainingRecord(
        run_id=data.get("run_id"),
        base_model=data.get("base_model"),
        base_model_license=data.get("base_model_license"),
        stages=stages,
    )


def _from_trainer_metadata(data: dict[str, Any]) -> dict[str, Any]:
    """A one-stage record from the flat metadata ``ClearSFTTrainer.write_metadata`` writes (``stage``, ``preset``
    and the loss setup as top-level keys): every other key is listed as recorded."""
    recorded = {
        k: v for k, v in data.items() if k not in ("stage", "preset", "trainer", "run_id", "base_model")
    }
    stage = {
        "stage": data["stage"],
        "trainer": data.get("trainer"),
        "run_id": data.get("run_id"),
        "preset": data.get("preset"),
        "hyperparameters": recorded,
        "dataset": {},
    }
    return {
        "format": TRAINING_FORMAT,
        "run_id": data.get("run_id"),
        "base_model": data.get("base_model"),
        "stages": [stage],
    }


def read_trainer_state(folder: Path) -> dict[str, Any] | None:
    """``global_step``, ``epoch`` and the final ``train_loss`` from ``trainer_state.json``, or ``None``."""
    path = folder / TRAINER_STATE_FILE
    if not path.is_file():
        return None
    data = _read_json(path)
    summary = {key: data[key] for key in ("global_step", "epoch") if data.get(key) is not None}
    for entry in reversed(data.get("log_history") or []):
        if "train_loss" in entry:
            summary["train_loss"] = entry["train_loss"]
            break
    return summary


@dataclass
class EvalReport:
    """``clear_eval_report.json``: per-benchmark scores and trigger rates per degradation level."""

    run_id: str | None
    levels: list[str]
    results: list[dict[str, Any]]
    trigger_rate: dict[str, float] | None
    judge: str | None
    trigger_unit: str = "fraction"
    metric: str = "score"


def read_eval_report(path: Path) -> EvalReport:
    """Read and check an eval report (see the module docstring for its keys; the evaluator's own ``report.json``
    is read too)."""
    data = _read_json(path)
    if isinstance(data, dict) and "format" not in data and isinstance(data.get("accuracy"), dict):
        return _from_eval_run_report(path, data)
    data = _check_format(data, path, EVAL_FORMAT)
    levels, results = data.get("levels"), data.get("results")
    if not isinstance(levels, list) or not levels or not all(isinstance(x, str) for x in levels):
        raise ClearConfigError(
            f"{path}: 'levels' must be a non-empty list of level names, e.g. ['clean', 'hard']."
        )
    if not isinstance(results, list):
        raise ClearConfigError(f"{path}: 'results' must be a list of per-benchmark objects.")
    for i, row in enumerate(results):
        scores = row.get("scores") if isinstance(row, dict) else None
        if not isinstance(row, dict) or not row.get("benchmark") or not isinstance(scores, dict):
            raise ClearConfigError(f"{path}: results[{i}] needs 'benchmark' and a 'scores' object.")
        bad = {k: v for k, v in scores.items() if k not in levels or not isinstance(v, int | float)}
        if bad:
            raise ClearConfigError(
                f"{path}: results[{i}] ({row['benchmark']}) has scores {bad} that are not numbers for listed levels "
                f"{levels}."
            )
    return EvalReport(
        run_id=data.get("run_id"),
        levels=levels,
        results=results,
        trigger_rate=data.get("trigger_rate"),
        judge=data.get("judge"),
    )


EVAL_RUN_LEVELS = ("clean", "low", "mid", "hard")


def _from_eval_run_report(path: Path, data: dict[str, Any]) -> EvalReport:
    """The evaluator's ``report.json`` (``clear-plugins eval``): ``accuracy`` and ``trigger_rate`` as
    ``{benchmark: {level: percent}}``, averages included as the evaluator wrote them."""
    accuracy, triggers = data["accuracy"], data.get("trigger_rate") or {}
    if not all(isinstance(row, dict) for row in (*accuracy.values(), *triggers.values())):
        raise ClearConfigError(
            f"{path}: 'accuracy' and 'trigger_rate' must map benchmarks to {{level: value}}."
        )
    present = {level for row in accuracy.values() for level in row}
    unknown = present - set(EVAL_RUN_LEVELS)
    if unknown:
        raise ClearConfigError(f"{path}: levels {sorted(unknown)} are not among {EVAL_RUN_LEVELS}.")
    levels = [level for level in EVAL_RUN_LEVELS if level in present]
    results = [
        {"benchmark": name, "metric": "accuracy (%)", "scores": dict(row), "trigger_rate": triggers.get(name)}
        for name, row in accuracy.items()
    ]
    model = data.get("model")
    return EvalReport(
        run_id=data.get("run_id") or (model.get("name") if isinstance(model, dict) else None),
        levels=levels,
        results=results,
        trigger_rate=None,
        judge=None,
        trigger_unit="percent",
        metric="accuracy (%)",
    )


def copy_run_files(source: Path | None, dest: Path, *, eval_report: str | Path | None = None) -> list[str]:
    """Copy the run files of ``source`` (and ``eval_report``, renamed :data:`EVAL_FILE`) into ``dest``.

    Each is read (checked) first, so a malformed file stops the export with its name.
    """
    copied = []
    if source is not None and source.is_dir():
        read_training(source)
        read_trainer_state(source)
        if (source / EVAL_FILE).is_file():
            read_eval_report(source / EVAL_FILE)
        for name in COPIED_FILES:
            if (source / name).is_file():
                shutil.copyfile(source / name, dest / name)
                copied.append(name)
    if eval_report is not None:
        report = Path(eval_report)
        if not report.is_file():
            raise ClearConfigError(f"eval report {report} does not exist; pass the JSON the evaluator wrote.")
        read_eval_report(report)
        shutil.copyfile(report, dest / EVAL_FILE)
        copied.append(EVAL_FILE)
    return copied


def _json_scalar(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def training_hyperparameters(args: Any) -> dict[str, Any]:
    """The hyperparameters of a trainer config to record: :data:`CORE_TRAINING_ARGS` plus every field a
    clear-plugins config class declares (JSON scalars only), read from the object, never retyped."""
    import dataclasses
    import inspect

    names = [n for n in CORE_TRAINING_ARGS if hasattr(args, n)]
    for cls in type(args).__mro__:
        if cls.__module__.startswith("clear_plugins") and dataclasses.is_dataclass(cls):
            names.extend(n for n in inspect.get_annotations(cls) if n not in names)
    values = {n: getattr(args, n) for n in names if hasattr(args, n)}
    values = {n: (v.value if hasattr(v, "value") and not _json_scalar(v) else v) for n, v in values.items()}
    values = {n: list(v) if isinstance(v, tuple) else v for n, v in values.items()}
    return {
        n: v
        for n, v in values.items()
        if _json_scalar(v) or (isinstance(v, list) and all(_json_scalar(item) for item in v))
    }


def record_training_stage(
    output_dir: str | Path,
    *,
    stage: str,
    trainer: str,
    hyperparameters: dict[str, Any],
    dataset: dict[str, Any] | None = None,
    preset: str | None = None,
    base_model: str | None = None,
    run_id: str | None = None,
    previous: str | Path | None = None,
) -> Path:
    """Write ``output_dir/clear_training.json``: the stages of ``previous`` followed by this one (the trainers call
    this when saving; saving again rewrites the file, it never appends twice).

    Args:
        stage: ``"sft"`` or ``"grpo"``.
        trainer: the trainer class name.
        hyperparameters: e.g. :func:`training_hyperparameters` of the trainer's args.
        dataset: ``name``, ``path``, ``num_rows``, ``trace_source`` (``"llm"`` | ``"offline"``), ``trace_model``.
        preset: the config preset used (``"paper"``, ``"reference"``), if any.
        base_model: Hub id of the starting weights (kept from ``previous`` when omitted).
        run_id: this run's id (default: ``{stage}-{UTC time}``).
        previous: folder of the model training started from; its stages come first.
    """
    output_dir = Path(output_dir)
    earlier = read_training(Path(previous)) if previous is not None else None
    stages = list(earlier.stages) if earlier else []
    now = datetime.now(UTC)
    run_id = run_id or f"{stage}-{now.strftime('%Y-%m-%dT%H-%M-%S')}"
    bad = {k: v for k, v in hyperparameters.items() if not _json_scalar(v)}
    if bad:
        raise ClearConfigError(
            f"hyperparameters {sorted(bad)} are not JSON scalars; convert them (e.g. str())."
        )
    source = (dataset or {}).get("trace_source")
    if source is not None and source not in TRACE_SOURCES:
        raise ClearConfigError(f"dataset trace_source={source!r}; use one of {TRACE_SOURCES} or None.")
    stages.append(
        {
            "stage": stage,
            "trainer": trainer,
            "run_id": run_id,
            "preset": preset,
            "hyperparameters": dict(hyperparameters),
            "dataset": dict(dataset or {}),
            "finished_at": now.isoformat(timespec="seconds"),
        }
    )
    record = {
        "format": TRAINING_FORMAT,
        "run_id": run_id,
        "base_model": base_model or (earlier.base_model if earlier else None),
        "base_model_license": earlier.base_model_license if earlier else None,
        "stages": stages,
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / TRAINING_FILE
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return path
