"""A scriptable OpenAI-compatible chat server on 127.0.0.1 for judge tests (standard library only).

Each POST to ``/v1/chat/completions`` takes the next :class:`Reply` of the script (the last one repeats once
the script is used up) and records the request's JSON body and headers. Use it as a context manager: the
server runs in a daemon thread, and leaving the block wakes any hanging handler and shuts the server down.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from loopback_server import LoopbackServer


@dataclass(frozen=True)
class Reply:
    """One scripted response: a chat completion with ``content``, an HTTP error ``status``, or a hang.

    ``echo_authorization`` appends the request's ``Authorization`` header (the API key) to the error message or,
    with status 200, to the reply content: a misbehaving server that leaks the key back to the client.
    """

    content: str = "1.0"
    status: int = 200
    hang: float = 0.0
    echo_authorization: bool = False


@dataclass(frozen=True)
class Received:
    """One request the server saw."""

    body: dict[str, Any]
    headers: dict[str, str]


class JudgeServer(LoopbackServer):
    """An OpenAI-compatible ``/v1/chat/completions`` endpoint answering from a script of :class:`Reply`."""

    def __init__(self, *script: Reply) -> None:
        self._script = list(script) or [Reply()]
        self.received: list[Received] = []
        super().__init__()

    def _next_reply(self, received: Received) -> Reply:
        """Record a request and pop the reply scripted for it."""
        with self._lock:
            self.received.append(received)
            return self._script.pop(0) if len(self._script) > 1 else self._script[0]

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        """A request handler class bound to this server's script."""
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                received = Received(body=body, headers={k.lower(): v for k, v in self.headers.items()})
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                    return
                reply = owner._next_reply(received)
                if reply.hang and owner._stop.wait(reply.hang):
                    return
                if reply.status != 200:
                    message = f"scripted HTTP {reply.status}"
                    if reply.echo_authorization:
                        message += f"; request had Authorization: {received.headers.get('authorization')}"
                    self._send(reply.status, {"error": {"message": message, "type": "server_error"}})
                    return
                content = reply.content
                if reply.echo_authorization:
                    content += f" (you sent Authorization: {received.headers.get('authorization')})"
                self._send(200, _completion(body.get("model", ""), content))

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout); nothing to answer

            def log_message(self, format: str, *args: Any) -> None:
                """Keep test output quiet."""

        return Handler


def _completion(model: str, content: str) -> dict[str, Any]:
    """A ``chat.completion`` object as the OpenAI API returns it."""
    return {
        "id": "chatcmpl-judge-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11},
    }
