"""clear-plugins serve: the OpenAI-compatible endpoint, asked with the `openai` client on 127.0.0.1 (tiny model;
the trajectory is scripted on the tiny model's head)."""

from __future__ import annotations

import base64
import io
import threading
import time

import openai
import pytest
from adapter_contract import photo
from bagel_helpers import build_tiny_bagel
from serving_helpers import DIRECT, FIRST, SECOND, force_trajectory

from clear_plugins.loading import build_pipeline
from clear_plugins.server import BackgroundServer, ServerConfig
from clear_plugins.server_app import create_app

KEY = "test-key-123"
QUESTION = "What does the sign say?"


def data_url(image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def user(question: str | None = QUESTION, url: str | None = None) -> list[dict]:
    parts = []
    if url is not None:
        parts.append({"type": "image_url", "image_url": {"url": url}})
    if question is not None:
        parts.append({"type": "text", "text": question})
    return [{"role": "user", "content": parts}]


@pytest.fixture(scope="module")
def setup():
    model, tokenizer = build_tiny_bagel()
    return build_pipeline(model, tokenizer, num_steps=3)


@pytest.fixture(scope="module")
def server(setup, tmp_path_factory):
    root = tmp_path_factory.mktemp("files")
    photo(40).save(root / "sign.png")
    config = ServerConfig(model_name="clear-tiny", api_key=KEY, max_request_bytes=200_000, file_root=root)
    adapter = setup.pipeline.adapter
    with (
        force_trajectory(adapter.model, adapter.tokenizer, (FIRST, SECOND)),
        BackgroundServer(create_app(setup, config)) as running,
    ):
        running.file = root / "sign.png"
        yield running


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=120)


def test_answer_trajectory_and_extra_field(client):
    reply = client.chat.completions.create(model="clear-tiny", messages=user(url=data_url(photo(48))))
    assert reply.choices[0].message.content == "EXIT" and reply.model == "clear-tiny"
    extra = reply.model_extra["clear"]
    assert extra["restored"] and extra["num_restores"] == 1 and extra["trajectory"] == FIRST + SECOND
    assert [e["type"] for e in extra["events"]] == ["text", "restore", "text"]
    assert extra["settings"]["preset"] == "clear_eval" and extra["settings"]["num_steps"] == 3
    assert set(extra["seconds"]) >= {"prefill", "text", "restore", "bridge", "total"}
    assert reply.usage.completion_tokens > 0


def test_file_url_under_the_root_and_models_list(client, server):
    reply = client.chat.completions.create(model="clear-tiny", messages=user(url=server.file.as_uri()))
    assert reply.choices[0].message.content == "EXIT"
    assert [m.id for m in client.models.list().data] == ["clear-tiny"]


@pytest.mark.parametrize(
    ("messages", "code"),
    [
        (user(url="data:image/png;base64,bm90IGFuIGltYWdl"), "bad_image"),  # "not an image"
        (user(url="data:image/png;base64,@@@"), "bad_image"),
        (user(url="file:///etc/hostname"), "bad_image"),  # outside --file-root
        (user(url="https://example.com/a.png"), "bad_image"),
        (user(question="   ", url="data:image/png;base64,AAAA"), "no_text"),
        (user(question=None, url="data:image/png;base64,AAAA"), "no_text"),
        (user(), "no_image"),
        ([{"role": "system", "content": "hi"}], "no_user"),
    ],
)
def test_bad_requests_get_400_without_a_traceback(client, messages, code):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="clear-tiny", messages=messages)
    body = caught.value.body
    assert body["code"] == code and "Traceback" not in str(body) and 'File "' not in str(body)


def test_oversized_request_gets_413(client):
    big = "data:image/png;base64," + "A" * 300_000
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="clear-tiny", messages=user(url=big))
    assert caught.value.status_code == 413 and caught.value.body["code"] == "too_large"


def test_api_key_is_checked(server):
    for key in ("wrong", ""):
        wrong = openai.OpenAI(base_url=server.base_url, api_key=key or "x", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as caught:
            wrong.models.list()
        assert KEY not in str(caught.value.body)
        with pytest.raises(openai.AuthenticationError):
            wrong.chat.completions.create(model="clear-tiny", messages=user(url=data_url(photo(32))))


class Gate:
    """Wraps a pipeline so each call waits until the test opens the gate (to hold the worker busy)."""

    def __init__(self, pipeline) -> None:
        self.pipeline, self.config = pipeline, pipeline.config
        self.entered, self.open = threading.Event(), threading.Event()

    def __call__(self, *args, **kwargs):
        self.entered.set()
        assert self.open.wait(timeout=120)
        return self.pipeline(*args, **kwargs)


def test_full_queue_gets_503_with_retry_after():
    model, tokenizer = build_tiny_bagel(seed=1)
    setup = build_pipeline(model, tokenizer, num_steps=3)
    gate = Gate(setup.pipeline)
    gated = type(setup)(pipeline=gate, settings=setup.settings)
    config = ServerConfig(max_queue=1, retry_after_seconds=7)
    app = create_app(gated, config)
    results: list = []
    with force_trajectory(model, tokenizer, (DIRECT,)), BackgroundServer(app) as running:
        client = openai.OpenAI(base_url=running.base_url, api_key="none", max_retries=0, timeout=120)
        messages = user(url=data_url(photo(32)))

        def ask():
            results.append(client.chat.completions.create(model="clear", messages=messages))

        threads = [threading.Thread(target=ask) for _ in range(2)]  # one answering, one waiting
        threads[0].start()
        assert gate.entered.wait(timeout=60)
        threads[1].start()
        deadline = time.monotonic() + 60
        while app.state.admission.active < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(model="clear", messages=messages)
        assert caught.value.status_code == 503 and caught.value.response.headers["retry-after"] == "7"
        gate.open.set()
        for thread in threads:
            thread.join(timeout=120)
    assert [r.choices[0].message.content for r in results] == ["EXIT", "EXIT"]


def test_serve_command_reports_a_bad_model_folder(tmp_path, capsys):
    from clear_plugins.cli import main

    assert main(["serve", "--model", str(tmp_path), "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert "no installed backbone reads the folder" in err and "Traceback" not in err


def test_an_internal_failure_is_a_500_without_details(setup, caplog):
    class Broken:
        config = setup.pipeline.config

        def __call__(self, *args, **kwargs):
            raise RuntimeError("secret detail /home/user/model")

    broken = type(setup)(pipeline=Broken(), settings=setup.settings)
    with BackgroundServer(create_app(broken, ServerConfig())) as running:
        client = openai.OpenAI(base_url=running.base_url, api_key="none", max_retries=0, timeout=60)
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(model="clear", messages=user(url=data_url(photo(32))))
    assert caught.value.status_code == 500 and caught.value.body["code"] == "internal_error"
    assert "secret" not in str(caught.value.body) and "Traceback" not in str(caught.value.body)
    assert "secret detail" in caplog.text  # logged on the server side
