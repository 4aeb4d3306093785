"""``--help`` of every sub-command: unbuilt ones say "not built yet", options state their defaults."""

from __future__ import annotations

import re

import pytest

from clear_plugins.cli import COMMANDS, _command_module, main
from clear_plugins.commands import bench, train

UNBUILT = [[name] for name in COMMANDS if _command_module(name) is None]
UNBUILT += [["train", stage] for stage in train.STAGES if train._stage_module(stage) is None]
UNBUILT += [["bench", name] for name in getattr(bench, "NOT_BUILT", {})]


def _help(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as stop:
        main([*argv, "--help"])
    assert stop.value.code == 0
    return " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("argv", UNBUILT, ids=" ".join)
def test_unbuilt_commands_say_so_in_their_help(argv, capsys):
    assert "not built yet" in _help(argv, capsys).lower()


def test_options_state_their_defaults(capsys):
    degrade = _help(["degrade"], capsys)
    for text in ("(default: hard)", "(default 0)", "default 160)", "(default 512)"):
        assert text in degrade
    assert "--skip-bad" in degrade and "exits 1" in degrade
    build = _help(["bench", "build"], capsys)
    for option, default in (("mode", "sampled"), ("weighting", "benchmark"), ("workers", "1")):
        assert re.search(rf"--{option} .*?\(default: {default}\)", build), option
    for default in ("low,mid,hard", "64", "95"):
        assert f"(default: {default})" in build
