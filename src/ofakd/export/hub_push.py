"""``ofakd export --format timm --push-to-hub REPO``: upload the export folder through huggingface_hub.

The folder holds what the Hub and timm expect (``config.json``, ``model.safetensors``, ``README.md``), so
``timm.create_model("hf-hub:REPO", pretrained=True)`` loads it. The login, ``HF_ENDPOINT`` and
``HF_HUB_OFFLINE`` are huggingface_hub's own: offline, nothing is attempted and nothing is exported.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ExportError


def check_push(repo_id: str, fmt: str) -> None:
    """Before anything is written: a timm export, a valid repo id, and a Hub that may be reached."""
    from huggingface_hub import constants
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if fmt != "timm":
        raise ExportError(f"--push-to-hub uploads a --format timm export (config.json, model.safetensors, README.md), "
                          f"not {fmt}; pass --format timm")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise ExportError(f"--push-to-hub {repo_id!r} is not a Hub repo id ({str(err).splitlines()[0]}); "
                          "use ORG/NAME or NAME") from None
    if constants.HF_HUB_OFFLINE:
        raise ExportError(f"--push-to-hub {repo_id}: HF_HUB_OFFLINE is set, so nothing can be uploaded (nothing was "
                          f"exported); unset it, or export without --push-to-hub and upload the folder later with "
                          f"`hf upload {repo_id} DIR`")


def push_folder(folder: Path, repo_id: str, *, private: bool = False) -> str:
    """Create ``repo_id`` (when missing) and upload ``folder`` to it; returns the commit's URL."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi()
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        commit = api.upload_folder(repo_id=repo_id, folder_path=str(folder), ignore_patterns=[".*"],
                                   commit_message="Upload a student exported by ofakd")
    except (HfHubHTTPError, ConnectionError, TimeoutError, OSError) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise ExportError(f"could not push {folder} to the Hub repo {repo_id} ({reason}); the export is intact: log "
                          f"in (`hf auth login`) and upload it with `hf upload {repo_id} {folder}`") from None
    return str(getattr(commit, "commit_url", None) or f"https://huggingface.co/{repo_id}")
