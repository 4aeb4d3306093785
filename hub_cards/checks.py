"""Is an export folder complete and free of pickles? Checked after every export and before every upload.

:func:`export_problems` lists what is wrong, one sentence each naming the file and the fix; an empty list
means the folder loads with ``AutoModel.from_pretrained(folder, trust_remote_code=True)`` and carries its card.
"""

from __future__ import annotations

import json
from pathlib import Path

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy")
"""File suffixes that hold (or may hold) pickled Python objects; none may be exported."""

PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05", b"PK\x03\x04")
"""Leading bytes of a pickle stream (protocols 2–5) and of a zip archive (``torch.save``'s format)."""

KNOWN_SAFE_SUFFIXES = (".safetensors", ".json", ".jsonl", ".md", ".txt", ".py", ".model", ".png", ".jpg")
"""Suffixes whose formats are not pickles; their first bytes are not sniffed (a safetensors header length can
begin with the same bytes as a pickle stream)."""

TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer.model")
"""At least one of these holds the vocabulary."""

REQUIRED_FILES = ("config.json", "generation_config.json", "tokenizer_config.json", "README.md")


def pickle_files(folder: Path) -> list[Path]:
    """Files under ``folder`` that are pickles, by suffix or by their first bytes."""
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.suffix.lower() in PICKLE_SUFFIXES:
            found.append(path)
            continue
        if path.suffix.lower() in KNOWN_SAFE_SUFFIXES:
            continue
        with path.open("rb") as handle:
            head = handle.read(4)
        if any(head.startswith(magic) for magic in PICKLE_MAGIC):
            found.append(path)
    return found


def _weight_problems(folder: Path) -> list[str]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (json.JSONDecodeError, KeyError) as err:
            return [f"{index.name} is unreadable ({err}); export again."]
        missing = sorted(s for s in shards if not (folder / s).is_file())
        return [f"weight shard {s} (listed in {index.name}) is missing; export again." for s in missing]
    if not (folder / "model.safetensors").is_file():
        return ["no weights: model.safetensors (or model.safetensors.index.json and its shards) is missing."]
    return []


def _config_problems(folder: Path) -> list[str]:
    config_file = folder / "config.json"
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        return [f"config.json is missing or unreadable ({err}); export again."]
    problems = []
    auto_map = config.get("auto_map") or {}
    for auto_class in ("AutoConfig", "AutoModel"):
        reference = auto_map.get(auto_class)
        if reference is None:
            problems.append(
                f"config.json has no auto_map entry for {auto_class}; export with clear-plugins export."
            )
        elif not (folder / f"{reference.split('.')[0]}.py").is_file():
            problems.append(
                f"remote-code module {reference.split('.')[0]}.py (auto_map {auto_class}) is missing."
            )
    if "clear_inference" not in config:
        problems.append("config.json records no clear_inference settings; export with clear-plugins export.")
    return problems


def export_problems(folder: str | Path) -> list[str]:
    """Everything that keeps ``folder`` from being a complete, pickle-free export (empty when complete)."""
    folder = Path(folder)
    if not folder.is_dir():
        return [f"{folder} is not a directory; run clear-plugins export CKPT {folder} first."]
    problems = [f"{name} is missing." for name in REQUIRED_FILES if not (folder / name).is_file()]
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        problems.append(f"no tokenizer vocabulary: none of {', '.join(TOKENIZER_FILES)} is present.")
    if (folder / "config.json").is_file():
        problems.extend(_config_problems(folder))
    problems.extend(_weight_problems(folder))
    problems.extend(
        f"{p.relative_to(folder)} is a pickle file; exports hold safetensors and JSON only (delete it)."
        for p in pickle_files(folder)
    )
    return problems
