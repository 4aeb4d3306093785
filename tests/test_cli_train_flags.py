"""``train sft`` and ``train grpo`` accept the same flag spellings (hyphens or underscores)."""

from __future__ import annotations

import argparse

import pytest

from clear_plugins.commands import train_grpo, train_sft


def _parse(module, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    module.configure(parser)
    return parser.parse_args(argv)


@pytest.mark.parametrize("spelling", ["output-dir", "output_dir"])
def test_grpo_takes_both_spellings(spelling):
    args = _parse(
        train_grpo, ["--model", "M", "--data", "d.jsonl", f"--{spelling}", "out", "--learning_rate", "1e-5"]
    )
    assert str(args.output_dir) == "out"
    assert args.learning_rate == pytest.approx(1e-5)


@pytest.mark.parametrize("spelling", ["output-dir", "output_dir"])
def test_sft_takes_both_spellings(spelling):
    args = _parse(
        train_sft,
        ["--model", "M", "--data", "d.jsonl", f"--{spelling}", "out", "--learning-rate", "1e-5"],
    )
    argv = train_sft.config_argv(args)
    assert argv[argv.index("--output_dir") + 1] == "out"
    assert float(argv[argv.index("--learning_rate") + 1]) == pytest.approx(1e-5)
