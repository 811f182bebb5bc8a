"""Token lengths of training examples (prompt + completion under a chat template) and a max_length to train with.

The examples measured are the ones training builds (:func:`nli_cot_hub.train.data.build_examples`): ready-made
``prompt``/``completion`` columns as they are, flat rows (the ``original`` and ``reflected`` configs) in the
completion format with the gold label, rows whose thought reached another label left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from nli_cot_hub.config import option, stage_config
from nli_cot_hub.data import HUB_ID, DataError


@dataclass
class LengthReport:
    lengths: np.ndarray
    ids: list[str]
    quantile: float
    recommended: int
    truncated: int
    accuracy_by_bucket: list[dict] = field(default_factory=list)
    context: int | None = None  # the model's context length, when the tokenizer knows it
    wanted: int | None = None  # the recommendation before it was capped at the context length
    left_out: int = 0  # rows whose thought reached another label than the gold one (not trained on)

    @property
    def longest(self) -> tuple[str, int]:
        index = int(np.argmax(self.lengths))
        return self.ids[index], int(self.lengths[index])

    def summary_rows(self) -> list[tuple[str, str]]:
        q = np.percentile(self.lengths, [50, 90, 95, 99])
        longest_id, longest = self.longest
        return [
            ("examples", f"{len(self.lengths):,}"),
            ("mean", f"{self.lengths.mean():.1f}"),
            ("p50 / p90 / p95 / p99", " / ".join(f"{v:.0f}" for v in q)),
            ("min / max", f"{self.lengths.min()} / {self.lengths.max()}"),
            ("longest example", f"{longest_id} ({longest} tokens)"),
            (f"recommended max_length (covers p{self.quantile * 100:g})", str(self.recommended)),
            ("examples it truncates", f"{self.truncated:,} ({self.truncated / len(self.lengths):.2%})"),
        ] + ([("rows left out (thought reached another label)", f"{self.left_out:,}")] if self.left_out else [])


def check_dataset_source(dataset: str) -> None:
    """A built data set is a folder or a Hub id: refuse a file, and a local path that does not exist
    (instead of asking the Hub for it)."""
    path = Path(dataset).expanduser()
    if path.is_file():
        raise DataError(
            f"{dataset}: is a file; give the folder `nli-cot build --output-dir` wrote, or a Hub data set id"
        )
    if path.exists():
        return
    local_looking = (
        dataset.startswith((".", "/", "~"))
        or not HUB_ID.fullmatch(dataset)
        or path.parent.is_dir()
        and str(path.parent) not in ("", ".")
    )
    if local_looking:
        raise DataError(f"{dataset}: no such folder (and not a Hub data set id)")


def load_rows(dataset: str, config: str, split: str):
    """Rows of a built data set (local folder or Hub repo) as a ``datasets.Dataset``; split 'all' joins
    every split."""
    from nli_cot_hub.data import load_dataset_dict, split_of

    check_dataset_source(dataset)
    return split_of(load_dataset_dict(dataset, config), split, f"{dataset}: config {config!r}")


def recommend_max_length(lengths: np.ndarray, quantile: float, multiple_of: int) -> tuple[int, int]:
    """The smallest multiple of `multiple_of` covering `quantile` of the examples, and how many it truncates."""
    if not 0 < quantile <= 1:
        raise ValueError(f"quantile must be in (0, 1], got {quantile}")
    target = float(np.quantile(lengths, quantile, method="higher"))
    recommended = int(math.ceil(target / multiple_of) * multiple_of)
    return recommended, int((lengths > recommended).sum())


def accuracy_by_thought_length(rows: pd.DataFrame, tokenizer, buckets: int = 4) -> list[dict]:
    """Accuracy (predicted_label == label) per thought-length quantile bucket; [] when there are no predictions."""
    if "predicted_label" not in rows or "label" not in rows:
        return []
    if "thought_process" not in rows:
        rows = rows.assign(thought_process="")
    known = rows.dropna(subset=["predicted_label", "label"])
    if not len(known):
        return []
    thought_tokens = np.array(
        [
            len(ids)
            for ids in tokenizer(known["thought_process"].fillna("").tolist(), add_special_tokens=False)["input_ids"]
        ]
    )
    groups = pd.qcut(thought_tokens, q=min(buckets, len(known)), duplicates="drop")
    correct = known["predicted_label"].astype(int).to_numpy() == known["label"].astype(int).to_numpy()
    result = []
    for interval in groups.categories:
        mask = np.asarray(groups == interval)
        if mask.any():
            low, high = int(thought_tokens[mask].min()), int(thought_tokens[mask].max())
            result.append(
                {"range": f"{low}-{high}", "count": int(mask.sum()), "accuracy": float(correct[mask].mean())}
            )
    return result


def measure(
    rows,
    tokenizer_name: str,
    *,
    quantile: float = 0.99,
    multiple_of: int = 64,
    completion_format: str = "thought_first",
) -> LengthReport:
    """Token lengths of the training examples of ``rows`` (a ``datasets.Dataset`` of a built data set) under
    ``tokenizer_name``'s chat template, exactly as training tokenizes them."""
    from nli_cot_hub.train.data import build_examples, token_lengths
    from nli_cot_hub.train.model import load_tokenizer

    if not len(rows):
        raise DataError("no rows to measure")
    if multiple_of < 1:
        raise ValueError(f"multiple_of must be 1 or more, got {multiple_of}")
    missing = [column for column in ("premise", "hypothesis") if column not in rows.column_names]
    if missing:
        raise DataError(f"the rows have no {missing[0]!r} column: not a data set built by `nli-cot build`")
    built = build_examples(
        rows, completion_format=completion_format, keep=("id",) if "id" in rows.column_names else ()
    )
    if not len(built.examples):
        raise DataError(
            f"no training examples: every one of the {built.rows} rows has a thought that reached "
            "another label than the gold one"
        )
    tokenizer = load_tokenizer(tokenizer_name)
    lengths = np.array(token_lengths(built.examples, tokenizer), dtype=int)
    recommended, truncated = recommend_max_length(lengths, quantile, multiple_of)
    context, wanted = model_context(tokenizer), None
    if context is not None and recommended > context:
        # Nothing longer than the context fits the model; say what the data wanted instead.
        wanted, recommended = recommended, context
        truncated = int((lengths > context).sum())
    ids = (
        [str(i) for i in built.examples["id"]]
        if "id" in built.examples.column_names
        else [str(i) for i in range(len(lengths))]
    )
    predictions = [name for name in ("label", "predicted_label", "thought_process") if name in rows.column_names]
    accuracy = accuracy_by_thought_length(rows.select_columns(predictions).to_pandas(), tokenizer)
    return LengthReport(
        lengths,
        ids,
        quantile,
        recommended,
        truncated,
        accuracy,
        context=context,
        wanted=wanted,
        left_out=built.left_out,
    )


def model_context(tokenizer) -> int | None:
    """The longest sequence the model takes, from the tokenizer (None when it does not say:
    transformers puts a huge placeholder there)."""
    length = getattr(tokenizer, "model_max_length", None)
    return int(length) if isinstance(length, int) and 0 < length < 1_000_000 else None


def plot_histogram(report: LengthReport, path: str | Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.hist(report.lengths, bins=min(50, max(10, len(report.lengths) // 5)), color="#4C72B0", alpha=0.85)
    ax.axvline(
        report.recommended,
        color="#C44E52",
        linestyle="--",
        label=f"max_length {report.recommended} (truncates {report.truncated})",
    )
    ax.set_xlabel("tokens (prompt + completion, chat template applied)")
    ax.set_ylabel("examples")
    ax.set_title(title, fontsize=10)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# -- the `nli-cot lengths` stage --------------------------------------------------------------------------------


@stage_config
class LengthsConfig:
    """Token lengths of prompt + completion under a chat template: distribution, longest example, a recommended
    max_length and how many examples it would truncate, accuracy by thought-length bucket when the rows carry
    predictions; prints a table and writes a PNG histogram."""

    dataset: str = option(
        help="Built data set: a local folder (--output-dir of build) or a Hub repo id.", positional=True
    )
    tokenizer: str = option(
        "embedded",
        "Tokenizer (model folder, Hub id or 'embedded') whose chat template is applied to prompt + completion.",
    )
    dataset_config: str = option("combined", "Config of the built data set to measure.")
    split: str = option("train", "Split to measure ('all' for every split).")
    quantile: float = option(
        0.99, "Recommend a max_length covering this share of examples (0 < q <= 1).", min=0.0, max=1.0
    )
    multiple_of: int = option(64, "Round the recommendation up to a multiple of this.", min=1)
    png: str | None = option(None, "Histogram PNG path (default: lengths_<config>_<split>.png in the current folder).")


@dataclass
class LengthsResult:
    report: LengthReport
    png: Path
    dataset: str
    dataset_config: str
    split: str


def run_lengths(config: LengthsConfig) -> LengthsResult:
    """Measure ``config.dataset`` and write the histogram; the report holds the numbers and the recommendation."""
    from nli_cot_hub.paths import check_output_file

    if not 0 < config.quantile <= 1:
        raise DataError(f"--quantile must be in (0, 1], got {config.quantile:g}")
    check_output_file(config.png, "--png")
    rows = load_rows(config.dataset, config.dataset_config, config.split)
    report = measure(rows, config.tokenizer, quantile=config.quantile, multiple_of=config.multiple_of)
    png = Path(config.png) if config.png else Path(f"lengths_{config.dataset_config}_{config.split}.png")
    plot_histogram(
        report, png, title=f"{config.dataset} [{config.dataset_config}/{config.split}] tokens ({config.tokenizer})"
    )
    return LengthsResult(report, png, config.dataset, config.dataset_config, config.split)
