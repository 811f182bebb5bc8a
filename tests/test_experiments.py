"""The experiment scripts on the real shared data: the evaluation/training split (no leak), the
TF-IDF baseline end to end through `nli-cot evaluate`, and the summariser."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from experiments import common, prepare_data
from nli_cot_hub.data import Columns, LabelMapping, contamination, load_pairs, pair_key
from nli_cot_hub.store import RecordStore, read_records
from tests.conftest import SHARED_DATA, shared

DEV_ROWS = 6737  # comp34812_nli/dev_jd0g.csv (SOURCE.md)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    shared("comp34812_nli/dev_jd0g.csv")
    folder = tmp_path_factory.mktemp("exp")
    manifest = prepare_data.prepare(SHARED_DATA, folder, mnli_per_subset=60, rationales=200, seed=7)
    return folder, manifest


def test_dev_eval_set_holds_no_training_row(work):
    folder, manifest = work
    dev_eval = load_pairs(folder / common.DEV_EVAL, columns=Columns(id="id"))
    gold = pd.read_csv(shared("comp34812_nli_jd0g_cot/dev_missing_gold.csv"))
    # no training row by index ...
    assert not set(dev_eval["id"]) & set(gold["id"].astype(str))
    # ... nor by content, checked against the shared files directly, not the prepared copies
    sources = {
        "dev_missing_gold": load_pairs(shared("comp34812_nli_jd0g_cot/dev_missing_gold.csv")),
        "sample": load_pairs(shared("comp34812_nli_jd0g_cot/sample.csv")),
        "esnli dev": load_pairs(shared("esnli/dev"), labels=LabelMapping(three_class="strict")),
    }
    for name, source in sources.items():
        assert contamination(dev_eval, source).count == 0, name
    # the rows kept are the dev file's own rows, labels unchanged
    dev = load_pairs(shared("comp34812_nli/dev_jd0g.csv")).set_index("id")
    assert (dev.loc[dev_eval["id"], "premise"].values == dev_eval["premise"].values).all()
    assert (dev.loc[dev_eval["id"], "label"].values == dev_eval["label"].values).all()
    # counts add up: every dev row is either evaluated or excluded for a stated reason
    assert manifest["dev"]["source_rows"] == DEV_ROWS
    assert manifest["dev"]["rows"] + sum(manifest["dev"]["excluded"].values()) == DEV_ROWS
    assert manifest["dev"]["rows"] == len(dev_eval)
    assert manifest["dev"]["excluded"]["training rows (dev_missing_gold ids)"] == 3005
    # SOURCE.md: 436 dev rows are SNLI dev pairs; with the author's pairs, those that are not already
    # training rows by id are the content exclusions
    by_content = {name: set(contamination(dev.reset_index(), source).left_ids) for name, source in sources.items()}
    assert len(by_content["esnli dev"]) == 436
    content_excluded = set().union(*by_content.values()) - set(gold["id"].astype(str))
    assert sum(n for reason, n in manifest["dev"]["excluded"].items() if reason.startswith("pair also in")) == len(
        content_excluded
    )


def test_mnli_hard_set_labels_and_leaks(work):
    folder, manifest = work
    mnli = pd.read_csv(folder / common.MNLI_EVAL, dtype={"id": str}, keep_default_na=False)
    strict = pd.read_csv(folder / common.MNLI_EVAL_STRICT, dtype={"id": str}, keep_default_na=False)
    assert mnli["subset"].value_counts().to_dict() == {"matched": 60, "mismatched": 60}
    assert list(strict["id"]) == list(mnli["id"])
    assert (mnli["label"] == (mnli["gold3"] != "contradiction").astype(int)).all()  # COMP34812: neutral -> 1
    assert (strict["label"] == (mnli["gold3"] == "entailment").astype(int)).all()  # standard
    training = load_pairs(shared("comp34812_nli_jd0g_cot/dev_missing_gold.csv"))
    assert contamination(mnli.assign(label=mnli["label"].astype("Int64")), training).count == 0
    assert (
        manifest["mnli_hard"]["excluded"][
            "matched: pair also in jd0g (dev_missing_gold + sample thoughts/reflections)"
        ]
        > 0
    )


def test_training_files_are_consistent_and_the_leak_check_can_fail(work, tmp_path):
    folder, manifest = work
    report = prepare_data.overlap_report(folder)
    assert report and all(count == 0 for row in report.values() for count in row.values())
    pairs = pd.read_csv(folder / common.PAIRS, dtype={"id": str}, keep_default_na=False)
    label_only = pd.read_json(folder / common.LABEL_ONLY, lines=True, dtype={"id": str})
    assert len(pairs) == len(label_only) == manifest["training"]["pairs"]
    assert (label_only["thought_process"] == "").all()
    keys = [pair_key(p, h) for p, h in zip(pairs["premise"], pairs["hypothesis"])]
    assert len(set(keys)) == len(keys)
    originals = read_records(folder / common.JD0G_ORIGINALS)
    assert (
        len(originals) == 3005
        and sum(r.correct is False for r in originals) == manifest["training"]["jd0g_dev_wrong"] == 739
    )
    assert all(r.source == "human" for r in read_records(folder / common.HUMAN_STORE))
    # plant one evaluation pair in the training pairs: the check must see it
    dev_eval = pd.read_csv(folder / common.DEV_EVAL, dtype={"id": str}, keep_default_na=False)
    leaked = pd.concat([pairs, dev_eval.iloc[:1]], ignore_index=True)
    leaked.to_csv(folder / common.PAIRS, index=False)
    try:
        assert prepare_data.overlap_report(folder)["dev"]["pairs.csv"] == 1
    finally:
        pairs.to_csv(folder / common.PAIRS, index=False)


def author_predictions(folder, rows: int):
    """The author's real open-mistral-7b answers on the first dev_missing rows, as a predictions file."""
    records = read_records(folder / common.JD0G_ORIGINALS)[:rows]
    return [r.model_copy(update={"id": r.id.removeprefix("dev-")}) for r in records]


def held_out_split(folder):
    """The author's 60 first predictions as held-out rows, and 400 seeded training pairs that are none of them."""
    author = author_predictions(folder, 60)
    held = pd.DataFrame(
        {
            "id": [r.id for r in author],
            "premise": [r.premise for r in author],
            "hypothesis": [r.hypothesis for r in author],
            "label": [r.label for r in author],
        }
    )
    held_keys = {pair_key(p, h) for p, h in zip(held["premise"], held["hypothesis"])}
    pairs = pd.read_csv(folder / common.PAIRS, dtype={"id": str}, keep_default_na=False)
    train = pairs[[pair_key(p, h) not in held_keys for p, h in zip(pairs["premise"], pairs["hypothesis"])]]
    return author, held, train.sample(n=400, random_state=0)


def test_tfidf_baseline_and_summariser_end_to_end(work, tmp_path):
    from experiments import summarise, tfidf_baseline
    from nli_cot_hub.report import mcnemar
    from nli_cot_hub.store import RecordStore

    folder, _ = work
    author, held, train = held_out_split(folder)
    train.to_csv(tmp_path / "train.csv", index=False)
    held.to_csv(tmp_path / "held.csv", index=False)

    results = tmp_path / "results"
    summary = tfidf_baseline.run(tmp_path / "train.csv", {"dev": tmp_path / "held.csv"}, results / "tfidf", seed=0)
    tfidf = read_records(summary["files"]["dev"])
    assert [r.id for r in tfidf] == list(held["id"])
    assert all(r.status == "label-only" and r.predicted_label in (0, 1) and r.label is not None for r in tfidf)
    assert summary["chosen_C"] in tfidf_baseline.C_GRID
    with RecordStore(results / "mistral-author" / "predictions_dev.jsonl") as store:
        store.append_many(author)
    # both "trained" from one reflection store (as cot-reflected and its retrains): one line names both
    store_summary = {
        "records": 9,
        "by_status": {"failed": 7, "ok": 2},
        "reached_gold": 2,
        "usable_thoughts": 1,
        "model": "embedded",
    }
    for run in ("tfidf", "mistral-author"):
        common.write_json(
            results / run / "metrics.json",
            {
                "run": run,
                "description": "test",
                "sets": {},
                "steps": [],
                "reflection": store_summary,
                "environment": {"card": "CPU", "date": "2026-11-25T00:00:00+00:00"},
            },
        )

    # a --smoke run (a path check on a few rows) must not reach the results page
    (results / "smoke-run").mkdir()
    (results / "smoke-run" / "predictions_dev.jsonl").write_bytes(
        (results / "tfidf" / "predictions_dev.jsonl").read_bytes()
    )
    common.write_json(
        results / "smoke-run" / "metrics.json",
        {
            "run": "smoke-run",
            "description": "test",
            "sets": {},
            "options": {"smoke": True},
            "environment": {"card": "CPU", "date": "2026-11-25T00:00:00+00:00"},
        },
    )

    output = tmp_path / "RESULTS.md"
    output.write_text(f"# R\n\n{summarise.BEGIN}\nold\n{summarise.END}\n\n## Reading\nkept by hand\n")
    result = summarise.summarise(results, folder, output, baseline="tfidf")

    text = output.read_text()
    assert "kept by hand" in text and "\nold\n" not in text
    assert result["runs"] == ["tfidf", "mistral-author"] and "smoke-run" not in text
    rows = {row["run"]: row for row in result["tables"]["dev"]}
    right_t = [r.predicted_label == r.label for r in tfidf]
    right_a = [r.predicted_label == r.label for r in author]
    assert rows["tfidf"]["rows"] == rows["mistral-author"]["rows"] == 60
    assert rows["tfidf"]["accuracy"] == pytest.approx(sum(right_t) / 60)
    assert rows["mistral-author"]["accuracy"] == pytest.approx(sum(right_a) / 60)
    low, high = rows["mistral-author"]["ci"]
    assert low < rows["mistral-author"]["accuracy"] < high
    assert rows["mistral-author"]["mcnemar_p"] == pytest.approx(mcnemar(right_a, right_t)["p_value"])
    assert rows["tfidf"]["mcnemar_p"] is None
    # nli-cot evaluate ran (here, as on a machine without scikit-learn at predict time) and agrees
    metrics = json.loads((results / "tfidf" / "eval_dev" / "metrics.json").read_text())["models"]["tfidf"]
    assert metrics["accuracy"] == pytest.approx(sum(right_t) / 60) and metrics["parse_rate"] == 1.0
    assert f"| mistral-author | CPU | 2026-11-25 | 60 | {sum(right_a) / 60:.4f} |" in text
    assert result["plot"] and (tmp_path / "results_thought_length.png").stat().st_size > 0
    # every pair of runs is compared on dev, and the table shows it
    assert result["pairs"] == {("tfidf", "mistral-author"): pytest.approx(mcnemar(right_t, right_a)["p_value"])}
    assert "McNemar p between runs" in text
    assert text.count("Reflections in") == 1
    assert (
        "Reflections in `tfidf`, `mistral-author` by `embedded`: 9 written, 2 gave the gold label, 1 of them" in text
    )

    # what a GPU machine without scikit-learn prints at once agrees with the evaluated numbers
    from experiments.run import best_cot_run, quick_scores

    quick = quick_scores(results / "mistral-author")
    assert quick == {
        "dev": {
            "rows": 60,
            "accuracy": round(sum(right_a) / 60, 4),
            "parse_rate": round(sum(r.predicted_label is not None for r in author) / 60, 4),
        }
    }
    for run, accuracy in (("cot-original", 0.61), ("cot-esnli", 0.58)):
        common.write_json(results / run / "metrics.json", {"sets": {}, "quick": {"dev": {"accuracy": accuracy}}})
    assert best_cot_run(results) == "cot-original"


def test_a_rerun_reuses_only_a_finished_adapter(tmp_path):
    from experiments.run import trained

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    assert not trained(adapter)  # cut off mid-training: train.py writes its metrics last
    (adapter / "training_metrics.json").write_text("{}")
    assert trained(adapter)


def test_a_name_suffix_makes_a_second_run_beside_the_first(work, tmp_path):
    from experiments import run

    folder, _ = work
    results = tmp_path / "results"
    for suffix in ("", "-again"):
        run.main(
            [
                "tfidf",
                "--work",
                str(folder),
                "--results",
                str(results),
                "--eval-sets",
                "dev",
                "--skip-evaluate",
                f"--name-suffix={suffix}",
            ]
        )
    first, second = results / "tfidf", results / "tfidf-again"
    record = common.read_json(second / "metrics.json")
    assert (record["run"], record["recipe"]) == ("tfidf-again", "tfidf")
    assert common.read_json(first / "metrics.json")["run"] == "tfidf"
    # the same recipe and seed on the same data: the classic baseline is deterministic, so the labels agree
    labels = [[r.predicted_label for r in read_records(f / "predictions_dev.jsonl")] for f in (first, second)]
    assert labels[0] == labels[1] and len(labels[0]) > 100


def test_another_training_of_a_reflection_run_starts_from_its_reflections(work, tmp_path):
    from experiments.run import Log, reuse_reflections

    folder, _ = work
    source, target = tmp_path / "cot-reflected", tmp_path / "cot-reflected-retrain2"
    source.mkdir()
    target.mkdir()
    (source / "reflected.jsonl").write_bytes((folder / common.JD0G_ORIGINALS).read_bytes())
    log = Log(target)
    count = reuse_reflections(source, target, log)
    assert count == len(read_records(folder / common.JD0G_ORIGINALS)) > 0
    assert (target / "reflected.jsonl").read_bytes() == (source / "reflected.jsonl").read_bytes()
    assert log.steps[0]["stage"] == "reflect (copied)"
    # a store the new run already has (a resumed call) is never overwritten
    (target / "reflected.jsonl").write_text("")
    assert reuse_reflections(source, target, log) == 0 and (target / "reflected.jsonl").read_text() == ""


def test_a_damaged_json_file_is_named_in_the_error(tmp_path):
    path = tmp_path / "cot-original" / "metrics.json"
    path.parent.mkdir()
    path.write_text('{"run": "cot-original", "sets": {')  # cut short
    with pytest.raises(SystemExit, match=r"cot-original/metrics.json: not valid JSON at line 1"):
        common.read_json(path)


def test_summarise_tables_the_formats_over_seeds_against_label_only(work, tmp_path):
    """Format runs made of real predictions: TF-IDF labels as label-only, the author's Mistral answers as
    thought_first generation, and TF-IDF probabilities as its read-out; two seeds each."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from experiments import summarise, tfidf_baseline
    from experiments.choose_weight import choose
    from nli_cot_hub.report import mcnemar
    from nli_cot_hub.store import RecordStore

    folder, _ = work
    author, held, train = held_out_split(folder)
    train.to_csv(tmp_path / "train.csv", index=False)
    held.to_csv(tmp_path / "held.csv", index=False)
    tfidf = read_records(
        tfidf_baseline.run(tmp_path / "train.csv", {"dev": tmp_path / "held.csv"}, tmp_path / "tfidf", seed=0)[
            "files"
        ]["dev"]
    )
    vectoriser = TfidfVectorizer().fit(train["premise"] + " " + train["hypothesis"])
    model = LogisticRegression(max_iter=1000).fit(
        vectoriser.transform(train["premise"] + " " + train["hypothesis"]), train["label"].astype(int)
    )
    p_one = model.predict_proba(vectoriser.transform(held["premise"] + " " + held["hypothesis"]))[:, 1]
    readout = [
        r.model_copy(update={"predicted_label": int(p > 0.5), "p_label_1": float(p)}) for r, p in zip(author, p_one)
    ]

    results = tmp_path / "results"
    speeds = {"fmt-label-only": {"dev": 400.0}, "fmt-thought-first": {"dev": 20.0, "dev_logprob": 80.0}}
    for seed in (42, 43):
        for recipe, files in (
            ("fmt-label-only", {"dev": tfidf}),
            ("fmt-thought-first", {"dev": author, "dev_logprob": readout}),
        ):
            run = results / f"{recipe}-s{seed}"
            for name, records in files.items():
                with RecordStore(run / f"predictions_{name}.jsonl") as store:
                    store.append_many(records)
            common.write_json(
                run / "metrics.json",
                {
                    "run": run.name,
                    "recipe": recipe,
                    "description": "test",
                    "sets": {},
                    "seed": seed,
                    "completion_format": recipe.removeprefix("fmt-").replace("-", "_"),
                    "speed": {name: {"examples_per_second": value} for name, value in speeds[recipe].items()},
                    "environment": {"card": "CPU", "date": "2026-12-01T00:00:00+00:00"},
                },
            )
    output = tmp_path / "RESULTS.md"
    result = summarise.summarise(results, folder, output, baseline="fmt-label-only-s42")
    rows = {(row["recipe"], row["readout"]): row for row in result["formats"]["dev"]}
    assert set(rows) == {
        ("fmt-label-only", "generate"),
        ("fmt-thought-first", "generate"),
        ("fmt-thought-first", "logprob"),
    }
    right_author = [r.predicted_label == r.label for r in author]
    right_tfidf = [r.predicted_label == r.label for r in tfidf]
    generation = rows[("fmt-thought-first", "generate")]
    assert generation["seeds"] == [42, 43]
    assert generation["accuracy"] == f"{sum(right_author) / 60:.4f} ± 0.0000"
    assert generation["difference"] == f"{(sum(right_author) - sum(right_tfidf)) / 60:.4f} ± 0.0000"
    p_value = mcnemar(right_author, right_tfidf)["p_value"]
    assert generation["p_values"] == [(42, pytest.approx(p_value)), (43, pytest.approx(p_value))]
    assert rows[("fmt-label-only", "generate")]["p_values"] == []  # not compared with itself
    read = rows[("fmt-thought-first", "logprob")]
    metrics = json.loads((results / "fmt-thought-first-s42" / "eval_dev_logprob" / "metrics.json").read_text())
    assert read["ece"].startswith(f"{metrics['models']['fmt-thought-first-s42']['ece']:.4f}")
    # the read-out after generated thoughts costs both: 1 / (1/20 + 1/80) = 16 examples/s
    assert (
        read["examples_per_second"] == "42: 16.0, 43: 16.0"
        and generation["examples_per_second"] == "42: 20.0, 43: 20.0"
    )
    text = output.read_text()
    assert (
        "### Completion formats: Coursework dev" in text and "| thought_first | fmt-thought-first | logprob |" in text
    )
    # git keeps metrics, not predictions: once seed 42's are gone its numbers still count, and the McNemar tests
    # and thought-length buckets made from them are read from the kept summary; a new comparison cannot be made
    for run in ("fmt-label-only-s42", "fmt-thought-first-s42"):
        for predictions in (results / run).glob("predictions_*.jsonl"):
            predictions.unlink()
    later = summarise.summarise(results, folder, output, baseline="fmt-label-only-s43")
    rows = {(row["recipe"], row["readout"]): row for row in later["formats"]["dev"]}
    generation = rows[("fmt-thought-first", "generate")]
    assert generation["seeds"] == [42, 43] and generation["accuracy"] == f"{sum(right_author) / 60:.4f} ± 0.0000"
    assert generation["difference"] == f"{(sum(right_author) - sum(right_tfidf)) / 60:.4f} ± 0.0000"
    assert generation["p_values"] == [(42, pytest.approx(p_value)), (43, pytest.approx(p_value))]
    kept = json.loads((results / summarise.KEPT_FILE).read_text())
    assert kept["length_buckets"]["fmt-thought-first-s42"] == kept["length_buckets"]["fmt-thought-first-s43"] != []
    dev_rows = {row["run"]: row for row in later["tables"]["dev"]}
    assert dev_rows["fmt-thought-first-s42"]["accuracy"] == pytest.approx(sum(right_author) / 60)
    assert dev_rows["fmt-thought-first-s42"]["mcnemar_p"] is None
    assert dev_rows["fmt-thought-first-s43"]["mcnemar_p"] == pytest.approx(p_value)
    # the weight choice: best generated accuracy, the smaller weight on a tie
    assert choose({1.0: {"generate": 0.6}, 3.0: {"generate": 0.7}, 10.0: {"generate": 0.7}}) == 3.0


def test_a_named_block_summarises_only_its_runs_and_keeps_the_others(tmp_path):
    """Runs made later go to a block of their own: the older block, whose predictions may be gone, stays."""
    from experiments import common, summarise

    results = tmp_path / "results"
    for run in ("fmt-label-only-s42", "label-only"):
        (results / run).mkdir(parents=True)
        (results / run / "predictions_dev.jsonl").write_text("")
        common.write_json(results / run / "metrics.json", {"run": run, "sets": {"dev": {"accuracy": 0.5}}})
    assert list(summarise.collect(results, tmp_path, pattern="fmt-*")) == ["fmt-label-only-s42"]
    assert set(summarise.collect(results, tmp_path)) == {"fmt-label-only-s42", "label-only"}

    output = tmp_path / "RESULTS.md"
    output.write_text(f"# R\n\n{summarise.BEGIN}\nolder runs\n{summarise.END}\n\n## Reading\nkept by hand\n")
    begin, end = summarise.markers("formats")
    summarise.write_results(output, f"{begin}\nnew\n{end}", "formats")
    summarise.write_results(output, f"{begin}\nnewer\n{end}", "formats")
    text = output.read_text()
    assert "older runs" in text and "kept by hand" in text
    assert text.count(begin) == 1 and "newer" in text and "\nnew\n" not in text
    assert text.index("kept by hand") < text.index(begin)


def test_a_runs_label_weight_comes_from_the_flag_then_the_recipe_then_the_choice(tmp_path):
    from experiments import run

    def weight_given(*flags: str, recipe: str) -> str:
        args = run.parser().parse_args([recipe, "--results", str(tmp_path), *flags])
        arguments = run.train_arguments(args, tmp_path / "data", "original", tmp_path / "out", run.RUNS[recipe])
        return arguments[arguments.index("--label_loss_weight") + 1]

    assert weight_given(recipe="fmt-label-first-weighted") == "20.0"  # fixed by the run, no choice needed
    assert weight_given("--label-weight", "5", recipe="fmt-label-first-weighted") == "5.0"
    with pytest.raises(SystemExit, match="weight-choice/choice.json missing"):
        weight_given(recipe="fmt-thought-first-weighted")
    common.write_json(tmp_path / run.WEIGHT_CHOICE, {"chosen_weight": 3.0})
    assert weight_given(recipe="fmt-thought-first-weighted") == "3.0"
    args = run.parser().parse_args(["fmt-label-first", "--results", str(tmp_path)])
    unweighted = run.train_arguments(
        args, tmp_path / "data", "original", tmp_path / "out", run.RUNS["fmt-label-first"]
    )
    assert "--label_loss_weight" not in unweighted and unweighted[unweighted.index("--completion_format") + 1] == (
        "label_first"
    )


def test_the_stance_reader_reads_which_label_an_explanation_argues_for(work, tmp_path):
    """Trained on the author's real thoughts; an explanation given with its own label agrees, the same
    explanation given with the other label does not, and the run's numbers land in the result file."""
    from experiments import explanation_agreement as agreement

    folder, _ = work
    thoughts, labels = agreement.author_thoughts(folder)
    reader, held_out = agreement.fit_stance_reader(thoughts, labels)
    assert held_out > 0.85 and len(thoughts) > 1000  # a reader worth trusting, judged on unseen thoughts
    stances = reader.predict(thoughts[:40]).tolist()
    own = [
        {"id": str(i), "thought_process": t, "predicted_label": s, "label": s}
        for i, (t, s) in enumerate(zip(thoughts, stances))
    ]
    flipped = [{**r, "predicted_label": 1 - r["predicted_label"]} for r in own]
    assert agreement.agreement(own, reader)["stance_agrees_with_label"] == 1.0
    found = agreement.agreement(flipped, reader)
    assert found["stance_agrees_with_label"] == 0.0 and (found["stance_accuracy"], found["label_accuracy"]) == (1, 0)
    assert agreement.agreement([{"id": "x", "thought_process": " ", "predicted_label": 1}], reader) is None
    with pytest.raises(SystemExit, match="run `python -m experiments.prepare_data` first"):
        agreement.author_thoughts(tmp_path / "nothing-prepared")

    results = tmp_path / "results"
    with RecordStore(results / "fmt-thought-first-s1" / "predictions_dev.jsonl") as store:
        store.append_many(read_records(folder / common.JD0G_ORIGINALS)[:30])
    output = tmp_path / "agreement.json"
    agreement.main(["--work", str(folder), "--results", str(results), "--output", str(output)])
    written = json.loads(output.read_text())
    row = written["runs"]["fmt-thought-first-s1"]
    assert row["rows"] == 30 and row["stance_agrees_with_label"] > 0.8  # the author's thoughts match their labels
    author = read_records(folder / common.JD0G_ORIGINALS)[:30]
    assert row["label_accuracy"] == round(sum(r.predicted_label == r.label for r in author) / 30, 4)
    assert written["reader_held_out_accuracy"] == pytest.approx(held_out, abs=1e-4)
    # A later reading where those predictions are gone keeps the run's entry beside the new one.
    (results / "fmt-thought-first-s1" / "predictions_dev.jsonl").rename(results / "gone.jsonl")
    with RecordStore(results / "fmt-label-first-s2" / "predictions_dev.jsonl") as store:
        store.append_many(read_records(folder / common.JD0G_ORIGINALS)[30:50])
    agreement.main(["--work", str(folder), "--results", str(results), "--output", str(output)])
    again = json.loads(output.read_text())["runs"]
    assert list(again) == ["fmt-label-first-s2", "fmt-thought-first-s1"] and again["fmt-thought-first-s1"] == row
    assert again["fmt-label-first-s2"]["rows"] == 20
