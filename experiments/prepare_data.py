"""Build the experiments' evaluation and training sets from the real files in ``../shared/data``.

    python experiments/prepare_data.py [--data-root ../shared/data] [--work experiments/prepared]

Training sources (all real):
* the original author's open-mistral-7b thoughts on 3,005 coursework dev rows
  (``comp34812_nli_jd0g_cot/dev_missing_gold.csv``) plus his 100 sample thoughts and 33 reflections,
  imported by ``nli-cot build --import-artifacts ... --import-dev-thoughts``;
* e-SNLI human explanations (``esnli/dev``, neutral pairs dropped) through ``nli-cot rationales``.

Evaluation sets:
* ``dev``: the coursework dev rows (``comp34812_nli/dev_jd0g.csv``) that are no training row: the
  ids of ``dev_missing_gold.csv`` are dev row indices, so those rows go, and so does every row whose
  normalised pair occurs in any training source (the 436 SNLI dev pairs of e-SNLI dev, the author's
  sample pairs), checked with ``nli_cot_hub.data.contamination``;
* ``mnli_hard``: a seeded sample of the MNLI matched + mismatched hard subsets, minus any pair in a
  training source, written twice: COMP34812-style labels (neutral -> 1, the meaning label 1 has in
  the training data and the prompts) and standard labels (only entailment -> 1).

Everything goes into ``--work`` (default ``experiments/prepared``, ignored by git), the one folder a run needs
besides the package; ``manifest.json`` there records every count and exclusion.
"""

from __future__ import annotations

import argparse
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from experiments.common import (
    BUILD_JD0G,
    BUILD_JD0G_ESNLI,
    DEFAULT_DATA_ROOT,
    DEFAULT_WORK,
    DEV_EVAL,
    HUMAN_STORE,
    JD0G_DIR,
    JD0G_ORIGINALS,
    LABEL_ONLY,
    MANIFEST,
    MNLI_EVAL,
    MNLI_EVAL_STRICT,
    PAIRS,
    build_config,
    sha256,
    write_json,
)
from nli_cot_hub.data import Columns, LabelMapping, contamination, load_pairs, pair_key
from nli_cot_hub.generate import RationalesConfig, run_rationales

DEV_FILE = "comp34812_nli/dev_jd0g.csv"
JD0G_FILES = ("sample_thoughts.json", "sample_reflections.json", "dev_missing_gold.csv")
JD0G_SOURCE = "comp34812_nli_jd0g_cot"
ESNLI_SPLIT = "esnli/dev"
MNLI_SUBSETS = {
    "matched": "mnli_hard/MNLIMatchedHardWithHardTest",
    "mismatched": "mnli_hard/MNLIMismatchedHardWithHardTest",
}


# ---------------------------------------------------------------- sources


def artifact_records(jd0g_dir: Path):
    from nli_cot_hub.build import import_artifacts

    return import_artifacts(jd0g_dir, dev_thoughts=True)


def records_frame(records) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [r.id for r in records],
            "premise": [r.premise for r in records],
            "hypothesis": [r.hypothesis for r in records],
            "label": pd.array([r.label for r in records], dtype="Int64"),
        }
    )


def training_sources(data_root: Path, jd0g_dir: Path) -> dict[str, pd.DataFrame]:
    """Every pair any run trains on, by source (e-SNLI dev whole, neutral pairs included: a superset of
    the rationales, so the evaluation set does not depend on which rationales are drawn)."""
    return {
        "jd0g (dev_missing_gold + sample thoughts/reflections)": records_frame(artifact_records(jd0g_dir)),
        "e-SNLI dev": load_pairs(data_root / ESNLI_SPLIT, labels=LabelMapping(three_class="strict")),
    }


# ---------------------------------------------------------------- evaluation sets


def dev_eval_set(
    dev: pd.DataFrame, training_ids: set[str], sources: dict[str, pd.DataFrame]
) -> tuple[pd.DataFrame, dict]:
    """Dev rows that are not training rows (by id) and share no pair with a training source (by content)."""
    excluded = {"training rows (dev_missing_gold ids)": int(dev["id"].isin(training_ids).sum())}
    kept = dev[~dev["id"].isin(training_ids)]
    for name, frame in sources.items():
        overlap = contamination(kept, frame)
        excluded[f"pair also in {name}"] = overlap.count
        kept = kept[~kept["id"].isin(set(overlap.left_ids))]
    return kept.reset_index(drop=True), excluded


def mnli_eval_set(
    data_root: Path, sources: dict[str, pd.DataFrame], per_subset: int, seed: int
) -> tuple[pd.DataFrame, dict]:
    """A seeded sample of each MNLI hard subset without training pairs, with both binary labels and the
    original three-class label."""
    frames, excluded = [], {}
    for subset, relative in MNLI_SUBSETS.items():
        raw = load_pairs(data_root / relative, labels=LabelMapping(three_class="non-contradiction"))
        strict = load_pairs(data_root / relative, labels=LabelMapping(three_class="strict"))
        three = pd.read_csv(data_root / relative / "labels.test", header=None, names=["gold3"], dtype=str)[
            "gold3"
        ].str.strip()
        frame = pd.DataFrame(
            {
                "id": [f"{subset}-{i}" for i in raw["id"]],
                "premise": raw["premise"],
                "hypothesis": raw["hypothesis"],
                "label": raw["label"],
                "label_strict": strict["label"],
                "gold3": three.values,
                "subset": subset,
            }
        )
        for name, source in sources.items():
            overlap = contamination(frame, source)
            excluded[f"{subset}: pair also in {name}"] = overlap.count
            frame = frame[~frame["id"].isin(set(overlap.left_ids))]
        if per_subset and per_subset < len(frame):
            frame = frame.sample(n=per_subset, random_state=seed).sort_index()
        frames.append(frame)
    return pd.concat(frames, ignore_index=True), excluded


# ---------------------------------------------------------------- training files


def write_originals_store(jd0g_dir: Path, path: Path) -> int:
    """The author's dev thoughts as a CoTRecord store, the input of `nli-cot reflect` (it reflects on the
    wrong ones). The sample thoughts are left out: their reflections already exist and come with
    --import-artifacts."""
    from nli_cot_hub.store import RecordStore

    records = [r for r in artifact_records(jd0g_dir) if r.id.startswith("dev-")]
    if path.exists():
        path.unlink()
    with RecordStore(path) as store:
        store.append_many(records)
    return len(records)


def training_pairs(build_dir: Path) -> pd.DataFrame:
    """Every pair of the jd0g build once with its gold label (the `original` config holds every initial
    thought, right or wrong): the same pairs the CoT runs see, for the TF-IDF and label-only runs."""
    frames = [pd.read_parquet(path) for path in sorted((build_dir / "original").glob("*.parquet"))]
    rows = pd.concat(frames, ignore_index=True)[["id", "premise", "hypothesis", "label"]]
    rows["key"] = [pair_key(p, h) for p, h in zip(rows["premise"], rows["hypothesis"])]
    rows = rows.sort_values("id").drop_duplicates("key").drop(columns="key").reset_index(drop=True)
    rows["label"] = rows["label"].astype(int)
    return rows


def write_label_only(pairs: pd.DataFrame, path: Path) -> None:
    """Flat rows with an empty thought: train.py turns them into completions {"thought_process": "", ...}."""
    flat = pairs.assign(thought_process="")[["id", "premise", "hypothesis", "thought_process", "label"]]
    path.parent.mkdir(parents=True, exist_ok=True)
    flat.to_json(path, orient="records", lines=True, force_ascii=False)


def build(work: Path, output: str, *stores: str) -> None:
    from nli_cot_hub.build import run_build

    run_build(build_config(work, work / output, *(work / store for store in stores)))


# ---------------------------------------------------------------- checks


def training_frames(work: Path) -> dict[str, pd.DataFrame]:
    """What the runs can train on, read back from the prepared files."""
    frames = {
        "pairs.csv": load_pairs(work / PAIRS, columns=Columns(id="id")),
        "jd0g originals store": records_frame(_read_store(work / JD0G_ORIGINALS)),
        "e-SNLI rationales store": records_frame(_read_store(work / HUMAN_STORE)),
    }
    for build_name in (BUILD_JD0G, BUILD_JD0G_ESNLI):
        for path in sorted((work / build_name).glob("*/*.parquet")):
            rows = pd.read_parquet(path)
            frames[str(path.relative_to(work))] = rows.assign(label=rows["label"].astype("Int64"))
    return frames


def _read_store(path: Path):
    from nli_cot_hub.store import read_records

    return read_records(path)


def overlap_report(work: Path) -> dict[str, dict[str, int]]:
    """For each evaluation set and training file: how many evaluation pairs occur in it (all must be 0)."""
    evaluation = {
        "dev": load_pairs(work / DEV_EVAL, columns=Columns(id="id")),
        "mnli_hard": load_pairs(work / MNLI_EVAL, columns=Columns(id="id")),
    }
    return {
        name: {source: contamination(rows, frame).count for source, frame in training_frames(work).items()}
        for name, rows in evaluation.items()
    }


# ---------------------------------------------------------------- main


def prepare(
    data_root: Path,
    work: Path,
    *,
    mnli_per_subset: int = 500,
    rationales: int = 3000,
    seed: int = 42,
    max_dev: int | None = None,
) -> dict:
    data_root, work = Path(data_root), Path(work)
    work.mkdir(parents=True, exist_ok=True)
    jd0g_dir = work / JD0G_DIR
    jd0g_dir.mkdir(exist_ok=True)
    for name in JD0G_FILES:  # the cot-reflected run builds its data set from these
        shutil.copyfile(data_root / JD0G_SOURCE / name, jd0g_dir / name)

    sources = training_sources(data_root, jd0g_dir)
    dev = load_pairs(data_root / DEV_FILE)  # ids = row index, as the author's files use them
    training_ids = set(pd.read_csv(data_root / JD0G_SOURCE / "dev_missing_gold.csv", usecols=["id"])["id"].astype(str))
    dev_eval, dev_excluded = dev_eval_set(dev, training_ids, sources)
    if max_dev and max_dev < len(dev_eval):
        dev_eval = dev_eval.sample(n=max_dev, random_state=seed).sort_index().reset_index(drop=True)
    mnli, mnli_excluded = mnli_eval_set(data_root, sources, mnli_per_subset, seed)

    (work / "eval").mkdir(exist_ok=True)
    dev_eval[["id", "premise", "hypothesis", "label"]].to_csv(work / DEV_EVAL, index=False)
    mnli.to_csv(work / MNLI_EVAL, index=False)
    mnli.assign(label=mnli["label_strict"])[["id", "premise", "hypothesis", "label"]].to_csv(
        work / MNLI_EVAL_STRICT, index=False
    )

    originals = write_originals_store(jd0g_dir, work / JD0G_ORIGINALS)
    if (work / HUMAN_STORE).exists():
        (work / HUMAN_STORE).unlink()
    run_rationales(
        RationalesConfig(
            data=str(data_root / ESNLI_SPLIT),
            output=str(work / HUMAN_STORE),
            explanation=1,
            sample=rationales,
            seed=seed,
        )
    )
    build(work, BUILD_JD0G)
    build(work, BUILD_JD0G_ESNLI, HUMAN_STORE)
    pairs = training_pairs(work / BUILD_JD0G)
    pairs.to_csv(work / PAIRS, index=False)
    write_label_only(pairs, work / LABEL_ONLY)

    overlaps = overlap_report(work)
    leaks = {f"{e} / {t}": n for e, row in overlaps.items() for t, n in row.items() if n}
    if leaks:
        raise SystemExit(f"error: evaluation pairs occur in training files: {leaks}")
    manifest = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "data_root_files": {
            rel: sha256(data_root / rel)
            for rel in [DEV_FILE, f"{JD0G_SOURCE}/dev_missing_gold.csv", f"{ESNLI_SPLIT}/s1.dev"]
        },
        "options": {"mnli_per_subset": mnli_per_subset, "rationales": rationales, "seed": seed, "max_dev": max_dev},
        "dev": {
            "source_rows": len(dev),
            "excluded": dev_excluded,
            "rows": len(dev_eval),
            "label_counts": _counts(dev_eval["label"]),
        },
        "mnli_hard": {
            "excluded": mnli_excluded,
            "rows": len(mnli),
            "by_subset": {k: int(v) for k, v in mnli["subset"].value_counts().sort_index().items()},
            "gold3_counts": {k: int(v) for k, v in mnli["gold3"].value_counts().sort_index().items()},
            "label_counts_comp34812": _counts(mnli["label"]),
            "label_counts_standard": _counts(mnli["label_strict"]),
        },
        "training": {
            "jd0g_dev_originals": originals,
            "jd0g_dev_wrong": sum(1 for r in _read_store(work / JD0G_ORIGINALS) if r.correct is False),
            "esnli_rationales": len(_read_store(work / HUMAN_STORE)),
            "pairs": len(pairs),
            "pairs_label_counts": _counts(pairs["label"]),
        },
        "overlap_eval_vs_training": overlaps,
    }
    write_json(work / MANIFEST, manifest)
    return manifest


def _counts(labels: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in labels.astype(int).value_counts().sort_index().items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data-root",
        type=Path,
        default=DEFAULT_DATA_ROOT,
        help="The shared real-data folder (default: NLI_COT_SHARED_DATA, else ../shared/data).",
    )
    parser.add_argument(
        "--work", type=Path, default=DEFAULT_WORK, help="Output folder (default: experiments/prepared)."
    )
    parser.add_argument(
        "--mnli-per-subset",
        type=int,
        default=500,
        help="Rows drawn from each MNLI hard subset (0 = all, about 4,500 each).",
    )
    parser.add_argument(
        "--rationales", type=int, default=3000, help="e-SNLI explanations drawn for the rationale run."
    )
    parser.add_argument("--max-dev", type=int, default=None, help="Cap on dev evaluation rows (default: all).")
    parser.add_argument("--seed", type=int, default=42, help="Seed of every sample.")
    args = parser.parse_args(argv)
    manifest = prepare(
        args.data_root,
        args.work,
        mnli_per_subset=args.mnli_per_subset,
        rationales=args.rationales,
        seed=args.seed,
        max_dev=args.max_dev,
    )
    print(f"dev evaluation rows: {manifest['dev']['rows']} (excluded {manifest['dev']['excluded']})")
    print(f"MNLI hard evaluation rows: {manifest['mnli_hard']['rows']} {manifest['mnli_hard']['by_subset']}")
    print(
        f"training pairs: {manifest['training']['pairs']}; wrong author thoughts to reflect on: "
        f"{manifest['training']['jd0g_dev_wrong']}; e-SNLI rationales: {manifest['training']['esnli_rationales']}"
    )
    print(f"no evaluation pair occurs in any training file; wrote {args.work / MANIFEST}")


if __name__ == "__main__":
    main()
