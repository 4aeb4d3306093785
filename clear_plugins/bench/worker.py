"""The work of one shard: decode each row's image, degrade it per job, encode it and write it to disk.

Runs in worker processes, so it imports only numpy, OpenCV, Pillow and the degradations (never torch).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

from clear_plugins.bench.plan import Job
from clear_plugins.bench.sources import ImagePayload

_KEPT_MODES = ("RGB", "RGBA", "L")


@dataclass(frozen=True)
class RowTask:
    """One source row: its position, id, image payload and the images to make from it."""

    position: int
    row_id: str
    payload: ImagePayload
    jobs: tuple[Job, ...]


@dataclass(frozen=True)
class ShardTask:
    """A contiguous block of rows, written under ``output_dir`` (one folder per level).

    ``exact`` is forwarded to :func:`clear_plugins.degradations.apply` (the reference algorithms instead of
    the faster approximations of mean_shift and watermark_damage).
    """

    index: int
    rows: tuple[RowTask, ...]
    output_dir: str
    image_format: str
    jpeg_quality: int
    exact: bool = False


@dataclass
class ShardResult:
    """What a shard produced: one manifest entry per written image, and the rows that could not be read."""

    index: int
    entries: list[dict[str, object]] = field(default_factory=list)
    bad_rows: list[dict[str, object]] = field(default_factory=list)


def init_worker() -> None:
    """Process-pool initializer: one OpenCV thread per worker process (the pool gives the parallelism).

    Workers ignore SIGINT: a Ctrl-C in the terminal reaches the whole process group, and the parent alone
    handles it (it terminates the workers and says how to resume), so no worker prints a traceback.
    """
    import signal

    import cv2

    signal.signal(signal.SIGINT, signal.SIG_IGN)

    cv2.setNumThreads(1)


def _payload_bytes(payload: ImagePayload) -> bytes:
    if payload.kind == "invalid":
        raise ValueError(payload.error)
    if payload.kind == "base64":
        try:
            return base64.b64decode("".join(str(payload.data).split()), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"the image cell is not valid base64 ({exc})") from exc
    if isinstance(payload.data, bytes):
        return payload.data
    path = Path(str(payload.data))
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read image file {str(path)!r} ({exc.strerror or exc})") from exc


def decode_image(payload: ImagePayload):
    """Decode a payload to a PIL image in RGB, RGBA or L (other modes converted). Raises ValueError."""
    from PIL import Image, UnidentifiedImageError

    data = _payload_bytes(payload)
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError) as exc:
        raise ValueError(f"the image bytes cannot be decoded ({exc})") from exc
    if image.mode not in _KEPT_MODES:
        has_alpha = "A" in image.getbands() or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
    return image


def encode_image(image, image_format: str, jpeg_quality: int) -> bytes:
    """Encode a PIL image: lossless PNG, or JPEG through OpenCV (RGB, alpha dropped) as the reference does."""
    if image_format == "png":
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()
    import cv2
    import numpy as np

    bgr = cv2.cvtColor(np.asarray(image.convert("RGB")), cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    if not ok:
        raise ValueError("OpenCV could not encode the image as JPEG")
    return encoded.tobytes()


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def run_shard(task: ShardTask) -> ShardResult:
    """Make every image of a shard. A row whose image cannot be read is reported, and nothing is written for it."""
    from clear_plugins import degradations

    result = ShardResult(task.index)
    root = Path(task.output_dir)
    for row in task.rows:
        try:
            image = decode_image(row.payload)
        except ValueError as exc:
            result.bad_rows.append({"position": row.position, "row_id": row.row_id, "reason": str(exc)})
            continue
        for job in row.jobs:
            degraded = degradations.apply(image, job.type, job.intensity, seed=job.seed, exact=task.exact)
            data = encode_image(degraded, task.image_format, task.jpeg_quality)
            _write(root / job.level / job.file, data)
            result.entries.append(
                {
                    "position": row.position,
                    "row_id": row.row_id,
                    "type": job.type,
                    "level": job.level,
                    "intensity": job.intensity,
                    "seed": job.seed,
                    "file": f"{job.level}/{job.file}",
                    "sha256": hashlib.sha256(data).hexdigest(),
                }
            )
    return result
