from pathlib import Path

import pytest

import nli_cot_hub

METRIC_DIR = Path(nli_cot_hub.__file__).parent / "metrics" / "nli_cot"

# Hand-made case; the expected values below are worked out by hand in the comments.
TEXTS = [
    '{"thought_process": "one two three", "predicted_label": 1}',            # gold 1: TP, ok
    '```json\n{"thought_process": "four five", "predicted_label": 0}\n```',  # gold 1: FN, ok
    'Sure: {"thought_process": "six", "predicted_label": "entailment"} done',  # gold 0: FP, repaired
    "The label is: 0",                                                        # gold 0: TN, label-only
    '{"thought_process": "seven eight',                                       # gold 0: no label, failed
]
GOLD = [1, 1, 0, 0, 0]


@pytest.fixture(scope="module")
def metric():
    import evaluate

    return evaluate.load(str(METRIC_DIR))


def test_raw_texts_unparsed_counts_as_wrong(metric):
    result = metric.compute(predictions=TEXTS, references=GOLD)
    # Failed row becomes the opposite of gold (1): predicted 1,0,1,0,1 vs gold 1,1,0,0,0.
    # TP=1 FP=2 FN=1 TN=1 -> accuracy 2/5; precision 1/3; recall 1/2; F1 = 2pr/(p+r) = 0.4.
    # Class 0: precision 1/2, recall 1/3, F1 0.4 -> macro precision = macro recall = 5/12, macro F1 0.4.
    assert result["accuracy"] == pytest.approx(0.4)
    assert result["precision"] == pytest.approx(1 / 3)
    assert result["recall"] == pytest.approx(0.5)
    assert result["f1"] == pytest.approx(0.4)
    assert result["macro_precision"] == pytest.approx(5 / 12)
    assert result["macro_recall"] == pytest.approx(5 / 12)
    assert result["macro_f1"] == pytest.approx(0.4)
    assert result["parse_rate"] == pytest.approx(0.8)
    assert result["scored"] == 5
    assert result["status_counts"] == {"ok": 2, "repaired": 1, "label-only": 1, "failed": 1}
    # Rows gold 0/1, columns predicted 0, 1, none.
    assert result["confusion_matrix"] == [[1, 1, 1], [1, 1, 0]]
    # Thoughts of 3, 2, 1 and (truncated) 2 words.
    assert result["mean_thought_words"] == pytest.approx(2.0)


def test_unparsed_policies(metric):
    dropped = metric.compute(predictions=TEXTS, references=GOLD, unparsed="drop")
    assert (dropped["scored"], dropped["accuracy"]) == (4, pytest.approx(0.5))  # 1,0,1,0 vs 1,1,0,0
    fallback = metric.compute(predictions=TEXTS, references=GOLD, unparsed=0)
    assert fallback["accuracy"] == pytest.approx(0.6)  # failed row -> 0, which is right
    with pytest.raises(ValueError, match="unparsed"):
        metric.compute(predictions=TEXTS, references=GOLD, unparsed="ignore")


def test_label_predictions(metric):
    result = metric.compute(predictions=[1, 0, None, 1], references=[1, 1, 0, 0])
    # None -> 1 (wrong): predicted 1,0,1,1 vs gold 1,1,0,0 -> accuracy 1/4, precision 1/3, recall 1/2.
    assert result["accuracy"] == pytest.approx(0.25)
    assert result["precision"] == pytest.approx(1 / 3)
    assert result["recall"] == pytest.approx(0.5)
    assert result["status_counts"] == {"ok": 3, "repaired": 0, "label-only": 0, "failed": 1}
    assert result["confusion_matrix"] == [[0, 1, 1], [1, 1, 0]]
    assert result["mean_thought_words"] is None


def test_neutral_word_policy(metric):
    text = ['{"thought_process": "x", "predicted_label": "neutral"}']
    assert metric.compute(predictions=text, references=[1])["accuracy"] == 1.0
    assert metric.compute(predictions=text, references=[1], neutral=0)["accuracy"] == 0.0


def test_metric_card_and_requirements():
    card = (METRIC_DIR / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\n") and "\n---\n" in card[4:]
    import yaml

    header = yaml.safe_load(card.split("---\n")[1])
    assert "evaluate" in header["tags"] and header["app_file"] == "app.py"
    requirements = (METRIC_DIR / "requirements.txt").read_text(encoding="utf-8")
    assert "nli-cot-hub" in requirements and "json-repair" in requirements


def test_metric_pushed_to_a_space_loads_with_evaluate(hub_server, tmp_path):
    import uuid

    from typer.testing import CliRunner

    from nli_cot_hub.cli import build_app
    from tests.test_hub_server import run_python

    space = f"{hub_server.user}/nli_cot_{uuid.uuid4().hex[:6]}"
    result = CliRunner().invoke(build_app(), ["push-metric", space])
    assert result.exit_code == 0, result.output
    code = f"""
import evaluate
metric = evaluate.load({space!r})
print(metric.compute(predictions={TEXTS!r}, references={GOLD!r})["accuracy"])
"""
    out = run_python(code, hub_server.env(tmp_path / "cache"))
    assert float(out.strip().splitlines()[-1]) == pytest.approx(0.4)


def test_no_predictions_give_the_metric_of_nothing(metric):
    result = metric.compute(predictions=[], references=[])
    assert result["scored"] == 0 and result["accuracy"] is None and result["macro_f1"] is None
    assert result["confusion_matrix"] == [[0, 0, 0], [0, 0, 0]]
