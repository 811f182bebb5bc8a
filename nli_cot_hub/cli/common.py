"""Options and error handling shared by the stage commands."""

from __future__ import annotations

import functools
import sys
from typing import Annotated, Optional

import typer

from nli_cot_hub.data import Columns, DataError, LabelMapping, parse_label_map

PremiseCol = Annotated[str, typer.Option("--premise-col", help="Column holding the premise.")]
HypothesisCol = Annotated[str, typer.Option("--hypothesis-col", help="Column holding the hypothesis.")]
LabelCol = Annotated[str, typer.Option("--label-col", help="Column holding the label.")]
IdCol = Annotated[Optional[str], typer.Option("--id-col", help="Column holding a row id (default: row index).")]
LabelScheme = Annotated[str, typer.Option(
    "--labels", help="Integer label scheme: binary (1 = entailment), inverted (0 = entailment), "
    "glue3 (0 entailment / 1 neutral / 2 contradiction).")]
ThreeClass = Annotated[Optional[str], typer.Option(
    "--three-class", help="What neutral becomes: strict (-> 0) or non-contradiction (-> 1).")]
LabelMapSpec = Annotated[Optional[str], typer.Option(
    "--label-map", help="Explicit raw=label pairs, e.g. 'yes=1,no=0'; checked first.")]
Config = Annotated[Optional[str], typer.Option("--config", help="Data set config (folder or Hub repo).")]
Split = Annotated[str, typer.Option("--split", help="Split to read from a data set folder or Hub repo.")]


def columns_and_labels(premise_col: str, hypothesis_col: str, label_col: str, id_col: str | None,
                       labels: str, three_class: str | None, label_map: str | None) -> tuple[Columns, LabelMapping]:
    try:
        mapping = LabelMapping(scheme=labels, three_class=three_class, custom=parse_label_map(label_map))
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    return Columns(premise_col, hypothesis_col, label_col, id_col), mapping


def clean_errors(function):
    """Turn expected input errors into one line on stderr and exit code 2, not a traceback."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except (DataError, FileNotFoundError) as error:
            print(f"error: {error}", file=sys.stderr)
            raise typer.Exit(2) from None

    return wrapper
