"""Inject CLEAR into a loaded Hugging Face model and tokenizer, idempotently and reversibly.

:func:`inject` finds the backbone adapter, then asks the ``clear_inject_model`` hook to do the work; the
built-in implementation here (registered as a plugin, ``trylast`` so backbone plugins can take over):

1. picks the tag mode (:mod:`clear_plugins.tags`): ``InjectionOptions.tag_mode``, else the mode the model's
   config records (``clear_tag_mode``), else the adapter's ``default_tag_mode``; it is written to the config so
   ``save_pretrained`` keeps it;
2. in ``"token"`` mode, adds the trajectory tags (``<think>``, ``<image_restore>``, ...) to the tokenizer as
   single, non-special tokens (so they survive ``decode(skip_special_tokens=True)`` and the trajectory parser
   sees them) and makes the embeddings large enough, reusing spare rows first (Bagel's checkpoint has 152,064
   rows for about 151,665 tokens) and growing only when the tokenizer outgrows them; never shrinking. In
   ``"text"`` mode (Bagel's default, as the CLEAR reference) the tokenizer and the embeddings are left alone;
3. routes ``model.generate(images=..., ...)`` through :class:`~clear_plugins.pipeline.ClearPipeline`
   (plain text calls go to the original ``generate``).

:meth:`Injection.undo` (or :func:`eject`) restores the tokenizer, the embedding size, the config's tag mode and
``generate``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from clear_plugins.errors import ClearConfigError
from clear_plugins.hookspecs import hookimpl
from clear_plugins.tags import TAG_MODE_ATTRIBUTE, check_tag_mode

if TYPE_CHECKING:
    from clear_plugins.pipeline import PipelineConfig

INJECTION_ATTRIBUTE = "_clear_injection"


@dataclass
class InjectionOptions:
    """What :func:`inject` sets up."""

    tags: tuple[str, ...] | None = field(
        default=None,
        metadata={"help": "Tags to add as tokens; None means clear_plugins.trajectory.SPECIAL_TAGS."},
    )
    tag_mode: str | None = field(
        default=None,
        metadata={
            "help": "'text' (tags stay plain BPE text, nothing added; the CLEAR reference) or 'token' (one added "
            "token per tag on a spare embedding row). None: the mode the model config records "
            "(clear_tag_mode), else the adapter's default_tag_mode (Bagel: 'text')."
        },
    )
    pipeline: PipelineConfig | None = field(
        default=None,
        metadata={
            "help": "How generate(images=...) answers (steps, bridge mode, K, system prompt, guidance); None "
            "means PipelineConfig()'s defaults, which follow the paper."
        },
    )


@dataclass
class Injection:
    """The record of one injection; keep it to inspect what changed or to :meth:`undo` it."""

    model: Any
    tokenizer: Any
    adapter: Any
    options: InjectionOptions
    tag_ids: dict[str, int]
    rows_before: int
    rows_after: int
    tag_mode: str = "token"
    _tokenizer_snapshot: Any = field(repr=False, default=None)
    _had_generate_attribute: bool = field(repr=False, default=False)
    _previous_generate: Any = field(repr=False, default=None)
    _previous_tag_mode: Any = field(repr=False, default=None)

    @property
    def grew_embeddings(self) -> bool:
        """Whether the embedding matrix had to grow (no spare rows were left)."""
        return self.rows_after > self.rows_before

    def undo(self) -> None:
        """Restore the tokenizer, the embedding size and ``generate`` to what they were before."""
        if self.grew_embeddings:
            self.model.resize_token_embeddings(self.rows_before)
        if self._tokenizer_snapshot is not None:
            self.tokenizer.__dict__.clear()
            self.tokenizer.__dict__.update(self._tokenizer_snapshot.__dict__)
        config = getattr(self.model, "config", None)
        if config is not None:
            setattr(config, TAG_MODE_ATTRIBUTE, self._previous_tag_mode)
        if self._had_generate_attribute:
            self.model.generate = self._previous_generate
        else:
            self.model.__dict__.pop("generate", None)
        self.model.__dict__.pop(INJECTION_ATTRIBUTE, None)


def inject(
    model: Any, tokenizer: Any, *, plugins: Any = None, options: InjectionOptions | None = None
) -> Injection:
    """Inject CLEAR into ``model`` and ``tokenizer``; calling it again returns the existing :class:`Injection`.

    Args:
        model: a loaded model that some registered adapter handles.
        tokenizer: its tokenizer (modified in place).
        plugins: a :class:`~clear_plugins.plugins.Plugins` view (default: :func:`~clear_plugins.plugins.load_plugins`).
        options: what to set up (default :class:`InjectionOptions`).
    """
    existing = getattr(model, INJECTION_ATTRIBUTE, None)
    if existing is not None:
        return existing
    if plugins is None:
        from clear_plugins.plugins import load_plugins

        plugins = load_plugins()
    adapter = plugins.adapter_for(model)(model, tokenizer)
    options = options or InjectionOptions()
    injection = plugins.pm.hook.clear_inject_model(
        model=model, tokenizer=tokenizer, adapter=adapter, options=options
    )
    model.__dict__[INJECTION_ATTRIBUTE] = injection
    return injection


def eject(model: Any) -> bool:
    """Undo the injection of ``model``; returns whether there was one."""
    injection = getattr(model, INJECTION_ATTRIBUTE, None)
    if injection is None:
        return False
    injection.undo()
    return True


def add_tags(model: Any, tokenizer: Any, tags: tuple[str, ...]) -> tuple[dict[str, int], int, int]:
    """Add ``tags`` as single tokens, reusing spare embedding rows before growing; never shrink.

    Returns ``(tag_ids, rows_before, rows_after)``.
    """
    from tokenizers import AddedToken

    missing = [tag for tag in tags if tag not in tokenizer.get_vocab()]
    tokenizer.add_tokens([AddedToken(tag, special=False, normalized=False) for tag in missing])
    rows_before = model.get_input_embeddings().weight.shape[0]
    rows_after = max(rows_before, len(tokenizer))
    if rows_after > rows_before:
        model.resize_token_embeddings(rows_after, mean_resizing=True)
    tag_ids = {tag: tokenizer.convert_tokens_to_ids(tag) for tag in tags}
    return tag_ids, rows_before, rows_after


@hookimpl(trylast=True)
def clear_inject_model(model: Any, tokenizer: Any, adapter: Any, options: InjectionOptions) -> Injection:
    """The built-in injection (see the module docstring)."""
    tags = options.tags
    if tags is None:
        from clear_plugins.trajectory import SPECIAL_TAGS as tags
    config = getattr(model, "config", None)
    previous_mode = getattr(config, TAG_MODE_ATTRIBUTE, None)
    mode = resolve_tag_mode(options, previous_mode, adapter)
    snapshot = copy.deepcopy(tokenizer)
    if mode == "token":
        tag_ids, rows_before, rows_after = add_tags(model, tokenizer, tags)
    else:
        rows_before = rows_after = model.get_input_embeddings().weight.shape[0]
        tag_ids = {}
    if config is not None:
        setattr(config, TAG_MODE_ATTRIBUTE, mode)
    injection = Injection(
        model=model,
        tokenizer=tokenizer,
        adapter=adapter,
        options=options,
        tag_ids=tag_ids,
        rows_before=rows_before,
        rows_after=rows_after,
        tag_mode=mode,
        _tokenizer_snapshot=snapshot,
        _had_generate_attribute="generate" in model.__dict__,
        _previous_generate=model.__dict__.get("generate"),
        _previous_tag_mode=previous_mode,
    )
    _route_generate(injection)
    return injection


def resolve_tag_mode(options: InjectionOptions, recorded: str | None, adapter: Any) -> str:
    """The tag mode to inject: the explicit option, else the one the config records, else the adapter's."""
    if options.tag_mode is not None:
        return check_tag_mode(options.tag_mode, "InjectionOptions.tag_mode")
    if recorded is not None:
        return check_tag_mode(recorded)
    return check_tag_mode(getattr(adapter, "default_tag_mode", "token"), "default_tag_mode")


def _route_generate(injection: Injection) -> None:
    """Make ``model.generate(images=...)`` run the restore-then-answer pipeline."""
    model = injection.model
    original = model.generate

    def generate(*args: Any, images: Any = None, **kwargs: Any) -> Any:
        if images is None and "questions" in kwargs:
            raise ClearConfigError(
                "images=None with questions=...: pass the image(s) to answer about as images=...; call "
                "generate without questions for plain text generation."
            )
        if images is None:
            return original(*args, **kwargs)
        from clear_plugins.pipeline import ClearPipeline

        pipeline = ClearPipeline.from_injection(injection)
        return pipeline(*args, images=images, **kwargs)

    generate.__doc__ = (
        "CLEAR-aware generate: with ``images=...`` runs ClearPipeline (restore-then-answer); otherwise the "
        "model's own generate."
    )
    model.__dict__["generate"] = generate
