"""Serve a CLEAR model as an OpenAI-compatible /v1/chat/completions endpoint (needs: pip install "clear-plugins[serve]").

Examples:
  clear-plugins serve --model BAGEL-7B-MoT --weights CLEAR --port 8000
  CLEAR_SERVE_API_KEY=secret clear-plugins serve --model saved/ --host 0.0.0.0

Then any OpenAI client asks with a user message holding one image_url part (a data URL, or a file:// URL under
--file-root) and text parts (the question):

  from openai import OpenAI
  client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="secret")
  reply = client.chat.completions.create(model="clear", messages=[{"role": "user", "content": [
      {"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}},
      {"type": "text", "text": "What does the sign say?"}]}])
  reply.choices[0].message.content            # the answer
  reply.model_extra["clear"]                  # trajectory, events with seconds, restored, settings

One request is answered at a time; --max-queue more may wait, further ones get 503 with Retry-After.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from clear_plugins.commands.model_options import add_model_arguments, load_setup

HELP = "Serve a CLEAR model as an OpenAI-compatible /v1/chat/completions endpoint."

API_KEY_ENV = "CLEAR_SERVE_API_KEY"
"""Environment variable read when --api-key is not given (keeps the key out of the process list)."""
OK, FAILED = 0, 1


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``clear-plugins serve`` arguments."""
    parser.add_argument(
        "--host", default="127.0.0.1", help="Address to bind (default 127.0.0.1: this machine only)."
    )
    parser.add_argument("--port", type=int, default=8000, help="Port (default 8000).")
    parser.add_argument(
        "--api-key",
        help=f"Require 'Authorization: Bearer KEY' (default: ${API_KEY_ENV}; unset = no key check).",
    )
    parser.add_argument(
        "--model-name", help="Model id listed by /v1/models (default: the --model folder's name)."
    )
    parser.add_argument(
        "--max-queue", type=int, default=8, help="Requests that may wait behind the running one (default 8)."
    )
    parser.add_argument(
        "--max-request-mb", type=float, default=20.0, help="Largest request body in MiB (default 20)."
    )
    parser.add_argument(
        "--file-root", type=Path, help="Allow file:// image URLs under this folder (default: refused)."
    )
    add_model_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Load the model once and serve it until interrupted; returns the exit status."""
    from clear_plugins.errors import ClearError

    try:
        import uvicorn

        from clear_plugins.server import MEGABYTE, ServerConfig
        from clear_plugins.server_app import create_app
    except ImportError:
        print(
            'clear-plugins serve: FastAPI and uvicorn are missing; pip install "clear-plugins[serve]".',
            file=sys.stderr,
        )
        return FAILED
    try:
        config = ServerConfig(
            model_name=args.model_name or Path(args.model).resolve().name,
            api_key=args.api_key or os.environ.get(API_KEY_ENV) or None,
            max_queue=args.max_queue,
            max_request_bytes=int(args.max_request_mb * MEGABYTE),
            file_root=args.file_root,
        )
        setup = load_setup(args)
        app = create_app(setup, config)
    except ClearError as err:
        print(f"clear-plugins serve: {err}", file=sys.stderr)
        return FAILED
    print(f"clear-plugins serve: {config.model_name} on http://{args.host}:{args.port}/v1", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return OK
