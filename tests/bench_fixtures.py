"""Fixtures of the MMD-Bench builder tests: 50-row VQA sources in every input format, built from real photos."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from clear_plugins.bench.config import BenchBuildConfig

ROWS = 50


def _photos() -> list[Image.Image]:
    """astronaut, chelsea and coffee from scikit-image, shrunk to a 48-pixel long side."""
    from skimage import data

    photos = []
    for array in (data.astronaut(), data.chelsea(), data.coffee()):
        image = Image.fromarray(array)
        scale = 48 / max(image.size)
        photos.append(image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS))
    return photos


def _encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def _row(number: int) -> dict:
    return {
        "question": f"What is shown in picture {number}?",
        "A": "an astronaut",
        "B": "a cat",
        "C": "a cup of coffee",
        "answer": "ABC"[number % 3],
    }


def make_source(folder: Path, fmt: str, rows: int = ROWS) -> Path:
    """Write a VQA source of ``rows`` rows in ``fmt`` under ``folder``; image ``i`` is photo ``i % 3``."""
    folder.mkdir(parents=True, exist_ok=True)
    photos = _photos()
    encoded = [_encode(photo) for photo in photos]
    if fmt in ("jsonl_paths", "csv"):
        (folder / "images").mkdir(exist_ok=True)
        for n, data in enumerate(encoded):
            (folder / "images" / f"photo{n}.png").write_bytes(data)
    records = []
    for i in range(rows):
        row = {"id": f"q{i:03d}", **_row(i)}
        if fmt in ("jsonl_paths", "csv"):
            row["image"] = f"images/photo{i % 3}.png"
        elif fmt == "jsonl_base64":
            text = base64.b64encode(encoded[i % 3]).decode()
            row["image"] = f"data:image/png;base64,{text}" if i % 2 else text
        elif fmt == "parquet":
            row["image"] = encoded[i % 3]
        records.append(row)
    if fmt in ("jsonl_paths", "jsonl_base64"):
        path = folder / "vqa.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    elif fmt == "csv":
        path = folder / "vqa.csv"
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(records[0]))
            writer.writeheader()
            writer.writerows(records)
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = folder / "vqa.parquet"
        pq.write_table(pa.Table.from_pylist(records), path)
    elif fmt == "tsv":
        path = folder / "MMBench_TOY.tsv"
        _write_vlmevalkit_tsv(path, photos, rows)
    else:
        raise ValueError(fmt)
    return path


def _write_vlmevalkit_tsv(path: Path, photos: list[Image.Image], rows: int) -> None:
    """VLMEvalKit layout: index, image (base64 JPEG, or the index of a row holding it), question, A.., answer."""
    jpeg = [base64.b64encode(_encode(photo, "JPEG")).decode() for photo in photos]
    fields = ["index", "question", "hint", "A", "B", "C", "answer", "category", "image"]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        for i in range(rows):
            image = jpeg[i % 3] if i < 3 else str(i % 3)
            writer.writerow({"index": i, "hint": "", "category": "toy", "image": image, **_row(i)})


def _config(source: Path, out: Path, **overrides) -> BenchBuildConfig:
    settings = {"shard_size": 16, "progress": False, **overrides}
    return BenchBuildConfig(source=str(source), output_dir=str(out), **settings)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree(root: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): _sha(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.relative_to(root).as_posix().startswith(skip)
    }


def _decoded(output_table, position: int) -> np.ndarray:
    from clear_plugins.bench.worker import decode_image

    return np.asarray(decode_image(output_table.payloads[position]))
