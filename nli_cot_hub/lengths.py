"""Token lengths of training examples (prompt + completion under a chat template) and a max_length to train with.

Rows without ``prompt``/``completion`` columns (the ``original`` and ``reflected`` configs) are turned into the
fine-tuning chat format from their thought and the label they argue for, so every config can be measured.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from nli_cot_hub.chat_format import training_example
from nli_cot_hub.config import option, stage_config
from nli_cot_hub.data import DataError


@dataclass
class LengthReport:
    lengths: np.ndarray
    ids: list[str]
    quantile: float
    recommended: int
    truncated: int
    accuracy_by_bucket: list[dict] = field(default_factory=list)
    context: int | None = None       # the model's context length, when the tokenizer knows it
    wanted: int | None = None        # the recommendation before it was capped at the context length

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
        ]


HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")


def check_dataset_source(dataset: str) -> None:
    """A built data set is a folder or a Hub id: refuse a file, and a local path that does not exist
    (instead of asking the Hub for it)."""
    path = Path(dataset).expanduser()
    if path.is_file():
        raise DataError(f"{dataset}: is a file; give the folder `nli-cot build --output-dir` wrote, "
                        f"or a Hub data set id")
    if path.exists():
        return
    local_looking = dataset.startswith((".", "/", "~")) or not HUB_ID.fullmatch(dataset) or path.parent.is_dir() \
        and str(path.parent) not in ("", ".")
    if local_looking:
        raise DataError(f"{dataset}: no such folder (and not a Hub data set id)")


def load_rows(dataset: str, config: str, split: str) -> pd.DataFrame:
    """Rows of a built data set (local folder or Hub repo); split 'all' joins every split."""
    import datasets

    check_dataset_source(dataset)
    try:
        loaded = datasets.load_dataset(dataset, config)
    except Exception as error:  # noqa: BLE001 - datasets raises many kinds; each means "cannot load it"
        first = " ".join(str(error).split())[:300] or type(error).__name__
        raise DataError(f"{dataset}: cannot load config {config!r}: {first}") from None
    if split == "all":
        return pd.concat([loaded[s].to_pandas() for s in loaded], ignore_index=True)
    if split not in loaded:
        raise DataError(f"{dataset}: config {config!r} has no split {split!r}; it has {sorted(loaded)}")
    return loaded[split].to_pandas()


def example_messages(row: dict) -> list[dict]:
    """The conversation trained on: the row's prompt + completion, or one made from its thought."""
    if row.get("prompt") is not None and row.get("completion") is not None:
        return list(row["prompt"]) + list(row["completion"])
    label = row.get("predicted_label")
    if label is None or (isinstance(label, float) and math.isnan(label)):
        label = row["label"]
    example = training_example(row["premise"], row["hypothesis"], row.get("thought_process"), int(label))
    return example["prompt"] + example["completion"]


def _as_list(value):
    # datasets -> pandas gives numpy arrays of dicts for list columns
    return [dict(m) for m in value] if value is not None else None


def token_lengths(rows: pd.DataFrame, tokenizer) -> np.ndarray:
    """Tokens of each example exactly as training tokenizes it (the tokenizer has been through the chat rule)."""
    lengths = []
    for row in rows.to_dict("records"):
        for column in ("prompt", "completion"):
            if column in row:
                row[column] = _as_list(row[column])
        ids = tokenizer.apply_chat_template(example_messages(row), tokenize=True, return_dict=True)["input_ids"]
        lengths.append(len(ids))
    return np.array(lengths, dtype=int)


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
    known = rows.dropna(subset=["predicted_label", "label"])
    if not len(known):
        return []
    thought_tokens = np.array([len(ids) for ids in tokenizer(known["thought_process"].fillna("").tolist(),
                                                             add_special_tokens=False)["input_ids"]])
    groups = pd.qcut(thought_tokens, q=min(buckets, len(known)), duplicates="drop")
    correct = (known["predicted_label"].astype(int).to_numpy() == known["label"].astype(int).to_numpy())
    result = []
    for interval in groups.categories:
        mask = np.asarray(groups == interval)
        if mask.any():
            low, high = int(thought_tokens[mask].min()), int(thought_tokens[mask].max())
            result.append({"range": f"{low}-{high}", "count": int(mask.sum()),
                           "accuracy": float(correct[mask].mean())})
    return result


def measure(rows: pd.DataFrame, tokenizer_name: str, *, quantile: float = 0.99, multiple_of: int = 64) -> LengthReport:
    from nli_cot_hub.training import load_tokenizer

    if not len(rows):
        raise DataError("no rows to measure")
    if multiple_of < 1:
        raise ValueError(f"multiple_of must be 1 or more, got {multiple_of}")
    missing = [column for column in ("premise", "hypothesis") if column not in rows]
    if missing:
        raise DataError(f"the rows have no {missing[0]!r} column: not a data set built by `nli-cot build`")
    tokenizer = load_tokenizer(tokenizer_name)
    lengths = token_lengths(rows, tokenizer)
    recommended, truncated = recommend_max_length(lengths, quantile, multiple_of)
    context, wanted = model_context(tokenizer), None
    if context is not None and recommended > context:
        # Nothing longer than the context fits the model; say what the data wanted instead.
        wanted, recommended = recommended, context
        truncated = int((lengths > context).sum())
    ids = [str(i) for i in rows["id"]] if "id" in rows else [str(i) for i in range(len(rows))]
    return LengthReport(lengths, ids, quantile, recommended, truncated,
                        accuracy_by_thought_length(rows, tokenizer), context=context, wanted=wanted)


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
    ax.axvline(report.recommended, color="#C44E52", linestyle="--",
               label=f"max_length {report.recommended} (truncates {report.truncated})")
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

    dataset: str = option(help="Built data set: a local folder (--output-dir of build) or a Hub repo id.",
                          positional=True)
    tokenizer: str = option("embedded", "Tokenizer (model folder, Hub id or 'embedded') whose chat template is "
                            "applied to prompt + completion.")
    dataset_config: str = option("combined", "Config of the built data set to measure.")
    split: str = option("train", "Split to measure ('all' for every split).")
    quantile: float = option(0.99, "Recommend a max_length covering this share of examples (0 < q <= 1).",
                             min=0.0, max=1.0)
    multiple_of: int = option(64, "Round the recommendation up to a multiple of this.", min=1)
    png: str | None = option(None, "Histogram PNG path (default: lengths_<config>_<split>.png in the current "
                             "folder).")


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
    plot_histogram(report, png, title=f"{config.dataset} [{config.dataset_config}/{config.split}] tokens "
                                      f"({config.tokenizer})")
    return LengthsResult(report, png, config.dataset, config.dataset_config, config.split)
