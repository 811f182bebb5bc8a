import json

import pytest
from typer.testing import CliRunner

from nli_cot_hub.cli import build_app
from nli_cot_hub.records import CoTRecord
from nli_cot_hub.report import evaluate_files, length_buckets, mcnemar
from tests.conftest import shared

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _write(path, records):
    path.write_text("".join(r.model_dump_json() + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def mistral_rows():
    """open-mistral-7b's real CoT answers on 100 coursework pairs, with the data set's own `correct` column."""
    path = shared("comp34812_nli_jd0g_cot/sample_thoughts.json")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _mistral_records(rows, with_gold=True):
    return [
        CoTRecord(
            id=str(r["id"]),
            premise=r["premise"],
            hypothesis=r["hypothesis"],
            label=r["true_label"] if with_gold else None,
            thought_process=r["thought_process"],
            predicted_label=r["predicted_label"],
            model="open-mistral-7b",
            status="ok",
        )
        for r in rows
    ]


def test_mcnemar_exact_and_chi_square():
    # b = 1 (only A right), c = 5: exact two-sided binomial p = 2 * (C(6,0) + C(6,1)) / 2^6 = 14/64.
    a = [True] + [False] * 5 + [True] * 4
    b = [False] + [True] * 5 + [True] * 4
    exact = mcnemar(a, b)
    assert (exact["only_a_right"], exact["only_b_right"], exact["test"]) == (1, 5, "exact binomial")
    assert exact["p_value"] == pytest.approx(14 / 64)
    # b = 30, c = 10: statistic (|30 - 10| - 1)^2 / 40 = 9.025; chi-square(1) tail 0.002663.
    a = [True] * 30 + [False] * 10
    b = [False] * 30 + [True] * 10
    chi = mcnemar(a, b)
    assert chi["statistic"] == pytest.approx(9.025)
    assert chi["p_value"] == pytest.approx(0.002663, abs=2e-6)
    assert mcnemar([True, False], [True, False])["p_value"] == 1.0


def test_length_buckets_count_and_score():
    records = [
        CoTRecord(
            id=str(i),
            premise="p",
            hypothesis="h",
            label=1,
            predicted_label=pred,
            thought_process=" ".join(["w"] * words) if words else None,
        )
        for i, (words, pred) in enumerate([(5, 1), (10, 0), (25, 1), (0, 1), (130, 0)])
    ]
    assert length_buckets(records, None) == [
        {"bucket": "no thought", "rows": 1, "accuracy": 1.0},
        {"bucket": "0-19", "rows": 2, "accuracy": 0.5},
        {"bucket": "20-39", "rows": 1, "accuracy": 1.0},
        {"bucket": "120+", "rows": 1, "accuracy": 0.0},
    ]


def test_report_on_real_mistral_answers_against_self_consistency(mistral_rows, tmp_path):
    mistral = _mistral_records(mistral_rows)
    # A hand-made self-consistency run on the same pairs: 3 votes each; on the first 40 pairs all
    # three votes go against gold, elsewhere two of three agree with gold.
    sampled = []
    for index, r in enumerate(mistral_rows):
        gold = r["true_label"]
        votes = [1 - gold] * 3 if index < 40 else [gold, gold, 1 - gold]
        sampled.append(
            CoTRecord(
                id=str(r["id"]),
                premise=r["premise"],
                hypothesis=r["hypothesis"],
                label=gold,
                thought_process="one two three",
                predicted_label=votes[0],
                votes=votes,
                vote_share=1.0 if index < 40 else round(2 / 3, 4),
                status="repaired",
            )
        )
    files = [_write(tmp_path / "mistral.jsonl", mistral), _write(tmp_path / "sc.jsonl", sampled)]
    out = tmp_path / "eval"
    summary = evaluate_files([str(f) for f in files], out, worst=5)

    expected_accuracy = sum(r["correct"] for r in mistral_rows) / len(mistral_rows)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["models"]["mistral"]["accuracy"] == pytest.approx(expected_accuracy)
    assert metrics["models"]["mistral"]["rows"] == 100
    assert metrics["models"]["sc"]["accuracy"] == pytest.approx(0.6)
    assert metrics["models"]["sc"]["status_counts"]["repaired"] == 100
    assert metrics["models"]["sc"]["mean_thought_words"] == 3
    assert metrics["models"]["sc"]["mean_vote_share"] == pytest.approx((40 * 1.0 + 60 * 0.6667) / 100, abs=1e-3)

    comparison = metrics["comparisons"][0]
    right_a = [r["correct"] for r in mistral_rows]
    right_b = [i >= 40 for i in range(100)]
    assert comparison["only_a_right"] == sum(a and not b for a, b in zip(right_a, right_b))
    assert comparison["only_b_right"] == sum(b and not a for a, b in zip(right_a, right_b))
    assert 0 <= comparison["p_value"] <= 1

    # Audit: mistral's label and all three samples stand against gold -> flagged.
    flagged = {json.loads(line)["id"] for line in (out / "label_audit.jsonl").read_text().splitlines()}
    expected = {str(r["id"]) for i, r in enumerate(mistral_rows) if i < 40 and not r["correct"]}
    assert flagged == expected and summary["audit"]["flagged"] == len(expected)
    assert (out / "label_audit.csv").read_text().splitlines()[0].endswith("review_label")

    report = (out / "report.md").read_text()
    for name in ("mistral", "sc"):
        for kind in ("confusion", "length", "labels", "status"):
            png = out / f"{name}_{kind}.png"
            assert png.read_bytes()[:8] == PNG_MAGIC
            assert f"({png.name})" in report
    assert "Worst errors (5)" in report and "McNemar" in report


def test_cli_evaluate_with_separate_gold_file(mistral_rows, tmp_path):
    import pandas as pd

    predictions = _write(tmp_path / "p.jsonl", _mistral_records(mistral_rows, with_gold=False))
    gold = tmp_path / "gold.csv"
    pd.DataFrame(
        {
            "id": [r["id"] for r in mistral_rows],
            "premise": [r["premise"] for r in mistral_rows],
            "hypothesis": [r["hypothesis"] for r in mistral_rows],
            "label": [r["true_label"] for r in mistral_rows],
        }
    ).to_csv(gold, index=False)
    result = CliRunner().invoke(
        build_app(),
        [
            "evaluate",
            str(predictions),
            "--gold",
            str(gold),
            "--id-col",
            "id",
            "--names",
            "mistral-7b",
            "-o",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())["models"]["mistral-7b"]
    assert metrics["accuracy"] == pytest.approx(sum(r["correct"] for r in mistral_rows) / 100)
    assert "mistral-7b: accuracy" in result.output

    missing = CliRunner().invoke(build_app(), ["evaluate", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "x")])
    assert missing.exit_code == 2 and "nope.jsonl" in missing.output


def test_evaluate_adds_probability_metrics_and_a_reliability_diagram(mistral_rows, tmp_path):
    """p(label = 1) from a TF-IDF model fitted on real dev rows, on the author's 100 real pairs; a store written
    before the field existed (no p_label_1 key) still loads and gets no probability metrics."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from nli_cot_hub.data import load_pairs

    dev = load_pairs(shared("comp34812_nli/dev_jd0g.csv")).iloc[:800]
    vectoriser = TfidfVectorizer(ngram_range=(1, 2), min_df=2).fit(dev["premise"] + " " + dev["hypothesis"])
    model = LogisticRegression(max_iter=1000).fit(
        vectoriser.transform(dev["premise"] + " " + dev["hypothesis"]), dev["label"].astype(int)
    )
    p_one = model.predict_proba(vectoriser.transform([r["premise"] + " " + r["hypothesis"] for r in mistral_rows]))[
        :, 1
    ]
    records = [
        record.model_copy(update={"predicted_label": int(p >= 0.5), "p_label_1": float(p)})
        for record, p in zip(_mistral_records(mistral_rows), p_one)
    ]
    with_p = _write(tmp_path / "tfidf.jsonl", records)
    old_lines = [json.loads(r.model_dump_json()) for r in _mistral_records(mistral_rows)]
    for line in old_lines:
        del line["p_label_1"]
    old = tmp_path / "old.jsonl"
    old.write_text("".join(json.dumps(line) + "\n" for line in old_lines), encoding="utf-8")

    result = CliRunner().invoke(
        build_app(), ["evaluate", str(with_p), str(old), "--threshold", "0.55", "-o", str(tmp_path / "out")]
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())["models"]
    gold = [r["true_label"] for r in mistral_rows]
    assert metrics["tfidf"]["roc_auc"] == pytest.approx(roc_auc_score(gold, p_one))
    assert metrics["tfidf"]["accuracy_at_threshold"] == pytest.approx(
        sum(int(p >= 0.55) == g for p, g in zip(p_one, gold)) / 100
    )
    assert metrics["tfidf"]["threshold"] == 0.55 and "ece" not in metrics["old"]
    assert (tmp_path / "out" / "tfidf_reliability.png").read_bytes().startswith(PNG_MAGIC)
    assert not (tmp_path / "out" / "old_reliability.png").exists()
    report = (tmp_path / "out" / "report.md").read_text()
    assert "![reliability diagram](tfidf_reliability.png)" in report and "ROC-AUC" in result.output


def _evaluate(*arguments):
    result = CliRunner().invoke(build_app(), ["evaluate", *map(str, arguments)])
    assert "Traceback" not in result.output
    return result


def _error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.output
    return lines[0]


def _gold_csv(path, rows):
    import pandas as pd

    pd.DataFrame(
        {
            "id": [r["id"] for r in rows],
            "premise": [r["premise"] for r in rows],
            "hypothesis": [r["hypothesis"] for r in rows],
            "label": [r["true_label"] for r in rows],
        }
    ).to_csv(path, index=False)
    return path


def test_evaluate_refuses_what_it_cannot_score_honestly(mistral_rows, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    unlabelled = _write(tmp_path / "unlabelled.jsonl", _mistral_records(mistral_rows[:10], with_gold=False))
    reflections = _write(
        tmp_path / "reflected.jsonl",
        [
            r.model_copy(update={"source": "reflected", "predicted_label": r.label})
            for r in _mistral_records(mistral_rows[:10])
        ],
    )
    header_only = tmp_path / "gold.csv"
    header_only.write_text("id,premise,hypothesis,label\n")
    cases = [
        ([empty], "no records to score"),
        ([unlabelled], "none of its 10 records has a gold label; pass --gold"),
        ([reflections], "label is the gold label by construction"),
        ([unlabelled, "--gold", header_only, "--id-col", "id"], "no data rows"),
    ]
    for arguments, message in cases:
        result = _evaluate(*arguments, "-o", tmp_path / "out")
        assert result.exit_code == 2, result.output
        assert message in _error_line(result)
    assert not (tmp_path / "out").exists()


def test_evaluate_checks_that_gold_ids_mean_the_same_pairs(mistral_rows, tmp_path):
    predictions = _write(tmp_path / "p.jsonl", _mistral_records(mistral_rows[:20], with_gold=False))
    # Another data set whose ids happen to be the same: its pairs differ.
    shuffled = [dict(row, id=other["id"]) for row, other in zip(mistral_rows[20:40], mistral_rows[:20])]
    unrelated = _gold_csv(tmp_path / "unrelated.csv", shuffled)
    result = _evaluate(predictions, "--gold", unrelated, "--id-col", "id", "-o", tmp_path / "out")
    assert result.exit_code == 2 and "is another pair than in" in _error_line(result)


def test_evaluate_warns_when_gold_covers_only_part_of_the_predictions(mistral_rows, tmp_path):
    predictions = _write(tmp_path / "p.jsonl", _mistral_records(mistral_rows[:20], with_gold=False))
    partial = _gold_csv(tmp_path / "gold.csv", mistral_rows[:15])
    result = _evaluate(predictions, "--gold", partial, "--id-col", "id", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "warning: --gold" in said and "no label for 5 of the 20 records" in said
    summary = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert summary["models"]["p"]["rows"] == 15 and summary["warnings"]


def test_evaluate_reads_a_yaml_config_and_a_flag_overrides_it(mistral_rows, tmp_path):
    import yaml

    first = _write(tmp_path / "a.jsonl", _mistral_records(mistral_rows[:30]))
    second = _write(tmp_path / "b.jsonl", _mistral_records(mistral_rows[30:60]))
    config_file = tmp_path / "evaluate.yaml"
    config_file.write_text(
        yaml.safe_dump(
            {
                "predictions": [str(first), str(second)],
                "names": "one,two",
                "output-dir": str(tmp_path / "out"),
                "worst": 3,
            }
        )
    )
    result = _evaluate("--config", config_file, "--names", "first,second")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert list(summary["models"]) == ["first", "second"] and summary["models"]["first"]["rows"] == 30
    assert "Worst errors (3)" in (tmp_path / "out" / "report.md").read_text()
    said = " ".join(result.output.split())
    assert "first: accuracy" in said and "McNemar first vs second" in said and "audit: " in said

    mismatch = _evaluate("--config", config_file, "--names", "only-one")
    assert mismatch.exit_code == 2 and "--names: 1 names for 2 files" in _error_line(mismatch)


def test_run_evaluate_takes_a_config_object(mistral_rows, tmp_path):
    from nli_cot_hub.report import EvaluateConfig, run_evaluate

    predictions = _write(tmp_path / "p.jsonl", _mistral_records(mistral_rows[:20], with_gold=False))
    gold = _gold_csv(tmp_path / "gold.csv", mistral_rows[:20])
    summary = run_evaluate(
        EvaluateConfig(
            predictions=str(predictions), gold=str(gold), id_col="id", unparsed="0", output_dir=str(tmp_path / "out")
        )
    )
    assert summary["unparsed"] == 0 and summary["threshold"] == 0.5 and summary["models"]["p"]["rows"] == 20
    assert summary["report"] == str(tmp_path / "out" / "report.md")
    with pytest.raises(ValueError, match="--output-dir .* is an input"):
        run_evaluate(EvaluateConfig(predictions=[str(predictions)], output_dir=str(predictions)))
