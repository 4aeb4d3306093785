"""The ``clear-plugins`` command line: one sub-command per stage of the method.

Each sub-command lives in its own module under :mod:`clear_plugins.commands` (see its docstring for the
protocol). Sub-commands that this version does not provide yet are listed, say so when called, and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from clear_plugins import __version__

COMMANDS: dict[str, str] = {
    "degrade": "Apply MMD-Bench degradations to an image or a folder, or draw the Fig. 6 grid.",
    "bench": "Build MMD-Bench from a VQA source (evaluate on it with 'clear-plugins eval').",
    "data": "Build the SFT/GRPO datasets of App. C (probe, trace, filter, balance, split).",
    "train": "Train with CLEAR: 'train sft' (stage 1) or 'train grpo' (stage 2, Interleaved GRPO).",
    "eval": "Evaluate a model on MMD-Bench levels and write the paper's tables, plots, comparisons and IQA.",
    "answer": "Answer a question about an image with a CLEAR model (restore-then-answer), from the shell.",
    "serve": "Serve a CLEAR model as an OpenAI-compatible /v1/chat/completions endpoint.",
    "demo": "Run the whole method end to end on an embedded offline toy world.",
    "export": "Save a trained model with remote code so AutoModel.from_pretrained(trust_remote_code=True) works.",
    "upload": "Upload an exported model and its model card to the Hugging Face Hub.",
}
"""Every sub-command and its one-line help, in pipeline order."""

NOT_BUILT_EXIT = 2


def _command_module(name: str):
    try:
        return importlib.import_module(f"clear_plugins.commands.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"clear_plugins.commands.{name}":
            return None
        raise


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every sub-command configured."""
    parser = argparse.ArgumentParser(
        prog="clear-plugins",
        description=(
            "CLEAR for Hugging Face unified multimodal models: understand degraded images by generating a "
            "restored latent before answering. Run 'clear-plugins COMMAND --help' for a command's options."
        ),
    )
    parser.add_argument("--version", action="version", version=f"clear-plugins {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, help_text in COMMANDS.items():
        module = _command_module(name)
        built = module is not None
        sub_parser = sub.add_parser(
            name,
            help=help_text if built else f"{help_text} (not built yet)",
            description=(getattr(module, "__doc__", None) or help_text)
            if built
            else not_built_text(help_text),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if built:
            module.configure(sub_parser)
            sub_parser.set_defaults(_run=module.run)
        else:
            sub_parser.set_defaults(_run=not_built(name))
    return parser


def not_built_text(help_text: str) -> str:
    """The ``--help`` description of a sub-command this version does not provide yet."""
    return (
        f"{help_text}\n\nNot built yet in clear-plugins {__version__}: running it only says so and exits "
        f"{NOT_BUILT_EXIT}. See the README's roadmap and CHANGELOG.md for what this version provides."
    )


def not_built(command: str, hint: str = ""):
    """The runner of a sub-command this version does not provide: it says so and exits ``NOT_BUILT_EXIT``.

    It accepts any arguments (``main`` checks ``accepts_any_arguments``), so ``clear-plugins train sft --x`` still
    reaches the message.
    """

    def run(args: argparse.Namespace) -> int:
        print(
            f"clear-plugins {command}: not built yet in clear-plugins {__version__}{hint}. See the README's roadmap and "
            f"CHANGELOG.md for what this version provides.",
            file=sys.stderr,
        )
        return NOT_BUILT_EXIT

    run.accepts_any_arguments = True
    return run


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``clear-plugins`` command line; returns the exit status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    args._argv = list(
        sys.argv[1:] if argv is None else argv
    )  # the command line, e.g. to print a resume command
    if args.command is None:
        parser.print_help()
        return 0
    if extra and not getattr(args._run, "accepts_any_arguments", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
