"""Upload: every local problem is reported before any network call; network failures become one-line errors."""

from __future__ import annotations

import http.server
import json
import shutil
import socket
import threading
from unittest import mock

import pytest
from bagel_helpers import build_tiny_bagel
from huggingface_hub import HfApi, constants

from clear_plugins.cli import main
from clear_plugins.hub_cards.export import export_model
from clear_plugins.hub_cards.metadata import record_training_stage
from clear_plugins.hub_cards.upload import UploadError, upload_export

TOKEN = "hf_test_secret_token_0123456789"


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    """A complete export of a tiny model whose checkpoint carries a training record (run id ``sft-run-42``)."""
    model, tokenizer = build_tiny_bagel()
    checkpoint = tmp_path_factory.mktemp("ckpt")
    record_training_stage(
        checkpoint, stage="sft", trainer="ClearSFTTrainer", hyperparameters={}, run_id="sft-run-42"
    )
    out = tmp_path_factory.mktemp("exports") / "tiny-clear"
    export_model(model, tokenizer, out, source=checkpoint)
    return out


@pytest.fixture
def logged_out(monkeypatch, tmp_path):
    """No token anywhere: no HF_TOKEN, and token files in an empty folder."""
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "stored_tokens"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
def no_network_calls():
    """The huggingface_hub calls that would touch the network; any call fails the test."""
    with (
        mock.patch.object(HfApi, "create_repo", side_effect=AssertionError("network call")) as create,
        mock.patch.object(HfApi, "upload_folder", side_effect=AssertionError("network call")) as upload,
    ):
        yield create, upload


def _copy(export_dir, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(export_dir, folder)
    return folder


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: (f / "README.md").unlink(), "README.md is missing"),
        (
            lambda f: (f / "training_args.bin").write_bytes(b"\x80\x04junk"),
            "training_args.bin is a pickle file",
        ),
        (lambda f: (f / "notes.dat").write_bytes(b"\x80\x05\x95pickled"), "notes.dat is a pickle file"),
        (lambda f: (f / "modeling_clear.py").unlink(), "modeling_clear.py (auto_map AutoModel) is missing"),
        (lambda f: (f / "tokenizer.json").unlink(), "no tokenizer vocabulary"),
        (lambda f: (f / "model.safetensors").unlink(), "no weights"),
    ],
)
def test_incomplete_folder_is_refused_before_any_network_call(
    export_dir, tmp_path, no_network_calls, damage, message, monkeypatch
):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    folder = _copy(export_dir, tmp_path)
    damage(folder)
    with pytest.raises(UploadError, match="not a complete export") as info:
        upload_export(folder, "me/tiny-clear")
    assert message in str(info.value)
    assert not any(call.called for call in no_network_calls)


def test_offline_unauthenticated_and_bad_repo_ids_are_refused_before_network(
    export_dir, logged_out, no_network_calls, monkeypatch
):
    with pytest.raises(UploadError, match="hf auth login"):
        upload_export(export_dir, "me/tiny-clear")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    for bad in ("tiny-clear", "me/tiny clear", "me//x"):
        with pytest.raises(UploadError, match="repo id"):
            upload_export(export_dir, bad)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UploadError, match="HF_HUB_OFFLINE"):
        upload_export(export_dir, "me/tiny-clear")
    assert not any(call.called for call in no_network_calls)


def test_success_creates_a_private_repo_and_names_the_run(export_dir, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    commit = mock.Mock(commit_url="https://hub.example/me/tiny-clear/commit/abc")
    with (
        mock.patch.object(HfApi, "create_repo", return_value="https://hub.example/me/tiny-clear") as create,
        mock.patch.object(HfApi, "upload_folder", return_value=commit) as upload,
    ):
        result = upload_export(export_dir, "me/tiny-clear", token=TOKEN)
    assert create.call_args.kwargs["private"] is True and create.call_args.kwargs["exist_ok"] is True
    kwargs = upload.call_args.kwargs
    assert kwargs["folder_path"] == export_dir and kwargs["repo_id"] == "me/tiny-clear"
    assert "sft-run-42" in kwargs["commit_message"] and "*.bin" in kwargs["ignore_patterns"]
    assert result.private and result.commit_url.endswith("abc")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_hub_is_one_line_without_the_token(export_dir, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(UploadError, match="could not reach the Hub") as info:
        upload_export(export_dir, "me/tiny-clear", token=TOKEN, endpoint=endpoint)
    assert TOKEN not in str(info.value) and info.value.__cause__ is None and info.value.__suppress_context__


class _Rejecting(http.server.BaseHTTPRequestHandler):
    """Answers every request with a status, echoing the Authorization header (as a careless server might)."""

    status = 401

    def _reply(self):
        body = json.dumps({"error": f"bad token {self.headers.get('Authorization')}"}).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = _reply

    def log_message(self, *args):
        pass


@pytest.mark.parametrize(("status", "message"), [(401, "rejected the token"), (403, "may not write")])
def test_rejected_token_is_reported_without_the_token(export_dir, monkeypatch, status, message):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    handler = type("Handler", (_Rejecting,), {"status": status})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    server.timeout = 0.2  # handle_request returns when no request comes, so the loop sees the stop flag
    stop = threading.Event()

    def serve():  # bounded: at most 20 requests, and never after stop
        for _ in range(20):
            if stop.is_set():
                break
            server.handle_request()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        with pytest.raises(UploadError, match=message) as info:
            upload_export(export_dir, "me/tiny-clear", token=TOKEN, endpoint=endpoint)
    finally:
        stop.set()
        thread.join(timeout=5)
        server.server_close()
    assert TOKEN not in str(info.value) and info.value.__cause__ is None


def test_cli_upload_reports_errors_in_one_line(export_dir, tmp_path, logged_out, no_network_calls, capsys):
    assert main(["upload", str(tmp_path / "missing"), "me/tiny-clear"]) == 1
    err = capsys.readouterr().err
    assert "is not a directory" in err and "Traceback" not in err
    assert main(["upload", str(export_dir), "me/tiny-clear"]) == 1
    assert "hf auth login" in capsys.readouterr().err


def test_cli_upload_success_notes_a_card_naming_another_repo(export_dir, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with (
        mock.patch.object(HfApi, "create_repo", return_value="https://hub.example/me/other") as create,
        mock.patch.object(HfApi, "upload_folder", return_value=mock.Mock(commit_url=None)),
    ):
        assert main(["upload", str(export_dir), "me/other", "--public"]) == 0
    assert create.call_args.kwargs["private"] is False
    captured = capsys.readouterr()
    assert "(public)" in captured.out and "sft-run-42" in captured.out
    assert "--repo-id me/other" in captured.err and TOKEN not in captured.out + captured.err
