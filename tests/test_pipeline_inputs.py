"""Bad arguments at ClearPipeline's entry (and the injected ``generate``) fail before any generation, with an
error that names the argument and the fix."""

from __future__ import annotations

import pytest
from adapter_contract import photo
from fake_backbone import FakeAdapter, FakePlugin, build_fake
from tiny_tokenizer import tiny_tokenizer

from clear_plugins.errors import ClearConfigError
from clear_plugins.injection import InjectionOptions, inject
from clear_plugins.pipeline import ClearPipeline, PipelineConfig
from clear_plugins.plugins import load_plugins

SCRIPT = ("<think> clear enough </think> <answer> red </answer>",)


@pytest.fixture
def pipeline():
    model, _ = build_fake(script=SCRIPT)
    pipe = ClearPipeline(FakeAdapter(model), PipelineConfig(num_steps=3))
    calls = []
    start = pipe.adapter.start_context
    pipe.adapter.start_context = lambda *a, **k: calls.append(a) or start(*a, **k)
    pipe.calls = calls
    return pipe


@pytest.mark.parametrize(
    ("images", "questions", "message"),
    [
        ("photo", "", "question='' is empty; pass the question text"),
        ("photo", "   ", "question='   ' is empty"),
        ("photo", None, "questions=None: pass the question text"),
        (None, "What colour?", "images=None: pass the image"),
        ("two photos", ["q1", ""], r"questions\[1\]='' is empty"),
        ("two photos", ["q1", 7], r"questions\[1\] is a int, not a str"),
        ("photo", ["q1", "q2"], "images is a Image; with several questions pass lists of equal length"),
        ("two photos", ["q1"], "got 2 images for 1 questions; pass one image per question"),
        ("two photos", "q", "got 2 images for one question"),
    ],
)
def test_bad_inputs_name_the_argument_and_run_nothing(pipeline, images, questions, message):
    images = {"photo": photo(8), "two photos": [photo(8), photo(8)], None: None}[images]
    with pytest.raises(ClearConfigError, match=message):
        pipeline(images, questions)
    assert pipeline.calls == []


def test_an_unknown_keyword_is_a_type_error_that_suggests_the_field(pipeline):
    with pytest.raises(
        TypeError, match=r"unknown keyword argument 'max_tokens'\. Did you mean 'max_new_tokens'"
    ):
        pipeline(photo(8), "q", max_tokens=5)
    with pytest.raises(TypeError, match="PipelineConfig fields: num_steps, bridge_mode"):
        pipeline(photo(8), "q", colour="red")
    assert pipeline.calls == []
    assert pipeline([photo(8)], "q").answer == "red"  # one image in a list, one question: answered


def test_answer_checks_its_arguments(pipeline):
    with pytest.raises(ClearConfigError, match="image=None"):
        pipeline.answer(None, "q")
    with pytest.raises(ClearConfigError, match="question is a bytes, not a str"):
        pipeline.answer(photo(8), b"q")
    assert pipeline.calls == []


def test_injected_generate_validates_before_generating():
    model, _ = build_fake(script=SCRIPT, vocab_size=320)
    inject(model, tiny_tokenizer(), plugins=load_plugins(extra=[FakePlugin()]), options=InjectionOptions())
    with pytest.raises(ClearConfigError, match="question='' is empty"):
        model.generate(images=photo(8), questions="")
    with pytest.raises(ClearConfigError, match="questions=None"):
        model.generate(images=photo(8), questions=None)
    with pytest.raises(TypeError, match="unknown keyword argument 'temperature'"):
        model.generate(images=photo(8), questions="q", temperature=0.7)
    with pytest.raises(ClearConfigError, match="images=None with questions"):
        model.generate(images=None, questions="What colour?")
    assert model.generate(images=photo(8), questions="What colour?").answer == "red"
