"""``nli-cot data check|overlap``: validate NLI files and find contamination between data sets."""

from __future__ import annotations

import json

import typer

from nli_cot_hub.cli.derive import command
from nli_cot_hub.data_check import CheckConfig, CheckResult, OverlapConfig, OverlapResult, run_check, run_overlap

data_app = typer.Typer(help="Inspect and validate NLI data.", no_args_is_help=True)


def show_check(result: CheckResult, as_json: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    stats = result.stats
    if as_json:
        print(json.dumps(stats, indent=2))
        return
    table = Table(title=f"{result.source}", show_header=False)
    table.add_row("rows", f"{stats['rows']:,}")
    for label, count in stats["label_counts"].items():
        share = count / stats["labelled"] if stats["labelled"] else 0
        name = "entailment" if label == 1 else "no entailment"
        table.add_row(f"label {label} ({name})", f"{count:,} ({share:.1%})")
    if stats["labelled"] < stats["rows"]:
        table.add_row("unlabelled", f"{stats['rows'] - stats['labelled']:,}")
    table.add_row("duplicate pairs", f"{stats['duplicate_pairs']:,}")
    for column in ("premise", "hypothesis"):
        words = stats[f"{column}_words"]
        table.add_row(
            f"{column} words", f"mean {words['mean']}  p50 {words['p50']:g}  p95 {words['p95']:g}  max {words['max']}"
        )
    Console().print(table)


def show_overlap(result: OverlapResult) -> None:
    overlap = result.overlap
    print(
        f"{overlap.count:,} of {overlap.left_rows:,} rows of {result.left} ({overlap.fraction_of_left:.1%}) "
        f"also occur in {result.right}"
    )
    if overlap.label_agreement is not None:
        print(f"label agreement on the overlap: {overlap.label_agreement:.1%}")


command(data_app, "check", CheckConfig, lambda config: show_check(run_check(config), config.as_json))
command(data_app, "overlap", OverlapConfig, lambda config: show_overlap(run_overlap(config)))


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
