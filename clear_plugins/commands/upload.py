"""Upload an exported folder to the Hugging Face Hub (private by default).

  clear-plugins upload OUT USER/NAME [--public] [--message TEXT]

Checks before any network call: OUT is a complete export without pickles (see 'clear-plugins export'), the repo id
is valid, HF_HUB_OFFLINE is not set, and you are logged in ('hf auth login' or HF_TOKEN). Then
huggingface_hub's create_repo + upload_folder, with the run id in the commit message.

The same from the shell with huggingface_hub's own CLI (huggingface-cli was renamed hf in huggingface_hub 1.0):
  hf upload USER/NAME OUT --private
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "Upload an exported model and its model card to the Hugging Face Hub."


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``upload`` arguments."""
    parser.add_argument("folder", type=Path, help="the export folder (from clear-plugins export)")
    parser.add_argument("repo_id", help="the Hub repository, USER-OR-ORG/NAME (created if missing)")
    parser.add_argument(
        "--public", action="store_true", help="make a new repository public (default: private)"
    )
    parser.add_argument("--message", help="commit message (default: names the run id recorded in the folder)")


def run(args: argparse.Namespace) -> int:
    """Upload; print the repository URL, or one error line (exit 1)."""
    from clear_plugins.errors import ClearError
    from clear_plugins.hub_cards.upload import upload_export

    try:
        result = upload_export(
            args.folder, args.repo_id, private=not args.public, commit_message=args.message
        )
    except ClearError as err:
        print(f"clear-plugins upload: {err}", file=sys.stderr)
        return 1
    visibility = "private" if result.private else "public"
    print(f"uploaded {args.folder} to {result.repo_url} ({visibility}): {result.commit_message}")
    card = args.folder / "README.md"
    if f'"{args.repo_id}"' not in card.read_text(encoding="utf-8"):
        print(
            f"note: the card's quick start does not name {args.repo_id}; export with --repo-id {args.repo_id} "
            "and upload again to fix it.",
            file=sys.stderr,
        )
    return 0
