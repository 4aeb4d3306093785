"""Upload an export folder to the Hugging Face Hub: ``create_repo`` + ``upload_folder``, private by default.

Everything that can be known locally is checked before any network call, each failure with its fix: the folder
is a complete, pickle-free export (:func:`~.checks.export_problems`), the repo id is valid, the Hub is not
switched off (``HF_HUB_OFFLINE``), and a token exists (``hf auth login`` or ``HF_TOKEN``). Network failures
(unreachable Hub, rejected token, no permission) are turned into one-line errors; the token never appears in them.

The same upload from the shell, with huggingface_hub's CLI (``huggingface-cli`` was renamed ``hf`` in
huggingface_hub 1.0): ``hf upload REPO_ID OUT --private``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from clear_plugins.errors import ClearError
from clear_plugins.hub_cards.checks import PICKLE_SUFFIXES, export_problems
from clear_plugins.hub_cards.metadata import EVAL_FILE, read_eval_report, read_training

TRUE_VALUES = {"1", "ON", "YES", "TRUE"}
"""Values huggingface_hub reads as true in its environment switches."""

IGNORE_PATTERNS = [f"*{suffix}" for suffix in PICKLE_SUFFIXES] + [".*", "__pycache__/*"]
"""Never uploaded even if they appear after the check (pickles, hidden files, caches)."""


class UploadError(ClearError):
    """The upload cannot start or did not finish; the message says why and what to do."""


@dataclass
class UploadResult:
    """Where the model went."""

    repo_url: str
    commit_url: str | None
    commit_message: str
    private: bool


def run_id_of(folder: Path) -> str | None:
    """The run id recorded in the folder (``clear_training.json``, else the eval report), or ``None``."""
    training = read_training(folder)
    if training is not None and training.run_id:
        return training.run_id
    if (folder / EVAL_FILE).is_file():
        return read_eval_report(folder / EVAL_FILE).run_id
    return None


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "").upper() in TRUE_VALUES


def preflight(folder: str | Path, repo_id: str, token: str | None = None) -> str:
    """Check everything local before an upload; return the token to use. Raises :class:`UploadError`."""
    from huggingface_hub import get_token
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    problems = export_problems(folder)
    if problems:
        raise UploadError(
            f"{folder} is not a complete export, so nothing was uploaded:\n  "
            + "\n  ".join(problems)
            + "\nRun clear-plugins export CKPT OUT and upload OUT."
        )
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise UploadError(
            f"repo id {repo_id!r} is not valid ({err}); use 'user-or-org/model-name'."
        ) from None
    if "/" not in repo_id:
        raise UploadError(f"repo id {repo_id!r} has no namespace; use 'user-or-org/{repo_id}'.")
    if _offline():
        raise UploadError(
            "HF_HUB_OFFLINE is set, so huggingface_hub makes no network calls; unset it (or set it to 0) to upload."
        )
    token = token or get_token()
    if not token:
        raise UploadError(
            "not logged in to the Hugging Face Hub: run 'hf auth login' (or set HF_TOKEN) and try again."
        )
    return token


def _network_error(err: Exception, repo_id: str, endpoint: str) -> UploadError:
    from huggingface_hub.errors import HfHubHTTPError

    status = getattr(getattr(err, "response", None), "status_code", None)
    if isinstance(err, HfHubHTTPError) and status == 401:
        return UploadError(
            "the Hub rejected the token (401); run 'hf auth login' with a token that can write."
        )
    if isinstance(err, HfHubHTTPError) and status == 403:
        return UploadError(
            f"the token may not write to {repo_id} (403); use a token with write access to that namespace."
        )
    if isinstance(err, HfHubHTTPError):
        return UploadError(f"the Hub answered {status} for {repo_id}; try again later.")
    return UploadError(
        f"could not reach the Hub at {endpoint} ({type(err).__name__}); check the network (or HF_ENDPOINT) and "
        "try again — uploads resume, files already sent are not sent twice."
    )


def upload_export(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = True,
    token: str | None = None,
    commit_message: str | None = None,
    endpoint: str | None = None,
) -> UploadResult:
    """Create ``repo_id`` (private unless ``private=False``; an existing repo is reused) and upload ``folder``.

    The commit message names the run id recorded in the folder (:func:`run_id_of`) unless one is given.
    """
    from huggingface_hub import HfApi, errors

    folder = Path(folder)
    token = preflight(folder, repo_id, token)
    run_id = run_id_of(folder)
    message = (
        commit_message or f"Upload CLEAR model exported by clear-plugins (run {run_id or 'not recorded'})"
    )
    api = HfApi(endpoint=endpoint, token=token)
    try:
        repo_url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            commit_message=message,
            repo_type="model",
            ignore_patterns=IGNORE_PATTERNS,
        )
    # errors.HTTPError is the HTTP library's base error as huggingface_hub re-exports it (httpx or httpx2).
    except (errors.HfHubHTTPError, errors.HTTPError, OSError) as err:
        raise _network_error(err, repo_id, api.endpoint) from None
    return UploadResult(
        repo_url=str(repo_url),
        commit_url=getattr(commit, "commit_url", None),
        commit_message=message,
        private=private,
    )


__all__ = ["UploadError", "UploadResult", "preflight", "run_id_of", "upload_export"]
