"""Settings of an evaluation run (``clear-plugins eval run``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from clear_plugins.errors import ClearConfigError
from clear_plugins.eval.items import LEVELS


@dataclass
class EvalConfig:
    """What to evaluate and where the run folder goes. Defaults follow the paper's protocol (Sec. 4.1, App. B)."""

    benchmarks: tuple[str, ...] = field(
        metadata={"help": "Folders built by 'clear-plugins bench build' (one per base benchmark)."}
    )
    output_dir: str = field(
        metadata={
            "help": "Run folder: run.json, predictions.jsonl (one line per finished row) and restored/."
        }
    )
    levels: tuple[str, ...] = field(
        default=LEVELS,
        metadata={"help": "Levels to evaluate: clean (the source) and the built low, mid, hard (App. B)."},
    )
    types: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "Degradation types to keep (empty: every type in the build; Table 10 needs all 16)."
        },
    )
    batch_size: int = field(
        default=8,
        metadata={"help": "Rows handed to the model at once; also how often results are written to disk."},
    )
    limit: int | None = field(
        default=None,
        metadata={"help": "Evaluate at most this many rows per benchmark and level (smoke tests)."},
    )
    save_restored: bool = field(
        default=False,
        metadata={
            "help": "Decode and save restored images (needed for the Table 4 IQA of 'eval report --iqa')."
        },
    )
    overwrite: bool = field(
        default=False,
        metadata={"help": "Discard a previous run in output_dir made with another model or settings."},
    )
    progress: bool = field(default=True, metadata={"help": "Show a progress bar with ETA (on a terminal)."})

    def __post_init__(self) -> None:
        """Check each field; errors name the field, its value and the fix."""
        self.benchmarks = tuple(str(b) for b in self.benchmarks)
        self.levels, self.types = tuple(self.levels), tuple(self.types)
        if not self.benchmarks:
            raise ClearConfigError(
                "benchmarks is empty; pass at least one folder built by 'clear-plugins bench build'."
            )
        unknown = [level for level in self.levels if level not in LEVELS]
        if unknown or not self.levels:
            raise ClearConfigError(
                f"levels={self.levels!r} must be a non-empty subset of {', '.join(LEVELS)}; fix {unknown or 'it'}."
            )
        out = Path(self.output_dir).resolve()
        clash = [b for b in self.benchmarks if Path(b.split("@")[0]).resolve() in (out, *out.parents)]
        if clash:
            raise ClearConfigError(
                f"output_dir={self.output_dir!r} is inside the benchmark {clash[0]!r}; write the run elsewhere so "
                f"the benchmark stays as built."
            )
        if self.batch_size < 1:
            raise ClearConfigError(f"batch_size={self.batch_size} must be at least 1.")
        if self.limit is not None and self.limit < 1:
            raise ClearConfigError(f"limit={self.limit} must be at least 1, or None for every row.")

    def fingerprint(self) -> dict[str, object]:
        """The settings that decide what a row's result is (a resumed run must match them)."""
        return {"types": list(self.types), "save_restored": self.save_restored}
