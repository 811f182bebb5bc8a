# Copyright 2026 the nli-cot-hub authors. Apache-2.0.
"""nli_cot: accuracy, precision, recall and F1 of binary NLI answers, read from raw chain-of-thought text."""

from collections import Counter

import datasets
import evaluate
import numpy as np
from sklearn.metrics import precision_recall_fscore_support

# The parser travels with the metric (a link to nli_cot_hub/extract.py here; a copy in a published Space), so
# evaluate loads it next to this script and the Space needs nothing that is not on PyPI.
from .nli_cot_parser import extract_answer

_CITATION = """\
@misc{nli_cot_hub,
  title = {nli-cot-hub: chain-of-thought natural language inference, the Hugging Face way},
  year = {2026},
}
"""

_DESCRIPTION = """\
Scores binary natural language inference (1 = entailment, 0 = no entailment) when the model answers
with a chain of thought. Each prediction may be the raw generated text, e.g.
`{"thought_process": "step 1: ...", "predicted_label": 1}` with or without fences, prose, repairs or
truncation, or an already extracted label. Text is parsed with `extract_answer` from `nli_cot_parser.py`
beside this script, the same file as `nli_cot_hub.extract` (json-repair based); an answer without a label
counts as wrong unless `unparsed` says otherwise.
Besides accuracy, precision, recall and F1 (binary and macro) it reports how many answers parsed,
with what status, the confusion matrix and the mean thought length.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str` or `int`): raw generated texts, or labels 0/1 (None or -1: no answer).
    references (`list` of `int`): gold labels, 1 entailment / 0 no entailment.
    unparsed (`str` or `int`, default "wrong"): what a prediction without a label becomes:
        "wrong" counts it as an error (it gets the opposite of its gold label), "drop" leaves it out of
        accuracy/precision/recall/F1 (parse_rate still shows it), 0 or 1 uses that label as a fallback.
    neutral (`int`, default 1): the label the word "neutral" maps to (1 in the COMP34812 data).
    probabilities (`list` of `float`, optional): p(label = 1) per prediction (e.g. from a log-probability
        read-out). With them the result also has roc_auc, brier, ece (expected calibration error over
        `bins` equal-width bins of p(label = 1)), reliability (per bin: range, rows, mean p, share of label 1)
        and accuracy_at_threshold (label 1 where p >= `threshold`).
    threshold (`float`, default 0.5), bins (`int`, default 10): see probabilities.
Returns:
    accuracy, precision, recall, f1 (positive class 1), macro_precision, macro_recall, macro_f1,
    parse_rate (share with a label), status_counts (ok / repaired / label-only / failed),
    scored (rows in accuracy), confusion_matrix (rows gold 0, 1; columns predicted 0, 1, none),
    mean_thought_words (mean words per extracted thought; None if no thought).
Examples:
    >>> metric = evaluate.load("nli_cot_hub/metrics/nli_cot")
    >>> metric.compute(predictions=['{"thought_process": "a b", "predicted_label": 1}', "no idea"],
    ...                references=[1, 1])["accuracy"]
    0.5
"""

UNPARSED_CHOICES = ("wrong", "drop", 0, 1)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class NliCot(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            module_type="metric",
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("int64")}),
                datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
            ],
            reference_urls=["https://github.com/mangiucugna/json_repair"],
        )

    def _infer_feature_from_batch(self, batch):
        # evaluate reads the first example to choose between text and label features; with no
        # example at all, either fits, and the result is the metric of nothing (scored 0).
        if not any(len(values) for values in batch.values()):
            return self.features[1]
        return super()._infer_feature_from_batch(batch)

    def _compute(
        self, predictions, references, unparsed="wrong", neutral=1, probabilities=None, threshold=0.5, bins=10
    ):
        if unparsed not in UNPARSED_CHOICES:
            raise ValueError(f"unparsed must be one of {UNPARSED_CHOICES}, got {unparsed!r}")
        gold = np.asarray(references, dtype=int)
        if not set(np.unique(gold)) <= {0, 1}:
            raise ValueError("references must be 0 or 1")
        labels, statuses, thought_words = [], [], []
        for prediction in predictions:
            label, status, words = _read(prediction, neutral)
            labels.append(label)
            statuses.append(status)
            if words is not None:
                thought_words.append(words)
        parsed = np.array([label is not None for label in labels], dtype=bool)
        raw = np.array([-1 if label is None else label for label in labels], dtype=int)

        if unparsed == "wrong":
            used, keep = np.where(parsed, raw, 1 - gold), np.ones_like(parsed)
        elif unparsed == "drop":
            used, keep = raw, parsed
        else:
            used, keep = np.where(parsed, raw, int(unparsed)), np.ones_like(parsed)
        y_true, y_pred = gold[keep], used[keep]

        result = {"scored": int(keep.sum()), "parse_rate": float(parsed.mean()) if len(parsed) else 0.0}
        if len(y_true):
            binary = precision_recall_fscore_support(
                y_true, y_pred, labels=[0, 1], pos_label=1, average="binary", zero_division=0
            )
            macro = precision_recall_fscore_support(y_true, y_pred, labels=[0, 1], average="macro", zero_division=0)
            result.update(
                accuracy=float((y_true == y_pred).mean()),
                precision=float(binary[0]),
                recall=float(binary[1]),
                f1=float(binary[2]),
                macro_precision=float(macro[0]),
                macro_recall=float(macro[1]),
                macro_f1=float(macro[2]),
            )
        else:
            result.update(
                accuracy=None,
                precision=None,
                recall=None,
                f1=None,
                macro_precision=None,
                macro_recall=None,
                macro_f1=None,
            )
        counts = Counter(statuses)
        result["status_counts"] = {
            status: counts.get(status, 0) for status in ("ok", "repaired", "label-only", "failed")
        }
        matrix = np.zeros((2, 3), dtype=int)
        for truth, label in zip(gold, raw):
            matrix[truth, 2 if label < 0 else label] += 1
        result["confusion_matrix"] = matrix.tolist()
        result["mean_thought_words"] = float(np.mean(thought_words)) if thought_words else None
        if probabilities is not None:
            result.update(probability_metrics(np.asarray(probabilities, dtype=float), gold, threshold, bins))
        return result


def probability_metrics(p_one, gold, threshold=0.5, bins=10):
    """Ranking and calibration of p(label = 1) against the gold labels."""
    from sklearn.metrics import brier_score_loss, roc_auc_score

    if p_one.shape != gold.shape:
        raise ValueError(f"{len(p_one)} probabilities for {len(gold)} references")
    if np.isnan(p_one).any() or (p_one < 0).any() or (p_one > 1).any():
        raise ValueError("probabilities must be numbers between 0 and 1")
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bin i holds edges[i] <= p < edges[i + 1]; p = 1 goes to the last bin.
    which = np.clip(np.searchsorted(edges, p_one, side="right") - 1, 0, bins - 1)
    reliability, ece = [], 0.0
    for index in range(bins):
        members = which == index
        if not members.any():
            continue
        mean_p, share = float(p_one[members].mean()), float(gold[members].mean())
        ece += members.sum() / len(p_one) * abs(mean_p - share)
        reliability.append(
            {
                "low": float(edges[index]),
                "high": float(edges[index + 1]),
                "rows": int(members.sum()),
                "mean_probability": mean_p,
                "share_label_1": share,
            }
        )
    both = len(np.unique(gold)) == 2
    return {
        "roc_auc": float(roc_auc_score(gold, p_one)) if both else None,
        "brier": float(brier_score_loss(gold, p_one, pos_label=1)),
        "ece": float(ece),
        "threshold": float(threshold),
        "accuracy_at_threshold": float(((p_one >= threshold).astype(int) == gold).mean()),
        "reliability": reliability,
    }


def _read(prediction, neutral):
    """(label or None, status, thought word count or None) for one prediction."""
    if prediction is None:
        return None, "failed", None
    if isinstance(prediction, (int, np.integer)) and not isinstance(prediction, bool):
        return (int(prediction), "ok", None) if prediction in (0, 1) else (None, "failed", None)
    extraction = extract_answer(prediction, neutral=neutral)
    words = len(extraction.thought.split()) if extraction.thought else None
    return extraction.label, extraction.status, words
