"""Stage 3 of ``data build``: write a trace per sample, filter it against the ground truth, validate it.

For each probed sample a writer (an LLM through :class:`~clear_plugins.data.client.TraceClient`, or the offline
templates) writes a trace of the sample's pathway. The trace is **validated** as a training row
(:func:`~clear_plugins.data.schema.row_problem`: well formed, the pattern its pathway names) and **filtered**
(the judge must score its answer against the ground truth above the threshold). A rejected trace is written
again, up to ``trace_attempts`` traces in all, then the sample is dropped (App. C.2). Every attempt is cached
as it finishes, so an interrupted build resumes at the next attempt of each sample.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from clear_plugins.bench.plan import derive_seed
from clear_plugins.data.cache import StageCache
from clear_plugins.data.client import BudgetExhausted, TraceClient, TraceRequestError
from clear_plugins.data.config import DataBuildConfig
from clear_plugins.data.offline import NAME as OFFLINE_NAME
from clear_plugins.data.offline import offline_trace
from clear_plugins.data.prompts import describe, sha256, trace_messages
from clear_plugins.data.schema import TrainingRow, row_problem
from clear_plugins.errors import JudgeError
from clear_plugins.trajectory import parse

_LOG = logging.getLogger("clear_plugins.data")

ACCEPTED, DROPPED, PENDING = "accepted", "dropped", "pending"
_FENCE = re.compile(r"```[A-Za-z0-9_-]*\s*\n(.*?)\n?```", re.DOTALL)


class TraceWriter(Protocol):
    """Writes one trace text for a sample and pathway (``seed`` varies regenerations)."""

    name: str

    def write(self, sample: dict[str, Any], pathway: str, *, seed: int) -> str:
        """The trace text."""
        ...


class OfflineWriter:
    """The template writer of :mod:`clear_plugins.data.offline`."""

    name = OFFLINE_NAME

    def write(self, sample: dict[str, Any], pathway: str, *, seed: int) -> str:
        """A template trace."""
        return offline_trace(sample, pathway, seed=seed)


class LLMWriter:
    """Asks an LLM for the trace with the Fig. 7 prompt (or its direct variant), both images attached."""

    def __init__(self, client: TraceClient, root: str | Path) -> None:
        self.client = client
        self.root = Path(root)
        self.name = f"llm:{client.model}"

    def messages(self, sample: dict[str, Any], pathway: str) -> list[dict[str, Any]]:
        """The chat messages of one request (images read from the build folder)."""
        return trace_messages(
            pathway,
            sample["question"],
            sample["answer"],
            (self.root / sample["degraded_image"]).read_bytes(),
            (self.root / sample["clean_image"]).read_bytes(),
            degradation=sample.get("degradation"),
            level=sample.get("level"),
        )

    def write(self, sample: dict[str, Any], pathway: str, *, seed: int) -> str:
        """The model's reply, stripped, without a Markdown code fence around it."""
        reply = self.client.complete(self.messages(sample, pathway), seed=seed, label=sample["id"])
        return unfence(reply)


def unfence(text: str) -> str:
    """``text`` stripped, and unwrapped when the whole reply is one Markdown code fence (chat models add them)."""
    match = _FENCE.fullmatch(text.strip())
    return (match.group(1) if match else text).strip()


def check_trace(
    sample: dict[str, Any], pathway: str, text: str, judge: Any, threshold: float
) -> tuple[str, str | None]:
    """``("ok", None)``, ``("malformed", why)`` or ``("wrong", why)``; :class:`JudgeError` propagates."""
    row = TrainingRow(
        id=sample["id"],
        question=sample["question"],
        answer=sample["answer"],
        degraded_image=sample["degraded_image"],
        clean_image=sample["clean_image"],
        trajectory=text,
        pathway=pathway,  # type: ignore[arg-type]
    )
    problem = row_problem(row)
    if problem is not None:
        return "malformed", problem
    answer = parse(text).answer or ""
    score = float(judge.score(sample["question"], answer, sample["answer"]))
    if score > threshold:
        return "ok", None
    return "wrong", f"judge score {score:.2f} for answer {answer[:80]!r}"


class TraceStage:
    """Runs the trace stage over the probed samples with bounded concurrency."""

    def __init__(
        self,
        config: DataBuildConfig,
        writer: TraceWriter,
        judge: Any,
        cache: StageCache,
        *,
        stop: threading.Event | None = None,
        on_done: Callable[[], None] | None = None,
    ) -> None:
        self.config, self.writer, self.judge, self.cache = config, writer, judge, cache
        self.stop = stop or threading.Event()
        self.on_done = on_done
        self.errors: list[dict[str, str]] = []
        self.budget_stop: str | None = None
        self._lock = threading.Lock()

    def run(self, items: list[tuple[dict[str, Any], str]], concurrency: int) -> None:
        """Write traces for every ``(sample, pathway)`` not finished in the cache."""
        todo = [(s, p) for s, p in items if (self.cache.get(s["id"]) or {}).get("status", PENDING) == PENDING]
        if concurrency <= 1:
            for item in todo:
                self._one(*item)
            return
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            for future in [pool.submit(self._one, *item) for item in todo]:
                future.result()

    def _one(self, sample: dict[str, Any], pathway: str) -> None:
        if self.stop.is_set():
            return
        record = self.cache.get(sample["id"]) or {"id": sample["id"], "pathway": pathway, "attempts": []}
        record = {**record, "attempts": list(record["attempts"])}
        try:
            while len(record["attempts"]) < self.config.trace_attempts:
                number = len(record["attempts"])
                text = self.writer.write(
                    sample, pathway, seed=derive_seed(self.config.seed, sample["id"], str(number))
                )
                verdict, why = check_trace(sample, pathway, text, self.judge, self.config.correct_threshold)
                record["attempts"].append(
                    {"verdict": verdict, "problem": why, "sha256": sha256(text), "chars": len(text)}
                )
                if verdict == "ok":
                    record.update(status=ACCEPTED, trajectory=text)
                elif len(record["attempts"]) >= self.config.trace_attempts:
                    record.update(status=DROPPED)
                else:
                    record.update(status=PENDING)
                self.cache.append(record)
                if verdict == "ok":
                    break
        except BudgetExhausted as exc:
            with self._lock:
                self.budget_stop = self.budget_stop or str(exc)
            self.stop.set()
            return
        except (TraceRequestError, JudgeError) as exc:
            with self._lock:
                self.errors.append({"id": sample["id"], "error": str(exc)})
            _LOG.warning("sample %s left for a rerun: %s", sample["id"], exc)
            return
        if self.on_done is not None:
            self.on_done()


def dry_run(
    items: list[tuple[dict[str, Any], str]], writer: LLMWriter, log_payloads: bool, limit: int = 3
) -> str:
    """What the trace stage would send: the count, model, endpoint and the first ``limit`` requests (hashed)."""
    lines = [
        f"dry run: {len(items)} trace request(s) (plus regenerations) to model {writer.client.model!r} at "
        f"{writer.client.base_url!r}; payloads {'in full' if log_payloads else 'as SHA-256 hashes'}."
    ]
    for sample, pathway in items[:limit]:
        lines.append(
            f"{sample['id']} ({pathway}): {describe(writer.messages(sample, pathway), log_payloads)}"
        )
    return "\n".join(lines)
