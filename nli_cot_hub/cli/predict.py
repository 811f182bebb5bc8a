"""``nli-cot predict | evaluate | push-metric``: answer NLI pairs with a CoT model, then score and report."""

from __future__ import annotations

import typer

from nli_cot_hub.cli.derive import command
from nli_cot_hub.config import raise_if_failed
from nli_cot_hub.predict import PredictConfig, PredictResult, run_predict
from nli_cot_hub.report import EvaluateConfig, PushMetricConfig, run_evaluate, run_push_metric


def show_predict(result: PredictResult) -> None:
    """The run's summary on stderr; then exit code 1 when the run failed (too many failures, no submission)."""
    from rich.console import Console

    console = Console(stderr=True, soft_wrap=True)
    console.print(
        f"predict: {result.written} written {result.by_status or {}} in {result.seconds:.1f} s "
        f"({result.examples_per_second or 0:.1f} examples/s after {result.load_seconds:.1f} s of "
        f"loading); {result.already_done} already in {result.output}"
        + (f"; {result.dropped_failed} earlier failures retried" if result.dropped_failed else "")
    )
    written = result.submission
    if written is not None:
        console.print(
            f"submission: {written.rows} rows -> {written.path}; {len(written.fallback_rows)} got the "
            f"fallback label {written.fallback_label}"
            + (f" ({len(written.missing_rows)} never predicted)" if written.missing_rows else "")
            + f"; report: {written.report_path}"
        )
    raise_if_failed(result)


def show_evaluate(summary: dict) -> None:
    from rich.console import Console

    console = Console(stderr=True, soft_wrap=True)
    for warning in summary["warnings"]:
        console.print(f"warning: {warning}")
    for name, metrics in summary["models"].items():
        accuracy = metrics.get("accuracy")
        console.print(
            f"{name}: accuracy {accuracy:.4f}, macro F1 {metrics['macro_f1']:.4f}, parse rate "
            f"{metrics['parse_rate']:.3f} on {metrics['rows']} rows"
            if accuracy is not None
            else f"{name}: no scored rows"
        )
        if metrics.get("ece") is not None:
            auc = metrics["roc_auc"]
            console.print(
                f"{name}: ROC-AUC {'n/a' if auc is None else f'{auc:.4f}'}, Brier {metrics['brier']:.4f}, "
                f"ECE {metrics['ece']:.4f}, accuracy at p >= {summary['threshold']:g} "
                f"{metrics['accuracy_at_threshold']:.4f}"
            )
    for comparison in summary.get("comparisons", []):
        console.print(
            f"McNemar {comparison['a']} vs {comparison['b']}: b={comparison['only_a_right']} "
            f"c={comparison['only_b_right']} p={comparison['p_value']:.4g} ({comparison['test']})"
        )
    console.print(f"audit: {summary['audit']['flagged']} pairs flagged; report: {summary['report']}")


def show_push_metric(repo: str) -> None:
    print(f"metric pushed: evaluate.load({repo!r})")


def register(app: typer.Typer) -> None:
    command(app, "predict", PredictConfig, lambda config: show_predict(run_predict(config)))
    command(app, "evaluate", EvaluateConfig, lambda config: show_evaluate(run_evaluate(config)))
    command(app, "push-metric", PushMetricConfig, lambda config: show_push_metric(run_push_metric(config)))
