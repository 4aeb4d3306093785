"""Train with CLEAR.

  clear-plugins train sft  ...   stage 1: supervised generate-then-answer trajectories (Sec. 3.2)
  clear-plugins train grpo ...   stage 2: Interleaved GRPO, text and image optimised together (Sec. 3.4)

Each stage lives in its own module (``train_sft``, ``train_grpo``) with the command-module protocol of
:mod:`clear_plugins.commands`; a stage this version does not provide says so and exits 2.
"""

from __future__ import annotations

import argparse
import sys

from clear_plugins import cli

STAGES: dict[str, str] = {
    "sft": "Stage 1: ClearSFTTrainer on generate-then-answer trajectories (Sec. 3.2).",
    "grpo": "Stage 2: InterleavedGRPOTrainer, text and image through the bridge (Sec. 3.4).",
}
"""Every training stage and its one-line help."""

USAGE_ERROR = 2


def _stage_module(name: str):
    """The module of stage ``name`` (``commands/train_<name>.py``), or ``None`` when this version has none."""
    return cli._command_module(f"train_{name}")


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``clear-plugins train`` stages."""
    sub = parser.add_subparsers(dest="train_stage", metavar="STAGE", title="stages")
    missing = []
    for name, text in STAGES.items():
        module = _stage_module(name)
        if module is None:
            missing.append(name)
        stage = sub.add_parser(
            name,
            help=text if module else f"{text} (not built yet)",
            description=(getattr(module, "__doc__", None) or text) if module else cli.not_built_text(text),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if module is None:
            stage.set_defaults(_run=cli.not_built(f"train {name}"))
        else:
            module.configure(stage)
            stage.set_defaults(_run=module.run)
    if missing:
        parser.epilog = f"Not built yet in this version: {', '.join(missing)} (each says so and exits 2)."


def run(args: argparse.Namespace) -> int:
    """Run ``clear-plugins train`` without a stage: say which stages exist."""
    print(
        "clear-plugins train: choose a stage: sft or grpo (see 'clear-plugins train --help').",
        file=sys.stderr,
    )
    return USAGE_ERROR
