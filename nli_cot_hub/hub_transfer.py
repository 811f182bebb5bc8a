"""Upload and download of project artifacts (built data sets, adapters, evaluation results) to and from the Hub.

A thin layer over ``huggingface_hub``: the endpoint comes from ``HF_ENDPOINT`` and the token from ``HF_TOKEN`` (see
:mod:`nli_cot_hub.hub`), read when called, so a local Hub-protocol server set after import is honoured too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nli_cot_hub.hub import hub_api, hub_endpoint, hub_token

REPO_TYPES = ("model", "dataset", "space")
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
# Local clutter that never belongs in a Hub repo (checkpoints are resumable state, not artifacts).
DEFAULT_IGNORE = [".git/*", "**/__pycache__/*", "*.pyc", ".cache/*", "checkpoint-*/*", "*.lock", "*.tmp"]


def guess_repo_type(path: str | Path) -> str | None:
    """``model`` for a PEFT adapter or model folder, ``dataset`` for a Hub-layout data set folder, else None."""
    path = Path(path)
    if path.is_file():
        return None
    if (path / "adapter_config.json").exists() or (path / "config.json").exists():
        return "model"
    card = path / "README.md"
    has_parquet = any(path.glob("*/*.parquet")) or any(path.glob("*.parquet"))
    if has_parquet or (card.exists() and card.read_text(encoding="utf-8").lstrip().startswith("---")
                       and "\nconfigs:" in card.read_text(encoding="utf-8")):
        return "dataset"
    return None


def repo_url(repo_id: str, repo_type: str) -> str:
    return f"{hub_endpoint()}/{URL_PREFIX[repo_type]}{repo_id}"


@dataclass
class Uploaded:
    repo_id: str
    repo_type: str
    revision: str
    commit: str
    url: str
    files: int


def upload(path: str | Path, repo_id: str, *, repo_type: str | None = None, revision: str | None = None,
           path_in_repo: str | None = None, private: bool = False, commit_message: str | None = None,
           include: list[str] | None = None, exclude: list[str] | None = None) -> Uploaded:
    """Create ``repo_id`` if needed (``private`` applies only then), then commit a file or a folder to it.

    ``revision`` is a branch; it is created from the default branch when missing.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: nothing to upload")
    repo_type = repo_type or guess_repo_type(path)
    if repo_type not in REPO_TYPES:
        raise ValueError(f"{path}: cannot tell whether this is a model or a data set; pass --repo-type")
    token = hub_token()
    if not token:
        raise PermissionError("uploading needs a write token: set HF_TOKEN (or run `hf auth login`)")
    api = hub_api(token)
    api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
    if revision:
        api.create_branch(repo_id, branch=revision, repo_type=repo_type, exist_ok=True)
    message = commit_message or f"Upload {path.name} with nli-cot hub upload"
    if path.is_file():
        info = api.upload_file(path_or_fileobj=str(path), path_in_repo=path_in_repo or path.name, repo_id=repo_id,
                               repo_type=repo_type, revision=revision, commit_message=message)
        count = 1
    else:
        ignore = DEFAULT_IGNORE + list(exclude or [])
        info = api.upload_folder(folder_path=str(path), repo_id=repo_id, repo_type=repo_type, revision=revision,
                                 path_in_repo=path_in_repo, commit_message=message, allow_patterns=include or None,
                                 ignore_patterns=ignore)
        count = sum(1 for _ in _uploaded_files(path, include, ignore))
    return Uploaded(repo_id, repo_type, revision or "main", info.oid, repo_url(repo_id, repo_type), count)


def _uploaded_files(folder: Path, include: list[str] | None, ignore: list[str]):
    from huggingface_hub.utils import filter_repo_objects

    relative = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
    return filter_repo_objects(relative, allow_patterns=include or None, ignore_patterns=ignore)


def download(repo_id: str, *, repo_type: str = "model", revision: str | None = None,
             local_dir: str | Path | None = None, include: list[str] | None = None) -> Path:
    """Download a snapshot (all files, or those matching ``include``); returns the local folder."""
    from huggingface_hub import snapshot_download

    if repo_type not in REPO_TYPES:
        raise ValueError(f"--repo-type must be one of {REPO_TYPES}, not {repo_type!r}")
    folder = snapshot_download(repo_id, repo_type=repo_type, revision=revision,
                               local_dir=str(local_dir) if local_dir else None, allow_patterns=include or None,
                               token=hub_token(), endpoint=hub_endpoint())
    return Path(folder)
