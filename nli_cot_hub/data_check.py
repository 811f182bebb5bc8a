"""The ``nli-cot data check | overlap`` stages: validate an NLI data set, and find pairs two data sets share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nli_cot_hub.config import option, stage_config
from nli_cot_hub.data import Overlap, PairOptions, contamination, describe
from nli_cot_hub.paths import check_output_file, refuse_input_as_output

SOURCE_HELP = "CSV/TSV/JSONL/JSON/Parquet file, data set folder, line-aligned folder (s1/s2/labels) or Hub repo id."


@stage_config
class CheckConfig(PairOptions):
    """Validate a data set and print rows, label balance and text-length statistics.

    Exits non-zero with a one-line error naming file, row and field on bad input.
    """

    path: str = option(help=SOURCE_HELP, positional=True)
    unlabeled: bool = option(False, "Accept data without a label column.")
    as_json: bool = option(False, "Print the statistics as JSON.", flag="--json")


@dataclass
class CheckResult:
    source: str
    stats: dict  # nli_cot_hub.data.describe: rows, labelled, label_counts, duplicate_pairs, *_words


@stage_config
class OverlapConfig(PairOptions):
    """Report pairs of LEFT whose normalised premise + hypothesis also occur in RIGHT.

    The column, label and data set options apply to both sides.
    """

    left: str = option(help="Data set whose rows are checked (e.g. the evaluation set).", positional=True)
    right: str = option(help="Data set they may leak from (e.g. a training source).", positional=True)
    unlabeled: bool = option(False, "Accept data without labels.")
    ids_out: str | None = option(None, "Write the overlapping ids of LEFT here, one a line.")


@dataclass
class OverlapResult:
    left: str
    right: str
    overlap: Overlap
    ids_out: Path | None = None


def run_check(config: CheckConfig) -> CheckResult:
    """Load and validate ``config.path``; its statistics (a bad row raises DataError naming file, row, field)."""
    pairs = config.load(config.path, require_labels=not config.unlabeled)
    return CheckResult(config.path, describe(pairs))


def run_overlap(config: OverlapConfig) -> OverlapResult:
    """The pairs of ``config.left`` also in ``config.right``; their ids go to ``config.ids_out`` when given."""
    check_output_file(config.ids_out, "--ids-out")
    refuse_input_as_output(config.ids_out, [config.left, config.right], "--ids-out")
    left = config.load(config.left, require_labels=not config.unlabeled)
    right = config.load(config.right, require_labels=not config.unlabeled)
    overlap = contamination(left, right)
    ids_out = None
    if config.ids_out:
        ids_out = Path(config.ids_out)
        with open(ids_out, "w", encoding="utf-8") as handle:
            handle.writelines(f"{row_id}\n" for row_id in overlap.left_ids)
    return OverlapResult(config.left, config.right, overlap, ids_out)
