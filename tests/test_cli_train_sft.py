"""``clear-plugins train sft``: every config field a flag, a fresh field table, an end-to-end CPU run."""

from __future__ import annotations

import contextlib
import json

from bagel_helpers import build_tiny_bagel
from sft_helpers import write_rows

from clear_plugins.cli import build_parser, main
from clear_plugins.commands import train_sft
from clear_plugins.trl_ext.config_fields import field_table


def test_field_table_is_current():
    """Regenerate with `python -m clear_plugins.trl_ext.config_fields` when this fails."""
    assert train_sft.field_table() == field_table()


def test_help_lists_every_config_field_with_its_help(capsys):
    parser = build_parser()
    with contextlib.suppress(SystemExit):
        parser.parse_args(["train", "sft", "--help"])
    text = capsys.readouterr().out
    for name in ("mse_weight", "kl_weight", "vit_drop_prob", "preset", "learning_rate", "num_train_epochs"):
        assert f"--{name}" in text, name
    assert "(Sec. 4.1: 0.5)" in text and "(default: 0.5)" in text
    assert text.count("(default:") >= len(train_sft.field_table())


def test_train_sft_runs_end_to_end_and_writes_plot_and_checkpoint(tmp_path, capsys):
    model, tokenizer = build_tiny_bagel()
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    data = write_rows(tmp_path / "data", 4)
    out = tmp_path / "out"
    status = main(
        [
            "train", "sft", "--model", str(tmp_path / "model"), "--data", str(data), "--output_dir", str(out),
            "--max_steps", "2", "--per_device_train_batch_size", "2", "--use_cpu", "--report_to", "none",
            "--save_steps", "2", "--kl_weight", "0.2", "--activation_checkpointing", "false",
        ]
    )  # fmt: skip
    assert status == 0, capsys.readouterr().err
    assert (out / "loss.png").stat().st_size > 0
    assert (out / "model.safetensors").is_file() and (out / "checkpoint-2" / "model.safetensors").is_file()
    meta = json.loads((out / "clear_training.json").read_text())
    assert meta["kl_weight"] == 0.2 and meta["stage"] == "sft"


def test_bad_input_is_a_clear_error_without_traceback(tmp_path, capsys):
    model, tokenizer = build_tiny_bagel()
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    args = ["train", "sft", "--model", str(tmp_path / "model"), "--data", str(tmp_path / "missing.jsonl")]
    assert main([*args, "--output_dir", str(tmp_path / "o"), "--use_cpu"]) == 2
    err = capsys.readouterr().err
    assert "missing.jsonl" in err and "Traceback" not in err
    assert main([*args, "--mse_weight", "-1", "--use_cpu"]) == 2
    assert "mse_weight=-1" in capsys.readouterr().err
