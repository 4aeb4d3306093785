"""A deterministic OpenAI-compatible trace server on 127.0.0.1 for the ``data build`` tests (standard library).

Each POST to ``/v1/chat/completions`` is attributed to a row by the ``[qNN]`` tag of its question; a behaviour
function gets ``(row, n)`` (``n``: how many requests this row sent before) and the parsed request, and returns
a :class:`Action`. By default it answers with a well-formed trace of the requested pathway whose answer is the
ground truth read from the prompt, so replies depend on the row and its request count, never on timing or
thread order. Used as a context manager like ``judge_server.JudgeServer``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from loopback_server import LoopbackServer

from clear_plugins.data.prompts import RESTORE_PROMPT

ROW = re.compile(r"\[(q\d+)\]")
TRUTH = re.compile(r"Ground-truth answer: (.*)")
PROMPT_TOKENS = 100
COMPLETION_TOKENS = 50


@dataclass(frozen=True)
class Action:
    """What to do with one request: a reply ``content`` (``None``: the correct trace), an HTTP ``status``, a hang."""

    content: str | None = None
    status: int = 200
    hang: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    echo_authorization: bool = False


@dataclass(frozen=True)
class Request:
    """One request the server saw."""

    row: str
    n: int
    pathway: str
    truth: str
    body: dict[str, Any]
    headers: dict[str, str]
    at: float


def correct_trace(pathway: str, truth: str) -> str:
    """A well-formed trace of ``pathway`` answering ``truth``."""
    if pathway == "restore":
        return (
            "<think>The image is blurred and the letters are unreadable; I will restore it.</think>\n"
            f"<image_restore>\n<think>The restored image shows the letter clearly.</think>\n<answer>{truth}</answer>"
        )
    return f"<think>Mild noise, but the letter is readable.</think>\n<answer>{truth}</answer>"


def _parse(body: dict[str, Any]) -> tuple[str, str, str]:
    messages = body.get("messages", [])
    system = next((m["content"] for m in messages if m.get("role") == "system"), "")
    user = next((m["content"] for m in messages if m.get("role") == "user"), [])
    text = (
        " ".join(p.get("text", "") for p in user if isinstance(p, dict))
        if isinstance(user, list)
        else str(user)
    )
    row = ROW.search(text)
    truth = TRUTH.search(text)
    pathway = "restore" if system == RESTORE_PROMPT else "direct"
    return (row.group(1) if row else "?"), pathway, (truth.group(1).strip() if truth else "")


class TraceServer(LoopbackServer):
    """An OpenAI-compatible endpoint answering each row as ``behave(row, n)`` says."""

    def __init__(self, behave: Callable[[str, int], Action] | None = None) -> None:
        self.behave = behave or (lambda row, n: Action())
        self._counts: dict[str, int] = {}
        self.received: list[Request] = []
        super().__init__()

    def rows(self, row: str) -> list[Request]:
        """The requests of one row, in arrival order."""
        with self._lock:
            return [r for r in self.received if r.row == row]

    def _record(self, body: dict[str, Any], headers: dict[str, str]) -> tuple[Request, Action]:
        row, pathway, truth = _parse(body)
        with self._lock:
            n = self._counts.get(row, 0)
            self._counts[row] = n + 1
            request = Request(row, n, pathway, truth, body, headers, time.monotonic())
            self.received.append(request)
        return request, self.behave(row, n)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                headers = {k.lower(): v for k, v in self.headers.items()}
                request, action = owner._record(body, headers)
                if action.hang and owner._stop.wait(action.hang):
                    return
                if action.status != 200:
                    message = f"scripted HTTP {action.status}"
                    if action.echo_authorization:
                        message += f"; you sent Authorization: {headers.get('authorization')}"
                    self._send(action.status, {"error": {"message": message}}, action.headers)
                    return
                content = action.content
                if content is None:
                    content = correct_trace(request.pathway, request.truth)
                self._send(200, _completion(body.get("model", ""), content), action.headers)

            def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str]) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        return Handler


def _completion(model: str, content: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-trace-test",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": COMPLETION_TOKENS,
            "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
        },
    }
