"""Do the generated explanations argue for the label they come with?

    python -m experiments.explanation_agreement [--runs 'fmt-*'] [--output FILE.json]

A stance reader (TF-IDF of word 1-2 grams + logistic regression) learns from the author's Mistral-7B thoughts
which label a thought argues for: each training thought with the label its own model gave after it
(``builds/jd0g``, config ``original``, right and wrong answers alike). Its accuracy on a held-out fifth of
those thoughts says how far to trust it. It then reads every explanation a run generated on coursework dev
and reports, per run: how often the explanation's stance agrees with the run's own label, and how often the
stance alone is right about the gold label. The reader sees words, not reasoning, so it measures what an
explanation says it concludes, not whether its steps hold.
"""

from __future__ import annotations

import argparse
import fnmatch
from pathlib import Path

from experiments.common import BUILD_JD0G, DEFAULT_RESULTS, DEFAULT_WORK, read_json, write_json

HELD_OUT_SHARE = 0.2


def author_thoughts(work: Path):
    """The author's thoughts and the label each argues for (its model's own answer)."""
    import pandas as pd

    build = work / BUILD_JD0G / "original"
    if not build.is_dir():
        raise SystemExit(f"error: {build} missing: run `python -m experiments.prepare_data` first")
    frame = pd.read_parquet(build)
    frame = frame[frame["thought_process"].fillna("").str.strip() != ""]
    return frame["thought_process"].tolist(), frame["predicted_label"].astype(int).tolist()


def fit_stance_reader(thoughts: list[str], labels: list[int], seed: int = 0) -> tuple[object, float]:
    """The reader fitted on all but a held-out share, its accuracy on that share, then refitted on all."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline

    def reader():
        return make_pipeline(
            TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True), LogisticRegression(max_iter=2000)
        )

    train_x, test_x, train_y, test_y = train_test_split(
        thoughts, labels, test_size=HELD_OUT_SHARE, random_state=seed, stratify=labels
    )
    held_out = float(reader().fit(train_x, train_y).score(test_x, test_y))
    return reader().fit(thoughts, labels), held_out


def agreement(records: list[dict], reader) -> dict | None:
    """Per run: the explanations' stance against the run's labels and against the gold labels the records
    carry (rows with an explanation and a label)."""
    rows = [r for r in records if (r.get("thought_process") or "").strip() and r.get("predicted_label") in (0, 1)]
    if not rows:
        return None
    stances = [int(s) for s in reader.predict([r["thought_process"] for r in rows])]
    scored = [(s, r) for s, r in zip(stances, rows) if r.get("label") in (0, 1)]

    def share(hits) -> float | None:
        hits = list(hits)
        return round(sum(hits) / len(hits), 4) if hits else None

    return {
        "rows": len(rows),
        "stance_agrees_with_label": share(s == r["predicted_label"] for s, r in zip(stances, rows)),
        "stance_accuracy": share(s == r["label"] for s, r in scored),
        "label_accuracy": share(r["predicted_label"] == r["label"] for _, r in scored),
        "stance_share_1": share(s == 1 for s in stances),
    }


def main(argv: list[str] | None = None) -> None:
    from nli_cot_hub.store import read_records

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument("--runs", default="fmt-*", help="Shell pattern of the run folders to read.")
    parser.add_argument("--output", type=Path, default=DEFAULT_RESULTS / "explanation_agreement.json")
    args = parser.parse_args(argv)

    if not args.results.is_dir():
        raise SystemExit(f"error: {args.results}: no results folder")
    thoughts, labels = author_thoughts(args.work)
    reader, held_out = fit_stance_reader(thoughts, labels)
    # Git keeps no prediction files: a run read before whose predictions are not here keeps its entry.
    runs = read_json(args.output).get("runs", {}) if args.output.exists() else {}
    for folder in sorted(p for p in args.results.iterdir() if p.is_dir() and fnmatch.fnmatch(p.name, args.runs)):
        predictions = folder / "predictions_dev.jsonl"
        if predictions.exists():
            found = agreement([r.model_dump() for r in read_records(predictions)], reader)
            if found is not None:
                runs[folder.name] = found
    runs = dict(sorted(runs.items()))
    result = {
        "reader": "TF-IDF (1-2 grams) + logistic regression on the author's thoughts -> its model's label",
        "reader_training_thoughts": len(thoughts),
        "reader_held_out_accuracy": round(held_out, 4),
        "runs": runs,
    }
    write_json(args.output, result)
    print(f"stance reader: {held_out:.3f} on held-out author thoughts ({len(thoughts)} thoughts)")
    for name, row in runs.items():
        print(
            f"{name}: stance agrees with the label on {row['stance_agrees_with_label']:.3f} of {row['rows']} rows; "
            f"stance accuracy {row['stance_accuracy']}, label accuracy {row['label_accuracy']}"
        )
    print(f"written {args.output}")


if __name__ == "__main__":
    main()
