"""`nli-cot lengths` on a data set built from the author's real artifacts, with the embedded model's tokenizer."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from nli_cot_hub.build import build_dataset, import_artifacts, write_local
from nli_cot_hub.dataset_card import CardInfo, render_card
from nli_cot_hub.lengths import load_rows, measure, recommend_max_length
from tests.conftest import shared


@pytest.fixture(autouse=True)
def private_datasets_cache(tmp_path_factory, monkeypatch):
    import datasets.config

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path_factory.getbasetemp() / "datasets_cache")


@pytest.fixture(scope="module")
def built_dir(tmp_path_factory) -> str:
    built = build_dataset(import_artifacts(shared("comp34812_nli_jd0g_cot")))
    out = tmp_path_factory.mktemp("built")
    write_local(built, out, render_card(built, CardInfo()))
    return str(out)


def test_recommendation_covers_the_quantile_and_counts_truncation():
    lengths = np.array(list(range(100, 200)) + [900])
    recommended, truncated = recommend_max_length(lengths, 0.99, 64)
    assert recommended % 64 == 0 and recommended >= np.quantile(lengths, 0.99)
    assert truncated == int((lengths > recommended).sum()) == 1
    assert recommend_max_length(lengths, 1.0, 64) == (960, 0)
    with pytest.raises(ValueError):
        recommend_max_length(lengths, 0, 64)


def test_lengths_match_the_tokenizer_and_accuracy_buckets_add_up(built_dir, embedded_model_path):
    from nli_cot_hub.train.model import load_tokenizer

    tokenizer = load_tokenizer(embedded_model_path)
    combined = load_rows(built_dir, "combined", "train")
    report = measure(combined, embedded_model_path)
    assert len(report.lengths) == len(combined) and report.left_out == 0
    for i in (0, 7, len(combined) - 1):
        row = combined[i]
        ids = tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=True, return_dict=True)[
            "input_ids"
        ]
        assert report.lengths[i] == len(ids)
    assert report.longest[1] == report.lengths.max() and report.accuracy_by_bucket == []

    original = load_rows(built_dir, "original", "all")
    assert len(original) == 100
    buckets = measure(original, embedded_model_path).accuracy_by_bucket
    assert sum(b["count"] for b in buckets) == 100
    overall = np.mean([p == g for p, g in zip(original["predicted_label"], original["label"])])
    assert sum(b["accuracy"] * b["count"] for b in buckets) / 100 == pytest.approx(overall)


@pytest.mark.parametrize("completion_format", ["thought_first", "multitask"])
def test_lengths_measure_the_very_examples_training_builds(built_dir, embedded_model_path, completion_format):
    """On the flat ``original`` config, where some of the author's thoughts reached the other label: `nli-cot
    lengths` and training build the same examples, in the same order, with the gold label, leaving out the
    same rows."""
    from nli_cot_hub.train.configs import NliScriptArguments
    from nli_cot_hub.train.data import prepare_splits, token_lengths
    from nli_cot_hub.train.model import load_tokenizer

    rows = load_rows(built_dir, "original", "train")
    wrong = [row for row in rows if row["predicted_label"] is not None and row["predicted_label"] != row["label"]]
    assert wrong  # the case where the two used to disagree: the predicted label is not the gold one

    report = measure(rows, embedded_model_path, completion_format=completion_format)
    script = NliScriptArguments(dataset_name=built_dir, dataset_config="original", completion_format=completion_format)
    trained, _ = prepare_splits(script, seed=0, want_eval=False)
    assert report.lengths.tolist() == token_lengths(trained, load_tokenizer(embedded_model_path))
    assert report.left_out == len(wrong)
    assert not {row["id"] for row in wrong} & set(report.ids)

    if completion_format == "thought_first":  # one example per kept row, in order: the gold label, the row's thought
        kept = [row for row in rows if row not in wrong]
        assert len(kept) == len(trained)
        for row, example in zip(kept, trained):
            answer = json.loads(example["completion"][0]["content"])
            assert (answer["predicted_label"], answer["thought_process"]) == (
                row["label"],
                row["thought_process"] or "",
            )


def test_cli_prints_a_recommendation_and_writes_the_png(built_dir, tmp_path):
    from nli_cot_hub.cli import app, build_app

    build_app()
    png = tmp_path / "lengths.png"
    result = CliRunner().invoke(
        app,
        [
            "lengths",
            built_dir,
            "--tokenizer",
            "embedded",
            "--dataset-config",
            "original",
            "--split",
            "all",
            "--png",
            str(png),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "recommended max_length:" in result.output and "accuracy by thought length" in result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    missing = CliRunner().invoke(app, ["lengths", built_dir, "--dataset-config", "combined", "--split", "dev"])
    assert missing.exit_code == 2 and "no split 'dev'" in missing.output


def _lengths(*arguments):
    from nli_cot_hub.cli import build_app

    result = CliRunner().invoke(build_app(), ["lengths", *map(str, arguments)], env={"HF_HUB_OFFLINE": "1"})
    assert "Traceback" not in result.output
    return result


def test_cli_refuses_what_is_not_a_built_data_set_in_one_line(built_dir, tmp_path):
    store = tmp_path / "cot.jsonl"
    store.write_text('{"id": "0", "premise": "A man sleeps.", "hypothesis": "A man rests."}\n')
    cases = [
        ([tmp_path / "missing" / "build"], "no such folder"),
        ([shared("comp34812_nli/trial_jd0g.csv")], "is a file"),
        ([store], "is a file"),
        ([built_dir, "--tokenizer", tmp_path / "no-tokenizer"], "no-tokenizer"),
    ]
    for arguments, message in cases:
        result = _lengths(*arguments, "--png", tmp_path / "h.png")
        assert result.exit_code == 2, (arguments, result.output)
        assert message in result.output and result.output.count("error: ") == 1
    for option, value in (("--quantile", 5), ("--quantile", 0), ("--multiple-of", 0)):
        result = _lengths(built_dir, option, value, "--png", tmp_path / "h.png")
        assert result.exit_code == 2 and option in result.output


def test_recommendation_never_exceeds_the_model_context(built_dir, embedded_model_path, tmp_path):
    import json
    import shutil
    from pathlib import Path

    short = tmp_path / "short-context-tokenizer"
    short.mkdir()
    for source in Path(embedded_model_path).iterdir():
        if source.is_file() and source.suffix != ".safetensors":
            shutil.copy(source, short / source.name)
    config = json.loads((short / "tokenizer_config.json").read_text())
    config["model_max_length"] = 128
    (short / "tokenizer_config.json").write_text(json.dumps(config))
    rows = load_rows(built_dir, "original", "train")
    report = measure(rows, str(short))
    assert report.recommended == 128 and report.context == 128 and report.wanted > 128
    assert report.truncated == int((report.lengths > 128).sum())
    result = _lengths(built_dir, "--tokenizer", short, "--dataset-config", "original", "--png", tmp_path / "h.png")
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "above the model's context of 128 tokens" in said and "recommended max_length: 128" in said


def test_lengths_from_a_yaml_config_with_a_flag_override_and_as_a_function(built_dir, tmp_path):
    from nli_cot_hub.cli import build_app
    from nli_cot_hub.lengths import LengthsConfig, LengthsResult, run_lengths

    done = run_lengths(
        LengthsConfig(
            dataset=built_dir, dataset_config="original", split="all", png=str(tmp_path / "direct.png"), multiple_of=32
        )
    )
    assert isinstance(done, LengthsResult) and len(done.report.lengths) + done.report.left_out == 100
    assert done.report.recommended % 32 == 0 and done.png == tmp_path / "direct.png" and done.png.exists()

    config = tmp_path / "lengths.yaml"
    config.write_text(f"dataset: {built_dir}\ndataset_config: original\nsplit: all\npng: {tmp_path / 'y.png'}\n")
    train_rows = len(
        run_lengths(
            LengthsConfig(dataset=built_dir, dataset_config="original", split="train", png=str(tmp_path / "t.png"))
        ).report.lengths
    )
    assert 0 < train_rows <= len(load_rows(built_dir, "original", "train"))
    result = CliRunner().invoke(build_app(), ["lengths", "--config", str(config), "--split", "train"])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert f"({train_rows} examples)" in said and f"of {train_rows}); histogram: {tmp_path / 'y.png'}" in said
