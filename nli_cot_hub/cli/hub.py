"""``nli-cot hub upload | download``: move data sets, adapters and results to and from the Hub."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from nli_cot_hub.cli.common import clean_errors

hub_app = typer.Typer(help="Upload or download data sets, adapters and results (HF_ENDPOINT, HF_TOKEN).",
                      no_args_is_help=True)

RepoType = Annotated[Optional[str], typer.Option(
    "--repo-type", help="model, dataset or space. upload: guessed when omitted (adapter_config.json -> model, "
    "Hub-layout parquet data set -> dataset); download: model when omitted.")]
Revision = Annotated[Optional[str], typer.Option(
    "--revision", help="Branch (upload: created from main when missing) or, for download, also a tag or commit.")]
Include = Annotated[Optional[list[str]], typer.Option(
    "--include", help="Only files matching this glob (repeatable), e.g. '*.json'.")]


Timeout = Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds to wait for each Hub request.")]
Retries = Annotated[int, typer.Option("--retries", min=0, help="Retries of a Hub request that timed out, was "
                                      "refused or got 429/5xx, with exponential backoff.")]


def _hub_errors(function):
    """Hub refusals and missing repos as one line on stderr naming the repo, type and revision (exit 1)."""
    import functools

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        from huggingface_hub.errors import HfHubHTTPError

        from nli_cot_hub.hub_transfer import hub_error_line
        from nli_cot_hub.redact import redact

        try:
            return function(*args, **kwargs)
        except (HfHubHTTPError, PermissionError) as error:
            line = hub_error_line(error, kwargs.get("repo_id", "?"), kwargs.get("repo_type"), kwargs.get("revision"))
            print(f"error: {redact(line)}", file=sys.stderr)
            raise typer.Exit(1) from None

    return wrapper


@hub_app.command("upload")
@clean_errors
@_hub_errors
def upload_command(
    path: Annotated[Path, typer.Argument(help="A folder (built data set, adapter, evaluation report) or one file.")],
    repo_id: Annotated[str, typer.Argument(help="Hub repo id, namespace/name.")],
    repo_type: RepoType = None,
    revision: Revision = None,
    path_in_repo: Annotated[Optional[str], typer.Option(
        "--path-in-repo", help="Where in the repo the files go (default: the root; a file keeps its name), "
        "e.g. 'results' for an evaluation report next to an adapter.")] = None,
    private: Annotated[bool, typer.Option("--private", help="Create the repo as private (if it does not exist yet).")] = False,
    commit_message: Annotated[Optional[str], typer.Option("--message", "-m", help="Commit message.")] = None,
    include: Include = None,
    exclude: Annotated[Optional[list[str]], typer.Option(
        "--exclude", help="Skip files matching this glob (repeatable); checkpoints and caches are always skipped.")] = None,
    timeout: Timeout = 60.0,
    retries: Retries = 3,
) -> None:
    """Create the repo if needed and commit PATH to it. Token from HF_TOKEN, endpoint from HF_ENDPOINT."""
    from nli_cot_hub.hub_transfer import Patience, upload

    done = upload(path, repo_id, repo_type=repo_type, revision=revision, path_in_repo=path_in_repo, private=private,
                  commit_message=commit_message, include=include, exclude=exclude,
                  patience=Patience(timeout_s=timeout, retries=retries))
    print(f"uploaded {done.files} file(s) from {path} to {done.repo_type} {done.repo_id}@{done.revision} "
          f"(commit {done.commit[:12]}): {done.url}")


@hub_app.command("download")
@clean_errors
@_hub_errors
def download_command(
    repo_id: Annotated[str, typer.Argument(help="Hub repo id, namespace/name.")],
    repo_type: RepoType = None,
    revision: Revision = None,
    local_dir: Annotated[Optional[Path], typer.Option(
        "--local-dir", help="Copy the files into this folder (default: the Hugging Face cache).")] = None,
    include: Include = None,
    timeout: Timeout = 60.0,
    retries: Retries = 3,
) -> None:
    """Download a repo snapshot (a data set, an adapter, results); prints the local folder."""
    from nli_cot_hub.hub_transfer import Patience, download

    folder = download(repo_id, repo_type=repo_type or "model", revision=revision, local_dir=local_dir,
                      include=include, patience=Patience(timeout_s=timeout, retries=retries))
    print(folder)


def register(app: typer.Typer) -> None:
    app.add_typer(hub_app, name="hub")
