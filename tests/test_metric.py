from pathlib import Path

import pytest

import nli_cot_hub

METRIC_DIR = Path(nli_cot_hub.__file__).parent / "metrics" / "nli_cot"

# Hand-made case; the expected values below are worked out by hand in the comments.
TEXTS = [
    '{"thought_process": "one two three", "predicted_label": 1}',  # gold 1: TP, ok
    '```json\n{"thought_process": "four five", "predicted_label": 0}\n```',  # gold 1: FN, ok
    'Sure: {"thought_process": "six", "predicted_label": "entailment"} done',  # gold 0: FP, repaired
    "The label is: 0",  # gold 0: TN, label-only
    '{"thought_process": "seven eight',  # gold 0: no label, failed
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
    from importlib.metadata import distribution

    from packaging.requirements import Requirement

    lines = (METRIC_DIR / "requirements.txt").read_text(encoding="utf-8").splitlines()
    names = [Requirement(line).name for line in lines if line.strip() and not line.startswith("#")]
    # Every requirement is a published distribution (installed here from the index), none is this package.
    assert "json-repair" in names and "nli-cot-hub" not in names
    assert all(distribution(name).metadata["Name"] for name in names)
    # The parser the script imports ships beside it and is the package's own.
    assert (METRIC_DIR / "nli_cot_parser.py").read_bytes() == (METRIC_DIR.parents[1] / "extract.py").read_bytes()


def test_metric_pushed_to_a_space_loads_with_evaluate(hub_server, tmp_path):
    import uuid

    from typer.testing import CliRunner

    from nli_cot_hub.cli import build_app
    from tests.test_hub_server import run_python

    space = f"{hub_server.user}/nli_cot_{uuid.uuid4().hex[:6]}"
    result = CliRunner().invoke(build_app(), ["push-metric", space])
    assert result.exit_code == 0, result.output
    # A machine without nli-cot-hub: any import of the package fails, so the Space must carry what it needs.
    code = f"""
import sys
class NoProject:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "nli_cot_hub":
            raise ModuleNotFoundError(f"No module named {{name!r}}")
sys.meta_path.insert(0, NoProject())
import evaluate
metric = evaluate.load({space!r})
print(metric.compute(predictions={TEXTS!r}, references={GOLD!r})["accuracy"])
"""
    out = run_python(code, hub_server.env(tmp_path / "cache"))
    assert float(out.strip().splitlines()[-1]) == pytest.approx(0.4)


@pytest.fixture(scope="module")
def real_probabilities():
    """p(label = 1) of a TF-IDF + logistic regression model fitted on 600 real coursework dev rows, for the
    next 400: real, imperfectly calibrated probabilities."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from nli_cot_hub.data import load_pairs
    from tests.conftest import shared

    pairs = load_pairs(shared("comp34812_nli/dev_jd0g.csv")).iloc[:1000]
    text = (pairs["premise"] + " [SEP] " + pairs["hypothesis"]).tolist()
    gold = pairs["label"].astype(int).to_numpy()
    vectoriser = TfidfVectorizer(ngram_range=(1, 2), min_df=2).fit(text[:600])
    model = LogisticRegression(max_iter=1000).fit(vectoriser.transform(text[:600]), gold[:600])
    return model.predict_proba(vectoriser.transform(text[600:]))[:, 1], gold[600:]


def test_probability_metrics_match_sklearn_on_real_probabilities(metric, real_probabilities):
    import numpy as np
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import brier_score_loss, roc_auc_score

    p_one, gold = real_probabilities
    labels = (p_one >= 0.5).astype(int).tolist()
    result = metric.compute(predictions=labels, references=gold.tolist(), probabilities=p_one.tolist(), threshold=0.6)
    assert result["roc_auc"] == pytest.approx(roc_auc_score(gold, p_one))
    assert result["brier"] == pytest.approx(brier_score_loss(gold, p_one))
    # ECE: sklearn's reliability curve (uniform bins, empty ones left out) weighted by the rows per bin.
    share, mean_p = calibration_curve(gold, p_one, n_bins=10, strategy="uniform")
    counts = [bin["rows"] for bin in result["reliability"]]
    assert [bin["share_label_1"] for bin in result["reliability"]] == pytest.approx(share.tolist())
    assert [bin["mean_probability"] for bin in result["reliability"]] == pytest.approx(mean_p.tolist())
    assert sum(counts) == len(gold)
    assert result["ece"] == pytest.approx(float(np.sum(np.array(counts) / len(gold) * np.abs(mean_p - share))))
    assert result["accuracy_at_threshold"] == pytest.approx(float(((p_one >= 0.6) == gold).mean()))
    assert result["accuracy"] == pytest.approx(float(((p_one >= 0.5) == gold).mean()))
    assert 0.5 < result["roc_auc"] < 1 and 0 < result["ece"] < 0.5


def test_probabilities_are_optional_and_checked(metric):
    plain = metric.compute(predictions=[1, 0], references=[1, 1])
    assert "roc_auc" not in plain and "ece" not in plain
    with pytest.raises(ValueError, match="between 0 and 1"):
        metric.compute(predictions=[1, 0], references=[1, 0], probabilities=[1.2, 0.1])
    one_class = metric.compute(predictions=[1, 1], references=[1, 1], probabilities=[0.9, 0.7])
    assert one_class["roc_auc"] is None and one_class["brier"] == pytest.approx((0.01 + 0.09) / 2)


def test_no_predictions_give_the_metric_of_nothing(metric):
    result = metric.compute(predictions=[], references=[])
    assert result["scored"] == 0 and result["accuracy"] is None and result["macro_f1"] is None
    assert result["confusion_matrix"] == [[0, 0, 0], [0, 0, 0]]


def test_push_metric_from_a_yaml_config_and_as_a_function(hub_server, monkeypatch, tmp_path):
    import uuid

    import yaml
    from huggingface_hub import HfApi
    from typer.testing import CliRunner

    from nli_cot_hub.cli import build_app
    from nli_cot_hub.config import RunFailed
    from nli_cot_hub.report import PushMetricConfig, run_push_metric

    space = f"{hub_server.user}/nli_cot_{uuid.uuid4().hex[:6]}"
    config_file = tmp_path / "push.yaml"
    config_file.write_text(yaml.safe_dump({"repo_id": space}))
    result = CliRunner().invoke(build_app(), ["push-metric", "--config", str(config_file), "--private"])
    assert result.exit_code == 0, result.output
    assert f"metric pushed: evaluate.load({space!r})" in result.output
    assert HfApi().repo_info(space, repo_type="space").private
    assert run_push_metric(PushMetricConfig(repo_id=space)) == space  # an update of the same Space
    monkeypatch.setenv("HF_TOKEN", "hf_not_the_token")
    with pytest.raises(RunFailed, match=rf"^pushing the metric failed: space repo '{space}' at .*: HTTP 401: "):
        run_push_metric(PushMetricConfig(repo_id=space))
