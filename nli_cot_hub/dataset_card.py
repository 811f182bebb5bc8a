"""The dataset card (README.md) of a built CoT data set: YAML metadata the Hub and `datasets` read, plus prose.

The YAML ``configs`` list each config's ``data_files`` per split, which is what makes
``load_dataset(repo_or_folder, config)`` work without a loading script. The prose says how the data was made
(models, prompt versions, re-asks), gives per-config/split statistics and states the limitations.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from nli_cot_hub.build import SPLITS, BuiltDataset, data_file

TEMPLATE = Path(__file__).parent / "templates" / "dataset_card.md"
DEFAULT_CONFIG = "combined"


@dataclass
class CardInfo:
    """What the card says beyond the numbers it computes itself."""

    repo_id: str = "your-name/nli-cot"
    pretty_name: str = "NLI chain-of-thought"
    license: str = "apache-2.0"
    source_datasets: list[str] = field(default_factory=lambda: ["original"])
    source_text: str = "the input NLI data set"
    seed: int | None = None


def size_category(rows: int) -> str:
    bounds = [
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
        (10_000_000, "1M<n<10M"),
    ]
    return next((name for bound, name in bounds if rows < bound), "10M<n<100M")


def _pct(part: float) -> str:
    return f"{part:.1%}"


def _thought_quantiles(frame: pd.DataFrame) -> str:
    words = frame["thought_process"].fillna("").str.split().str.len()
    if not len(words):
        return "-"
    q = words.quantile([0.1, 0.5, 0.9])
    return f"{q[0.1]:.0f} / {q[0.5]:.0f} / {q[0.9]:.0f} / {words.max():.0f}"


def _flag(config: str, frame: pd.DataFrame) -> str:
    if config == "original":
        known = frame["correct"].dropna()
        return f"{_pct(known.astype(bool).mean())} correct" if len(known) else "-"
    if config == "reflected":
        known = frame["corrected"].dropna()
        return f"{_pct(known.astype(bool).mean())} corrected" if len(known) else "-"
    return f"{_pct((frame['source'] == 'reflected').mean())} reflected"


def stats_rows(built: BuiltDataset) -> list[dict]:
    rows = []
    for config, splits in built.configs.items():
        for split in SPLITS:
            if split not in splits:
                continue
            frame = splits[split]
            rows.append(
                {
                    "config": config,
                    "split": split,
                    "rows": len(frame),
                    "label_1": _pct((frame["label"] == 1).mean()),
                    "flag": _flag(config, frame),
                    "thought": _thought_quantiles(frame),
                }
            )
    return rows


def _counts(values) -> str:
    counted = Counter(v for v in values if v)
    return ", ".join(f"`{k}` ({n:,})" for k, n in counted.most_common()) or "not recorded"


def provenance_lines(built: BuiltDataset) -> list[str]:
    lines = []
    for config in ("original", "reflected"):
        if config not in built.configs:
            continue
        frame = pd.concat(built.configs[config].values(), ignore_index=True)
        what = "Initial thoughts" if config == "original" else "Reflections"
        asks = frame["reask_count"]
        lines.append(
            f"{what} (`{config}`, {len(frame):,} rows): models {_counts(frame['model'])}; prompt versions "
            f"{_counts(frame['prompt_version'])}; re-asks after invalid output: {int(asks.sum()):,} in "
            f"total, {int((asks > 0).sum()):,} rows needed at least one (max {int(asks.max())})."
        )
        if config == "original" and "source" in frame and (frame["source"] == "human").any():
            lines.append(
                f"{int((frame['source'] == 'human').sum()):,} of the `original` rows are human "
                "rationales (source `human`), not model output."
            )
    return lines


def report_lines(built: BuiltDataset) -> list[str]:
    report, lines = built.report, []
    if report.unresolved_reflections:
        lines.append(
            f"{len(report.unresolved_reflections)} reflection(s) did not reach the gold label and are "
            f"left out of `combined`: {', '.join(report.unresolved_reflections[:10])}."
        )
    if report.duplicate_pairs_in_combined:
        lines.append(
            f"{report.duplicate_pairs_in_combined} duplicate pair(s) were collapsed in `combined` "
            "(a reflected correction wins over an original, an original over a human rationale)."
        )
    if report.skipped_failed:
        lines.append(f"{report.skipped_failed} failed record(s) (no usable output) were left out.")
    if report.skipped_unlabelled:
        lines.append(f"{report.skipped_unlabelled} record(s) without a gold label were left out.")
    for source in report.eval_sources:
        lines.append(f"Checked against the evaluation set `{source}`.")
    if report.contaminated_pairs:
        lines.append(f"{report.contaminated_pairs} pair(s) also in the evaluation set(s) were dropped.")
    return lines


def card_metadata(built: BuiltDataset, info: CardInfo) -> dict:
    total = sum(len(f) for f in built.configs.get(DEFAULT_CONFIG, next(iter(built.configs.values()))).values())
    configs = []
    for config, splits in built.configs.items():
        entry = {
            "config_name": config,
            "data_files": [{"split": s, "path": data_file(config, s)} for s in SPLITS if s in splits],
        }
        if config == DEFAULT_CONFIG:
            entry["default"] = True
        configs.append(entry)
    has_human = any((f["source"] == "human").any() for f in built.configs.get("original", {}).values())
    return {
        "pretty_name": info.pretty_name,
        "license": info.license,
        "language": ["en"],
        "multilinguality": ["monolingual"],
        "task_categories": ["text-classification"],
        "task_ids": ["natural-language-inference"],
        "annotations_creators": ["machine-generated"] + (["crowdsourced"] if has_human else []),
        "language_creators": ["found", "machine-generated"],
        "source_datasets": list(info.source_datasets),
        "size_categories": [size_category(total)],
        "tags": ["chain-of-thought", "nli", "reasoning", "sft"],
        "configs": configs,
    }


def add_dataset_info(data, built: BuiltDataset) -> None:
    """Features and split sizes per config (the `dataset_info` YAML that `push_to_hub` would write), so the card
    on the Hub and the local copy are the same file and the Hub viewer knows the schema."""
    from datasets import DatasetInfo, SplitDict, SplitInfo
    from datasets.info import DatasetInfosDict

    from nli_cot_hub.build import to_dataset_dict

    infos = DatasetInfosDict()
    for config, splits in built.configs.items():
        datasets = to_dataset_dict(splits)
        split_dict = SplitDict()
        for split in SPLITS:
            if split in datasets:
                split_dict.add(
                    SplitInfo(name=split, num_examples=len(datasets[split]), num_bytes=datasets[split].data.nbytes)
                )
        first = next(iter(datasets.values()))
        infos[config] = DatasetInfo(
            features=first.features,
            splits=split_dict,
            config_name=config,
            dataset_size=sum(d.data.nbytes for d in datasets.values()),
        )
    infos.to_dataset_card_data(data)


def render_card(built: BuiltDataset, info: CardInfo) -> str:
    """The README.md text; raises ValueError if huggingface_hub cannot read back what we wrote."""
    from huggingface_hub import DatasetCard, DatasetCardData

    from nli_cot_hub.chat_format import FORMAT_VERSION

    data = DatasetCardData(**card_metadata(built, info))
    add_dataset_info(data, built)
    has_human = any((f["source"] == "human").any() for f in built.configs.get("original", {}).values())
    card = DatasetCard.from_template(
        data,
        template_path=str(TEMPLATE),
        repo_id=info.repo_id,
        seed=info.seed,
        format_version=FORMAT_VERSION,
        provenance=provenance_lines(built),
        report_lines=report_lines(built),
        stats_rows=stats_rows(built),
        has_human=has_human,
        source_text=info.source_text,
    )
    text = str(card)
    validate_card(text, built)
    return text


def validate_card(text: str, built: BuiltDataset) -> None:
    """Parse the card back with `huggingface_hub.DatasetCard` and check the metadata the loaders depend on.

    (``DatasetCard.validate`` asks the Hub's /api/validate-yaml; pushing does that anyway.)
    """
    from huggingface_hub import DatasetCard

    card = DatasetCard(text, ignore_metadata_errors=False)
    metadata = card.data.to_dict()
    for key in (
        "pretty_name",
        "license",
        "task_categories",
        "annotations_creators",
        "source_datasets",
        "size_categories",
        "configs",
    ):
        if not metadata.get(key):
            raise ValueError(f"dataset card: YAML field {key} is missing")
    declared = {c["config_name"]: {f["split"]: f["path"] for f in c["data_files"]} for c in metadata["configs"]}
    expected = {c: {s: data_file(c, s) for s in splits} for c, splits in built.configs.items()}
    if declared != expected:
        raise ValueError(f"dataset card: configs {declared} do not match the files {expected}")
    infos = metadata.get("dataset_info") or []
    sizes = {
        i["config_name"]: {s["name"]: s["num_examples"] for s in i["splits"]}
        for i in (infos if isinstance(infos, list) else [infos])
    }
    if sizes and sizes != built.counts():
        raise ValueError(f"dataset card: dataset_info sizes {sizes} do not match the data {built.counts()}")
    if not card.text.strip():
        raise ValueError("dataset card: no prose")
