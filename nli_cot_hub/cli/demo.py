"""``nli-cot demo``: the whole pipeline offline on the embedded model and real coursework rows."""

from __future__ import annotations

from pathlib import Path

import typer

from nli_cot_hub.cli.derive import command
from nli_cot_hub.demo import DemoConfig


def demo(config: DemoConfig) -> None:
    from rich.console import Console
    from rich.table import Table

    from nli_cot_hub.demo import METRIC_COLUMNS, PARSE_COLUMNS, metric_rows, parse_rows, run_demo, shown

    summary = run_demo(config)
    console = Console()
    console.rule("[bold]done")
    artifacts = Table(title="artifacts")
    artifacts.add_column("what")
    artifacts.add_column("where")
    for label, path in summary["artifacts"].items():
        artifacts.add_row(label, shown(path))
    console.print(artifacts)
    parsing = Table(title="answers parsed per stage")
    for title in ("stage", *PARSE_COLUMNS):
        parsing.add_column(title)
    for row in parse_rows(summary):
        parsing.add_row(*row)
    console.print(parsing)
    metrics = Table(title=f"evaluation on {summary['plan']['eval_rows']} coursework dev rows")
    for title in ("model", *(title for _, title in METRIC_COLUMNS)):
        metrics.add_column(title)
    for row in metric_rows(summary):
        metrics.add_row(*row)
    console.print(metrics)
    minutes = summary["total_seconds"] / 60
    console.print(f"total {minutes:.1f} min; index of everything: {shown(Path(config.output_dir) / 'README.md')}")


def register(app: typer.Typer) -> None:
    command(app, "demo", DemoConfig, demo)
