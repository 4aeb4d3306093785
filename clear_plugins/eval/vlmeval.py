"""Run our models inside VLMEvalKit: a model class following its ``BaseModel.generate_inner`` contract.

VLMEvalKit (github.com/open-compass/VLMEvalKit, an optional extra) hands a model a *message*, a list of
``{"type": "image" | "text", "value": path-or-text}`` dicts, and ``generate_inner(message, dataset)`` returns the
answer text; VLMEvalKit builds the prompts of its datasets and scores the answers itself. :class:`ClearVLMEval`
wraps any :mod:`~clear_plugins.eval.models` model: ``kind="clear"`` (a CLEAR model folder through
``ClearPipeline``), ``"hf"`` (transformers ``image-text-to-text``) or ``"openai"`` (an endpoint).

VLMEvalKit's ``run.py --config cfg.json`` builds a model from ``cfg["model"][NAME]`` by looking its ``class`` up in
``vlmeval.vlm``, so :func:`register` puts :class:`ClearVLMEval` there (and ``NAME`` in ``supported_VLM``), and
``python -m clear_plugins.eval.vlmeval PATH/TO/VLMEvalKit/run.py --config cfg.json`` registers, then runs
VLMEvalKit's own ``run.py``. A config::

    {"model": {"CLEAR": {"class": "ClearVLMEval", "kind": "clear", "model": "/models/clear-exported"}},
     "data": {"MMBench_DEV_EN_V11": {"class": "ImageMCQDataset", "dataset": "MMBench_DEV_EN_V11"}}}

(``kind="openai"`` also takes ``base_url``; every other key goes to the model class, e.g. ``max_new_tokens``.)
"""

from __future__ import annotations

import runpy
import sys
from collections.abc import Sequence
from typing import Any

from clear_plugins.errors import ClearConfigError

try:  # subclass VLMEvalKit's BaseModel when it is installed (its generate() calls our generate_inner)
    from vlmeval.vlm.base import BaseModel as _Base
except ImportError:  # the contract is duck-typed; VLMEvalKit is not needed to use or test the class
    _Base = object

CLASS_NAME = "ClearVLMEval"
"""The ``class`` value of a VLMEvalKit config entry."""


def _build_model(kind: str, model: str, **options: Any) -> Any:
    from clear_plugins.eval import models

    if kind == "openai":
        base_url = options.pop("base_url", None)
        if not base_url:
            raise ClearConfigError("ClearVLMEval(kind='openai') needs base_url (the endpoint's /v1 URL).")
        return models.OpenAIModel(base_url, model, **options)
    if kind == "hf":
        return models.HFPipelineModel.from_pretrained(model, **options)
    if kind == "clear":
        return models.load_clear_model(model, **options)
    raise ClearConfigError(f"ClearVLMEval kind={kind!r} is not one of clear, hf, openai.")


class ClearVLMEval(_Base):
    """A VLMEvalKit model over a clear-plugins model (built from ``kind`` and ``model``, or passed as ``eval_model``)."""

    INTERLEAVE = False
    allowed_types = ("text", "image")

    def __init__(
        self, kind: str = "clear", model: str | None = None, *, eval_model: Any = None, **options: Any
    ) -> None:
        if _Base is not object:
            super().__init__()
        if eval_model is None:
            if model is None:
                raise ClearConfigError("ClearVLMEval needs model (a folder or model name) or eval_model.")
            eval_model = _build_model(kind, model, **options)
        self.model = eval_model
        self.last_answer: Any = None

    def use_custom_prompt(self, dataset: str | None) -> bool:
        """VLMEvalKit builds every dataset's prompt (MCQ options, yes/no hints) itself."""
        return False

    def generate_inner(self, message: Sequence[dict[str, Any]], dataset: str | None = None) -> str:
        """Answer one VLMEvalKit message (one image, any number of text parts); returns the answer text."""
        from PIL import Image

        from clear_plugins.eval.models import Request

        images = [part["value"] for part in message if part.get("type") == "image"]
        texts = [str(part["value"]) for part in message if part.get("type") == "text"]
        if len(images) != 1:
            raise ClearConfigError(
                f"ClearVLMEval answers about exactly one image per question (CLEAR restores one input); dataset "
                f"{dataset!r} sent {len(images)}. Evaluate single-image datasets."
            )
        image = images[0] if hasattr(images[0], "convert") else Image.open(images[0])
        self.last_answer = self.model.answer([Request(image.convert("RGB"), "\n".join(texts))])[0]
        return self.last_answer.answer if self.last_answer.answer is not None else self.last_answer.text


def register(name: str = "CLEAR", **defaults: Any) -> None:
    """Make :class:`ClearVLMEval` visible to VLMEvalKit: as ``vlmeval.vlm.ClearVLMEval`` (for ``--config``) and,
    with ``defaults``, as ``supported_VLM[name]`` (for ``--model NAME``). Needs VLMEvalKit installed."""
    from functools import partial

    import vlmeval.config
    import vlmeval.vlm

    vlmeval.vlm.ClearVLMEval = ClearVLMEval
    if defaults:
        vlmeval.config.supported_VLM[name] = partial(ClearVLMEval, **defaults)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m clear_plugins.eval.vlmeval PATH/TO/run.py [run.py's arguments]``: register, then run it."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or not argv[0].endswith(".py"):
        print(
            "usage: python -m clear_plugins.eval.vlmeval PATH/TO/VLMEvalKit/run.py --config CFG.json",
            file=sys.stderr,
        )
        return 2
    register()
    sys.argv = argv
    runpy.run_path(argv[0], run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
