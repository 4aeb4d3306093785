"""clear-plugins answer: one image or a folder, official / released / save_pretrained folders, errors without
tracebacks (tiny models; the trajectory is scripted on the tiny model's head)."""

from __future__ import annotations

import contextlib
import json

import pytest
from adapter_contract import photo
from serving_helpers import DIRECT, FIRST, SECOND, force_trajectory, model_folders

import clear_plugins.loading as loading
from clear_plugins.cli import main

QUESTION = "What does the sign say?"


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return model_folders(tmp_path_factory.mktemp("models"))


@pytest.fixture
def image_file(tmp_path):
    path = tmp_path / "sign.png"
    photo(48).save(path)
    return path


@pytest.fixture
def script(monkeypatch):
    """Make every loaded model write the given segments; yields a setter."""
    stack = contextlib.ExitStack()
    chosen = {"segments": (FIRST, SECOND)}
    real = loading.load_model

    def load(options, **kwargs):
        model, tokenizer = real(options, **kwargs)
        stack.enter_context(force_trajectory(model, tokenizer, chosen["segments"]))
        return model, tokenizer

    monkeypatch.setattr(loading, "load_model", load)
    with stack:
        yield chosen


def test_released_weights_restore_and_answer_as_json(folders, image_file, tmp_path, script, capsys):
    restored = tmp_path / "restored.png"
    status = main(
        [
            "answer", str(image_file), QUESTION, "--model", str(folders["official"]),
            "--weights", str(folders["released"]), "--num-steps", "3", "--save-restored", str(restored), "--json",
        ]
    )  # fmt: skip
    assert status == 0
    record = json.loads(capsys.readouterr().out)
    assert record["answer"] == "EXIT" and record["restored"] and record["num_restores"] == 1
    assert record["text"] == FIRST + SECOND and record["well_formed"]
    assert [e["type"] for e in record["events"]] == ["text", "restore", "text"]
    assert record["events"][1]["num_steps"] == 3 and record["events"][1]["seconds"] > 0
    assert set(record["seconds"]) == {"prefill", "text", "restore", "bridge", "total"}
    settings = record["settings"]
    assert settings["preset"] == "clear_eval" and settings["preset_values"]["text_scale"] == 3.0
    assert settings["tag_mode"] == "text" and record["restored_image"] == str(restored) and restored.is_file()


def test_save_pretrained_folder_and_human_output(folders, image_file, script, capsys):
    script["segments"] = (DIRECT,)
    assert main(["answer", str(image_file), QUESTION, "--model", str(folders["pretrained"])]) == 0
    out = capsys.readouterr().out
    assert "answer: EXIT" in out and "restored: no (0 restores)" in out
    assert "tag mode token" in out and "clear_eval (30 grid points" in out and "seconds: prefill" in out


def test_system_prompt_file_and_preset(folders, image_file, tmp_path, script, capsys):
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("You restore before you answer.", encoding="utf-8")
    args = ["answer", str(image_file), QUESTION, "--model", str(folders["official"]), "--num-steps", "2"]
    assert main([*args, "--system-prompt-file", str(prompt), "--preset", "clear_demo", "--json"]) == 0
    settings = json.loads(capsys.readouterr().out)["settings"]
    assert settings["system_prompt"] == "custom" and settings["preset_values"]["renorm_type"] == "global"
    prompt.write_text("  \n", encoding="utf-8")
    assert main([*args, "--system-prompt-file", str(prompt)]) == 1
    assert "is empty" in capsys.readouterr().err


def test_bad_inputs_are_reported_without_a_traceback(folders, image_file, tmp_path, capsys):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    model = ["--model", str(folders["official"])]
    assert main(["answer", str(bad), QUESTION, *model]) == 1
    err = capsys.readouterr().err
    assert "cannot read the image" in err and "Traceback" not in err
    assert main(["answer", str(image_file), "  ", *model]) == 2
    assert "QUESTION is missing or empty" in capsys.readouterr().err
    assert main(["answer", str(image_file), QUESTION, "--model", str(tmp_path)]) == 1
    assert "no installed backbone reads the folder" in capsys.readouterr().err
    assert main(["answer", str(image_file), QUESTION, *model, "--preset", "fast"]) == 1
    assert "preset='fast' is unknown" in capsys.readouterr().err


def test_folder_batch_is_resumable_and_skips_bad_images(folders, tmp_path, script, capsys):
    script["segments"] = (DIRECT,)
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.png", "b.png"):
        photo(40).save(images / name)
    (images / "c.png").write_bytes(b"broken")
    questions = tmp_path / "questions.jsonl"
    rows = [{"image": n, "question": QUESTION} for n in ("a.png", "b.png", "c.png")]
    questions.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    output = tmp_path / "answers.jsonl"
    args = ["answer", str(images), "--questions", str(questions), "--model", str(folders["official"])]
    assert main([*args, "--output", str(output), "--no-progress"]) == 1  # c.png is unreadable
    assert "c.png" in capsys.readouterr().err
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert [r["image"].rsplit("/", 1)[-1] for r in lines] == ["a.png", "b.png"]
    assert all(r["answer"] == "EXIT" for r in lines)
    main([*args, "--output", str(output), "--no-progress"])  # resumed: a and b are not answered again
    assert len(output.read_text().splitlines()) == 2
    kept = output.read_text().splitlines()[0]
    output.write_text(kept + "\n" + '{"image": "half', encoding="utf-8")  # interrupted mid-line
    main([*args, "--output", str(output), "--no-progress"])
    lines = output.read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[2])["image"].endswith("b.png")
