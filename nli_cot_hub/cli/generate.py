"""``nli-cot generate | reflect | judge | rationales``: annotate NLI pairs with chains of thought."""

from __future__ import annotations

import sys

import typer

from nli_cot_hub.cli.derive import command
from nli_cot_hub.config import raise_if_failed
from nli_cot_hub.generate import (
    GenerateConfig,
    JudgeConfig,
    RationalesConfig,
    ReflectConfig,
    StageResult,
    run_generate,
    run_judge,
    run_rationales,
    run_reflect,
)


def show(result: StageResult, stage: str) -> None:
    """The run's summary on stderr; then exit code 1 when too many of this run's records failed."""
    from rich.console import Console

    from nli_cot_hub.store import read_records, summarize

    console = Console(stderr=True)
    report = result.report
    console.print(
        f"{stage}: {report.written} written ({report.by_status or {}}) in {report.seconds:.1f} s; "
        f"{result.already_done} already in {result.output}"
        + (f"; {result.dropped_failed} earlier failures retried" if result.dropped_failed else "")
    )
    summary = summarize(read_records(result.output))
    if result.note:
        console.print(f"{stage}: nothing to do: {result.note}")
    console.print(
        f"store: {summary['records']} records, by status {summary['by_status']}"
        + (f", accuracy {summary['accuracy']:.1%}" if summary["accuracy"] is not None else "")
    )
    for model, counts in result.ledger.items():
        cost = "unknown price" if counts["cost_usd"] is None else f"${counts['cost_usd']:.4f}"
        console.print(
            f"ledger {model}: {counts['requests']} requests, {counts['retries']} retries, "
            f"{counts['reasks']} re-asks, {counts['prompt_tokens']}+{counts['completion_tokens']} tokens, "
            f"{cost} (all runs, {result.ledger_path})"
        )
    raise_if_failed(result)


def register(app: typer.Typer) -> None:
    command(app, "generate", GenerateConfig, lambda config: show(run_generate(config), "generate"))
    command(app, "reflect", ReflectConfig, lambda config: show(run_reflect(config), "reflect"))
    command(app, "judge", JudgeConfig, lambda config: show(run_judge(config), "judge"))

    def rationales(config: RationalesConfig) -> None:
        result = run_rationales(config)
        print(
            f"rationales: {result.written} written, {result.already_done} already in {result.output}", file=sys.stderr
        )

    command(app, "rationales", RationalesConfig, rationales)
