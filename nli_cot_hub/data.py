"""Loading, label mapping and validation of NLI pairs.

Every loader returns a pandas DataFrame with the columns ``id, premise, hypothesis, label``
(``label`` is 1 = entailment, 0 = no entailment, or <NA> for unlabeled data) plus any extra
columns the source had (e.g. ``explanation`` for e-SNLI). Bad input raises :class:`DataError`
whose message names the file, the row and the field.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

LABEL_SCHEMES = ("binary", "inverted", "glue3")
THREE_CLASS_POLICIES = ("strict", "non-contradiction")

# Word labels seen in NLI corpora. Neutral is ambiguous for a binary task: its meaning depends
# on the data set (MNLI-derived coursework rows use neutral -> 1), so it needs an explicit policy.
_ENTAILMENT_WORDS = {"entailment", "entailed", "entails", "yes", "true"}
_NOT_ENTAILMENT_WORDS = {
    "not_entailment",
    "not entailment",
    "no entailment",
    "no_entailment",
    "non-entailment",
    "non_entailment",
    "not entailed",
    "not-entailment",
    "no",
    "false",
}
_CONTRADICTION_WORDS = {"contradiction", "contradicts", "contradictory"}
_NEUTRAL_WORDS = {"neutral"}


class DataError(ValueError):
    """Bad input data; the message names the file, row and field."""


@dataclass(frozen=True)
class LabelMapping:
    """How raw labels become 1 (entailment) / 0 (no entailment).

    scheme:
        ``binary``   1/0 (ints, "1"/"0", booleans) with 1 = entailment; the default.
        ``inverted`` 0 = entailment, 1 = not entailment (GLUE RTE / QNLI integer labels).
        ``glue3``    0 = entailment, 1 = neutral, 2 = contradiction (GLUE MNLI / HF SNLI integers).
    three_class: what a neutral label becomes: ``strict`` (neutral -> 0, only entailment is 1) or
        ``non-contradiction`` (neutral -> 1, as the COMP34812 data treats MNLI neutral pairs).
    custom: explicit raw-value -> label overrides, checked first (e.g. {"yes": 1, "no": 0}).
    """

    scheme: str = "binary"
    three_class: str | None = None
    custom: dict[str, int] = field(default_factory=dict)

    def __post_init__(self):
        if self.scheme not in LABEL_SCHEMES:
            raise ValueError(f"unknown label scheme {self.scheme!r}; choose one of {LABEL_SCHEMES}")
        if self.three_class is not None and self.three_class not in THREE_CLASS_POLICIES:
            raise ValueError(f"unknown three-class policy {self.three_class!r}; choose one of {THREE_CLASS_POLICIES}")
        bad = {k: v for k, v in self.custom.items() if v not in (0, 1)}
        if bad:
            raise ValueError(f"custom label map values must be 0 or 1, got {bad}")

    def _neutral(self) -> int | None:
        return {"strict": 0, "non-contradiction": 1}.get(self.three_class or "")

    def map(self, raw) -> int:
        """Map one raw label to 0/1; raise ValueError with the reason if it cannot be mapped."""
        if raw is None or (isinstance(raw, float) and math.isnan(raw)):
            raise ValueError("label is missing")
        text = str(raw).strip()
        key = text.lower()
        if key in {k.lower() for k in self.custom}:
            return next(v for k, v in self.custom.items() if k.lower() == key)
        if isinstance(raw, bool):
            return int(raw)
        number = _as_int(text)
        if number is not None:
            return self._map_int(number, text)
        if key in _ENTAILMENT_WORDS:
            return 1
        if key in _NOT_ENTAILMENT_WORDS or key in _CONTRADICTION_WORDS:
            return 0
        if key in _NEUTRAL_WORDS:
            mapped = self._neutral()
            if mapped is None:
                raise ValueError(
                    "label 'neutral' is ambiguous for binary NLI; pass --three-class strict "
                    "(neutral -> 0) or --three-class non-contradiction (neutral -> 1)"
                )
            return mapped
        raise ValueError(f"unknown label {text!r}")

    def _map_int(self, number: int, text: str) -> int:
        if self.scheme == "binary" and number in (0, 1):
            return number
        if self.scheme == "inverted" and number in (0, 1):
            return 1 - number
        if self.scheme == "glue3" and number in (0, 1, 2):
            if number == 1:
                return self.map("neutral")
            return 1 if number == 0 else 0
        allowed = {"binary": "0 or 1", "inverted": "0 or 1", "glue3": "0, 1 or 2"}[self.scheme]
        raise ValueError(f"unknown label {text!r} (scheme {self.scheme!r} expects {allowed})")


def _as_int(text: str) -> int | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if value.is_integer() else None


def parse_label_map(spec: str | None) -> dict[str, int]:
    """Parse ``"yes=1,no=0"`` into a dict."""
    if not spec:
        return {}
    mapping = {}
    for part in spec.split(","):
        raw, sep, value = part.partition("=")
        if not sep or value.strip() not in ("0", "1"):
            raise ValueError(f"bad --label-map entry {part!r}: expected RAW=0 or RAW=1")
        mapping[raw.strip()] = int(value.strip())
    return mapping


@dataclass(frozen=True)
class Columns:
    premise: str = "premise"
    hypothesis: str = "hypothesis"
    label: str = "label"
    id: str | None = None


# ---------------------------------------------------------------- readers


def _read_delimited(path: Path, sep: str) -> pd.DataFrame:
    try:
        # utf-8-sig: the coursework trial file starts with a BOM.
        return pd.read_csv(
            path,
            sep=sep,
            dtype=str,
            keep_default_na=False,
            encoding="utf-8-sig",
            quoting=csv.QUOTE_MINIMAL if sep == "," else csv.QUOTE_NONE,
        )
    except (pd.errors.ParserError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"{path}: cannot be read as {'CSV' if sep == ',' else 'TSV'}: {_one_line(error)}") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty") from None


def _read_jsonl(path: Path) -> pd.DataFrame:
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise DataError(f"{path}: line {number}: invalid JSON: {error.msg}") from None
    return pd.DataFrame(rows)


def _read_json(path: Path) -> pd.DataFrame:
    text = path.read_text(encoding="utf-8")
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as error:
        if error.msg == "Extra data":  # one record per line under a .json name
            return _read_jsonl(path)
        raise DataError(f"{path}: invalid JSON: {error.msg} (line {error.lineno})") from None
    if isinstance(payload, dict):
        payload = payload.get("data", payload.get("rows", [payload]))
    return pd.DataFrame(payload)


def _read_line_aligned(folder: Path) -> pd.DataFrame:
    """e-SNLI / MNLI-hard style folders: s1.*, s2.*, labels.* (+ preproc1_expl_N.*) line-aligned."""

    def lines(prefix: str) -> list[str] | None:
        found = sorted(folder.glob(f"{prefix}.*"))
        if not found:
            return None
        text = found[0].read_text(encoding="utf-8")
        rows = text.split("\n")
        if rows and rows[-1] == "":
            rows.pop()
        return [row.strip() for row in rows]

    premises, hypotheses, labels = lines("s1"), lines("s2"), lines("labels")
    if premises is None or hypotheses is None:
        raise DataError(f"{folder}: a line-aligned folder needs s1.* and s2.* files")
    columns = {"premise": premises, "hypothesis": hypotheses}
    if labels is not None:
        columns["label"] = labels
    for n in (1, 2, 3):
        explanation = lines(f"preproc1_expl_{n}")
        if explanation is not None:
            columns[f"explanation_{n}"] = explanation
    sizes = {name: len(values) for name, values in columns.items()}
    if len(set(sizes.values())) != 1:
        raise DataError(f"{folder}: line-aligned files differ in length: {sizes}")
    return pd.DataFrame(columns)


FILE_SUFFIXES = (".csv", ".tsv", ".tab", ".jsonl", ".ndjson", ".json", ".parquet")
HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")


def is_line_aligned(path: Path) -> bool:
    return path.is_dir() and any(path.glob("s1.*"))


def read_file(path: Path) -> pd.DataFrame:
    """A data file (CSV, TSV, JSON Lines, JSON, Parquet) or a line-aligned folder as a raw DataFrame,
    every text exactly as written."""
    if is_line_aligned(path):
        return _read_line_aligned(path)
    suffix = "".join(path.suffixes[-1:]).lower()
    if suffix == ".csv":
        return _read_delimited(path, ",")
    if suffix in (".tsv", ".tab"):
        return _read_delimited(path, "\t")
    if suffix in (".jsonl", ".ndjson"):
        return _read_jsonl(path)
    if suffix == ".json":
        return _read_json(path)
    if suffix == ".parquet":
        try:
            return pd.read_parquet(path)
        except Exception as error:
            raise DataError(f"{path}: cannot be read as Parquet: {_one_line(error)}") from None
    raise DataError(f"{path}: unknown file type {suffix!r} (use .csv, .tsv, .jsonl, .json or .parquet)")


def _frame_to_dataset(frame: pd.DataFrame, source: str):
    import datasets

    frame = frame.copy()
    for column in frame.columns:
        values = frame[column]
        # pandas turns whole numbers with gaps (a label column with nulls) into floats; keep them whole.
        if values.dtype.kind == "f" and values.isna().any() and (values.dropna() % 1 == 0).all():
            frame[column] = values.astype("Int64")
    try:
        return datasets.Dataset.from_pandas(frame, preserve_index=False)
    except (TypeError, ValueError) as error:  # pyarrow's ArrowInvalid / ArrowTypeError: mixed types in a column
        raise DataError(f"{source}: a column mixes kinds of values: {_one_line(error)}") from None


def load_dataset_dict(source: str | Path, config: str | None = None, *, revision: str | None = None):
    """The one data-set loader: any source as a ``datasets.DatasetDict``.

    A data file or a line-aligned folder is read as written (the readers above) into one ``train`` split; a
    ``save_to_disk`` folder (or its ``config`` subfolder) is loaded from disk; any other folder (a Hub-layout
    data set, as ``nli-cot build`` writes) or a Hub repo id goes through ``datasets.load_dataset`` with
    ``config``. A source that cannot be loaded raises DataError naming it."""
    import datasets

    path = Path(source).expanduser()
    if path.is_file() or is_line_aligned(path):
        return datasets.DatasetDict({"train": _frame_to_dataset(read_file(path), str(source))})
    if path.is_dir():
        for folder in ([path / config] if config else []) + [path]:
            if (folder / "dataset_dict.json").exists():
                return datasets.load_from_disk(str(folder))
            if (folder / "state.json").exists():
                return datasets.DatasetDict({"train": datasets.load_from_disk(str(folder))})
        where = str(path)
    elif (
        HUB_ID.fullmatch(str(source)) and not str(source).startswith(".") and path.suffix.lower() not in FILE_SUFFIXES
    ):
        where = str(source)
    else:
        raise DataError(f"{source}: no such file or folder (and not a Hub repo id)")
    try:
        loaded = datasets.load_dataset(where, config, revision=revision)
    except Exception as error:
        config_part = f" config {config!r}" if config else ""
        raise DataError(f"{source}: cannot load{config_part}: {_one_line(error) or type(error).__name__}") from None
    if not isinstance(loaded, datasets.DatasetDict):
        loaded = datasets.DatasetDict({"train": loaded})
    return loaded


def split_of(loaded, split: str, source: str | Path):
    """One split of a loaded DatasetDict; ``all`` joins every split."""
    import datasets

    if split == "all":
        return datasets.concatenate_datasets([loaded[name] for name in loaded])
    if split not in loaded:
        raise DataError(f"{source}: no split {split!r}; it has {sorted(loaded)}")
    return loaded[split]


def read_table(
    source: str | Path, *, config: str | None = None, split: str = "train", revision: str | None = None
) -> pd.DataFrame:
    """Read a file, folder or Hub repo id into a raw DataFrame (no validation): files straight from their
    reader, every other source through :func:`load_dataset_dict`."""
    path = Path(source).expanduser()
    if path.is_file() or is_line_aligned(path):
        return read_file(path)
    return split_of(load_dataset_dict(source, config, revision=revision), split, source).to_pandas()


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:300]


# ---------------------------------------------------------------- normalising


def load_pairs(
    source: str | Path,
    *,
    columns: Columns = Columns(),
    labels: LabelMapping = LabelMapping(),
    require_labels: bool = True,
    config: str | None = None,
    split: str = "train",
    revision: str | None = None,
) -> pd.DataFrame:
    """Load NLI pairs from any supported source and validate them.

    Raises DataError naming the file, row (1-based data row, header not counted) and field for a
    missing column, an empty text or an unknown label. Nothing is dropped silently.
    """
    raw = read_table(source, config=config, split=split, revision=revision)
    if raw.empty:
        raise DataError(f"{source}: no data rows (only a header, or an empty file)")
    return normalise_pairs(raw, str(source), columns=columns, labels=labels, require_labels=require_labels)


def normalise_pairs(
    raw: pd.DataFrame,
    name: str,
    *,
    columns: Columns = Columns(),
    labels: LabelMapping = LabelMapping(),
    require_labels: bool = True,
) -> pd.DataFrame:
    wanted = {"premise": columns.premise, "hypothesis": columns.hypothesis}
    for field_name, column in wanted.items():
        if column not in raw.columns:
            raise DataError(
                f"{name}: missing column {column!r} for the {field_name} "
                f"(columns are {list(map(str, raw.columns))}; map it with --{field_name}-col)"
            )
    has_labels = columns.label in raw.columns
    if require_labels and not has_labels:
        raise DataError(
            f"{name}: missing column {columns.label!r} for the label (columns are "
            f"{list(map(str, raw.columns))}; map it with --label-col, or pass --unlabeled)"
        )
    if columns.id is not None and columns.id not in raw.columns:
        raise DataError(f"{name}: missing id column {columns.id!r}")

    out = pd.DataFrame()
    out["id"] = (raw[columns.id].astype(str) if columns.id else pd.Series(range(len(raw))).astype(str)).values
    for field_name, column in wanted.items():
        values = raw[column].tolist()
        for index, value in enumerate(values):
            if value is None or (isinstance(value, float) and math.isnan(value)) or not str(value).strip():
                raise DataError(f"{name}: row {index + 1}: field {column!r} ({field_name}) is empty")
        out[field_name] = [str(v) for v in values]
    if has_labels:
        mapped = []
        for index, value in enumerate(raw[columns.label].tolist()):
            try:
                mapped.append(labels.map(value))
            except ValueError as error:
                raise DataError(f"{name}: row {index + 1}: field {columns.label!r}: {error}") from None
        out["label"] = pd.array(mapped, dtype="Int64")
    else:
        out["label"] = pd.array([None] * len(raw), dtype="Int64")
    if out["id"].duplicated().any():
        duplicate = out["id"][out["id"].duplicated()].iloc[0]
        raise DataError(f"{name}: id {duplicate!r} appears more than once in column {columns.id!r}")
    used = set(wanted.values()) | {columns.label, columns.id}
    for extra in raw.columns:
        if extra not in used and extra not in out.columns:
            out[extra] = raw[extra].values
    return out


def pair_rows(pairs: pd.DataFrame) -> list[dict]:
    """The pairs as one dict per row (``id``, ``premise``, ``hypothesis``, ``label``), in order.

    Extra columns are left out; ``label`` keeps the frame's value (``<NA>`` for unlabeled pairs).
    """
    return pairs[["id", "premise", "hypothesis", "label"]].to_dict("records")


# ---------------------------------------------------------------- checks


def normalise_text(text: str) -> str:
    """Lower-case, alphanumerics only: tokenised SNLI text and raw coursework text compare equal."""
    return re.sub(r"[^a-z0-9]+", "", str(text).lower())


def pair_key(premise: str, hypothesis: str) -> str:
    return normalise_text(premise) + "\x1f" + normalise_text(hypothesis)


@dataclass
class Overlap:
    count: int
    left_rows: int
    right_rows: int
    left_ids: list[str]
    label_agreement: float | None

    @property
    def fraction_of_left(self) -> float:
        return self.count / self.left_rows if self.left_rows else 0.0


def contamination(left: pd.DataFrame, right: pd.DataFrame) -> Overlap:
    """Pairs of ``left`` whose normalised premise + hypothesis also occur in ``right``."""
    right_keys = {}
    for premise, hypothesis, label in zip(right["premise"], right["hypothesis"], right["label"]):
        right_keys.setdefault(pair_key(premise, hypothesis), label)
    ids, agree, compared = [], 0, 0
    for row_id, premise, hypothesis, label in zip(left["id"], left["premise"], left["hypothesis"], left["label"]):
        key = pair_key(premise, hypothesis)
        if key in right_keys:
            ids.append(row_id)
            other = right_keys[key]
            if not pd.isna(label) and not pd.isna(other):
                compared += 1
                agree += int(label == other)
    return Overlap(len(ids), len(left), len(right), ids, agree / compared if compared else None)


def describe(pairs: pd.DataFrame) -> dict:
    """Rows, label balance and text-length statistics of validated pairs."""
    stats: dict = {"rows": int(len(pairs))}
    labelled = pairs["label"].dropna()
    stats["labelled"] = int(len(labelled))
    stats["label_counts"] = {int(k): int(v) for k, v in labelled.value_counts().sort_index().items()}
    keys = [pair_key(p, h) for p, h in zip(pairs["premise"], pairs["hypothesis"])]
    stats["duplicate_pairs"] = int(len(keys) - len(set(keys)))
    for column in ("premise", "hypothesis"):
        words = pairs[column].str.split().str.len()
        stats[f"{column}_words"] = {
            "mean": round(float(words.mean()), 1) if len(words) else 0.0,
            "p50": float(words.quantile(0.5)) if len(words) else 0.0,
            "p95": float(words.quantile(0.95)) if len(words) else 0.0,
            "max": int(words.max()) if len(words) else 0,
        }
    return stats


# ---------------------------------------------------------------- options shared by every stage that reads pairs

from nli_cot_hub.config import option  # noqa: E402  (config imports nothing of this module at import time)


@dataclass(kw_only=True)
class PairOptions:
    """Where the pairs' columns are and what their labels mean; a stage config that reads pairs has these."""

    premise_col: str = option("premise", "Column holding the premise.")
    hypothesis_col: str = option("hypothesis", "Column holding the hypothesis.")
    label_col: str = option("label", "Column holding the label.")
    id_col: str | None = option(None, "Column holding a row id (default: the row index).")
    labels: str = option(
        "binary",
        "Integer label scheme: binary (1 = entailment), inverted (0 = entailment), "
        "glue3 (0 entailment / 1 neutral / 2 contradiction).",
        choices=LABEL_SCHEMES,
    )
    three_class: str | None = option(
        None, "What neutral becomes: strict (-> 0) or non-contradiction (-> 1).", choices=THREE_CLASS_POLICIES
    )
    label_map: str | None = option(None, "Explicit raw=label pairs, e.g. 'yes=1,no=0'; checked first.")
    dataset_config: str | None = option(None, "Config of a data set folder or Hub repo.")
    split: str = option("train", "Split to read from a data set folder or Hub repo.")

    def columns(self) -> Columns:
        return Columns(self.premise_col, self.hypothesis_col, self.label_col, self.id_col)

    def label_mapping(self) -> LabelMapping:
        try:
            return LabelMapping(
                scheme=self.labels, three_class=self.three_class, custom=parse_label_map(self.label_map)
            )
        except ValueError as error:
            raise DataError(str(error)) from None

    def load(self, source: str | Path, *, require_labels: bool = True, split: str | None = None) -> pd.DataFrame:
        return load_pairs(
            source,
            columns=self.columns(),
            labels=self.label_mapping(),
            require_labels=require_labels,
            config=self.dataset_config,
            split=split or self.split,
        )
