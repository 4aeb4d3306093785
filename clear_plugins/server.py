"""An OpenAI-compatible server for a CLEAR pipeline (FastAPI + uvicorn: ``pip install "clear-plugins[serve]"``).

This module holds the request rules and needs no FastAPI; the routes are in :mod:`clear_plugins.server_app`
(``create_app``).

``POST /v1/chat/completions`` takes the last ``user`` message: its ``image_url`` part (a ``data:image/...;base64``
URL, or a ``file://`` URL under ``ServerConfig.file_root``) is the image and its text parts, joined, are the question.
The reply's message content is the answer (the whole trajectory text when the model wrote no ``<answer>``); the
extra field ``clear`` holds the trajectory, its events with timings, the restore flag, the seconds per phase and the
settings (preset values included). ``GET /v1/models`` lists the model; ``GET /health`` says it is up.

One model answers one request at a time (a single worker thread); at most ``max_queue`` further requests wait,
and the next gets 503 with ``Retry-After``. Bodies over ``max_request_bytes`` get 413; bad JSON, a missing image,
an unreadable image or an empty question get 400; a wrong or missing key (when ``api_key`` is set) gets 401.
Errors are OpenAI-shaped (``{"error": {"message", "type", "code"}}``) and never carry a traceback: an unexpected
failure is logged here and the client gets a 500 with a short message. The key is never logged.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from clear_plugins.errors import ClearConfigError

logger = logging.getLogger(__name__)

MEGABYTE = 1024 * 1024


@dataclass
class ServerConfig:
    """How the server admits and answers requests."""

    model_name: str = field(
        default="clear", metadata={"help": "The model id /v1/models lists and replies name."}
    )
    api_key: str | None = field(
        default=None,
        repr=False,
        metadata={"help": "Require 'Authorization: Bearer KEY' on every /v1 route (None: open)."},
    )
    max_queue: int = field(
        default=8, metadata={"help": "Requests that may wait behind the one being answered; more get 503."}
    )
    max_request_bytes: int = field(
        default=20 * MEGABYTE, metadata={"help": "Largest request body (413 above)."}
    )
    retry_after_seconds: int = field(default=5, metadata={"help": "Retry-After of a 503 (full queue)."})
    file_root: Path | None = field(
        default=None,
        metadata={"help": "Folder file:// image URLs may point into (None: file URLs are refused)."},
    )

    def __post_init__(self) -> None:
        """Check each field; errors name the field, its value and the fix."""
        for name in ("max_queue", "max_request_bytes", "retry_after_seconds"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or value < (0 if name == "max_queue" else 1)
            ):
                raise ClearConfigError(
                    f"{name}={value!r} must be a non-negative integer (positive for sizes)."
                )
        if self.api_key is not None and not self.api_key.strip():
            raise ClearConfigError("api_key is empty; pass a non-empty key or None for an open server.")
        if self.file_root is not None:
            self.file_root = Path(self.file_root).resolve()


class RequestError(Exception):
    """A request the server rejects: HTTP status, OpenAI error type and code, and a message for the client."""

    def __init__(self, status: int, message: str, code: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.code, self.kind = status, code, kind


def _decode_image(url: str, file_root: Path | None) -> Any:
    """A PIL RGB image from a data URL or a ``file://`` URL under ``file_root``."""
    from PIL import Image

    if url.startswith("data:"):
        header, _, payload = url.partition(",")
        if ";base64" not in header or not payload:
            raise RequestError(
                400, "image_url must be a base64 data URL (data:image/png;base64,...).", "bad_image"
            )
        try:
            raw = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise RequestError(400, "image_url holds invalid base64 data.", "bad_image") from None
        source: Any = io.BytesIO(raw)
    elif url.startswith("file://"):
        source = _local_file(url, file_root)
    else:
        raise RequestError(
            400, "image_url must be a data URL or a file:// URL; http(s) URLs are not fetched.", "bad_image"
        )
    try:
        with Image.open(source) as image:
            return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError):
        raise RequestError(
            400, "the image could not be decoded; send a PNG, JPEG or WebP image.", "bad_image"
        ) from None


def _local_file(url: str, file_root: Path | None) -> Path:
    if file_root is None:
        raise RequestError(
            400,
            "file:// image URLs are disabled on this server (start it with --file-root DIR).",
            "bad_image",
        )
    path = Path(unquote(urlparse(url).path)).resolve()
    if not path.is_relative_to(file_root) or not path.is_file():
        raise RequestError(
            400, "the file:// image is not a file under the server's --file-root.", "bad_image"
        )
    return path


def parse_chat_request(body: bytes, file_root: Path | None) -> tuple[Any, str, int | None]:
    """``(image, question, max_tokens)`` of a chat-completions body; :class:`RequestError` when it has none."""
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RequestError(400, "the request body is not valid JSON.", "bad_json") from None
    messages = payload.get("messages") if isinstance(payload, dict) else None
    users = [m for m in messages or [] if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
        raise RequestError(
            400, "messages must hold a user message with an image_url part and a text part.", "no_user"
        )
    content = users[-1].get("content")
    parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
    if not isinstance(parts, list):
        raise RequestError(
            400, "the user message's content must be a string or a list of parts.", "bad_content"
        )
    texts = [p.get("text") for p in parts if isinstance(p, dict) and p.get("type") == "text"]
    urls = [p.get("image_url") for p in parts if isinstance(p, dict) and p.get("type") == "image_url"]
    question = "\n".join(t.strip() for t in texts if isinstance(t, str) and t.strip())
    if not question:
        raise RequestError(
            400, "the question is missing: add a non-empty text part to the user message.", "no_text"
        )
    if len(urls) != 1:
        raise RequestError(
            400, f"the user message must hold exactly one image_url part, got {len(urls)}.", "no_image"
        )
    url = urls[0].get("url") if isinstance(urls[0], dict) else urls[0]
    if not isinstance(url, str):
        raise RequestError(400, "image_url must be an object with a 'url' string.", "bad_image")
    max_tokens = payload.get("max_completion_tokens", payload.get("max_tokens"))
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        raise RequestError(400, f"max_tokens={max_tokens!r} must be a positive integer.", "bad_max_tokens")
    return _decode_image(url, file_root), question, max_tokens


def completion_body(output: Any, model_name: str, settings: dict[str, Any]) -> dict[str, Any]:
    """The chat-completion JSON of one :class:`~clear_plugins.pipeline.PipelineOutput`."""
    record = output.to_dict()
    tokens = sum(event.get("tokens", 0) for event in record["events"] if event["type"] == "text")
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model_name,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": output.answer if output.answer is not None else output.text,
                },
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": tokens, "total_tokens": tokens},
        "clear": {**record, "trajectory": record["text"], "settings": settings},
    }


class Admission:
    """Counts requests being answered or waiting; refuses one more than ``1 + max_queue``."""

    def __init__(self, max_queue: int) -> None:
        self.limit = max_queue + 1
        self.active = 0
        self._lock = threading.Lock()

    def enter(self) -> bool:
        """Admit one request unless the queue is full."""
        with self._lock:
            if self.active >= self.limit:
                return False
            self.active += 1
            return True

    def leave(self) -> None:
        """One admitted request is done."""
        with self._lock:
            self.active -= 1


class BackgroundServer:
    """Run an app with uvicorn in a daemon thread (tests, benchmarks, notebooks).

    ``with BackgroundServer(app) as server: OpenAI(base_url=server.base_url, ...)``; port 0 picks a free port.
    """

    def __init__(
        self, app: Any, host: str = "127.0.0.1", port: int = 0, startup_seconds: float = 30.0
    ) -> None:
        import uvicorn

        self._server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
        self._thread = threading.Thread(target=self._server.run, daemon=True, name="clear-serve")
        self._startup_seconds = startup_seconds

    @property
    def base_url(self) -> str:
        """The ``/v1`` base URL of the running server."""
        host, port = self._server.servers[0].sockets[0].getsockname()[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> BackgroundServer:
        """Start serving; returns once the socket is bound."""
        self._thread.start()
        deadline = time.monotonic() + self._startup_seconds
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"the server did not start within {self._startup_seconds} s")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Ask the server to stop and wait for its thread."""
        self._server.should_exit = True
        self._thread.join(timeout=self._startup_seconds)
