"""The FastAPI app of ``clear-plugins serve`` (routes only; the request rules are in :mod:`clear_plugins.server`).

Kept apart so that importing :mod:`clear_plugins.server` never needs FastAPI, and without postponed annotations
so FastAPI sees the real ``Request`` class on each route.
"""

import asyncio
import contextlib
import hmac
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from clear_plugins.server import Admission, RequestError, ServerConfig, completion_body, parse_chat_request

logger = logging.getLogger("clear_plugins.server")


def error_response(exc: RequestError, headers: dict[str, str] | None = None) -> JSONResponse:
    """An OpenAI-shaped error body with the request error's status."""
    body = {"error": {"message": str(exc), "type": exc.kind, "code": exc.code, "param": None}}
    return JSONResponse(body, status_code=exc.status, headers=headers)


def check_key(request: Request, api_key: str | None) -> None:
    """Raise a 401 :class:`RequestError` unless the request carries ``Bearer api_key`` (no check when ``None``)."""
    if api_key is None:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
        raise RequestError(
            401,
            "missing or wrong API key (Authorization: Bearer KEY).",
            "invalid_api_key",
            "authentication_error",
        )


async def read_limited(request: Request, limit: int) -> bytes:
    """The body, refused with 413 past ``limit`` bytes (by ``Content-Length`` first, then while reading)."""
    too_large = RequestError(
        413, f"the request body exceeds {limit} bytes; send a smaller image.", "too_large"
    )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(setup: Any, config: ServerConfig | None = None) -> FastAPI:
    """The app serving ``setup`` (a :class:`~clear_plugins.loading.ServingSetup`); see :mod:`clear_plugins.server`."""
    config = config or ServerConfig()
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clear-answer")

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> Any:
        yield
        worker.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="clear-plugins", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.admission = Admission(config.max_queue)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models(request: Request) -> Any:
        try:
            check_key(request, config.api_key)
        except RequestError as exc:
            return error_response(exc)
        entry = {"id": config.model_name, "object": "model", "created": 0, "owned_by": "clear-plugins"}
        return {"object": "list", "data": [entry]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        try:
            check_key(request, config.api_key)
            body = await read_limited(request, config.max_request_bytes)
        except RequestError as exc:
            return error_response(exc)
        if not app.state.admission.enter():
            busy = RequestError(
                503, "the server is busy (request queue full); retry later.", "queue_full", "server_error"
            )
            return error_response(busy, headers={"Retry-After": str(config.retry_after_seconds)})
        try:
            return await answer(body)
        finally:
            app.state.admission.leave()

    async def answer(body: bytes) -> Any:
        try:
            image, question, max_tokens = parse_chat_request(body, config.file_root)
            limit = setup.pipeline.config.max_new_tokens
            overrides = {} if max_tokens is None else {"max_new_tokens": min(max_tokens, limit)}
            loop = asyncio.get_running_loop()
            output = await loop.run_in_executor(worker, lambda: setup.pipeline(image, question, **overrides))
            return completion_body(output, config.model_name, setup.settings)
        except RequestError as exc:
            return error_response(exc)
        except Exception:
            logger.exception("answering a request failed")
            failed = RequestError(
                500, "internal error while answering; see the server log.", "internal_error", "server_error"
            )
            return error_response(failed)

    return app
