"""``nli-cot demo``: the whole pipeline offline on the embedded model and real coursework rows."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from nli_cot_hub.cli.common import clean_errors


@clean_errors
def demo(
    output_dir: Annotated[Path, typer.Option(help="Where every artifact is written (reruns reuse its CoT stores).")] = Path("demo_output"),
    data_root: Annotated[Optional[Path], typer.Option(
        help="The shared real-data folder holding comp34812_nli/ (default: NLI_COT_SHARED_DATA, else "
             "shared/data beside the source checkout).")] = None,
    rows: Annotated[Optional[int], typer.Option(min=1, max=50, help="Coursework trial rows to annotate (default 50, all of them).")] = None,
    eval_rows: Annotated[Optional[int], typer.Option(min=1, help="Coursework dev rows to predict and score (default 50).")] = None,
    train_steps: Annotated[Optional[int], typer.Option(min=1, help="LoRA optimizer steps (default 16).")] = None,
    baseline: Annotated[Optional[bool], typer.Option(
        "--baseline/--no-baseline", help="Also predict with the base model without the adapter and compare "
        "(default: on).")] = None,
    threads: Annotated[Optional[int], typer.Option(
        min=1, help="CPU threads for torch (default: torch's choice, one per core). On a machine busy with other "
        "work, 1 is often faster.")] = None,
    quick: Annotated[bool, typer.Option(
        "--quick", help="8 rows, 2 training steps, short answers: the same code path in a few minutes (CI's smoke "
        "run). Explicit options still win.")] = False,
    hub_server: Annotated[bool, typer.Option(
        "--hub-server", help="Also push the data set, adapter and report to a local Hub-protocol server "
        "(nli_cot_hub.hub_server) and download the data set back.")] = False,
) -> None:
    """Run every stage offline: generate -> reflect -> judge -> build -> lengths -> train -> predict ->
    evaluate -> model card, on the embedded model (SmolLM2-135M-Instruct) and real coursework rows.

    Prints each `nli-cot` command before running it (all of them land in OUTPUT_DIR/commands.sh), then where
    every artifact is and the metrics table. OUTPUT_DIR/README.md indexes the results.
    """
    from dataclasses import replace

    from rich.console import Console
    from rich.table import Table

    from nli_cot_hub.demo import (
        METRIC_COLUMNS, PARSE_COLUMNS, DemoPlan, default_data_root, metric_rows, parse_rows, run_demo, shown,
    )

    if threads:
        import torch

        torch.set_num_threads(threads)
    plan = DemoPlan().quick() if quick else DemoPlan()
    overrides = {"rows": rows, "eval_rows": eval_rows, "train_steps": train_steps, "baseline": baseline}
    plan = replace(plan, **{key: value for key, value in overrides.items() if value is not None})
    summary = run_demo(output_dir, data_root or default_data_root(), plan, hub_server=hub_server)

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
    metrics = Table(title=f"evaluation on {plan.eval_rows} coursework dev rows")
    for title in ("model", *(title for _, title in METRIC_COLUMNS)):
        metrics.add_column(title)
    for row in metric_rows(summary):
        metrics.add_row(*row)
    console.print(metrics)
    minutes = summary["total_seconds"] / 60
    console.print(f"total {minutes:.1f} min; index of everything: {shown(output_dir / 'README.md')}")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
