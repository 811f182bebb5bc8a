# Copyright 2026 the nli-cot-hub authors. Apache-2.0.
"""nli_cot: accuracy, precision, recall and F1 of binary NLI answers, read from raw chain-of-thought text."""

from collections import Counter

import datasets
import evaluate
import numpy as np
from sklearn.metrics import precision_recall_fscore_support

from nli_cot_hub.extract import extract_answer

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
truncation, or an already extracted label. Text is parsed with `nli_cot_hub.extract.extract_answer`
(json-repair based); an answer without a label counts as wrong unless `unparsed` says otherwise.
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

    def _compute(self, predictions, references, unparsed="wrong", neutral=1):
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
            binary = precision_recall_fscore_support(y_true, y_pred, labels=[0, 1], pos_label=1,
                                                     average="binary", zero_division=0)
            macro = precision_recall_fscore_support(y_true, y_pred, labels=[0, 1], average="macro",
                                                    zero_division=0)
            result.update(accuracy=float((y_true == y_pred).mean()),
                          precision=float(binary[0]), recall=float(binary[1]), f1=float(binary[2]),
                          macro_precision=float(macro[0]), macro_recall=float(macro[1]), macro_f1=float(macro[2]))
        else:
            result.update(accuracy=None, precision=None, recall=None, f1=None,
                          macro_precision=None, macro_recall=None, macro_f1=None)
        counts = Counter(statuses)
        result["status_counts"] = {status: counts.get(status, 0) for status in ("ok", "repaired", "label-only", "failed")}
        matrix = np.zeros((2, 3), dtype=int)
        for truth, label in zip(gold, raw):
            matrix[truth, 2 if label < 0 else label] += 1
        result["confusion_matrix"] = matrix.tolist()
        result["mean_thought_words"] = float(np.mean(thought_words)) if thought_words else None
        return result


def _read(prediction, neutral):
    """(label or None, status, thought word count or None) for one prediction."""
    if prediction is None:
        return None, "failed", None
    if isinstance(prediction, (int, np.integer)) and not isinstance(prediction, bool):
        return (int(prediction), "ok", None) if prediction in (0, 1) else (None, "failed", None)
    extraction = extract_answer(prediction, neutral=neutral)
    words = len(extraction.thought.split()) if extraction.thought else None
    return extraction.label, extraction.status, words
