"""The three model kinds: a real tiny LLaVA through transformers' image-text-to-text pipeline, an
OpenAI-compatible endpoint (a loopback server), and ClearPipeline's restore flag and images."""

from __future__ import annotations

import base64
import io

import pytest
from eval_helpers import photos, tiny_llava_pipeline, tiny_model
from judge_server import JudgeServer, Reply
from PIL import Image

from clear_plugins.eval.models import HFPipelineModel, ModelError, OpenAIModel, Request


def _requests(n: int = 3) -> list[Request]:
    prompts = ["What is in the picture?", "Is this a cat? Please answer yes or no.", "Colour?"]
    return [Request(photos()[i % 3], prompts[i % 3]) for i in range(n)]


def test_hf_pipeline_baseline_batched_equals_one_at_a_time():
    pipe = tiny_llava_pipeline()
    batched = HFPipelineModel(pipe, name="tiny-llava", max_new_tokens=6, batch_size=3).answer(_requests())
    single = HFPipelineModel(pipe, name="tiny-llava", max_new_tokens=6, batch_size=1)
    one_by_one = [single.answer([r])[0] for r in _requests()]
    assert [a.text for a in batched] == [a.text for a in one_by_one]
    assert all(a.text and a.answer == a.text.strip() and a.num_restores == 0 for a in batched)
    assert all(a.seconds > 0 for a in batched)
    assert HFPipelineModel(pipe, name="tiny-llava").describe()["kind"] == "hf_pipeline"


def test_openai_endpoint_gets_the_image_and_prompt_and_answers_in_order(monkeypatch):
    monkeypatch.setenv("EVAL_TEST_KEY", "sk-test-secret")
    with JudgeServer(Reply(content="B"), Reply(content="yes"), Reply(content="red")) as server:
        model = OpenAIModel(server.base_url, "served-clear", api_key_env="EVAL_TEST_KEY", concurrency=1)
        answers = model.answer(_requests())
    assert [a.answer for a in answers] == ["B", "yes", "red"]
    body = server.received[0].body
    content = body["messages"][0]["content"]
    assert body["model"] == "served-clear" and body["temperature"] == 0.0
    assert content[1] == {"type": "text", "text": "What is in the picture?"}
    url = content[0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    sent = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert sent.size == photos()[0].size
    assert server.received[0].headers["authorization"] == "Bearer sk-test-secret"
    assert "sk-test-secret" not in str(model.describe())


def test_openai_batch_runs_concurrently_and_keeps_order():
    with JudgeServer(Reply(content="same")) as server:
        answers = OpenAIModel(server.base_url, "m", concurrency=3).answer(_requests(6))
    assert len(answers) == 6 and len(server.received) == 6
    prompts = [r.body["messages"][0]["content"][1]["text"] for r in server.received]
    assert sorted(prompts) == sorted(r.prompt for r in _requests(6))


def test_openai_outage_is_a_clear_error_without_the_key(monkeypatch):
    monkeypatch.setenv("EVAL_TEST_KEY", "sk-test-secret")
    with JudgeServer(Reply(status=503, echo_authorization=True)) as server:
        model = OpenAIModel(server.base_url, "m", api_key_env="EVAL_TEST_KEY", max_retries=0, concurrency=1)
        with pytest.raises(ModelError) as info:
            model.answer(_requests(1))
    message = str(info.value)
    assert "HTTP 503" in message and "rerun" in message
    assert "sk-test-secret" not in message and info.value.__cause__ is None and info.value.__context__ is None


def test_clear_pipeline_model_reports_restores_and_restored_images():
    model = tiny_model(keep_restored=True)
    from clear_plugins import degradations

    dark = degradations.apply(photos()[0], "dark_illumination", "hard", seed=0)
    clean_answer, dark_answer = model.answer([Request(photos()[1], "Q"), Request(dark, "Q")])
    assert clean_answer.num_restores == 0 and clean_answer.restored_images == []
    assert dark_answer.num_restores == 1 and dark_answer.restored_images[0].size == (16, 16)
    assert "<image_restore>" in dark_answer.text and dark_answer.answer
    assert model.describe()["adapter"] == "PhotoAdapter"


def test_a_saved_clear_model_folder_loads_through_automodel_and_its_adapter(tmp_path):
    from fake_backbone import FakeConfig, FakeModel, FakePlugin, build_fake
    from tiny_tokenizer import tiny_tokenizer
    from transformers import AutoConfig, AutoModel

    from clear_plugins.eval.models import load_clear_model
    from clear_plugins.plugins import load_plugins

    AutoConfig.register("clear_fake", FakeConfig, exist_ok=True)
    AutoModel.register(FakeConfig, FakeModel, exist_ok=True)
    model, _ = build_fake(script=("<think> Clear enough. </think> <answer> B </answer>",))
    model.save_pretrained(tmp_path / "clear")
    tiny_tokenizer().save_pretrained(tmp_path / "clear")
    loaded = load_clear_model(
        str(tmp_path / "clear"), plugins=load_plugins(extra=[FakePlugin()]), num_steps=4
    )
    answer = loaded.answer(_requests(1))[0]
    assert answer.answer == "B" and answer.num_restores == 0
    assert loaded.describe()["adapter"] == "FakeAdapter" and loaded.describe()["pipeline"]["num_steps"] == 4
