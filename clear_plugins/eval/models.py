"""The models ``clear-plugins eval`` measures, behind one small interface.

* :class:`PipelineModel` — a :class:`~clear_plugins.pipeline.ClearPipeline` over any backbone adapter (CLEAR
  itself: restore-then-answer, with the restore flag and decoded restored images).
* :class:`HFPipelineModel` — a plain VLM baseline through transformers' ``image-text-to-text`` pipeline.
* :class:`OpenAIModel` — any OpenAI-compatible chat endpoint (a closed model as a reference, or a served
  CLEAR model), images sent as ``data:`` URLs; a batch is sent as concurrent requests.

Each takes a batch of :class:`Request` and returns one :class:`ModelAnswer` per request, in order.
"""

from __future__ import annotations

import base64
import io
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from clear_plugins.errors import ClearConfigError, ClearError

DEFAULT_MAX_NEW_TOKENS = 512
"""Text tokens a baseline may generate per answer (the pipeline's own default, PipelineConfig)."""


class ModelError(ClearError):
    """A model could not answer a request (endpoint down, bad reply)."""


@dataclass
class Request:
    """One question: an RGB PIL image and the prompt text."""

    image: Any
    prompt: str


@dataclass
class ModelAnswer:
    """A model's reply to one request.

    Attributes:
        text: the whole generated text (the trajectory for CLEAR models).
        answer: the final answer (the ``<answer>`` content for CLEAR; the reply itself otherwise).
        num_restores: restorations run (always 0 for models without a restore step).
        seconds: wall-clock seconds spent on this request (a batch's time is shared equally).
        restored_images: decoded restored images (CLEAR with ``keep_restored``).
    """

    text: str
    answer: str | None
    num_restores: int = 0
    seconds: float = 0.0
    restored_images: list[Any] = field(default_factory=list)


@runtime_checkable
class EvalModel(Protocol):
    """What the runner needs from a model: a description and batched answers."""

    def describe(self) -> dict[str, Any]:
        """JSON-ready facts identifying the model and its settings (a resumed run must match them)."""
        ...

    def answer(self, requests: Sequence[Request]) -> list[ModelAnswer]:
        """One answer per request, in order."""
        ...


class PipelineModel:
    """CLEAR through :class:`~clear_plugins.pipeline.ClearPipeline`; ``keep_restored`` decodes restored images."""

    def __init__(self, pipeline: Any, *, name: str = "clear", keep_restored: bool = False) -> None:
        self.pipeline = pipeline
        self.name = name
        self.keep_restored = keep_restored

    def describe(self) -> dict[str, Any]:
        """The adapter class and the pipeline settings."""
        from dataclasses import asdict

        config = asdict(self.pipeline.config)
        return {
            "kind": "clear_pipeline",
            "name": self.name,
            "adapter": type(self.pipeline.adapter).__name__,
            "pipeline": {k: v for k, v in config.items() if isinstance(v, int | float | str | bool | None)},
        }

    def answer(self, requests: Sequence[Request]) -> list[ModelAnswer]:
        """Answer each request with the restore-then-answer loop (one after another: each keeps its cache)."""
        outputs = []
        for request in requests:
            out = self.pipeline.answer(
                request.image,
                request.prompt,
                config=_with_decode(self.pipeline.config, self.keep_restored),
            )
            outputs.append(
                ModelAnswer(
                    text=out.text,
                    answer=out.answer,
                    num_restores=out.num_restores,
                    seconds=out.seconds.get("total", 0.0),
                    restored_images=list(out.restored_images),
                )
            )
        return outputs


def _with_decode(config: Any, keep: bool) -> Any:
    from dataclasses import replace

    return replace(config, decode_restored=True) if keep and not config.decode_restored else config


class HFPipelineModel:
    """A baseline VLM through a transformers ``image-text-to-text`` pipeline, batched with ``batch_size``.

    Batched generation with a decoder-only model needs left padding (right padding puts pad tokens between
    the prompt and the new text, and the tiny LLaVA of the tests then answers differently batched than alone),
    so with ``batch_size > 1`` the pipeline's tokenizer is switched to ``padding_side="left"``.
    """

    def __init__(
        self,
        pipe: Any,
        *,
        name: str | None = None,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        batch_size: int = 1,
    ) -> None:
        self.pipe = pipe
        self.name = name or getattr(getattr(pipe, "model", None), "name_or_path", None) or "hf-pipeline"
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        processor = getattr(pipe, "processor", None)
        tokenizer = getattr(processor, "tokenizer", None) or getattr(pipe, "tokenizer", None)
        if batch_size > 1 and tokenizer is not None:
            tokenizer.padding_side = "left"

    @classmethod
    def from_pretrained(cls, model: str, **kwargs: Any) -> HFPipelineModel:
        """Load ``model`` (a local folder or Hub id already in the cache) with ``pipeline("image-text-to-text")``."""
        from transformers import pipeline

        return cls(pipeline("image-text-to-text", model=model), name=model, **kwargs)

    def describe(self) -> dict[str, Any]:
        """The model name and generation length."""
        return {"kind": "hf_pipeline", "name": self.name, "max_new_tokens": self.max_new_tokens}

    def answer(self, requests: Sequence[Request]) -> list[ModelAnswer]:
        """Send the batch as chat messages (image then text), greedy, and return only the new text."""
        messages = [
            [
                {
                    "role": "user",
                    "content": [{"type": "image", "image": r.image}, {"type": "text", "text": r.prompt}],
                }
            ]
            for r in requests
        ]
        start = time.perf_counter()
        outputs = self.pipe(
            text=messages,
            batch_size=self.batch_size,
            max_new_tokens=self.max_new_tokens,
            return_full_text=False,
            generate_kwargs={"do_sample": False},
        )
        share = (time.perf_counter() - start) / max(len(requests), 1)
        answers = []
        for output in outputs:
            first = output[0] if isinstance(output, list) else output
            text = _generated_text(first.get("generated_text", ""))
            answers.append(ModelAnswer(text=text, answer=text.strip(), seconds=share))
        if len(answers) != len(requests):
            raise ModelError(f"the pipeline returned {len(answers)} outputs for {len(requests)} inputs.")
        return answers


def _generated_text(value: Any) -> str:
    """The new text of a pipeline output: a string, or the last message of a chat list."""
    if isinstance(value, list) and value:
        content = value[-1].get("content", "")
        if isinstance(content, list):
            return "".join(part.get("text", "") for part in content if isinstance(part, dict))
        return str(content)
    return str(value)


def image_data_url(image: Any) -> str:
    """A PNG ``data:`` URL of a PIL image, as OpenAI-compatible chat endpoints accept."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class OpenAIModel:
    """Any OpenAI-compatible ``/v1/chat/completions`` endpoint; a batch runs as ``concurrency`` parallel calls.

    The API key is read from ``api_key_env`` (never a setting, never recorded); a local server without auth
    accepts any key.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        max_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        temperature: float = 0.0,
        timeout: float = 120.0,
        max_retries: int = 2,
        concurrency: int = 4,
    ) -> None:
        if concurrency < 1:
            raise ClearConfigError(f"concurrency={concurrency} must be at least 1.")
        import openai

        self.base_url, self.model = base_url, model
        self.max_tokens, self.temperature, self.concurrency = max_tokens, temperature, concurrency
        self.client = openai.OpenAI(
            base_url=base_url,
            api_key=os.environ.get(api_key_env) or "no-key",
            timeout=timeout,
            max_retries=max_retries,
        )

    def describe(self) -> dict[str, Any]:
        """Endpoint and model name (never the key)."""
        return {
            "kind": "openai",
            "name": self.model,
            "base_url": self.base_url,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }

    def _one(self, request: Request) -> ModelAnswer:
        import openai

        start = time.perf_counter()
        content = [
            {"type": "image_url", "image_url": {"url": image_data_url(request.image)}},
            {"type": "text", "text": request.prompt},
        ]
        failure = None
        try:
            reply = self.client.chat.completions.create(
                model=self.model,
                messages=[{"role": "user", "content": content}],
                max_tokens=self.max_tokens,
                temperature=self.temperature,
            )
        except openai.OpenAIError as exc:  # raised below, outside this block: no chain can carry the key
            failure = f"{type(exc).__name__}: {_status(exc)}"
        if failure is not None:
            raise ModelError(
                f"the endpoint {self.base_url} failed for model {self.model!r} ({failure}); check that it is up, "
                f"then rerun: finished rows are kept."
            )
        text = reply.choices[0].message.content or ""
        return ModelAnswer(text=text, answer=text.strip(), seconds=time.perf_counter() - start)

    def answer(self, requests: Sequence[Request]) -> list[ModelAnswer]:
        """Send the batch as concurrent requests; order is kept."""
        if self.concurrency == 1 or len(requests) == 1:
            return [self._one(r) for r in requests]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(requests))) as pool:
            return list(pool.map(self._one, requests))


def _status(exc: Exception) -> str:
    """A short reason for an OpenAI error that cannot carry a secret (status code or error class)."""
    status = getattr(exc, "status_code", None)
    return f"HTTP {status}" if status is not None else "no response"


def load_clear_model(
    path: str,
    *,
    trust_remote_code: bool = False,
    keep_restored: bool = False,
    plugins: Any = None,
    **pipeline_config: Any,
) -> PipelineModel:
    """Load a CLEAR model folder with ``AutoModel``/``AutoTokenizer`` and wrap it in a :class:`PipelineModel`.

    The adapter is found among the registered plugins (``plugins``, default: every installed one) from the
    model's ``config.model_type``. Folders that
    ``AutoModel`` cannot read (e.g. the official BAGEL-7B-MoT layout) are loaded by their adapter package's own
    loader in Python and passed to :class:`PipelineModel` directly.
    """
    from transformers import AutoModel, AutoTokenizer

    from clear_plugins.pipeline import ClearPipeline

    model = AutoModel.from_pretrained(path, trust_remote_code=trust_remote_code).eval()
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    pipeline = ClearPipeline.from_model(model, tokenizer, plugins=plugins, **pipeline_config)
    return PipelineModel(pipeline, name=path, keep_restored=keep_restored)
