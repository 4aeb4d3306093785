"""clear-plugins train grpo on a tiny save_pretrained Bagel: bad rows reported and skipped, a checkpoint in
safetensors, the reward/trigger-rate plot; --help defaults agree with InterleavedGRPOConfig."""

from __future__ import annotations

import json

from adapter_contract import photo
from serving_helpers import model_folders

from clear_plugins.cli import main
from clear_plugins.commands.train_grpo import CONFIG_FLAGS, FLAG_HELP, PAPER_DEFAULTS


def _rows(folder):
    photo(32).save(folder / "car.png")
    good = {
        "id": "a",
        "question": "What colour is the car?",
        "answer": "red",
        "degraded_image": "car.png",
        "trajectory": "<think> clear </think><answer> red </answer>",
        "pathway": "direct",
    }
    missing = {**good, "id": "b", "degraded_image": "gone.png"}
    lines = [json.dumps(good), "{not json", json.dumps(missing), json.dumps(good)]
    path = folder / "rows.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_train_grpo_runs_reports_bad_rows_and_writes_checkpoint_and_plot(tmp_path, capsys):
    model = model_folders(tmp_path)["pretrained"]
    data = _rows(tmp_path)
    out = tmp_path / "run"
    argv = [
        "train",
        "grpo",
        "--model",
        str(model),
        "--data",
        str(data),
        "--output-dir",
        str(out),
        "--device",
        "cpu",
        "--max-steps",
        "1",
        "--num-generations",
        "2",
        "--per-device-train-batch-size",
        "2",
        "--max-completion-length",
        "4",
        "--num-timesteps",
        "3",
        "--force-restore",
        "--save-steps",
        "1",
    ]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert (
        "skipped line 2" in captured.err and "skipped line 3" in captured.err and "gone.png" in captured.err
    )
    assert (out / "checkpoint-1" / "model.safetensors").is_file()
    assert (out / "grpo_curves.png").stat().st_size > 0
    assert "1 steps" in captured.out


def test_train_grpo_errors_without_traceback(tmp_path, capsys):
    argv = [
        "train",
        "grpo",
        "--model",
        str(tmp_path),
        "--data",
        str(tmp_path / "none.jsonl"),
        "--output-dir",
        "x",
    ]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "is not a file" in err and "Traceback" not in err


def test_help_defaults_are_the_config_defaults(tmp_path):
    from clear_plugins.trl_ext.grpo_config import InterleavedGRPOConfig

    config = InterleavedGRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False)
    assert set(PAPER_DEFAULTS) == set(CONFIG_FLAGS) == set(FLAG_HELP)
    for name, value in PAPER_DEFAULTS.items():
        assert getattr(config, name) == value, name
