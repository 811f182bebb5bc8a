"""``nli-cot hub upload | download``: move data sets, adapters and results to and from the Hub."""

from __future__ import annotations

import typer

from nli_cot_hub.cli.derive import command
from nli_cot_hub.hub_transfer import (
    DownloadConfig,
    Downloaded,
    UploadConfig,
    Uploaded,
    run_download,
    run_upload,
)

hub_app = typer.Typer(
    help="Upload or download data sets, adapters and results (HF_ENDPOINT, HF_TOKEN).", no_args_is_help=True
)


def show_upload(done: Uploaded) -> None:
    print(
        f"uploaded {done.files} file(s) from {done.path} to {done.repo_type} {done.repo_id}@{done.revision} "
        f"(commit {done.commit[:12]}): {done.url}"
    )


def show_download(done: Downloaded) -> None:
    print(done.folder)


command(hub_app, "upload", UploadConfig, lambda config: show_upload(run_upload(config)))
command(hub_app, "download", DownloadConfig, lambda config: show_download(run_download(config)))


def register(app: typer.Typer) -> None:
    app.add_typer(hub_app, name="hub")
