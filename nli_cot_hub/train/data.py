"""Training examples from a data set: TRL's conversational prompt/completion pairs in a completion format,
the train and eval splits, and their token lengths.

:func:`build_examples` is the one example builder: training and ``nli-cot lengths`` both call it, so the
lengths measured are those of the examples trained on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nli_cot_hub.data import DataError, load_dataset_dict

if TYPE_CHECKING:
    from nli_cot_hub.train.configs import NliScriptArguments

LABEL_ALIASES = ("label", "true_label", "gold_label")


def _row_label(row: dict[str, Any]) -> Any:
    for name in LABEL_ALIASES:
        if row.get(name) is not None:
            return row[name]
    return row.get("predicted_label")


def flat_row_to_examples(
    row: dict[str, Any], where: str, completion_format: str = "thought_first"
) -> list[dict[str, Any]]:
    """One flat NLI row (premise, hypothesis, thought_process, gold label) as prompt/completion pairs in
    ``completion_format`` (two for a multitask row with a thought). A row without a gold label uses the
    label its thought reached."""
    from nli_cot_hub.formats import training_examples

    for name in ("premise", "hypothesis"):
        if not isinstance(row.get(name), str) or not row[name].strip():
            raise DataError(f"{where}, field {name!r}: missing or empty")
    label = _row_label(row)
    try:
        label = int(label)
    except (TypeError, ValueError):
        raise DataError(f"{where}, field 'label': expected 0 or 1, got {label!r}") from None
    if label not in (0, 1):
        raise DataError(f"{where}, field 'label': expected 0 or 1, got {label!r}")
    return training_examples(row["premise"], row["hypothesis"], row.get("thought_process"), label, completion_format)


def _no_prediction(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, float) and value != value)


def _same_label(left: Any, right: Any) -> bool:
    """1, "1" and 1.0 are one label (CSV cells are text; a JSON column with nulls may be read as floats)."""

    def key(value: Any) -> Any:
        try:
            return int(float(value))
        except (TypeError, ValueError):
            return str(value).strip()

    return key(left) == key(right)


@dataclass
class Examples:
    """What :func:`build_examples` made of a split: the examples (``prompt``, ``completion`` and any kept
    columns), the rows it read and how many it left out because their thought reached another label."""

    examples: Any  # datasets.Dataset
    rows: int
    left_out: int

    def left_out_line(self, source: str, split: str) -> str:
        return (
            f"{source} [{split}]: left out {self.left_out} of {self.rows} rows whose thought reached another "
            "label than the gold one"
        )


def build_examples(
    dataset,
    source: str = "dataset",
    split: str = "train",
    completion_format: str = "thought_first",
    keep: tuple[str, ...] = (),
) -> Examples:
    """The training examples of one split: TRL's conversational ``prompt``/``completion`` columns (plus the
    ``keep`` columns, repeated for each example of a row), built from flat rows in ``completion_format``
    (``nli_cot_hub.formats``) with the gold label. Ready-made prompt/completion columns are used as they are
    for thought_first (what ``nli-cot build`` writes); another format needs the flat fields."""
    from nli_cot_hub.formats import check_format

    check_format(completion_format)
    columns = dataset.column_names
    missing = [name for name in keep if name not in columns]
    if missing:
        raise DataError(f"{source} [{split}]: no column {missing[0]!r} (has {', '.join(columns)})")
    flat = {"premise", "hypothesis"} <= set(columns)
    if "prompt" in columns and "completion" in columns and (completion_format == "thought_first" or not flat):
        if completion_format != "thought_first":
            raise DataError(
                f"{source} [{split}]: completion_format {completion_format!r} needs the flat fields "
                f"premise/hypothesis/thought_process/label (has {', '.join(columns)})"
            )
        return Examples(dataset.select_columns(["prompt", "completion", *keep]), len(dataset), 0)
    if not flat:
        raise DataError(
            f"{source} [{split}]: needs prompt/completion columns or premise/hypothesis/label "
            f"(has {', '.join(columns)})"
        )
    rows = len(dataset)
    # A thought that reached another label than the gold one argues for the wrong answer: training on it
    # with the gold label would teach the model to contradict its own reasoning.
    gold = next((name for name in LABEL_ALIASES if name in columns), None)
    origin = list(range(rows))  # row numbers of the source, for error messages
    if gold and "predicted_label" in columns:
        keep_rows = [
            index
            for index, (truth, predicted) in enumerate(zip(dataset[gold], dataset["predicted_label"]))
            if _no_prediction(predicted) or _same_label(predicted, truth)
        ]
        if len(keep_rows) < rows:
            dataset, origin = dataset.select(keep_rows), keep_rows

    def convert(batch, indices):
        out: dict[str, list] = {"prompt": [], "completion": [], **{name: [] for name in keep}}
        for values, index in zip(zip(*batch.values()), indices):
            row = dict(zip(batch, values))
            for example in flat_row_to_examples(row, f"{source} [{split}] row {origin[index]}", completion_format):
                out["prompt"].append(example["prompt"])
                out["completion"].append(example["completion"])
                for name in keep:
                    out[name].append(row[name])
        return out

    examples = dataset.map(
        convert,
        with_indices=True,
        batched=True,
        remove_columns=columns,
        desc=f"{completion_format} examples for {split}",
    )
    return Examples(examples, rows, rows - len(dataset))


def prepare_splits(
    script_args: NliScriptArguments, seed: int, want_eval: bool, report: Callable[[str], None] | None = None
):
    """Train and eval splits in the fine-tuning chat format (eval is None when not wanted); ``report`` gets a
    line for each split that left rows out."""
    raw = load_dataset_dict(script_args.dataset_name, script_args.dataset_config)
    source = script_args.dataset_name
    train_split = script_args.dataset_train_split
    if train_split not in raw:
        raise DataError(f"{source}: no split {train_split!r} (has {', '.join(raw)})")
    completion_format = script_args.completion_format

    def examples(split: str):
        built = build_examples(raw[split], source, split, completion_format)
        if built.left_out and report is not None:
            report(built.left_out_line(source, split))
        return built.examples

    train = examples(train_split)
    evaluation = None
    if want_eval:
        candidates = [script_args.dataset_test_split, "validation", "dev", "test"]
        eval_split = next((name for name in candidates if name in raw and name != train_split), None)
        if eval_split is not None:
            evaluation = examples(eval_split)
        else:
            held = train.train_test_split(test_size=script_args.eval_fraction, seed=seed)
            train, evaluation = held["train"], held["test"]
    if script_args.max_train_samples:
        train = train.select(range(min(script_args.max_train_samples, len(train))))
    if evaluation is not None and script_args.max_eval_samples:
        evaluation = evaluation.select(range(min(script_args.max_eval_samples, len(evaluation))))
    return train, evaluation


def token_lengths(dataset, tokenizer) -> list[int]:
    """Tokens of each prompt + completion as SFTTrainer tokenizes them (``tokenizer`` from
    ``nli_cot_hub.train.model.load_tokenizer``)."""
    lengths = []
    for example in dataset:
        ids = tokenizer.apply_chat_template(
            example["prompt"] + example["completion"], tokenize=True, return_dict=True
        )["input_ids"]
        lengths.append(len(ids))
    return lengths


@dataclass
class TruncationReport:
    examples: int
    truncated: int
    max_tokens: int
    median_tokens: float
    max_length: int | None

    def line(self) -> str:
        return (
            f"max_length {self.max_length}: {self.truncated} of {self.examples} examples would be truncated "
            f"(longest {self.max_tokens} tokens, median {self.median_tokens:g})"
        )


def truncation_report(dataset, tokenizer, max_length: int | None) -> TruncationReport:
    import statistics

    lengths = token_lengths(dataset, tokenizer)
    truncated = sum(length > max_length for length in lengths) if max_length else 0
    return TruncationReport(
        len(lengths), truncated, max(lengths, default=0), statistics.median(lengths) if lengths else 0, max_length
    )
