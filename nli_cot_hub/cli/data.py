"""``nli-cot data check|overlap``: validate NLI files and find contamination between data sets."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from nli_cot_hub.cli.common import (
    Config, HypothesisCol, IdCol, LabelCol, LabelMapSpec, LabelScheme, PremiseCol, Split, ThreeClass,
    clean_errors, columns_and_labels,
)
from nli_cot_hub.data import contamination, describe, load_pairs

data_app = typer.Typer(help="Inspect and validate NLI data.", no_args_is_help=True)


@data_app.command("check")
@clean_errors
def check(
    path: Annotated[str, typer.Argument(help="CSV/TSV/JSONL/JSON/Parquet file, data set folder, "
                                             "line-aligned folder (s1/s2/labels) or Hub repo id.")],
    premise_col: PremiseCol = "premise",
    hypothesis_col: HypothesisCol = "hypothesis",
    label_col: LabelCol = "label",
    id_col: IdCol = None,
    labels: LabelScheme = "binary",
    three_class: ThreeClass = None,
    label_map: LabelMapSpec = None,
    unlabeled: Annotated[bool, typer.Option(help="Accept data without a label column.")] = False,
    config: Config = None,
    split: Split = "train",
    as_json: Annotated[bool, typer.Option("--json", help="Print the statistics as JSON.")] = False,
) -> None:
    """Validate a data set and print rows, label balance and text-length statistics.

    Exits non-zero with a one-line error naming file, row and field on bad input.
    """
    columns, mapping = columns_and_labels(premise_col, hypothesis_col, label_col, id_col, labels, three_class, label_map)
    pairs = load_pairs(path, columns=columns, labels=mapping, require_labels=not unlabeled, config=config, split=split)
    stats = describe(pairs)
    if as_json:
        print(json.dumps(stats, indent=2))
        return
    console = Console()
    table = Table(title=f"{path}", show_header=False)
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
        table.add_row(f"{column} words", f"mean {words['mean']}  p50 {words['p50']:g}  p95 {words['p95']:g}  max {words['max']}")
    console.print(table)


@data_app.command("overlap")
@clean_errors
def overlap(
    left: Annotated[str, typer.Argument(help="Data set whose rows are checked (e.g. the evaluation set).")],
    right: Annotated[str, typer.Argument(help="Data set they may leak from (e.g. a training source).")],
    labels: LabelScheme = "binary",
    three_class: ThreeClass = None,
    unlabeled: Annotated[bool, typer.Option(help="Accept data without labels.")] = False,
    ids_out: Annotated[str | None, typer.Option(help="Write the overlapping ids of LEFT here, one a line.")] = None,
) -> None:
    """Report pairs of LEFT whose normalised premise + hypothesis also occur in RIGHT."""
    _, mapping = columns_and_labels("premise", "hypothesis", "label", None, labels, three_class, None)
    left_pairs = load_pairs(left, labels=mapping, require_labels=not unlabeled)
    right_pairs = load_pairs(right, labels=mapping, require_labels=not unlabeled)
    result = contamination(left_pairs, right_pairs)
    print(f"{result.count:,} of {result.left_rows:,} rows of {left} ({result.fraction_of_left:.1%}) "
          f"also occur in {right}")
    if result.label_agreement is not None:
        print(f"label agreement on the overlap: {result.label_agreement:.1%}")
    if ids_out:
        with open(ids_out, "w", encoding="utf-8") as handle:
            handle.writelines(f"{row_id}\n" for row_id in result.left_ids)


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
