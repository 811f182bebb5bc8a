"""``nli-cot <stage>``: a thin CLI over the package. Each stage module registers its own commands.

Stage modules import heavy libraries (torch, transformers) inside their command functions so
that ``nli-cot --help`` stays fast. Every command runs inside one error boundary
(:func:`nli_cot_hub.cli.common.error_boundary`): an error is one line and a non-zero exit code.
"""

from __future__ import annotations

import importlib
import os
from typing import Annotated

import typer

from nli_cot_hub.cli.common import DEBUG_ENV, error_boundary

app = typer.Typer(
    name="nli-cot",
    help="Turn an NLI data set into a chain-of-thought NLI model, the Hugging Face way. "
    "Exit codes: 0 success, 1 the run failed, 2 bad input or usage.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def options(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the full traceback of an error instead of one line.")
    ] = False,
) -> None:
    if debug:
        os.environ[DEBUG_ENV] = "1"


# One module per stage under nli_cot_hub/cli/; each defines register(app).
STAGES = ["data", "demo", "generate", "build", "train", "predict", "hub"]


def _guard(typer_app: typer.Typer) -> None:
    for command in typer_app.registered_commands:
        if command.callback is not None:
            command.callback = error_boundary(command.callback)
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _guard(group.typer_instance)


def build_app() -> typer.Typer:
    if not app.registered_commands:
        for stage in STAGES:
            importlib.import_module(f"nli_cot_hub.cli.{stage}").register(app)
        _guard(app)
    return app


def main() -> None:
    build_app()
    app()
