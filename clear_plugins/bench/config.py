"""Configuration of the MMD-Bench builder (App. B): what to degrade, how, and where to write it."""

from __future__ import annotations

from dataclasses import dataclass, field

from clear_plugins.errors import ClearConfigError

MODES: tuple[str, ...] = ("sampled", "full")
"""Build modes: one sampled type per row (the reference benchmark) or all 16 types per row (App. B)."""

WEIGHTINGS: tuple[str, ...] = ("uniform", "benchmark", "training")
"""Type weightings of :class:`clear_plugins.degradations.sampler.DegradationSampler` (SPEC.md, Degradations)."""

LEVEL_NAMES: tuple[str, ...] = ("low", "mid", "hard")
"""The three severity levels of MMD-Bench (App. B; Fig. 6 intensities 0.23 / 0.45 / 0.9)."""


@dataclass
class BenchBuildConfig:
    """Settings of ``clear-plugins bench build``: build degraded copies of a VQA set, one per level, plus a manifest.

    Per-image seeds are derived from (:attr:`seed`, row id, type, level), so the output does not depend on
    :attr:`workers`, :attr:`shard_size` or the order in which shards finish.
    """

    source: str = field(
        metadata={
            "help": "The VQA source: a .jsonl/.json, .csv, .tsv (VLMEvalKit style, base64 images) or .parquet "
            "file, or a folder written by datasets' save_to_disk."
        },
    )
    output_dir: str = field(
        metadata={"help": "Folder for the build: one sub-folder per level, shards/ and manifest.json."},
    )
    mode: str = field(
        default="sampled",
        metadata={
            "help": "'sampled': one type per row, drawn once with `weighting` and applied at every level (the "
            "reference benchmark script). 'full': all 16 types per row at every level (App. B protocol: "
            "every test image x 16 types x 3 levels)."
        },
    )
    weighting: str = field(
        default="benchmark",
        metadata={
            "help": "Type weighting of sampled mode: 'benchmark' (each of the 4 categories 25%, equal within; the "
            "reference benchmark script), 'uniform' (the paper's text) or 'training' (the reference training "
            "script's weights)."
        },
    )
    levels: tuple[str, ...] = field(
        default=LEVEL_NAMES,
        metadata={"help": "Levels to build, a subset of low, mid, hard (App. B; Fig. 6: 0.23 / 0.45 / 0.9)."},
    )
    seed: int = field(default=0, metadata={"help": "Global seed; per-row seeds are derived from it."})
    reference_jpeg: bool = field(
        default=False,
        metadata={
            "help": "Re-encode every output as JPEG (quality `jpeg_quality`) as the reference implementation "
            "does; the default writes lossless PNG."
        },
    )
    jpeg_quality: int = field(
        default=95,
        metadata={"help": "JPEG quality of --reference-jpeg (the reference re-encodes with quality 95)."},
    )
    exact: bool = field(
        default=False,
        metadata={
            "help": "Run the reference algorithms where the degradations default to a faster approximation: "
            "mean_shift as the reference's full-resolution cv2.pyrMeanShiftFiltering (about 6x slower at 512x512 "
            "Hard) and watermark_damage with full-resolution Telea inpainting (degradations.apply(exact=True))."
        },
    )
    workers: int = field(
        default=1,
        metadata={"help": "Worker processes (1 runs in this process). Output does not depend on it."},
    )
    shard_size: int = field(
        default=64,
        metadata={
            "help": "Source rows per shard: the unit of parallel work and of resuming an interrupted build."
        },
    )
    id_column: str | None = field(
        default=None,
        metadata={
            "help": "Column with a unique row id (auto: index, id, question_id, ...; else the row number)."
        },
    )
    image_column: str | None = field(
        default=None,
        metadata={
            "help": "Column with the image: a path relative to the source file, bytes or base64 (auto)."
        },
    )
    question_column: str | None = field(
        default=None, metadata={"help": "Question column (auto: question, ...)."}
    )
    answer_column: str | None = field(default=None, metadata={"help": "Answer column (auto: answer, ...)."})
    split: str | None = field(
        default=None,
        metadata={"help": "Split to read from a saved DatasetDict folder (required when it has several)."},
    )
    overwrite: bool = field(
        default=False,
        metadata={
            "help": "Discard a previous build in output_dir made with different settings, instead of failing."
        },
    )
    progress: bool = field(default=True, metadata={"help": "Show a progress bar (on a terminal)."})

    def __post_init__(self) -> None:
        self.levels = tuple(self.levels)
        _check_choice("mode", self.mode, MODES)
        _check_choice("weighting", self.weighting, WEIGHTINGS)
        if not self.levels:
            raise ClearConfigError("levels is empty; pass at least one of low, mid, hard.")
        for level in self.levels:
            _check_choice("levels", level, LEVEL_NAMES)
        if len(set(self.levels)) != len(self.levels):
            raise ClearConfigError(f"levels={self.levels!r} repeats a level; list each level once.")
        if self.workers < 1:
            raise ClearConfigError(f"workers={self.workers} must be at least 1.")
        if self.shard_size < 1:
            raise ClearConfigError(f"shard_size={self.shard_size} must be at least 1.")
        if not 1 <= self.jpeg_quality <= 100:
            raise ClearConfigError(f"jpeg_quality={self.jpeg_quality} must be between 1 and 100.")
        if self.jpeg_quality != 95 and not self.reference_jpeg:
            raise ClearConfigError(
                f"jpeg_quality={self.jpeg_quality} only applies with reference_jpeg=True (outputs are PNG "
                f"otherwise); set reference_jpeg=True or leave jpeg_quality at 95."
            )

    @property
    def image_format(self) -> str:
        """File format of the degraded images: ``"jpeg"`` with :attr:`reference_jpeg`, else ``"png"``."""
        return "jpeg" if self.reference_jpeg else "png"

    def fingerprint(self) -> dict[str, object]:
        """The settings that determine the output bytes (not workers, shard size or progress display)."""
        return {
            "mode": self.mode,
            "weighting": self.weighting,
            "levels": list(self.levels),
            "seed": self.seed,
            "image_format": self.image_format,
            "jpeg_quality": self.jpeg_quality if self.reference_jpeg else None,
            "exact": self.exact,
            "columns": {
                "id": self.id_column,
                "image": self.image_column,
                "question": self.question_column,
                "answer": self.answer_column,
            },
            "split": self.split,
        }


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ClearConfigError(f"{name}={value!r} is not one of {', '.join(choices)}; pick one of them.")
