"""``nli-cot build`` (records -> Hub data set with configs, splits, card) and ``nli-cot lengths``."""

from __future__ import annotations

import typer

from nli_cot_hub.build import BuildConfig, BuildResult, run_build
from nli_cot_hub.cli.derive import command
from nli_cot_hub.lengths import LengthsConfig, LengthsResult, run_lengths


def show_build(result: BuildResult) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True)
    table = Table(title="built data set")
    for column in ("config", "split", "rows", "label 1", "flag", "thought words p10/p50/p90/max"):
        table.add_column(column)
    for row in result.stats:
        table.add_row(row["config"], row["split"], str(row["rows"]), row["label_1"], row["flag"], row["thought"])
    console.print(table)
    report = result.report
    if report.unresolved_reflections:
        console.print(
            f"{len(report.unresolved_reflections)} reflection(s) did not reach the gold label, left out "
            f"of combined: {', '.join(report.unresolved_reflections[:10])}"
        )
    if report.contaminated_pairs:
        console.print(f"dropped {report.contaminated_pairs} pair(s) that occur in the evaluation set(s)")
    if result.output_dir is not None:
        console.print(f"wrote {len(result.written)} files to {result.output_dir}")
    if result.pushed_to is not None:
        console.print(f"pushed to {result.pushed_to} (dataset) at commit {result.commit}")


def show_lengths(result: LengthsResult) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    report = result.report
    table = Table(title=f"token lengths of prompt + completion ({len(report.lengths):,} examples)", show_header=False)
    for name, value in report.summary_rows():
        table.add_row(name, value)
    console.print(table)
    if report.accuracy_by_bucket:
        buckets = Table(title="accuracy by thought length (tokens)")
        for column in ("thought tokens", "examples", "accuracy"):
            buckets.add_column(column)
        for bucket in report.accuracy_by_bucket:
            buckets.add_row(bucket["range"], str(bucket["count"]), f"{bucket['accuracy']:.1%}")
        console.print(buckets)
    if report.wanted is not None:
        console.print(
            f"warning: the p{report.quantile * 100:g} length rounds up to {report.wanted}, above the "
            f"model's context of {report.context} tokens; recommending the context length instead"
        )
    console.print(
        f"recommended max_length: {report.recommended} (truncates {report.truncated} of "
        f"{len(report.lengths)}); histogram: {result.png}"
    )


def register(app: typer.Typer) -> None:
    command(app, "build", BuildConfig, lambda config: show_build(run_build(config)))
    command(app, "lengths", LengthsConfig, lambda config: show_lengths(run_lengths(config)))
