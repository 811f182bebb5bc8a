"""Collect the experiment runs into ``docs/RESULTS.md``: one table per evaluation set and an accuracy-by-
thought-length plot, from the prediction files the runs wrote.

    python -m experiments.summarise [--results experiments/results] [--output docs/RESULTS.md]

A run whose predictions were not evaluated where they were made (the GPU machine lacks scikit-learn,
scipy and matplotlib) is evaluated here first, with the function behind ``nli-cot evaluate`` and the
arguments ``experiments.run`` would have given it. Per run and set: rows, accuracy with its 95% Wilson
interval, macro F1, parse rate, and
McNemar's test against the classic baseline on the rows both predicted
(``nli_cot_hub.report.compare``). Only the part of RESULTS.md between the ``results:begin`` and
``results:end`` markers is rewritten; the rest (the reading of the numbers) is left to a person.

Git keeps each run's metrics but not its prediction files, so what is computed from them (McNemar tests,
thought-length buckets) is also written to ``experiments/results/summary_kept.json`` and read from there
where the files are gone.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
from pathlib import Path

from experiments.common import DEFAULT_RESULTS, DEFAULT_WORK, REPO, read_json, write_json
from experiments.run import RUNS, SCORED_VIEWS, evaluate, write_report

DEFAULT_OUTPUT = REPO / "docs" / "RESULTS.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
KEPT_FILE = "summary_kept.json"  # in the results folder


class Kept:
    """What was computed from prediction files, kept in git beside the runs' metrics: git does not keep the
    prediction files, so a McNemar comparison or a run's thought-length buckets made where they were is read
    from here, not lost, where they are gone."""

    def __init__(self, results: Path):
        self.path = results / KEPT_FILE
        self.data = read_json(self.path) if self.path.exists() else {}
        self.data.setdefault("comparisons", {})
        self.data.setdefault("length_buckets", {})

    def comparison(self, key: str, made: dict | None = None) -> dict | None:
        """``made`` (a ``compare`` result) is kept under ``key``; without it, what was kept before (or None)."""
        if made is not None:
            kept = {name: made[name] for name in ("rows", "accuracy_a", "accuracy_b", "p_value")}
            self.data["comparisons"][key] = kept
        return self.data["comparisons"].get(key)

    def buckets(self, run: str, made: list[dict] | None = None) -> list[dict] | None:
        if made is not None:
            self.data["length_buckets"][run] = made
        return self.data["length_buckets"].get(run)

    def save(self) -> None:
        self.data = {name: dict(sorted(part.items())) for name, part in sorted(self.data.items())}
        write_json(self.path, self.data)


def comparison_key(view: str, run: str, reference: str) -> str:
    return f"{view}: {run} vs {reference}"


def markers(block: str = "results") -> tuple[str, str]:
    """The markers of one written block of the results file: runs made at different times can be kept in
    blocks of their own, so summarising new runs never drops older ones whose predictions are gone."""
    return f"<!-- {block}:begin -->", f"<!-- {block}:end -->"


VIEW_TITLES = {
    "dev": "Coursework dev, held out (`dev_jd0g.csv` minus every training pair)",
    "mnli_hard": "MNLI hard (matched + mismatched sample), COMP34812 labels: neutral -> 1",
    "mnli_hard_standard": "MNLI hard, the same predictions, standard labels: only entailment -> 1",
}


def wilson_interval(correct: int, total: int) -> tuple[float, float]:
    from scipy.stats import binomtest

    interval = binomtest(correct, total).proportion_ci(confidence_level=0.95, method="wilson")
    return float(interval.low), float(interval.high)


def gold_labels(view: str, work: Path) -> dict[str, int] | None:
    """Labels by id when a view scores with other labels than those stored in the predictions."""
    gold_file = SCORED_VIEWS[view][1]
    if gold_file is None:
        return None
    from nli_cot_hub.data import Columns, load_pairs

    pairs = load_pairs(work / gold_file, columns=Columns(id="id"))
    return dict(zip(pairs["id"].astype(str), pairs["label"].astype(int)))


def collect(results: Path, work: Path, include_smoke: bool = False, pattern: str | None = None) -> dict[str, dict]:
    """Every run with predictions or evaluated metrics, evaluated here if it was not yet; returns run ->
    metrics.json.
    Smoke runs (`run.py --smoke`: a few rows, two training steps) are path checks, not results: left out
    unless asked for, and then marked."""
    runs = {}
    others = sorted(p.name for p in results.iterdir() if p.is_dir() and p.name not in RUNS) if results.is_dir() else []
    for name in [*RUNS, *others]:
        if pattern and not fnmatch.fnmatch(name, pattern):
            continue
        folder = results / name
        if not (folder / "metrics.json").exists():
            continue
        record = read_json(folder / "metrics.json")
        # git keeps a run's metrics but not its prediction files: an evaluated run counts without them.
        if not record.get("sets") and not list(folder.glob("predictions_*.jsonl")):
            continue
        if (record.get("options") or {}).get("smoke") and not include_smoke:
            print(f"left out {name}: a --smoke run")
            continue
        if not record.get("sets"):
            record["sets"] = evaluate(name, folder, work, in_process=True)
            record["evaluation"] = "done by experiments.summarise (not where the predictions were made)"
            write_json(folder / "metrics.json", record)
            write_report(folder, record)
        runs[name] = record
    return runs


def view_models(view: str, runs: dict[str, dict], results: Path) -> dict:
    """run -> its predictions for the set a view scores (`nli_cot_hub.report.Model`), for runs that have them."""
    from nli_cot_hub.report import load_models

    name = SCORED_VIEWS[view][0]
    return {
        run: load_models([str(results / run / f"predictions_{name}.jsonl")], [run])[0]
        for run in runs
        if (results / run / f"predictions_{name}.jsonl").exists()
    }


def table_rows(
    view: str, runs: dict[str, dict], models: dict, gold: dict[str, int] | None, baseline: str, kept: Kept
) -> list[dict]:
    """One row per run scored on ``view``: from its predictions where they are here, else from its committed
    metrics (McNemar's test needs the predictions of both runs)."""
    from nli_cot_hub.report import compare, gold_of

    rows = []
    for run, record in runs.items():
        metrics = record["sets"].get(view, {}) if record.get("sets") else {}
        model = models.get(run)
        if model is not None:
            scored = [r for r in model.records.values() if gold_of(r, gold) is not None]
            total, correct = len(scored), sum(r.predicted_label == gold_of(r, gold) for r in scored)
        elif metrics.get("scored"):
            total = metrics["scored"]
            correct = round(metrics["accuracy"] * total)
        else:
            continue
        row = {
            "run": run,
            "card": record["environment"]["card"],
            "date": record["environment"]["date"][:10],
            "rows": total,
            "accuracy": correct / total if total else None,
            "ci": wilson_interval(correct, total) if total else None,
            "macro_f1": metrics.get("macro_f1"),
            "parse_rate": metrics.get("parse_rate"),
            "mcnemar_p": None,
            "mcnemar_rows": None,
        }
        key = comparison_key(view, run, baseline)
        if model is not None and baseline in models and run != baseline:
            kept.comparison(key, compare(model, models[baseline], gold))
        comparison = kept.comparison(key) if run != baseline else None
        if comparison is not None:
            row["mcnemar_p"], row["mcnemar_rows"] = comparison["p_value"], comparison["rows"]
        if (record.get("options") or {}).get("smoke"):
            row["run"] += " (smoke, not a result)"
        rows.append(row)
    return rows


MIN_BUCKET_ROWS = 30  # a point from fewer rows is noise (one row gives 0 or 1), so it is not drawn


def _bucket_start(label: str) -> int:
    return int(label.split("-")[0].rstrip("+"))


def plot_lengths(runs: dict[str, dict], results: Path, path: Path, kept: Kept) -> Path | None:
    """Dev accuracy per thought-length bucket (words), one line per run that writes thoughts; buckets with
    fewer than MIN_BUCKET_ROWS rows are left out. A run whose predictions are gone is drawn from its kept
    buckets; where a run has neither, the plot already there is left as it is."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nli_cot_hub.report import length_buckets, load_models

    lines, missing = {}, []
    for run, record in runs.items():
        predictions = results / run / "predictions_dev.jsonl"
        if predictions.exists():
            records = list(load_models([str(predictions)], [run])[0].records.values())
            kept.buckets(run, [b for b in length_buckets(records, None) if b["bucket"] != "no thought"])
        elif kept.buckets(run) is None and "dev" in (record.get("sets") or {}):
            missing.append(run)
        buckets = [b for b in kept.buckets(run) or [] if b["rows"] >= MIN_BUCKET_ROWS]
        if buckets:
            lines[run] = buckets
    if missing and path.exists():
        print(f"kept {path}: no dev predictions here for {', '.join(missing)}")
        return path
    if not lines:
        return None
    order = sorted({b["bucket"] for buckets in lines.values() for b in buckets}, key=_bucket_start)
    figure, axis = plt.subplots(figsize=(8, 4.5))
    for run, buckets in lines.items():
        axis.plot(
            [order.index(b["bucket"]) for b in buckets],
            [b["accuracy"] for b in buckets],
            marker="o",
            label=f"{run} ({sum(b['rows'] for b in buckets)} rows drawn)",
        )
    axis.set_xticks(range(len(order)), order)
    axis.set_xlabel(f"thought length (words); buckets of fewer than {MIN_BUCKET_ROWS} rows left out")
    axis.set_ylabel("dev accuracy")
    axis.set_ylim(0, 1)
    axis.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
    axis.legend(fontsize=8)
    axis.set_title("Accuracy by thought length, coursework dev (held out)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def pairwise(
    names: list[str], models: dict, gold: dict[str, int] | None, kept: Kept, view: str = "dev"
) -> dict[tuple[str, str], float]:
    """McNemar p for every pair of runs on one view: computed where both runs' predictions are here, else as
    kept from before."""
    from nli_cot_hub.report import compare

    pairs = {}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            key = comparison_key(view, a, b)
            if a in models and b in models:
                kept.comparison(key, compare(models[a], models[b], gold))
            comparison = kept.comparison(key)
            if comparison is not None:
                pairs[(a, b)] = comparison["p_value"]
    return pairs


FORMAT_VIEWS = ("dev", "mnli_hard")
FORMAT_BASELINE = "fmt-label-only"
READOUT_SUFFIX = {"generate": "", "logprob": "_logprob"}


def spread(values: list[float], digits: int = 4) -> str:
    """mean ± sd over seeds (sd needs two or more)."""
    import statistics

    values = [v for v in values if v is not None]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def examples_per_second(record: dict, name: str, readout: str) -> float | None:
    """Prediction speed of one run and read-out. thought_first's read-out reads the thoughts its generation run
    wrote, so its cost is both: 1 / (1 / generation + 1 / read-out)."""
    speed = record.get("speed") or {}

    def rate(key: str) -> float | None:
        return (speed.get(key) or {}).get("examples_per_second")

    if readout == "logprob" and record.get("completion_format") == "thought_first":
        generation, reading = rate(name), rate(f"{name}_logprob")
        return 1 / (1 / generation + 1 / reading) if generation and reading else None
    return rate(name + READOUT_SUFFIX[readout])


def format_rows(view: str, runs: dict[str, dict], results: Path, work: Path, kept: Kept) -> list[dict]:
    """One row per (format recipe, read-out): mean ± sd over the seeds of accuracy, macro F1, parse rate,
    calibration and speed, and the per-seed comparison with label-only (generation) on the same rows."""
    from nli_cot_hub.report import compare, load_models

    gold = gold_labels(view, work) if view in SCORED_VIEWS else None
    name = SCORED_VIEWS[view][0]
    groups: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for run, record in runs.items():
        if not record.get("completion_format"):
            continue
        for readout, suffix in READOUT_SUFFIX.items():
            if (record.get("sets") or {}).get(view + suffix) or (
                results / run / f"predictions_{name}{suffix}.jsonl"
            ).exists():
                groups.setdefault((record["recipe"], readout), []).append((record["seed"], run))
    baselines = {
        seed: run
        for (recipe, readout), members in groups.items()
        if recipe == FORMAT_BASELINE and readout == "generate"
        for seed, run in members
    }
    rows = []
    for (recipe, readout), members in groups.items():
        suffix = READOUT_SUFFIX[readout]
        members.sort()
        metrics = [runs[run]["sets"].get(view + suffix, {}) for _, run in members]
        speeds = [examples_per_second(runs[run], name, readout) for _, run in members]
        differences, p_values = [], []
        for seed, run in members:
            base = baselines.get(seed)
            if base is None or (base == run and readout == "generate"):
                continue
            mine = results / run / f"predictions_{name}{suffix}.jsonl"
            theirs = results / base / f"predictions_{name}.jsonl"
            key = comparison_key(view + suffix, run, base)
            if mine.exists() and theirs.exists():
                model = load_models([str(mine)], [run])[0]
                reference = load_models([str(theirs)], [base])[0]
                kept.comparison(key, compare(model, reference, gold))
            comparison = kept.comparison(key)
            if comparison is not None and comparison["rows"]:
                differences.append(comparison["accuracy_a"] - comparison["accuracy_b"])
                p_values.append((seed, comparison["p_value"]))
                continue
            # Both runs scored every row of the set: the difference of their accuracies is on the same rows;
            # McNemar's test needs the predictions themselves.
            accuracy = (runs[run]["sets"].get(view + suffix) or {}).get("accuracy")
            reference_accuracy = (runs[base]["sets"].get(view) or {}).get("accuracy")
            if accuracy is not None and reference_accuracy is not None:
                differences.append(accuracy - reference_accuracy)
        rows.append(
            {
                "format": runs[members[0][1]]["completion_format"],
                "recipe": recipe,
                "readout": readout,
                "seeds": [seed for seed, _ in members],
                **{
                    key: spread([m.get(key) for m in metrics])
                    for key in ("accuracy", "macro_f1", "parse_rate", "ece", "brier", "roc_auc")
                },
                # Seeds may have run on different cards or beside different runs: each seed's own speed.
                "examples_per_second": ", ".join(
                    f"{seed}: {speed:.1f}" for (seed, _), speed in zip(members, speeds) if speed is not None
                )
                or "–",
                "difference": spread(differences),
                "p_values": p_values,
            }
        )
    return rows


def render_formats(tables: dict[str, list[dict]]) -> list[str]:
    lines = []
    for view, rows in tables.items():
        if not rows:
            continue
        lines += [
            f"### Completion formats: {VIEW_TITLES[view]}",
            "",
            "Mean ± sd over the seeds (examples/s per seed: the seeds' cards differ); calibration only for the "
            "log-probability read-out; the difference "
            f"and McNemar's p (per seed) are against `{FORMAT_BASELINE}` with generation, on the same rows. "
            "McNemar's test needs both runs' prediction files, which git does not keep; the tests made where "
            f"they were are kept in `experiments/results/{KEPT_FILE}`, and a seed missing from the last column "
            "never had both files in one place.",
            "",
            "| format | run | read-out | seeds | accuracy | macro F1 | parse rate | ECE | Brier | ROC-AUC | "
            "examples/s | accuracy − label-only | McNemar p per seed |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for row in rows:
            p_values = ", ".join(f"{seed}: {_p(value)}" for seed, value in row["p_values"]) or "–"
            lines.append(
                f"| {row['format']} | {row['recipe']} | {row['readout']} | "
                f"{', '.join(map(str, row['seeds']))} | {row['accuracy']} | {row['macro_f1']} | "
                f"{row['parse_rate']} | {row['ece']} | {row['brier']} | {row['roc_auc']} | "
                f"{row['examples_per_second']} | {row['difference']} | {p_values} |"
            )
        lines.append("")
    return lines


def _p(value: float) -> str:
    return "< 1e-300" if value == 0 else f"{value:.3g}"


def _number(value, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def render(
    runs: dict[str, dict],
    tables: dict[str, list[dict]],
    plot: Path | None,
    output: Path,
    baseline: str,
    pairs: dict[tuple[str, str], float] | None = None,
    formats: dict[str, list[dict]] | None = None,
    block: str = "results",
) -> str:
    begin, end = markers(block)
    cards = sorted({f"{r['environment']['card']}" for r in runs.values()})
    lines = [
        begin,
        "",
        "_Written by `python -m experiments.summarise` from the runs in `experiments/results/`; "
        "do not edit between the markers._",
        "",
        f"Runs: {len(runs)} ({', '.join(runs)}). Cards: {', '.join(cards)}. Model: SmolLM2-135M-Instruct "
        "(the embedded model) + LoRA; classic baseline: TF-IDF + logistic regression.",
        "",
    ]
    for view, rows in tables.items():
        if not rows:
            continue
        lines += [
            f"### {VIEW_TITLES[view]}",
            "",
            "| run | card | date | rows | accuracy | 95% CI (Wilson) | macro F1 | parse rate | "
            f"McNemar p vs {baseline} |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for row in rows:
            ci = "–" if row["ci"] is None else f"{row['ci'][0]:.3f}–{row['ci'][1]:.3f}"
            p = "–" if row["mcnemar_p"] is None else f"{_p(row['mcnemar_p'])} ({row['mcnemar_rows']} rows)"
            lines.append(
                f"| {row['run']} | {row['card']} | {row['date']} | {row['rows']} | {_number(row['accuracy'])} | "
                f"{ci} | {_number(row['macro_f1'])} | {_number(row['parse_rate'], 3)} | {p} |"
            )
        lines.append("")
    lines += render_formats(formats or {})
    if pairs:
        involved = {run for pair in pairs for run in pair}
        names = [run for run in runs if run in involved]
        lines += [
            "### Coursework dev: McNemar p between runs",
            "",
            "| | " + " | ".join(names[1:]) + " |",
            "|---" * len(names) + "|",
        ]
        for i, a in enumerate(names[:-1]):
            cells = [
                "" if j <= i else ("–" if (a, b) not in pairs else _p(pairs[(a, b)]))
                for j, b in enumerate(names)
                if j > 0
            ]
            lines.append(f"| {a} | " + " | ".join(cells) + " |")
        lines.append("")
    # Runs trained again from one reflection store share its summary: one line for all of them.
    stores: dict[str, list[str]] = {}
    for run, record in runs.items():
        if record.get("reflection"):
            stores.setdefault(json.dumps(record["reflection"], sort_keys=True), []).append(run)
    for key, names in stores.items():
        made = json.loads(key)
        usable = made.get("usable_thoughts")
        lines += [
            f"Reflections in {', '.join(f'`{n}`' for n in names)} by `{made['model']}`: {made['records']} "
            f"written, {made['reached_gold']} gave the gold label"
            + (
                f", {usable} of them with a thought, the only ones a CoT data set can train on"
                if usable is not None
                else ""
            )
            + f" (statuses {made['by_status']}).",
            "",
        ]
    for run, record in runs.items():
        if record.get("base"):
            lines += [
                f"`{run}` samples from `{record['base']}`'s adapter ({record['samples']} samples, temperature "
                f"{record['temperature']}).",
                "",
            ]
    if plot is not None:
        lines += [f"![accuracy by thought length]({plot.relative_to(output.parent).as_posix()})", ""]
    lines += [
        "Per-run details (commands, wall times, training summary, confusion matrices, worst errors): "
        "`experiments/results/<run>/report.md`.",
        "",
        end,
    ]
    return "\n".join(lines)


def write_results(output: Path, block: str, name: str = "results") -> Path:
    begin, end = markers(name)
    text = output.read_text(encoding="utf-8") if output.exists() else "# Results\n"
    if begin not in text and end not in text:  # a new block goes at the end of the file
        text = text.rstrip("\n") + f"\n\n{begin}\n{end}\n"
    if begin not in text or end not in text:
        raise SystemExit(f"error: {output}: one of the markers {begin} / {end} is missing")
    head, rest = text.split(begin, 1)
    tail = rest.split(end, 1)[1]
    output.write_text(head + block + tail, encoding="utf-8")
    return output


def summarise(
    results: Path,
    work: Path,
    output: Path,
    baseline: str = "tfidf",
    include_smoke: bool = False,
    pattern: str | None = None,
    block: str = "results",
) -> dict:
    runs = collect(results, work, include_smoke, pattern)
    if not runs:
        raise SystemExit(
            f"error: no runs with predictions under {results} (--smoke runs count only with --include-smoke)"
        )
    kept = Kept(results)
    tables, pairs = {}, None
    for view in SCORED_VIEWS:
        models, gold = view_models(view, runs, results), gold_labels(view, work)
        tables[view] = table_rows(view, runs, models, gold, baseline, kept)
        if view == "dev":
            pairs = pairwise(list(runs), models, gold, kept)
    formats = {view: format_rows(view, runs, results, work, kept) for view in FORMAT_VIEWS}
    plot = plot_lengths(runs, results, output.parent / f"{block}_thought_length.png", kept)
    kept.save()
    write_results(output, render(runs, tables, plot, output, baseline, pairs, formats, block), block)
    return {
        "runs": list(runs),
        "tables": tables,
        "pairs": pairs,
        "formats": formats,
        "plot": str(plot) if plot else None,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--results", type=Path, default=DEFAULT_RESULTS, help="Runs folder (default experiments/results)."
    )
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="prepare_data's output (for the gold labels).")
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="Markdown file to fill in (default docs/RESULTS.md)."
    )
    parser.add_argument("--baseline", default="tfidf", help="Run that McNemar's test compares against.")
    parser.add_argument("--include-smoke", action="store_true", help="Also list --smoke runs (marked as such).")
    parser.add_argument(
        "--runs",
        default=None,
        metavar="PATTERN",
        help="Only the runs whose folder name matches this shell pattern (e.g. 'fmt-*').",
    )
    parser.add_argument(
        "--block",
        default="results",
        help="Name of the marked block to write (<!-- NAME:begin --> ... <!-- NAME:end -->; added at "
        "the end of the file when missing); its plot is NAME_thought_length.png.",
    )
    args = parser.parse_args(argv)
    summary = summarise(args.results, args.work, args.output, args.baseline, args.include_smoke, args.runs, args.block)
    print(
        f"summarised {len(summary['runs'])} runs into {args.output}"
        + (f"; plot {summary['plot']}" if summary["plot"] else "")
    )


if __name__ == "__main__":
    main()
