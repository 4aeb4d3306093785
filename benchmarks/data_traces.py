"""Trace-stage throughput: how bounded concurrency hides endpoint latency, and the client's own overhead.

Starts a standard-library OpenAI-compatible server on 127.0.0.1 that answers every request with a valid trace
after a fixed ``--latency``, then sends ``--requests`` trace requests (the real Fig. 7 messages with two 64-px
PNG images) through :class:`clear_plugins.data.client.TraceClient` at each ``--concurrency`` value, and prints
requests per second and the speed-up over concurrency 1, all measured in this one run. With zero latency the
same loop measures the client's per-request overhead (openai client + JSON + base64 images over loopback);
the server runs in the same process, so on few cores it competes with the client for the CPU and the GIL.

Usage: ``python benchmarks/data_traces.py [--requests 64] [--latency 0.05] [--concurrency 1 4 16] [--threads 1]``
"""

from __future__ import annotations

import argparse
import io
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from PIL import Image

from clear_plugins.data.client import TraceClient
from clear_plugins.data.config import TraceEndpointConfig
from clear_plugins.data.prompts import trace_messages

REPLY = "<think>Blurred.</think>\n<image_restore>\n<think>Clear now.</think>\n<answer>A</answer>"


def serve(latency: float) -> ThreadingHTTPServer:
    """A loopback chat-completions server that waits ``latency`` seconds per request."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            time.sleep(latency)
            body = {
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": "m",
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": REPLY}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
        buffer, "PNG"
    )
    return buffer.getvalue()


def run(base_url: str, requests: int, concurrency: int) -> float:
    """Seconds to complete ``requests`` trace requests with ``concurrency`` in flight."""
    client = TraceClient(TraceEndpointConfig(base_url=base_url, model="m", concurrency=concurrency))
    messages = trace_messages(
        "restore", "What is shown?", "A", png(0), png(1), degradation="lens_blur", level="hard"
    )
    client.complete(messages)  # warm-up: connection and client set-up are not timed
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(lambda _: client.complete(messages), range(requests)))
    elapsed = time.perf_counter() - start
    client.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument(
        "--latency", type=float, default=0.05, help="Server seconds per request (default 0.05)."
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (unused here; kept for uniformity)."
    )
    args = parser.parse_args()
    for latency in (args.latency, 0.0):
        server = serve(latency)
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        base = None
        print(f"latency {latency * 1000:.0f} ms, {args.requests} requests:")
        for concurrency in args.concurrency:
            seconds = run(url, args.requests, concurrency)
            base = base or seconds
            print(
                f"  concurrency {concurrency:>3}: {args.requests / seconds:7.1f} req/s, "
                f"{seconds / args.requests * 1000:6.1f} ms/request, speed-up x{base / seconds:.2f}"
            )
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    main()
