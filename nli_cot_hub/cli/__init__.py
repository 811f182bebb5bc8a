"""``nli-cot <stage>``: a thin CLI over the package. Each stage module registers its own commands.

Stage modules import heavy libraries (torch, transformers) inside their command functions so
that ``nli-cot --help`` stays fast.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="nli-cot",
    help="Turn an NLI data set into a chain-of-thought NLI model, the Hugging Face way.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# One module per stage under nli_cot_hub/cli/; each defines register(app).
STAGES = ["data", "demo", "generate", "build", "train", "predict", "hub"]


def build_app() -> typer.Typer:
    for stage in STAGES:
        importlib.import_module(f"nli_cot_hub.cli.{stage}").register(app)
    return app


def main() -> None:
    build_app()
    app()
