"""Build the CoT data set from annotation records: configs, splits and the contamination guard.

Three configs, all from :class:`~nli_cot_hub.records.CoTRecord`\\ s:

* ``original``: every initial thought as generated (and human rationales), with its ``correct`` flag;
* ``reflected``: the error cases: the initial thought and prediction, the ``error_analysis`` and the improved
  thought with the label the reflection reached;
* ``combined``: the training mix: correct originals plus reflected corrections, each pair once, with the
  TRL prompt/completion columns of :func:`nli_cot_hub.chat_format.training_example` beside the flat fields.

Splits are assigned per *pair* (normalised premise + hypothesis), stratified by label, from a seeded permutation
of the sorted pair keys, so a pair lands in the same split in every config and the result does not depend on the
order of the inputs. The output folder has the Hub layout (``{config}/{split}-00000-of-00001.parquet`` and a
``README.md`` card whose YAML ``configs`` point at them), so ``load_dataset(folder, config)`` works on it as on
the Hub repo.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from nli_cot_hub.chat_format import FORMAT_VERSION, training_example
from nli_cot_hub.config import option, stage_config
from nli_cot_hub.data import DataError, pair_key
from nli_cot_hub.records import CoTRecord

CONFIGS = ("original", "reflected", "combined")
SPLITS = ("train", "validation", "test")
USABLE_STATUSES = ("ok", "repaired", "label-only")
# Which record wins when one pair has several candidates for the training mix.
COMBINED_PRIORITY = {"reflected": 0, "original": 1, "human": 2}

# The original Mistral-7B NLI project's released chain-of-thought artifacts (sample_thoughts.json,
# sample_reflections.json, dev_missing_gold.csv): SOURCE.md says its predictions and thoughts are open-mistral-7b
# outputs.
ARTIFACTS_GENERATOR = "open-mistral-7b"
ARTIFACTS_SOURCE_TEXT = (
    "the COMP34812 NLI coursework data (SNLI and MNLI pairs), annotated by the original j-d0g/mistral-7b-nli project"
)


class ContaminationError(DataError):
    """Pairs of the build also occur in the evaluation set, and the build was told to refuse."""


@dataclass
class SplitSpec:
    seed: int = 42
    validation: float = 0.1
    test: float = 0.1

    def __post_init__(self):
        if not (0 <= self.validation < 1 and 0 <= self.test < 1 and self.validation + self.test < 1):
            raise ValueError(
                f"split fractions must leave room for train: validation={self.validation}, test={self.test}"
            )


@dataclass
class BuildReport:
    """What the build did, for the console and the card."""

    inputs: dict[str, int] = field(default_factory=dict)
    skipped_failed: int = 0
    skipped_unlabelled: int = 0
    unresolved_reflections: list[str] = field(default_factory=list)
    duplicate_pairs_in_combined: int = 0
    contaminated_pairs: int = 0
    contaminated_ids: list[str] = field(default_factory=list)
    eval_sources: list[str] = field(default_factory=list)


@dataclass
class BuiltDataset:
    configs: dict[str, dict[str, pd.DataFrame]]  # config -> split -> rows
    report: BuildReport

    def counts(self) -> dict[str, dict[str, int]]:
        return {c: {s: len(rows) for s, rows in splits.items()} for c, splits in self.configs.items()}


# -- importing the original project's artifacts ------------------------------------------------------------------


def _read_json_rows(path: Path) -> list[dict]:
    """The author's .json files are a JSON list or one object a line; accept both."""
    text = path.read_text(encoding="utf-8").strip()
    if text.startswith("["):
        return json.loads(text)
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise DataError(f"{path}: line {number}: not JSON ({error.msg})") from None
    return rows


def _field(path: Path, row_number: int, row: dict, name: str):
    if name not in row or row[name] is None:
        raise DataError(f"{path}: row {row_number}: field {name}: missing")
    return row[name]


def _label(path: Path, row_number: int, row: dict, name: str) -> int:
    value = _field(path, row_number, row, name)
    if str(value).strip() not in ("0", "1"):
        raise DataError(f"{path}: row {row_number}: field {name}: expected 0 or 1, got {value!r}")
    return int(str(value).strip())


def import_artifacts(folder: str | Path, *, dev_thoughts: bool = False) -> list[CoTRecord]:
    """Turn the original Mistral-7B NLI project's released chain-of-thought artifacts into CoTRecords.

    ``sample_thoughts.json`` gives original records, ``sample_reflections.json`` reflected ones (thought_process is
    the improved thought, predicted_label the label the reflection reached); ids become ``sample-<row>`` (the row
    of sample.csv). With ``dev_thoughts``, ``dev_missing_gold.csv`` adds original records ``dev-<row>``.
    """
    folder = Path(folder)
    records: list[CoTRecord] = []
    thoughts = folder / "sample_thoughts.json"
    for number, row in enumerate(_read_json_rows(thoughts), start=1):
        records.append(
            CoTRecord(
                id=f"sample-{_field(thoughts, number, row, 'id')}",
                premise=_field(thoughts, number, row, "premise"),
                hypothesis=_field(thoughts, number, row, "hypothesis"),
                label=_label(thoughts, number, row, "true_label"),
                thought_process=_field(thoughts, number, row, "thought_process"),
                predicted_label=_label(thoughts, number, row, "predicted_label"),
                source="original",
                model=ARTIFACTS_GENERATOR,
                prompt_version="jd0g-cot",
                reask_count=int(row.get("reprompt_counts") or 0),
            )
        )
    reflections = folder / "sample_reflections.json"
    for number, row in enumerate(_read_json_rows(reflections), start=1):
        records.append(
            CoTRecord(
                id=f"sample-{_field(reflections, number, row, 'id')}",
                premise=_field(reflections, number, row, "premise"),
                hypothesis=_field(reflections, number, row, "hypothesis"),
                label=_label(reflections, number, row, "true_label"),
                thought_process=_field(reflections, number, row, "improved_thought_process"),
                predicted_label=_label(reflections, number, row, "predicted_label"),
                error_analysis=_field(reflections, number, row, "error_analysis"),
                source="reflected",
                model=None,
                prompt_version="jd0g-reflect",
            )
        )
    if dev_thoughts:
        path = folder / "dev_missing_gold.csv"
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        for number, row in enumerate(frame.to_dict("records"), start=2):  # line 1 is the header
            records.append(
                CoTRecord(
                    id=f"dev-{row['id']}",
                    premise=row["premise"],
                    hypothesis=row["hypothesis"],
                    label=_label(path, number, row, "label"),
                    thought_process=row["thoughts"] or None,
                    predicted_label=_label(path, number, row, "prediction"),
                    source="original",
                    model=ARTIFACTS_GENERATOR,
                    prompt_version="jd0g-cot",
                    status="ok" if row["thoughts"] else "label-only",
                )
            )
    return records


def read_stores(paths: Iterable[str | Path]) -> list[CoTRecord]:
    """Records from JSONL stores written by the generate / reflect / human-rationale stages."""
    from nli_cot_hub.store import read_records

    records: list[CoTRecord] = []
    for path in paths:
        if not Path(path).exists():
            raise FileNotFoundError(f"{path}: no such store")
        records.extend(read_records(path))
    return records


# -- configs ----------------------------------------------------------------------------------------------------


def _words(text: str | None) -> int:
    return len(text.split()) if text else 0


def _base_row(record: CoTRecord) -> dict:
    return {"id": record.id, "premise": record.premise, "hypothesis": record.hypothesis, "label": record.label}


def _provenance(record: CoTRecord) -> dict:
    return {
        "model": record.model or "",
        "prompt_version": record.prompt_version or "",
        "reask_count": record.reask_count,
        "status": record.status,
    }


def _original_row(record: CoTRecord) -> dict:
    return {
        **_base_row(record),
        "thought_process": record.thought_process or "",
        "predicted_label": record.predicted_label,
        "correct": record.correct,
        "source": record.source,
        **_provenance(record),
    }


def _reflected_row(record: CoTRecord, initial: CoTRecord | None) -> dict:
    return {
        **_base_row(record),
        "initial_thought_process": (initial.thought_process or "") if initial else "",
        "initial_predicted_label": initial.predicted_label if initial else None,
        "error_analysis": record.error_analysis or "",
        "thought_process": record.thought_process or "",
        "predicted_label": record.predicted_label,
        "corrected": record.correct,
        **_provenance(record),
    }


def _combined_row(record: CoTRecord) -> dict:
    return {
        **_base_row(record),
        "thought_process": record.thought_process or "",
        "source": record.source,
        **_provenance(record),
        "format_version": FORMAT_VERSION,
        **training_example(record.premise, record.hypothesis, record.thought_process, record.label),
    }


def assemble_configs(records: list[CoTRecord], report: BuildReport) -> dict[str, pd.DataFrame]:
    """Rows of each config (before splitting). Failed and unlabelled records are counted and left out."""
    usable = []
    for record in records:
        if record.status not in USABLE_STATUSES:
            report.skipped_failed += 1
        elif record.label is None:
            report.skipped_unlabelled += 1
        else:
            usable.append(record)
    report.inputs = dict(Counter(r.source for r in records))
    originals = [r for r in usable if r.source in ("original", "human")]
    reflections = [r for r in usable if r.source == "reflected"]
    initial_by_id = {r.id: r for r in originals if r.source == "original"}

    # A reflection that did not reach the gold label argues for the other answer: it is kept in `reflected`
    # (it is real data about label disagreement) but cannot teach the gold label in `combined`.
    report.unresolved_reflections = sorted(r.id for r in reflections if not r.correct)
    candidates = [r for r in reflections if r.correct]
    candidates += [r for r in originals if r.source == "human" or r.correct]
    candidates = [r for r in candidates if r.thought_process]
    candidates.sort(key=lambda r: (COMBINED_PRIORITY[r.source], r.id))
    chosen: dict[str, CoTRecord] = {}
    for record in candidates:
        key = pair_key(record.premise, record.hypothesis)
        if key in chosen:
            report.duplicate_pairs_in_combined += 1
        else:
            chosen[key] = record
    return {
        "original": _typed(pd.DataFrame([_original_row(r) for r in originals])),
        "reflected": _typed(pd.DataFrame([_reflected_row(r, initial_by_id.get(r.id)) for r in reflections])),
        "combined": _typed(pd.DataFrame([_combined_row(r) for r in sorted(chosen.values(), key=lambda r: r.id)])),
    }


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Labels stay integers (with nulls) and flags booleans (with nulls) instead of becoming floats/objects."""
    for column in ("label", "predicted_label", "initial_predicted_label"):
        if column in frame:
            frame[column] = frame[column].astype("Int64")
    for column in ("correct", "corrected"):
        if column in frame:
            frame[column] = frame[column].astype("boolean")
    return frame


# -- splits and contamination -----------------------------------------------------------------------------------


def assign_splits(pairs: dict[str, int], spec: SplitSpec) -> dict[str, str]:
    """Map each pair key to a split: per label, a seeded permutation of the sorted keys is cut by the fractions."""
    rng = np.random.default_rng(spec.seed)
    assignment: dict[str, str] = {}
    for label in sorted(set(pairs.values())):
        keys = sorted(k for k, v in pairs.items() if v == label)
        order = rng.permutation(len(keys))
        n_test = int(round(len(keys) * spec.test))
        n_validation = int(round(len(keys) * spec.validation))
        for rank, index in enumerate(order):
            split = "test" if rank < n_test else "validation" if rank < n_test + n_validation else "train"
            assignment[keys[index]] = split
    return assignment


def _keys(frame: pd.DataFrame) -> list[str]:
    return [pair_key(p, h) for p, h in zip(frame["premise"], frame["hypothesis"])]


def guard_contamination(
    configs: dict[str, pd.DataFrame],
    eval_pairs: pd.DataFrame | None,
    eval_name: str,
    policy: Literal["refuse", "drop"],
    report: BuildReport,
) -> dict[str, pd.DataFrame]:
    """Refuse, or drop with a report, every pair that also occurs in the evaluation set."""
    if eval_pairs is None:
        return configs
    report.eval_sources.append(eval_name)
    eval_keys = set(_keys(eval_pairs))
    leaked: set[str] = set()
    ids: set[str] = set()
    for frame in configs.values():
        for key, row_id in zip(_keys(frame) if len(frame) else [], frame["id"] if len(frame) else []):
            if key in eval_keys:
                leaked.add(key)
                ids.add(row_id)
    if not leaked:
        return configs
    ids = sorted(ids)
    if policy == "refuse":
        shown = ", ".join(ids[:5]) + (" ..." if len(ids) > 5 else "")
        raise ContaminationError(
            f"{eval_name}: {len(leaked)} pairs of the build also occur in this evaluation set (ids {shown}); "
            "remove them or pass --on-contamination drop"
        )
    report.contaminated_pairs += len(leaked)
    report.contaminated_ids = sorted(set(report.contaminated_ids) | set(ids))
    return {
        name: frame[[k not in leaked for k in _keys(frame)]].reset_index(drop=True) if len(frame) else frame
        for name, frame in configs.items()
    }


def build_dataset(
    records: list[CoTRecord],
    *,
    splits: SplitSpec | None = None,
    eval_sets: dict[str, pd.DataFrame] | None = None,
    on_contamination: Literal["refuse", "drop"] = "refuse",
) -> BuiltDataset:
    if not records:
        raise DataError("no records to build from: give --store and/or --import-artifacts")
    ids = Counter((r.source, r.id) for r in records)
    repeated = [f"{source}:{rid}" for (source, rid), n in ids.items() if n > 1]
    if repeated:
        raise DataError(f"record ids occur more than once within one source: {', '.join(sorted(repeated)[:5])}")
    report = BuildReport()
    configs = assemble_configs(records, report)
    for name, frame in (eval_sets or {}).items():
        configs = guard_contamination(configs, frame, name, on_contamination, report)

    pair_labels: dict[str, int] = {}
    for frame in configs.values():
        for key, label in zip(_keys(frame) if len(frame) else [], frame["label"] if len(frame) else []):
            pair_labels.setdefault(key, int(label))
    assignment = assign_splits(pair_labels, splits or SplitSpec())
    result: dict[str, dict[str, pd.DataFrame]] = {}
    for name, frame in configs.items():
        if not len(frame):
            continue
        split_of = pd.Series([assignment[k] for k in _keys(frame)], index=frame.index)
        result[name] = {s: frame[split_of == s].reset_index(drop=True) for s in SPLITS if (split_of == s).any()}
    if not result:
        raise DataError(
            f"none of the {len(records)} records is usable (all failed, unlabelled or dropped as "
            "contaminated): nothing to build"
        )
    return BuiltDataset(result, report)


# -- writing ----------------------------------------------------------------------------------------------------


def data_file(config: str, split: str) -> str:
    """The path `DatasetDict.push_to_hub(repo, config_name=config)` gives a one-shard split."""
    return f"{config}/{split}-00000-of-00001.parquet"


def to_dataset_dict(splits: dict[str, pd.DataFrame]):
    import datasets

    def plain_strings(dataset: datasets.Dataset) -> datasets.Dataset:
        # pandas' Arrow-backed strings arrive as large_string; plain string is what the rest of the ecosystem uses.
        features = datasets.Features(
            {
                name: datasets.Value("string") if feature == datasets.Value("large_string") else feature
                for name, feature in dataset.features.items()
            }
        )
        return dataset.cast(features) if features != dataset.features else dataset

    with quiet_datasets():
        return datasets.DatasetDict(
            {s: plain_strings(datasets.Dataset.from_pandas(f, preserve_index=False)) for s, f in splits.items()}
        )


@contextlib.contextmanager
def quiet_datasets():
    """No progress bars for the instant in-memory steps (casting, writing a small Parquet file)."""
    from datasets.utils import logging as ds_logging

    was_enabled = ds_logging.is_progress_bar_enabled()
    ds_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            ds_logging.enable_progress_bar()


def check_output_dir(output_dir: str | Path, overwrite: bool) -> list[Path]:
    """The files of an earlier build in `output_dir`; an error if there are some and `overwrite` is off."""
    output_dir = Path(output_dir)
    previous = [output_dir / "README.md"] + [p for c in CONFIGS for p in sorted((output_dir / c).glob("*.parquet"))]
    previous = [p for p in previous if p.exists()]
    if previous and not overwrite:
        raise DataError(
            f"{output_dir}: already holds a built data set ({previous[0].name}, ...); pass --overwrite to replace it"
        )
    return previous


def write_local(built: BuiltDataset, output_dir: str | Path, card_text: str, *, overwrite: bool = False) -> list[Path]:
    """Write the Hub layout to `output_dir`; returns the files written.

    An earlier build there is only replaced with `overwrite` (then its card and config Parquet files go first, so
    no stale split survives); other files in the folder are never touched.
    """
    output_dir = Path(output_dir)
    for path in check_output_dir(output_dir, overwrite):
        path.unlink()
    written = []
    for config, splits in built.configs.items():
        for split, dataset in to_dataset_dict(splits).items():
            path = output_dir / data_file(config, split)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".parquet.tmp")
            with quiet_datasets():
                dataset.to_parquet(str(tmp))
            tmp.replace(path)
            written.append(path)
    card = output_dir / "README.md"
    card.write_text(card_text, encoding="utf-8")
    return written + [card]


def push(built: BuiltDataset, repo_id: str, card_text: str, *, private: bool = False, token: str | None = None) -> str:
    """Push every config with `DatasetDict.push_to_hub(config_name=...)`, then replace the README with our card.

    Returns the commit sha of the card commit (the final state of the repo).
    """
    from nli_cot_hub.hub import hub_api, hub_token

    token = token or hub_token()
    for config, splits in built.configs.items():
        to_dataset_dict(splits).push_to_hub(
            repo_id, config_name=config, private=private, token=token, commit_message=f"Upload config {config}"
        )
    info = hub_api(token).upload_file(
        path_or_fileobj=card_text.encode("utf-8"),
        path_in_repo="README.md",
        repo_id=repo_id,
        repo_type="dataset",
        commit_message="Dataset card",
    )
    return info.oid


# -- the `nli-cot build` stage ----------------------------------------------------------------------------------


@stage_config
class BuildConfig:
    """Build the original / reflected / combined configs with seeded, label-stratified splits, a dataset card,
    and write them to --output-dir and/or push them to the Hub.

    At least one of --store / --import-artifacts is needed, and at least one of --output-dir / --push-to-hub.
    """

    store: list[str] = option(
        [],
        "JSONL store of CoT records (generate, reflect or human-rationale output); "
        "repeatable. Reflected records are matched to originals by id.",
    )
    import_artifacts: str | None = option(
        None,
        "Folder with the original Mistral-7B NLI project's released "
        "chain-of-thought artifacts (sample_thoughts.json, sample_reflections.json, "
        "dev_missing_gold.csv) to import as records.",
    )
    import_dev_thoughts: bool = option(
        False,
        "With --import-artifacts: also import that project's 3,005 dev thoughts (dev_missing_gold.csv) as originals.",
        negatable=True,
    )
    output_dir: str | None = option(None, "Write the data set here, in the same file layout as the Hub repo.")
    push_to_hub: str | None = option(
        None, "Hub repo id (namespace/name) to push to; token from HF_TOKEN, endpoint from HF_ENDPOINT."
    )
    overwrite: bool = option(False, "Replace an earlier build in --output-dir (otherwise that is an error).")
    private: bool = option(False, "Create the Hub repo as private.")
    eval_set: list[str] = option(
        [], "Evaluation data (any format `nli-cot data check` reads) that no built pair may occur in; repeatable."
    )
    on_contamination: str = option(
        "refuse",
        "refuse: stop with an error if a pair occurs in an --eval-set; drop: remove those pairs and report them.",
        choices=("refuse", "drop"),
    )
    seed: int = option(42, "Seed of the split permutation.")
    validation_fraction: float = option(0.1, "Share of pairs in the validation split.")
    test_fraction: float = option(0.1, "Share of pairs in the test split.")
    pretty_name: str = option("NLI chain-of-thought", "Card title (pretty_name).")
    license: str = option("apache-2.0", "License id for the card.")
    source_dataset: list[str] = option(
        [], "Card source_datasets entry, e.g. 'extended|snli'; repeatable (default: original)."
    )


@dataclass
class BuildResult:
    """What ``run_build`` made: the data set, its card and statistics, where it was written and pushed."""

    built: BuiltDataset
    card: str
    stats: list[dict]  # one row per config/split: config, split, rows, label_1, flag, thought
    output_dir: Path | None = None
    written: list[Path] = field(default_factory=list)
    pushed_to: str | None = None
    commit: str | None = None

    @property
    def report(self) -> BuildReport:
        return self.built.report


def run_build(config: BuildConfig) -> BuildResult:
    """Read the records, build the configs and card, then write ``config.output_dir`` and/or push the repo."""
    from nli_cot_hub.data import load_pairs
    from nli_cot_hub.dataset_card import CardInfo, render_card, stats_rows
    from nli_cot_hub.hub import hub_token
    from nli_cot_hub.hub_transfer import hub_errors

    if config.output_dir is None and config.push_to_hub is None:
        raise DataError("give --output-dir and/or --push-to-hub")
    if config.import_dev_thoughts and config.import_artifacts is None:
        raise DataError("--import-dev-thoughts needs --import-artifacts DIR")
    try:
        splits = SplitSpec(seed=config.seed, validation=config.validation_fraction, test=config.test_fraction)
    except ValueError as error:
        raise DataError(f"--validation-fraction / --test-fraction: {error}") from None
    if config.output_dir is not None:
        check_output_dir(config.output_dir, config.overwrite)
    if config.push_to_hub is not None and not hub_token():
        raise DataError("--push-to-hub needs a token: set HF_TOKEN (or run `hf auth login`)")
    records = read_stores(config.store)
    if config.import_artifacts is not None:
        records += import_artifacts(config.import_artifacts, dev_thoughts=config.import_dev_thoughts)
    eval_sets = {name: load_pairs(name) for name in config.eval_set}
    built = build_dataset(records, splits=splits, eval_sets=eval_sets, on_contamination=config.on_contamination)  # type: ignore[arg-type]
    info = CardInfo(
        repo_id=config.push_to_hub or "your-name/nli-cot",
        pretty_name=config.pretty_name,
        license=config.license,
        source_datasets=config.source_dataset or ["original"],
        source_text=ARTIFACTS_SOURCE_TEXT if config.import_artifacts is not None else "the input NLI data set",
        seed=config.seed,
    )
    card = render_card(built, info)
    result = BuildResult(built, card, stats_rows(built))
    if config.output_dir is not None:
        result.output_dir = Path(config.output_dir)
        result.written = write_local(built, config.output_dir, card, overwrite=config.overwrite)
    if config.push_to_hub is not None:
        with hub_errors("pushing the data set", config.push_to_hub, "dataset"):
            result.commit = push(built, config.push_to_hub, card, private=config.private)
        result.pushed_to = config.push_to_hub
    return result
