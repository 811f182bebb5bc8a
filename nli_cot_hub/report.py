"""Evaluate prediction files: the ``nli_cot`` metric, a Markdown report with PNG plots, McNemar's test
between models, and a label-disagreement audit.

Layout of the output folder::

    metrics.json            per model: the metric's values (+ rows scored); pairwise comparisons; audit count
    report.md               tables, plots, worst errors, comparisons
    <model>_confusion.png   <model>_length.png   <model>_labels.png   <model>_status.png
    label_audit.jsonl/.csv  pairs where several predictions agree with each other against the gold label
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from nli_cot_hub.config import option, stage_config
from nli_cot_hub.data import DataError, PairOptions
from nli_cot_hub.records import CoTRecord

METRIC_DIR = Path(__file__).parent / "metrics" / "nli_cot"
STATUSES = ("ok", "repaired", "label-only", "failed")
LENGTH_BUCKETS = ((0, 20), (20, 40), (40, 60), (60, 80), (80, 120), (120, math.inf))
EXACT_TEST_LIMIT = 25  # below this many discordant pairs McNemar uses the exact binomial test


@dataclass
class Model:
    name: str
    path: Path
    records: dict[str, CoTRecord]


def load_metric():
    import evaluate

    return evaluate.load(str(METRIC_DIR))


def load_models(paths: list[str], names: list[str] | None = None) -> list[Model]:
    from nli_cot_hub.store import read_records

    models, seen = [], Counter()
    for index, path in enumerate(paths):
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such predictions file")
        name = names[index] if names else path.stem
        seen[name] += 1
        if seen[name] > 1:
            name = f"{name}_{seen[name]}"
        models.append(Model(name, path, {r.id: r for r in read_records(path)}))
    return models


def gold_of(record: CoTRecord, gold: dict[str, int] | None) -> int | None:
    if gold is not None and record.id in gold:
        return int(gold[record.id])
    return record.label


def thought_words(record: CoTRecord) -> int | None:
    return len(record.thought_process.split()) if record.thought_process else None


# ---------------------------------------------------------------- scoring


def score_model(model: Model, metric, gold: dict[str, int] | None, unparsed="wrong", threshold: float = 0.5) -> dict:
    scored = [r for r in model.records.values() if gold_of(r, gold) is not None]
    result = {"rows": len(scored), "records": len(model.records), "without_gold": len(model.records) - len(scored)}
    if not scored:
        return result | {"accuracy": None, "macro_f1": None, "parse_rate": None}
    # Probability metrics only when every scored row carries p(label = 1) (a log-probability read-out).
    probabilities = [r.p_label_1 for r in scored]
    extra = {"probabilities": probabilities, "threshold": threshold} if None not in probabilities else {}
    values = metric.compute(
        predictions=[r.predicted_label for r in scored],
        references=[gold_of(r, gold) for r in scored],
        unparsed=unparsed,
        **extra,
    )
    # The records know more than bare labels: their extraction statuses and thoughts.
    counts = Counter(r.status for r in scored)
    values["status_counts"] = {status: counts.get(status, 0) for status in STATUSES}
    words = [w for w in map(thought_words, scored) if w is not None]
    values["mean_thought_words"] = round(sum(words) / len(words), 2) if words else None
    shares = [r.vote_share for r in scored if r.vote_share is not None]
    if shares:
        values["mean_vote_share"] = round(sum(shares) / len(shares), 4)
    return result | values


def length_buckets(records: list[CoTRecord], gold: dict[str, int] | None) -> list[dict]:
    """Accuracy per thought-length bucket (words); a missing thought is its own bucket."""
    rows = []
    groups = [("no thought", lambda w: w is None)] + [
        (
            f"{low}-{high - 1}" if high != math.inf else f"{low}+",
            lambda w, lo=low, hi=high: w is not None and lo <= w < hi,
        )
        for low, high in LENGTH_BUCKETS
    ]
    for label, member in groups:
        chosen = [r for r in records if gold_of(r, gold) is not None and member(thought_words(r))]
        if chosen:
            right = sum(r.predicted_label == gold_of(r, gold) for r in chosen)
            rows.append({"bucket": label, "rows": len(chosen), "accuracy": right / len(chosen)})
    return rows


def mcnemar(correct_a: list[bool], correct_b: list[bool]) -> dict:
    """McNemar's paired test on two models' right/wrong per row: exact binomial when the discordant
    pairs are few, else the chi-square statistic with continuity correction."""
    from scipy import stats

    b = sum(a and not c for a, c in zip(correct_a, correct_b))  # only A right
    c = sum(not a and bb for a, bb in zip(correct_a, correct_b))  # only B right
    n = b + c
    if n == 0:
        return {
            "only_a_right": b,
            "only_b_right": c,
            "test": "none (no discordant pairs)",
            "statistic": None,
            "p_value": 1.0,
        }
    if n < EXACT_TEST_LIMIT:
        p = stats.binomtest(min(b, c), n, 0.5, alternative="two-sided").pvalue
        return {
            "only_a_right": b,
            "only_b_right": c,
            "test": "exact binomial",
            "statistic": min(b, c),
            "p_value": float(min(1.0, p)),
        }
    statistic = (abs(b - c) - 1) ** 2 / n
    return {
        "only_a_right": b,
        "only_b_right": c,
        "test": "chi-square, continuity corrected",
        "statistic": float(statistic),
        "p_value": float(stats.chi2.sf(statistic, df=1)),
    }


def compare(a: Model, b: Model, gold: dict[str, int] | None) -> dict:
    shared_ids = [key for key in a.records if key in b.records]
    # The same id must mean the same pair, or the files come from different data.
    same = [key for key in shared_ids if _same_pair(a.records[key], b.records[key])]
    common = [key for key in same if gold_of(a.records[key], gold) is not None]
    right_a = [a.records[k].predicted_label == gold_of(a.records[k], gold) for k in common]
    right_b = [b.records[k].predicted_label == gold_of(b.records[k], gold) for k in common]
    result = {
        "a": a.name,
        "b": b.name,
        "rows": len(common),
        "accuracy_a": sum(right_a) / len(common) if common else None,
        "accuracy_b": sum(right_b) / len(common) if common else None,
        "both_right": sum(x and y for x, y in zip(right_a, right_b)),
        "both_wrong": sum(not x and not y for x, y in zip(right_a, right_b)),
        "different_pairs_same_id": len(shared_ids) - len(same),
    }
    return result | mcnemar(right_a, right_b)


def _same_pair(x: CoTRecord, y: CoTRecord) -> bool:
    return (x.premise.strip(), x.hypothesis.strip()) == (y.premise.strip(), y.hypothesis.strip())


# ---------------------------------------------------------------- audit


def voters(record: CoTRecord) -> list[int]:
    """The labels this record stands for: every self-consistency sample, or its one prediction."""
    labels = record.votes if record.votes else [record.predicted_label]
    return [label for label in labels if label is not None]


def disagreement_audit(models: list[Model], gold: dict[str, int] | None, min_votes: int = 2) -> list[dict]:
    """Pairs where at least ``min_votes`` predictions (across files and samples) all agree with each
    other against the gold label: candidates for a wrong gold label, exported for human review."""
    ids = list(dict.fromkeys(key for model in models for key in model.records))
    flagged = []
    for key in ids:
        present = [(m, m.records[key]) for m in models if key in m.records]
        present = [(m, r) for m, r in present if _same_pair(r, present[0][1])]
        truth = next((gold_of(r, gold) for _, r in present if gold_of(r, gold) is not None), None)
        if truth is None:
            continue
        labels = [label for _, r in present for label in voters(r)]
        if len(labels) >= min_votes and all(label != truth for label in labels):
            first = present[0][1]
            flagged.append(
                {
                    "id": key,
                    "premise": first.premise,
                    "hypothesis": first.hypothesis,
                    "gold": truth,
                    "voted": 1 - truth,
                    "votes_against_gold": len(labels),
                    "models": {
                        m.name: {
                            "predicted_label": r.predicted_label,
                            "vote_share": r.vote_share,
                            "thought_process": r.thought_process,
                        }
                        for m, r in present
                    },
                }
            )
    return flagged


def write_audit(rows: list[dict], folder: Path) -> tuple[Path, Path]:
    import pandas as pd

    jsonl = folder / "label_audit.jsonl"
    jsonl.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    flat = [
        {
            "id": r["id"],
            "premise": r["premise"],
            "hypothesis": r["hypothesis"],
            "gold": r["gold"],
            "voted": r["voted"],
            "votes_against_gold": r["votes_against_gold"],
            "thought": next((m["thought_process"] for m in r["models"].values() if m["thought_process"]), ""),
            "review_label": "",
        }
        for r in rows
    ]
    table = folder / "label_audit.csv"
    pd.DataFrame(
        flat, columns=["id", "premise", "hypothesis", "gold", "voted", "votes_against_gold", "thought", "review_label"]
    ).to_csv(table, index=False)
    return jsonl, table


# ---------------------------------------------------------------- plots


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "model"


def plot_model(
    name: str, metrics: dict, buckets: list[dict], records: list[CoTRecord], gold: dict[str, int] | None, folder: Path
) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = {}
    base = slug(name)

    figure, axis = plt.subplots(figsize=(4.6, 3.6))
    matrix = metrics["confusion_matrix"]
    axis.imshow(matrix, cmap="Blues")
    darkest = max(max(row) for row in matrix) or 1
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            axis.text(j, i, str(value), ha="center", va="center", color="white" if value > darkest / 2 else "black")
    axis.set_xticks(range(3), ["pred 0", "pred 1", "no label"])
    axis.set_yticks(range(2), ["gold 0", "gold 1"])
    axis.set_title(f"{name}: confusion matrix")
    files["confusion"] = _save(figure, folder / f"{base}_confusion.png")

    figure, axis = plt.subplots(figsize=(6, 3.6))
    axis.bar([b["bucket"] for b in buckets], [b["accuracy"] for b in buckets], color="tab:green")
    for index, bucket in enumerate(buckets):
        axis.text(index, bucket["accuracy"], f"n={bucket['rows']}", ha="center", va="bottom", fontsize=8)
    axis.set_ylim(0, 1.1)
    axis.set_xlabel("thought length (words)")
    axis.set_ylabel("accuracy")
    axis.set_title(f"{name}: accuracy by thought length")
    files["length"] = _save(figure, folder / f"{base}_length.png")

    scored = [r for r in records if gold_of(r, gold) is not None]
    gold_counts = Counter(gold_of(r, gold) for r in scored)
    pred_counts = Counter("none" if r.predicted_label is None else r.predicted_label for r in scored)
    categories = [0, 1, "none"]
    figure, axis = plt.subplots(figsize=(5, 3.6))
    xs = range(len(categories))
    axis.bar([x - 0.2 for x in xs], [gold_counts.get(c, 0) for c in categories], width=0.4, label="gold")
    axis.bar([x + 0.2 for x in xs], [pred_counts.get(c, 0) for c in categories], width=0.4, label="predicted")
    axis.set_xticks(list(xs), ["0 (no entailment)", "1 (entailment)", "no label"])
    axis.set_ylabel("rows")
    axis.legend()
    axis.set_title(f"{name}: label distribution")
    files["labels"] = _save(figure, folder / f"{base}_labels.png")

    figure, axis = plt.subplots(figsize=(5, 3.6))
    counts = metrics["status_counts"]
    axis.bar(list(counts), list(counts.values()), color=["tab:green", "tab:olive", "tab:orange", "tab:red"])
    axis.set_ylabel("rows")
    axis.set_title(f"{name}: answer status")
    files["status"] = _save(figure, folder / f"{base}_status.png")
    return files


def plot_reliability(name: str, metrics: dict, folder: Path) -> str:
    """Reliability diagram: mean p(label = 1) against the share of gold label 1 per bin, bar width ~ rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = metrics["reliability"]
    figure, axis = plt.subplots(figsize=(4.8, 4.2))
    axis.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    axis.bar(
        [(b["low"] + b["high"]) / 2 for b in bins],
        [b["share_label_1"] for b in bins],
        width=[b["high"] - b["low"] for b in bins],
        alpha=0.35,
        edgecolor="tab:blue",
        label="share of gold 1",
    )
    axis.plot(
        [b["mean_probability"] for b in bins],
        [b["share_label_1"] for b in bins],
        "o-",
        color="tab:blue",
        label="bins (mean p)",
    )
    for b in bins:
        axis.text(b["mean_probability"], b["share_label_1"], f" {b['rows']}", fontsize=7, va="bottom")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1.05)
    axis.set_xlabel("predicted p(label = 1)")
    axis.set_ylabel("share of gold label 1")
    axis.set_title(f"{name}: reliability (ECE {metrics['ece']:.3f})")
    axis.legend(fontsize=7, loc="upper left")
    return _save(figure, folder / f"{slug(name)}_reliability.png")


def _save(figure, path: Path) -> str:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(figure)
    return path.name


# ---------------------------------------------------------------- report


def worst_errors(records: list[CoTRecord], gold: dict[str, int] | None, count: int) -> list[CoTRecord]:
    """Wrong answers the model was surest of: highest vote share, clean status, longest thought first."""
    wrong = [
        r
        for r in records
        if gold_of(r, gold) is not None and r.predicted_label is not None and r.predicted_label != gold_of(r, gold)
    ]
    order = {status: i for i, status in enumerate(STATUSES)}
    wrong.sort(key=lambda r: (-(r.vote_share or 1.0), order.get(r.status, 9), -(thought_words(r) or 0)))
    return wrong[:count]


def _cell(text, limit: int = 240) -> str:
    text = "" if text is None else str(text)
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("|", "\\|").replace("\n", " ")


def _number(value, digits: int = 4) -> str:
    return "–" if value is None else (f"{value:.{digits}f}" if isinstance(value, float) else str(value))


def render_report(summary: dict, models: list[Model], plots: dict, errors: dict, buckets: dict) -> str:
    keys = ["rows", "accuracy", "precision", "recall", "f1", "macro_f1", "parse_rate", "mean_thought_words"]
    lines = [
        "# Evaluation report",
        "",
        f"Metric: `nli_cot` (unparsed answers count as: {summary['unparsed']}).",
        "",
        "| model | " + " | ".join(keys) + " |",
        "|---" * (len(keys) + 1) + "|",
    ]
    for model in models:
        metrics = summary["models"][model.name]
        lines.append(f"| {model.name} | " + " | ".join(_number(metrics.get(k)) for k in keys) + " |")
    for model in models:
        metrics = summary["models"][model.name]
        lines += [
            "",
            f"## {model.name}",
            "",
            f"File: `{model.path}`; {metrics['records']} records, {metrics['rows']} with a gold label.",
            "",
        ]
        if not metrics["rows"]:
            continue
        lines.append(
            "Status counts: "
            + ", ".join(f"{k} {v}" for k, v in metrics["status_counts"].items())
            + (f"; mean vote share {metrics['mean_vote_share']:.3f}" if "mean_vote_share" in metrics else "")
        )
        lines.append("")
        files = plots[model.name]
        if "ece" in metrics:
            lines += [
                f"Probabilities (p(label = 1) of a log-probability read-out): ROC-AUC "
                f"{_number(metrics['roc_auc'])}, Brier {_number(metrics['brier'])}, ECE {_number(metrics['ece'])}, "
                f"accuracy at threshold {metrics['threshold']:g}: {_number(metrics['accuracy_at_threshold'])}.",
                "",
                f"![reliability diagram]({files['reliability']})",
                "",
            ]
        lines += [
            f"![confusion matrix]({files['confusion']}) ![label distribution]({files['labels']})",
            "",
            f"![accuracy by thought length]({files['length']}) ![status counts]({files['status']})",
            "",
            "| thought length (words) | rows | accuracy |",
            "|---|---|---|",
        ]
        lines += [f"| {b['bucket']} | {b['rows']} | {b['accuracy']:.3f} |" for b in buckets[model.name]]
        if errors[model.name]:
            lines += [
                "",
                f"### Worst errors ({len(errors[model.name])})",
                "",
                "| id | gold | predicted | vote share | status | premise | hypothesis | thought |",
                "|---|---|---|---|---|---|---|---|",
            ]
            for r in errors[model.name]:
                lines.append(
                    f"| {_cell(r.id)} | {r.label} | {r.predicted_label} | {_number(r.vote_share, 2)} | "
                    f"{r.status} | {_cell(r.premise, 160)} | {_cell(r.hypothesis, 120)} | "
                    f"{_cell(r.thought_process)} |"
                )
    if summary.get("comparisons"):
        lines += [
            "",
            "## Comparisons (McNemar's paired test)",
            "",
            "On the rows both files predicted, with gold labels. b: only A right, c: only B right.",
            "",
            "| A | B | rows | acc A | acc B | both right | both wrong | b | c | test | p |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for c in summary["comparisons"]:
            lines.append(
                f"| {c['a']} | {c['b']} | {c['rows']} | {_number(c['accuracy_a'])} | "
                f"{_number(c['accuracy_b'])} | {c['both_right']} | {c['both_wrong']} | {c['only_a_right']} | "
                f"{c['only_b_right']} | {c['test']} | {c['p_value']:.4g} |"
            )
            if c["different_pairs_same_id"]:
                lines.append(
                    f"\n{c['different_pairs_same_id']} ids of {c['a']} and {c['b']} name different pairs "
                    "and were left out: are the files from the same data?"
                )
    audit = summary["audit"]
    lines += [
        "",
        "## Label-disagreement audit",
        "",
        f"{audit['flagged']} pairs where at least {audit['min_votes']} predictions (files or samples) all "
        f"agree against the gold label: `{audit['jsonl']}` and `{audit['csv']}` (fill `review_label`).",
        "",
    ]
    return "\n".join(lines)


def _text_key(premise: str, hypothesis: str) -> tuple[str, str]:
    return " ".join(str(premise).split()), " ".join(str(hypothesis).split())


def check_scorable(
    models: list[Model],
    gold: dict[str, int] | None,
    gold_texts: dict[str, tuple[str, str]] | None = None,
    gold_name: str = "--gold",
) -> list[str]:
    """Refuse files that cannot be scored honestly (raises DataError); return warnings to show.

    Refused: an empty file; records without gold labels and no ``gold``; reflections (their label is
    the gold label by construction, so they always look right); a gold file whose pair under an id
    is another pair than the prediction's. Warned: gold labels for only some of the records.
    """
    warnings = []
    for model in models:
        records = list(model.records.values())
        if not records:
            raise DataError(f"{model.path}: no records to score")
        reflected = [r for r in records if r.source == "reflected" or r.stage == "reflect"]
        if reflected:
            raise DataError(
                f"{model.path}: holds {len(reflected)} reflection(s) (e.g. id {reflected[0].id!r}); their "
                f"label is the gold label by construction, so they cannot be scored: evaluate predictions"
            )
        if gold_texts is not None:
            for record in records:
                expected = gold_texts.get(record.id)
                if expected is not None and _text_key(record.premise, record.hypothesis) != _text_key(*expected):
                    raise DataError(
                        f"{gold_name}: id {record.id!r} is another pair than in {model.path} "
                        f"(premise {expected[0][:60]!r} vs {record.premise[:60]!r}): is it the same data?"
                    )
        with_gold = sum(gold_of(r, gold) is not None for r in records)
        if with_gold == 0:
            raise DataError(
                f"{model.path}: none of its {len(records)} records has a gold label"
                + ("" if gold else "; pass --gold with the labelled data")
            )
        if gold is not None:
            missing = sum(r.id not in gold for r in records)
            if missing:
                warnings.append(
                    f"{gold_name} has no label for {missing} of the {len(records)} records in "
                    f"{model.path}"
                    + (f"; {len(records) - with_gold} of them are not scored" if len(records) > with_gold else "")
                )
    return warnings


def evaluate_files(
    paths: list[str],
    output_dir: str | Path,
    *,
    gold: dict[str, int] | None = None,
    names: list[str] | None = None,
    unparsed="wrong",
    worst: int = 10,
    audit_min_votes: int = 2,
    gold_texts: dict[str, tuple[str, str]] | None = None,
    gold_name: str = "--gold",
    threshold: float = 0.5,
) -> dict:
    """Score ``paths`` and write the report folder; ``gold_texts`` (id -> premise, hypothesis) checks that
    ``gold`` belongs to the same pairs. The summary's ``warnings`` list what was scored only in part."""
    models = load_models(paths, names)
    warnings = check_scorable(models, gold, gold_texts, gold_name)
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    metric = load_metric()
    summary: dict = {"unparsed": unparsed, "threshold": threshold, "models": {}, "warnings": warnings}
    plots, errors, buckets = {}, {}, {}
    for model in models:
        records = list(model.records.values())
        metrics = score_model(model, metric, gold, unparsed, threshold)
        summary["models"][model.name] = metrics
        buckets[model.name] = length_buckets(records, gold)
        errors[model.name] = worst_errors(records, gold, worst)
        if metrics["rows"]:
            plots[model.name] = plot_model(model.name, metrics, buckets[model.name], records, gold, folder)
            if "ece" in metrics:
                plots[model.name]["reliability"] = plot_reliability(model.name, metrics, folder)
    summary["comparisons"] = [compare(a, b, gold) for a, b in itertools.combinations(models, 2)]
    audit = disagreement_audit(models, gold, audit_min_votes)
    jsonl, table = write_audit(audit, folder)
    summary["audit"] = {"flagged": len(audit), "min_votes": audit_min_votes, "jsonl": jsonl.name, "csv": table.name}
    report = folder / "report.md"
    report.write_text(render_report(summary, models, plots, errors, buckets), encoding="utf-8")
    summary["report"] = str(report)
    (folder / "metrics.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary


# ---------------------------------------------------------------- the metric on the Hub


def push_metric(repo_id: str, *, private: bool = False, token: str | None = None) -> str:
    """Publish the ``nli_cot`` metric as a Hub Space that ``evaluate.load(repo_id)`` can load.

    ``evaluate`` looks for ``<space name>.py``, so the script is uploaded under the Space's name, with the
    answer parser it imports beside it (``nli_cot_parser.py``): the Space installs only PyPI packages
    (``requirements.txt``), not this one. The token comes from ``HF_TOKEN`` (or the login cache) unless given.
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(token=token)
    repo = api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True).repo_id
    name = repo.split("/")[-1]
    app = (
        "import evaluate\nfrom evaluate.utils import launch_gradio_widget\n\n"
        f"module = evaluate.load({repo!r})\nlaunch_gradio_widget(module)\n"
    )
    operations = [
        CommitOperationAdd(path_in_repo=f"{name}.py", path_or_fileobj=str(METRIC_DIR / "nli_cot.py")),
        CommitOperationAdd(
            path_in_repo="nli_cot_parser.py", path_or_fileobj=(METRIC_DIR / "nli_cot_parser.py").read_bytes()
        ),
        CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=str(METRIC_DIR / "README.md")),
        CommitOperationAdd(path_in_repo="requirements.txt", path_or_fileobj=str(METRIC_DIR / "requirements.txt")),
        CommitOperationAdd(path_in_repo="app.py", path_or_fileobj=app.encode("utf-8")),
    ]
    api.create_commit(repo, operations=operations, repo_type="space", commit_message="Upload the nli_cot metric")
    return repo


# ---------------------------------------------------------------- stage configs and entry points

UNPARSED_POLICIES = ("wrong", "drop", "0", "1")


@stage_config
class EvaluateConfig(PairOptions):
    """Score predictions with the nli_cot metric; write metrics.json, report.md with PNG plots,
    a McNemar comparison when given two or more files, and a label-disagreement audit.

    The column, label, --dataset-config and --split options say how to read --gold.
    """

    predictions: list[str] = option(
        help="One or more predictions JSONL files (from predict); two or more are compared pairwise.", positional=True
    )
    output_dir: str = option("evaluation", "Folder for metrics.json, report.md, plots and the audit.", short="-o")
    gold: str | None = option(
        None, "Gold labels (any data file load_pairs reads) when the predictions lack them; matched by id."
    )
    names: str | None = option(None, "Comma-separated display names of the prediction files (default: file stems).")
    unparsed: str = option(
        "wrong", "How an answer without a label counts: wrong, drop, 0 or 1.", choices=UNPARSED_POLICIES
    )
    worst: int = option(10, "How many errors to list in the report.", min=0)
    audit_min_votes: int = option(
        2,
        "Audit: flag a pair when at least this many predictions (files or samples) "
        "agree with each other against gold.",
        min=2,
    )
    threshold: float = option(
        0.5,
        "Predictions with p(label = 1) (--readout logprob): accuracy when label 1 is given at p >= this.",
        min=0.0,
        max=1.0,
    )

    def __post_init__(self) -> None:
        if isinstance(self.predictions, str):  # one file, as a YAML config may give it
            self.predictions = [self.predictions]

    def display_names(self) -> list[str] | None:
        if not self.names:
            return None
        names = [name.strip() for name in self.names.split(",")]
        if len(names) != len(self.predictions):
            raise DataError(f"--names: {len(names)} names for {len(self.predictions)} files")
        return names


def run_evaluate(config: EvaluateConfig) -> dict:
    """Score ``config.predictions`` and write the report folder; the summary :func:`evaluate_files` returns."""
    from nli_cot_hub.paths import refuse_input_as_output

    if not config.predictions:
        raise DataError("no predictions file given: name one or more")
    names = config.display_names()
    refuse_input_as_output(config.output_dir, [*config.predictions, config.gold], "--output-dir")
    gold_labels = gold_texts = None
    if config.gold:
        pairs = config.load(config.gold, require_labels=True)
        gold_labels = dict(zip(pairs["id"].astype(str), pairs["label"].astype(int)))
        gold_texts = dict(zip(pairs["id"].astype(str), zip(pairs["premise"], pairs["hypothesis"])))
    unparsed = config.unparsed if config.unparsed in ("wrong", "drop") else int(config.unparsed)
    return evaluate_files(
        config.predictions,
        config.output_dir,
        gold=gold_labels,
        names=names,
        unparsed=unparsed,
        worst=config.worst,
        audit_min_votes=config.audit_min_votes,
        threshold=config.threshold,
        gold_texts=gold_texts,
        gold_name=f"--gold {config.gold}",
    )


@stage_config
class PushMetricConfig:
    """Publish the nli_cot evaluate metric as a Hub Space (token from HF_TOKEN); then
    evaluate.load(REPO_ID) loads it (with nli-cot-hub installed)."""

    repo_id: str = option(help="Space to create or update, e.g. your-name/nli_cot.", positional=True)
    private: bool = option(False, "Create the Space private.")


def run_push_metric(config: PushMetricConfig) -> str:
    """Push the metric to the Space ``config.repo_id``; its repo id. A Hub refusal is :class:`RunFailed`."""
    from nli_cot_hub.hub_transfer import hub_errors

    with hub_errors("pushing the metric", config.repo_id, "space"):
        return push_metric(config.repo_id, private=config.private)
