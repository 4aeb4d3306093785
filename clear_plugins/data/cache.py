"""Append-only stage caches: one JSONL file per stage, one record per finished unit of work.

A record is written (flushed and synced) as soon as its work is done, so an interrupted build loses nothing but
the work in flight, and a rerun skips every unit already recorded. A torn last line (the process killed
mid-write) is ignored on reading and overwritten by the next append.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class StageCache:
    """The records of one stage, keyed by ``record[key]``; later records of a key win."""

    def __init__(self, path: str | Path, key: str = "id") -> None:
        self.path = Path(path)
        self.key = key
        self._lock = threading.Lock()
        self.records: dict[str, dict[str, Any]] = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for record in self._read():
            self.records[str(record[key])] = record

    def _read(self) -> Iterator[dict[str, Any]]:
        if not self.path.is_file():
            return
        good_end = 0
        with self.path.open("rb") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    break  # a torn last line: keep what came before it
                if not line.endswith(b"\n") or not isinstance(record, dict) or self.key not in record:
                    break
                good_end += len(line)
                yield record
        if good_end != self.path.stat().st_size:
            with self.path.open("r+b") as handle:
                handle.truncate(good_end)

    def __contains__(self, key: object) -> bool:
        return str(key) in self.records

    def __len__(self) -> int:
        return len(self.records)

    def get(self, key: str) -> dict[str, Any] | None:
        """The last record of ``key``, or ``None``."""
        return self.records.get(str(key))

    def append(self, record: dict[str, Any]) -> None:
        """Write ``record`` durably (flush and fsync) and remember it; safe to call from several threads."""
        line = json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n"
        with self._lock:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
            self.records[str(record[self.key])] = record
