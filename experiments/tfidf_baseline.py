"""The classic baseline: TF-IDF features + logistic regression (scikit-learn), no neural model.

    python -m experiments.tfidf_baseline --train experiments/prepared/train/pairs.csv \
        --eval experiments/prepared/eval/dev.csv -o predictions_dev.jsonl

Features: word uni+bigram TF-IDF of the premise, of the hypothesis, and their element-wise product
(non-zero only for n-grams the two sentences share, the lexical-overlap signal that hypothesis-only
and bag-of-words NLI baselines live on). The regularisation strength is chosen by 5-fold
cross-validation on the training pairs. Predictions are written as ``CoTRecord`` JSONL
(``status: label-only``, no thought), the format ``nli-cot predict`` writes, so ``nli-cot evaluate``
scores them like any model.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import pandas as pd

from nli_cot_hub.data import Columns, load_pairs
from nli_cot_hub.records import CoTRecord

MODEL_NAME = "tfidf-logreg"
VERSION = "tfidf-v1"
C_GRID = (0.1, 0.3, 1.0, 3.0, 10.0)


def fit(train: pd.DataFrame, seed: int = 42):
    """A fitted (vectoriser, classifier) pair."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegressionCV

    vectoriser = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1, lowercase=True)
    vectoriser.fit(pd.concat([train["premise"], train["hypothesis"]]))
    classifier = LogisticRegressionCV(Cs=list(C_GRID), cv=5, max_iter=2000, scoring="accuracy", random_state=seed)
    with warnings.catch_warnings():  # scikit-learn 1.9 announces future defaults; the values here are explicit
        warnings.simplefilter("ignore", FutureWarning)
        classifier.fit(features(vectoriser, train), train["label"].astype(int).to_numpy())
    return vectoriser, classifier


def features(vectoriser, pairs: pd.DataFrame):
    from scipy.sparse import hstack

    premise = vectoriser.transform(pairs["premise"])
    hypothesis = vectoriser.transform(pairs["hypothesis"])
    return hstack([premise, hypothesis, premise.multiply(hypothesis)]).tocsr()


def predict_records(model, pairs: pd.DataFrame) -> list[CoTRecord]:
    vectoriser, classifier = model
    labels = classifier.predict(features(vectoriser, pairs))
    return [
        CoTRecord(
            id=str(row_id),
            premise=premise,
            hypothesis=hypothesis,
            label=None if pd.isna(gold) else int(gold),
            predicted_label=int(predicted),
            status="label-only",
            model=MODEL_NAME,
            prompt_version=VERSION,
        )
        for row_id, premise, hypothesis, gold, predicted in zip(
            pairs["id"], pairs["premise"], pairs["hypothesis"], pairs["label"], labels
        )
    ]


def write_predictions(records: list[CoTRecord], output: str | Path) -> Path:
    """A fresh predictions file (the baseline is deterministic, so a rerun replaces it)."""
    from nli_cot_hub.store import RecordStore

    output = Path(output)
    if output.exists():
        output.unlink()
    with RecordStore(output) as store:
        store.append_many(records)
    return output


def run(
    train_path: str | Path,
    eval_paths: dict[str, str | Path],
    output_dir: str | Path,
    seed: int = 42,
    limit_train: int | None = None,
    limit_eval: int | None = None,
) -> dict:
    """Fit on ``train_path``; write ``predictions_<name>.jsonl`` per evaluation set; return a summary."""
    train = load_pairs(train_path, columns=Columns(id="id"))
    if limit_train:
        train = train.sample(n=min(limit_train, len(train)), random_state=seed)
    model = fit(train, seed)
    summary = {"train_pairs": len(train), "chosen_C": float(model[1].C_[0]), "files": {}}
    for name, path in eval_paths.items():
        pairs = load_pairs(path, columns=Columns(id="id"))
        if limit_eval:
            pairs = pairs.iloc[:limit_eval]
        written = write_predictions(predict_records(model, pairs), Path(output_dir) / f"predictions_{name}.jsonl")
        summary["files"][name] = str(written)
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="TF-IDF + logistic regression NLI baseline.")
    parser.add_argument("--train", required=True, help="Training pairs (id, premise, hypothesis, label).")
    parser.add_argument("--eval", required=True, help="Pairs to predict (id, premise, hypothesis[, label]).")
    parser.add_argument("-o", "--output", required=True, help="Predictions JSONL (CoTRecord, as nli-cot predict).")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    model = fit(load_pairs(args.train, columns=Columns(id="id")), args.seed)
    pairs = load_pairs(args.eval, columns=Columns(id="id"), require_labels=False)
    path = write_predictions(predict_records(model, pairs), args.output)
    print(f"wrote {len(pairs)} predictions to {path} (C = {model[1].C_[0]})")


if __name__ == "__main__":
    main()
