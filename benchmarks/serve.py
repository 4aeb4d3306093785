"""Throughput and latency of ``clear-plugins serve`` on a tiny Bagel, with and without restoration.

The server (FastAPI + uvicorn, one answering worker, the request queue as shipped) runs in a thread on 127.0.0.1;
clients are the ``openai`` Python client. The tiny random Bagel (hidden 64, 2 layers; the test model) writes a
scripted trajectory (a bias on its LM head, as the tests do): either a direct answer, or a restore
(``<image_restore>`` → ``--steps`` grid points of guided denoising with the default ``clear_eval`` preset → bridge)
then an answer, so both paths run the real code. For each path it measures

- sequential: one client, ``--requests`` requests one after another;
- concurrent: ``--clients`` clients sharing ``--requests`` requests (they queue behind the single worker);

and prints requests/second, p50 / p95 latency, the same pipeline called in-process (no HTTP) for the overhead
ratio, and the concurrent/sequential throughput ratio. Images are 64 px PNG data URLs (the preset's sizes, clipped
to the tiny position tables, bring them to 128 px for the VAE and 112 px for the ViT).

Usage: ``python benchmarks/serve.py [--requests N] [--clients N] [--steps N] [--threads N]``
"""

from __future__ import annotations

import argparse
import base64
import io
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
import openai
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from bagel_helpers import build_tiny_bagel, ids, scripted

from clear_plugins.loading import build_pipeline
from clear_plugins.server import BackgroundServer, ServerConfig
from clear_plugins.server_app import create_app

QUESTION = "What does the sign say?"
PATHS = {
    "direct": ("<think> The sign is clear. </think><answer> EXIT </answer>",),
    "restore": (
        "<think> The sign is blurred. </think><image_restore>",
        "<think> Now it reads EXIT. </think><answer> EXIT </answer>",
    ),
}


def _image_url(seed: int = 0) -> str:
    pixels = np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def _ask(client: openai.OpenAI, messages: list[dict], latencies: list[float]) -> None:
    tick = time.perf_counter()
    reply = client.chat.completions.create(model="clear", messages=messages)
    latencies.append(time.perf_counter() - tick)
    if reply.choices[0].message.content != "EXIT":
        raise RuntimeError(f"unexpected answer {reply.choices[0].message.content!r}")


def _run_clients(
    base_url: str, messages: list[dict], requests: int, clients: int
) -> tuple[float, list[float]]:
    latencies: list[float] = []
    shares = [requests // clients + (1 if i < requests % clients else 0) for i in range(clients)]

    def worker(n: int) -> None:
        client = openai.OpenAI(base_url=base_url, api_key="bench", max_retries=0, timeout=600)
        for _ in range(n):
            _ask(client, messages, latencies)

    threads = [threading.Thread(target=worker, args=(n,)) for n in shares]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start, latencies


def bench_path(path: str, args: argparse.Namespace) -> dict[str, float]:
    """Measure one trajectory path in-process, sequentially and concurrently over HTTP."""
    model, tokenizer = build_tiny_bagel()
    setup = build_pipeline(model, tokenizer, num_steps=args.steps)
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    script = [i for segment in PATHS[path] for i in ids(tokenizer, segment)] + [eos]
    url = _image_url()
    messages = [
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": QUESTION}],
        }
    ]
    config = ServerConfig(max_queue=max(args.clients, 1) * 2)
    with scripted(model, script), BackgroundServer(create_app(setup, config)) as server:
        image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")
        setup.pipeline(image, QUESTION)  # warm-up
        direct = []
        for _ in range(args.requests):
            tick = time.perf_counter()
            setup.pipeline(image, QUESTION)
            direct.append(time.perf_counter() - tick)
        _run_clients(server.base_url, messages, 1, 1)  # warm-up over HTTP
        seq_time, seq = _run_clients(server.base_url, messages, args.requests, 1)
        con_time, con = _run_clients(server.base_url, messages, args.requests, args.clients)
    return {
        "in_process_p50": statistics.median(direct),
        "seq_rps": args.requests / seq_time,
        "seq_p50": _percentile(seq, 50),
        "seq_p95": _percentile(seq, 95),
        "con_rps": args.requests / con_time,
        "con_p50": _percentile(con, 50),
        "con_p95": _percentile(con, 95),
    }


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print one block per path."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20, help="requests per measurement (default 20)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients (default 4)")
    parser.add_argument(
        "--steps", type=int, default=10, help="restore grid points (default 10; the paper: 30)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(
        f"tiny Bagel (hidden 64, 2 layers), 64-px PNG data URLs, threads={torch.get_num_threads()}, "
        f"requests={args.requests}, clients={args.clients}, restore grid={args.steps} points (clear_eval CFG)"
    )
    for path in PATHS:
        r = bench_path(path, args)
        print(
            f"[{path}] in-process p50 {r['in_process_p50'] * 1e3:.1f} ms | sequential {r['seq_rps']:.2f} req/s, "
            f"p50 {r['seq_p50'] * 1e3:.1f} ms, p95 {r['seq_p95'] * 1e3:.1f} ms | {args.clients} clients "
            f"{r['con_rps']:.2f} req/s, p50 {r['con_p50'] * 1e3:.1f} ms, p95 {r['con_p95'] * 1e3:.1f} ms"
        )
        print(
            f"[{path}] ratios: HTTP/in-process latency (p50) {r['seq_p50'] / r['in_process_p50']:.2f}x, "
            f"concurrent/sequential throughput {r['con_rps'] / r['seq_rps']:.2f}x"
        )


if __name__ == "__main__":
    main()
