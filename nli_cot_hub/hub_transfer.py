"""Upload and download of project artifacts (built data sets, adapters, evaluation results) to and from the Hub.

A thin layer over ``huggingface_hub``: the endpoint comes from ``HF_ENDPOINT`` and the token from ``HF_TOKEN`` (see
:mod:`nli_cot_hub.hub`), read when called, so a local Hub-protocol server set after import is honoured too.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from nli_cot_hub.config import RunFailed, option, stage_config
from nli_cot_hub.hub import hub_api, hub_endpoint, hub_token

T = TypeVar("T")

REPO_TYPES = ("model", "dataset", "space")
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
# Local clutter that never belongs in a Hub repo (checkpoints are resumable state, not artifacts).
DEFAULT_IGNORE = [".git/*", "**/__pycache__/*", "*.pyc", ".cache/*", "checkpoint-*/*", "*.lock", "*.tmp"]


@dataclass
class Patience:
    """How long to wait for the Hub: seconds per request, then retries with exponential backoff."""

    timeout_s: float = 60.0
    retries: int = 3
    backoff_s: float = 2.0


class HubUnreachable(ConnectionError):
    """The Hub endpoint refused, dropped or never answered, on every try."""


def use_timeout(timeout_s: float) -> None:
    """Give every request huggingface_hub makes from now on a timeout (its default client has none,
    so a server that accepts and never answers would hang the command forever)."""
    import httpx2
    from huggingface_hub.utils import _http

    def enforce_timeout(request) -> None:
        # Some huggingface_hub calls pass timeout=None explicitly, which beats the client default.
        limits = dict(request.extensions.get("timeout") or {})
        request.extensions["timeout"] = {
            kind: limits.get(kind) or timeout_s for kind in ("connect", "read", "write", "pool")
        }

    def client_with_timeout():
        client = _http.default_client_factory()
        client.timeout = httpx2.Timeout(timeout_s)
        client.event_hooks = {
            **client.event_hooks,
            "request": [*client.event_hooks.get("request", []), enforce_timeout],
        }
        return client

    _http.set_client_factory(client_with_timeout)


def _transport_cause(error: BaseException | None) -> BaseException | None:
    """The network error behind ``error`` (huggingface_hub wraps some in its own errors), if any."""
    import httpx2

    seen = 0
    while error is not None and seen < 8:
        if isinstance(error, httpx2.TransportError):
            return error
        error, seen = error.__cause__ or error.__context__, seen + 1
    return None


def _transient(error: BaseException) -> bool:
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(error, HfHubHTTPError):
        status = getattr(getattr(error, "response", None), "status_code", None)
        return status is not None and (status == 429 or status >= 500)
    return _transport_cause(error) is not None


def patiently(action: Callable[[], T], what: str, patience: Patience, say=None) -> T:
    """Run ``action`` (one Hub transfer) with ``patience``'s timeout; retry transient failures with
    backoff, saying on stderr what it waits for, so a silent server never looks like a hang."""
    say = say or (lambda line: print(line, file=sys.stderr, flush=True))
    use_timeout(patience.timeout_s)
    wait = patience.backoff_s
    for attempt in range(patience.retries + 1):
        try:
            return action()
        except Exception as error:
            if not _transient(error):
                raise
            reason = _short(_transport_cause(error) or error) or f"no answer within {patience.timeout_s:g} s"
            if attempt == patience.retries:
                raise HubUnreachable(
                    f"{what}: {hub_endpoint()} failed {attempt + 1} time(s), last: {reason}"
                ) from None
            say(f"hub: {what}: {reason}; retry {attempt + 1} of {patience.retries} in {wait:g} s")
            time.sleep(wait)
            wait *= 2
    raise AssertionError("unreachable")


def _short(error: BaseException) -> str:
    import httpx2

    if isinstance(error, httpx2.TimeoutException):
        return ""
    return " ".join(str(error).split())[:200] or type(error).__name__


def guess_repo_type(path: str | Path) -> str | None:
    """``model`` for a PEFT adapter or model folder, ``dataset`` for a Hub-layout data set folder, else None."""
    path = Path(path)
    if path.is_file():
        return None
    if (path / "adapter_config.json").exists() or (path / "config.json").exists():
        return "model"
    card = path / "README.md"
    has_parquet = any(path.glob("*/*.parquet")) or any(path.glob("*.parquet"))
    if has_parquet or (
        card.exists()
        and card.read_text(encoding="utf-8").lstrip().startswith("---")
        and "\nconfigs:" in card.read_text(encoding="utf-8")
    ):
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
    path: Path | None = None


def upload(
    path: str | Path,
    repo_id: str,
    *,
    repo_type: str | None = None,
    revision: str | None = None,
    path_in_repo: str | None = None,
    private: bool = False,
    commit_message: str | None = None,
    include: list[str] | None = None,
    exclude: list[str] | None = None,
    patience: Patience | None = None,
) -> Uploaded:
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
    patience = patience or Patience()
    api = hub_api(token)
    target = f"{repo_type} {repo_id}"
    patiently(
        lambda: api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True),
        f"creating {target}",
        patience,
    )
    if revision:
        patiently(
            lambda: api.create_branch(repo_id, branch=revision, repo_type=repo_type, exist_ok=True),
            f"creating branch {revision} of {target}",
            patience,
        )
    message = commit_message or f"Upload {path.name} with nli-cot hub upload"
    if path.is_file():
        info = patiently(
            lambda: api.upload_file(
                path_or_fileobj=str(path),
                path_in_repo=path_in_repo or path.name,
                repo_id=repo_id,
                repo_type=repo_type,
                revision=revision,
                commit_message=message,
            ),
            f"uploading {path} to {target}",
            patience,
        )
        count = 1
    else:
        ignore = DEFAULT_IGNORE + list(exclude or [])
        info = patiently(
            lambda: api.upload_folder(
                folder_path=str(path),
                repo_id=repo_id,
                repo_type=repo_type,
                revision=revision,
                path_in_repo=path_in_repo,
                commit_message=message,
                allow_patterns=include or None,
                ignore_patterns=ignore,
            ),
            f"uploading {path} to {target}",
            patience,
        )
        count = sum(1 for _ in _uploaded_files(path, include, ignore))
    return Uploaded(repo_id, repo_type, revision or "main", info.oid, repo_url(repo_id, repo_type), count, path)


def _uploaded_files(folder: Path, include: list[str] | None, ignore: list[str]):
    from huggingface_hub.utils import filter_repo_objects

    relative = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
    return filter_repo_objects(relative, allow_patterns=include or None, ignore_patterns=ignore)


def download(
    repo_id: str,
    *,
    repo_type: str = "model",
    revision: str | None = None,
    local_dir: str | Path | None = None,
    include: list[str] | None = None,
    patience: Patience | None = None,
) -> Path:
    """Download a snapshot (all files, or those matching ``include``); returns the local folder."""
    from huggingface_hub import snapshot_download

    if repo_type not in REPO_TYPES:
        raise ValueError(f"--repo-type must be one of {REPO_TYPES}, not {repo_type!r}")
    folder = patiently(
        lambda: snapshot_download(
            repo_id,
            repo_type=repo_type,
            revision=revision,
            local_dir=str(local_dir) if local_dir else None,
            allow_patterns=include or None,
            token=hub_token(),
            endpoint=hub_endpoint(),
        ),
        f"downloading {repo_type} {repo_id}",
        patience or Patience(),
    )
    return Path(folder)


def hub_error_line(error: BaseException, repo_id: str, repo_type: str | None, revision: str | None) -> str:
    """One line for a Hub refusal that names the repo, its type and the revision, not only the status."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    kind = repo_type or "model"
    where = f"{kind} repo {repo_id!r} at {hub_endpoint()}"
    if isinstance(error, GatedRepoError):
        return f"{where} is gated: request access on its page, and use a token that has it (HF_TOKEN)"
    if isinstance(error, RepositoryNotFoundError):
        hint = "" if repo_type else " (a data set? pass --repo-type dataset)"
        return f"{where} not found, or the token (HF_TOKEN) may not read it{hint}"
    if isinstance(error, RevisionNotFoundError):
        return f"{where} has no revision {revision!r}"
    if isinstance(error, EntryNotFoundError):
        return f"{where}@{revision or 'main'}: file not found: {' '.join(str(error).split())[:200]}"
    if isinstance(error, HfHubHTTPError):
        status = getattr(getattr(error, "response", None), "status_code", None)
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if status in (401, 403):
            return f"{where}: HTTP {status}: the token (HF_TOKEN) is missing, invalid or may not write here ({first})"
        return f"{where}@{revision or 'main'}: {first}"
    return " ".join(str(error).split())


@contextlib.contextmanager
def hub_errors(action: str, repo_id: str, repo_type: str | None, revision: str | None = None) -> Iterator[None]:
    """Turn a Hub refusal inside the block into :class:`RunFailed` with one line naming the repo, its type and
    the revision: ``"{action} failed: ..."``. A missing token (PermissionError) keeps its own message."""
    from huggingface_hub.errors import HfHubHTTPError

    try:
        yield
    except HfHubHTTPError as error:
        raise RunFailed(f"{action} failed: {hub_error_line(error, repo_id, repo_type, revision)}") from None
    except PermissionError as error:
        raise RunFailed(hub_error_line(error, repo_id, repo_type, revision)) from None


# -- the `nli-cot hub upload | download` stages ------------------------------------------------------------------


@dataclass(kw_only=True)
class TransferOptions:
    """What an upload and a download share: the repo's type and revision, the files, how long to wait."""

    repo_type: str | None = option(
        None,
        "model, dataset or space. upload: guessed when omitted (adapter_config.json "
        "-> model, Hub-layout parquet data set -> dataset); download: model when omitted.",
        choices=REPO_TYPES,
    )
    revision: str | None = option(
        None, "Branch (upload: created from main when missing) or, for download, also a tag or commit."
    )
    include: list[str] = option([], "Only files matching this glob (repeatable), e.g. '*.json'.")
    timeout: float = option(60.0, "Seconds to wait for each Hub request.", min=0.1)
    retries: int = option(
        3, "Retries of a Hub request that timed out, was refused or got 429/5xx, with exponential backoff.", min=0
    )

    def patience(self) -> Patience:
        return Patience(timeout_s=self.timeout, retries=self.retries)


@stage_config
class UploadConfig(TransferOptions):
    """Create the repo if needed and commit PATH to it. Token from HF_TOKEN, endpoint from HF_ENDPOINT."""

    path: str = option(help="A folder (built data set, adapter, evaluation report) or one file.", positional=True)
    repo_id: str = option(help="Hub repo id, namespace/name.", positional=True)
    path_in_repo: str | None = option(
        None,
        "Where in the repo the files go (default: the root; a file keeps its "
        "name), e.g. 'results' for an evaluation report next to an adapter.",
    )
    private: bool = option(False, "Create the repo as private (if it does not exist yet).")
    commit_message: str | None = option(None, "Commit message.", flag="--message", short="-m")
    exclude: list[str] = option(
        [], "Skip files matching this glob (repeatable); checkpoints and caches are always skipped."
    )


@stage_config
class DownloadConfig(TransferOptions):
    """Download a repo snapshot (a data set, an adapter, results); prints the local folder."""

    repo_id: str = option(help="Hub repo id, namespace/name.", positional=True)
    local_dir: str | None = option(None, "Copy the files into this folder (default: the Hugging Face cache).")


@dataclass
class Downloaded:
    repo_id: str
    repo_type: str
    revision: str | None
    folder: Path


def run_upload(config: UploadConfig) -> Uploaded:
    """Commit ``config.path`` to ``config.repo_id`` (created when missing)."""
    with hub_errors("uploading", config.repo_id, config.repo_type, config.revision):
        return upload(
            config.path,
            config.repo_id,
            repo_type=config.repo_type,
            revision=config.revision,
            path_in_repo=config.path_in_repo,
            private=config.private,
            commit_message=config.commit_message,
            include=config.include,
            exclude=config.exclude,
            patience=config.patience(),
        )


def run_download(config: DownloadConfig) -> Downloaded:
    """Download a snapshot of ``config.repo_id`` (a model repo unless ``config.repo_type`` says otherwise)."""
    repo_type = config.repo_type or "model"
    with hub_errors("downloading", config.repo_id, config.repo_type, config.revision):
        folder = download(
            config.repo_id,
            repo_type=repo_type,
            revision=config.revision,
            local_dir=config.local_dir,
            include=config.include,
            patience=config.patience(),
        )
    return Downloaded(config.repo_id, repo_type, config.revision, folder)
