"""``data build``: the App. C pipeline from VQA pairs to the SFT and GRPO training sets, resumable stage by stage.

Stages (each cached under ``OUTDIR/stages/``; a rerun skips what is recorded there)::

    sample  -> stages/sample.jsonl   + images/clean, images/degraded
    probe   -> stages/probe.jsonl    (base model's direct answer, judge score, pathway)
    traces  -> stages/traces.jsonl   (every trace attempt: verdict, hash; the accepted trace)
    final   -> sft.jsonl, grpo.jsonl, stats.json, distribution.png

A build stops cleanly when the request budget is spent or a stop is requested (SIGTERM); everything finished
is kept, and rerunning the same command continues where it stopped and writes the same output an
uninterrupted run writes. ``build.json`` holds the settings; a rerun with different settings is refused
unless ``overwrite`` is set.
"""

from __future__ import annotations

import json
import shutil
import sys
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clear_plugins.data import finalize
from clear_plugins.data.cache import StageCache
from clear_plugins.data.client import TraceClient, Usage
from clear_plugins.data.config import DataBuildConfig
from clear_plugins.data.offline import NAME as OFFLINE_NAME
from clear_plugins.data.probe import Prober, probe_stage
from clear_plugins.data.sample import sample_stage
from clear_plugins.data.schema import TrainingRow
from clear_plugins.data.traces import ACCEPTED, DROPPED, LLMWriter, OfflineWriter, TraceStage, dry_run
from clear_plugins.errors import ClearConfigError, ClearError

SETTINGS_FILE = "build.json"
STATS_FILE = "stats.json"
PLOT_FILE = "distribution.png"
USAGE_FILE = "stages/usage.json"
OFFLINE_NOTE = (
    "Traces were written by the offline template writer, not an LLM: they teach the format and the restore "
    "decision, not visual reasoning. Say so in any model card trained on this data."
)


class BuildInterrupted(ClearError):
    """A stop was requested (SIGTERM) during a local stage; finished work is cached."""


@dataclass
class BuildReport:
    """How a build ended: ``status`` is ``complete``, ``incomplete`` (rerun to continue) or ``dry-run``."""

    status: str
    message: str
    output_dir: Path
    stats: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Path] = field(default_factory=dict)


def _prepare(config: DataBuildConfig) -> Path:
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings = out / SETTINGS_FILE
    wanted = config.fingerprint()
    if settings.is_file():
        previous = json.loads(settings.read_text(encoding="utf-8"))
        if previous != wanted:
            if not config.overwrite:
                changed = sorted(k for k in set(previous) | set(wanted) if previous.get(k) != wanted.get(k))
                raise ClearConfigError(
                    f"{out} holds a build with other settings ({', '.join(changed)} differ); rerun with the same "
                    f"settings to resume, pass --overwrite to discard it, or choose another output folder."
                )
            for name in ("stages", "images"):
                shutil.rmtree(out / name, ignore_errors=True)
            for name in ("sft.jsonl", "grpo.jsonl", STATS_FILE, PLOT_FILE):
                (out / name).unlink(missing_ok=True)
    finalize.write_json(settings, wanted)
    return out


def _add_usage(out: Path, usage: Usage | None) -> dict[str, Any]:
    """Add this run's usage to the total of earlier runs (kept in ``stages/usage.json``) and return the total."""
    path = out / USAGE_FILE
    total = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else Usage().as_dict()
    if usage is not None:
        for key, value in usage.as_dict().items():
            if key == "http_errors":
                merged = Counter(total.get(key, {}))
                merged.update(value)
                total[key] = dict(sorted(merged.items()))
            else:
                total[key] = total.get(key, 0) + value
        total["cost_usd"] = round(total["cost_usd"], 6)
        finalize.write_json(path, total)
    return total


def _bar(config: DataBuildConfig, stage: str, total: int | None) -> Any:
    """A tqdm bar on stderr, shown only on a terminal and when ``config.progress`` is on."""
    from tqdm.auto import tqdm

    shown = config.progress and sys.stderr.isatty()
    return tqdm(total=total, desc=f"data build: {stage}", unit="sample", disable=not shown, leave=False)


def _checker(stop: threading.Event, bar: Any) -> Callable[..., None]:
    """A per-unit callback: advance ``bar``; raise :class:`BuildInterrupted` once ``stop`` is set."""

    def check(count: int = 1) -> None:
        bar.update(count)
        if stop.is_set():
            raise BuildInterrupted("a stop was requested; finished work is saved, rerun to continue")

    return check


def _local_stages(config: DataBuildConfig, out: Path, prober: Prober, judge: Any, stop: threading.Event):
    """Sample and probe (no endpoint involved); ``BuildInterrupted`` once ``stop`` is set."""
    with _bar(config, "sample", config.num_samples) as bar:
        samples, bad = sample_stage(
            config, StageCache(out / "stages/sample.jsonl"), on_row=_checker(stop, bar)
        )
    with _bar(config, "probe", len(samples)) as bar:
        cache = StageCache(out / "stages/probe.jsonl")
        probes = probe_stage(config, samples, prober, judge, cache, on_batch=_checker(stop, bar))
    return samples, bad, probes


def build_dataset(
    config: DataBuildConfig,
    *,
    prober: Prober,
    judge: Any,
    stop: threading.Event | None = None,
) -> BuildReport:
    """Run (or resume) the whole pipeline; see the module docstring.

    Args:
        prober: answers questions with the base model, e.g. a
            :class:`~clear_plugins.data.probe.PipelineProber` over ``ClearPipeline``.
        judge: a :class:`~clear_plugins.rewards.judges.Judge` (probe scoring and the trace filter).
        stop: set it (e.g. from a SIGTERM handler) to stop cleanly; the build returns ``incomplete``.
    """
    stop = stop or threading.Event()
    out = _prepare(config)
    # The endpoint settings are checked before the (long) local stages, so a typo fails at once.
    client = TraceClient(config.endpoint, stop=stop) if config.writer == "llm" else None
    writer = LLMWriter(client, out) if client is not None else OfflineWriter()
    traces = StageCache(out / "stages/traces.jsonl")
    try:
        samples, bad, probes = _local_stages(config, out, prober, judge, stop)
        by_id = {p["id"]: p for p in probes}
        items = [(s, by_id[s["id"]]["pathway"]) for s in samples if s["id"] in by_id]
        if config.balance == "before":  # needs every pathway: no traces until every sample is probed
            whole = len(probes) == len(samples)
            items = finalize.balance(items, config.seed, pathway_of=lambda item: item[1])[0] if whole else []
        if config.dry_run:
            if client is None:
                return BuildReport("dry-run", "dry run: the offline writer sends nothing", out)
            return BuildReport("dry-run", dry_run(items, writer, config.endpoint.log_payloads), out)
        with _bar(config, "traces", len(items)) as bar:
            stage = TraceStage(config, writer, judge, traces, stop=stop, on_done=bar.update)
            stage.run(items, config.endpoint.concurrency if client is not None else 1)
    except BuildInterrupted as exc:
        return BuildReport("incomplete", str(exc), out)
    finally:
        usage = _add_usage(out, client.usage() if client is not None else None)
        if client is not None:
            client.close()
    finished = sum((traces.get(s["id"]) or {}).get("status") in (ACCEPTED, DROPPED) for s, _ in items)
    pending = len(samples) - len(probes) + len(items) - finished
    if pending:
        why = stage.budget_stop or (stage.errors[0]["error"] if stage.errors else "stopped")
        return BuildReport("incomplete", f"{pending} sample(s) unfinished ({why}); rerun to continue", out)
    return _finish(config, out, samples, bad, probes, items, traces, writer.name, usage)


def _rows(samples: list[dict[str, Any]], traces: StageCache, writer: str) -> list[TrainingRow]:
    rows = []
    for s in samples:
        record = traces.get(s["id"])
        if record is None or record.get("status") != ACCEPTED:
            continue
        rows.append(
            TrainingRow(
                id=s["id"],
                question=s["question"],
                answer=s["answer"],
                degraded_image=s["degraded_image"],
                clean_image=s["clean_image"],
                trajectory=record["trajectory"],
                pathway=record["pathway"],
                degradation=s["degradation"],
                level=s["level"],
                source=s["source"],
                trace_writer=writer,
            )
        )
    return rows


def _pipeline_counts(samples, bad, probes, items, traces: StageCache) -> dict[str, Any]:
    records = [traces.get(s["id"]) for s, _ in items if traces.get(s["id"]) is not None]
    verdicts = Counter(a["verdict"] for r in records for a in r["attempts"])
    accepted = [r for r in records if r["status"] == ACCEPTED]
    return {
        "sampled": len(samples),
        "unreadable": [{"id": b["id"], "reason": b["error"]} for b in bad],
        "probed": len(probes),
        "probe_correct": sum(p["pathway"] == "direct" for p in probes),
        "probe_wrong": sum(p["pathway"] == "restore" for p in probes),
        "trace_attempts": sum(verdicts.values()),
        "rejected_wrong_answer": verdicts["wrong"],
        "rejected_by_validation": verdicts["malformed"],
        "accepted": len(accepted),
        "accepted_after_regeneration": sum(len(r["attempts"]) > 1 for r in accepted),
        "dropped": sum(r["status"] == DROPPED for r in records),
        "dropped_ids": [r["id"] for r in records if r["status"] == DROPPED],
    }


def _finish(config, out, samples, bad, probes, items, traces, writer, usage) -> BuildReport:
    wanted = {s["id"] for s, _ in items}
    rows = [r for r in _rows(samples, traces, writer) if r.id in wanted]
    removed = len(samples) - len(items)
    if config.balance == "after":
        rows, removed = finalize.balance(rows, config.seed)
    sets = finalize.split(rows, config.seed)
    outputs = {}
    for name in finalize.SETS:
        outputs[name] = out / f"{name}.jsonl"
        finalize.write_jsonl(outputs[name], sets[name])
    stats = {
        "trace_writer": writer,
        "offline": writer == OFFLINE_NAME,
        "note": OFFLINE_NOTE if writer == OFFLINE_NAME else None,
        "table8": {name: finalize.set_stats(sets[name]) for name in finalize.SETS},
        "pipeline": {**_pipeline_counts(samples, bad, probes, items, traces), "removed_by_balance": removed},
        "usage": usage,
        "settings": config.fingerprint(),
    }
    plot_problem = finalize.plot_distribution(sets, out / PLOT_FILE)
    stats["plot"] = plot_problem or PLOT_FILE
    if plot_problem is None:
        outputs["plot"] = out / PLOT_FILE
    outputs["stats"] = out / STATS_FILE
    finalize.write_json(outputs["stats"], stats)
    counts = ", ".join(f"{name} {len(sets[name])}" for name in finalize.SETS)
    return BuildReport("complete", f"wrote {counts} rows to {out}", out, stats, outputs)
