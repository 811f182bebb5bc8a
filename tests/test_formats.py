"""Completion formats (nli_cot_hub/formats.py): the answers each format writes, their schemas, the prefixes the
log-probability read-out scores, multitask's two examples per pair, and how adapter folders record a format."""

from __future__ import annotations

import json

import jsonschema
import pytest

from nli_cot_hub import formats
from nli_cot_hub.extract import extract_answer
from tests.conftest import shared

SAMPLE = "comp34812_nli_jd0g_cot/sample_thoughts.json"
THOUGHT = 'The premise says "he sleeps"; sleeping rules out being awake, so 0.'


@pytest.mark.parametrize("completion_format", formats.FORMATS)
@pytest.mark.parametrize("label", [0, 1])
def test_each_format_answers_json_the_parser_and_its_schema_accept(completion_format, label):
    text = formats.completion_text(completion_format, THOUGHT, label)
    jsonschema.validate(json.loads(text), formats.answer_schema(completion_format))
    extraction = extract_answer(text)
    assert extraction.label == label
    if completion_format in ("thought_first", "label_first"):
        assert extraction.status == "ok" and extraction.thought == THOUGHT
    else:  # the label task of multitask and label_only carry no thought
        assert extraction.status == "label-only" and extraction.thought is None
    # The schema of one format refuses another's answer where the layout differs.
    if completion_format == "label_only":
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(json.loads(text), formats.answer_schema("thought_first"))


def test_label_first_puts_the_label_before_the_explanation():
    text = formats.completion_text("label_first", THOUGHT, 1)
    assert text.index('"predicted_label"') < text.index('"explanation"')
    assert text.startswith(formats.answer_prefix("label_first") + "1")
    assert formats.completion_text("thought_first", THOUGHT, 1).startswith(
        formats.answer_prefix("thought_first", THOUGHT) + "1"
    )
    assert text.startswith(formats.explanation_prefix(1))


def test_multitask_gives_two_tagged_examples_per_pair_and_one_without_a_thought():
    examples = formats.training_examples("A man sleeps.", "A man is awake.", THOUGHT, 0, "multitask")
    assert len(examples) == 2
    label_task, explain_task = examples
    assert label_task["prompt"][1]["content"].startswith("[label] Premise: A man sleeps.")
    assert explain_task["prompt"][1]["content"].startswith("[explain] Premise: A man sleeps.")
    assert json.loads(label_task["completion"][0]["content"]) == {"predicted_label": 0}
    assert json.loads(explain_task["completion"][0]["content"]) == {"explanation": THOUGHT}
    jsonschema.validate({"explanation": THOUGHT}, formats.answer_schema("multitask", "explain"))
    assert len(formats.training_examples("A man sleeps.", "A man is awake.", "", 0, "multitask")) == 1


def test_multitask_on_real_rows_doubles_the_rows_with_thoughts():
    from datasets import load_dataset

    from nli_cot_hub.train.data import build_examples

    raw = load_dataset("json", data_files=str(shared(SAMPLE)), split="train")
    single = build_examples(raw, "sample", "train", "label_first").examples
    double = build_examples(raw, "sample", "train", "multitask").examples
    assert len(double) == 2 * len(single)
    tags = [example["prompt"][1]["content"].split("]")[0] for example in double]
    assert tags.count("[label") == tags.count("[explain") == len(single)


def test_thought_first_is_todays_format_word_for_word():
    from nli_cot_hub.chat_format import prompt_messages, training_example

    old = training_example("A dog runs.", "An animal moves.", THOUGHT, 1)
    assert formats.training_examples("A dog runs.", "An animal moves.", THOUGHT, 1) == [old]
    assert formats.prompt_messages("A dog runs.", "An animal moves.") == prompt_messages(
        "A dog runs.", "An animal moves."
    )


def test_unknown_format_and_task_are_refused():
    with pytest.raises(formats.FormatError, match="unknown completion format 'cot'"):
        formats.completion_text("cot", THOUGHT, 1)
    with pytest.raises(formats.FormatError, match="unknown task"):
        formats.prompt_messages("a", "b", "multitask", "summarise")


def test_adapter_folders_record_their_format_and_old_ones_read_as_thought_first(tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    (old / "adapter_config.json").write_text("{}")
    assert formats.read_format(old) == "thought_first"
    assert formats.read_format(tmp_path / "missing") is None
    new = tmp_path / "new"
    formats.write_format(new, "label_first", 5.0)
    assert formats.read_format(new) == "label_first"
    assert json.loads((new / formats.FORMAT_FILE).read_text())["label_loss_weight"] == 5.0
    recipe_only = tmp_path / "recipe"
    recipe_only.mkdir()
    (recipe_only / "recipe_resolved.yaml").write_text("script:\n  completion_format: multitask\n")
    assert formats.read_format(recipe_only) == "multitask"
    assert formats.resolve_format(None, None, new) == "label_first"
    assert formats.resolve_format("label_only", new) == "label_only"
    assert formats.resolve_format(None, tmp_path / "missing") == "thought_first"
    (new / formats.FORMAT_FILE).write_text('{"completion_format": "cot"}')
    with pytest.raises(formats.FormatError, match=r"completion_format.json: field 'completion_format'"):
        formats.read_format(new)


def test_predict_names_an_unreadable_recorded_format_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from nli_cot_hub.cli import build_app

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / formats.FORMAT_FILE).write_text('{"completion_format": "cot"}')
    result = CliRunner().invoke(
        build_app(),
        [
            "predict",
            str(shared("comp34812_nli/trial_jd0g.csv")),
            "--limit",
            "1",
            "--adapter",
            str(adapter),
            "-o",
            str(tmp_path / "p.jsonl"),
        ],
    )
    assert result.exit_code == 2
    assert "completion_format.json: field 'completion_format': unknown completion format 'cot'" in result.output
    bad = CliRunner().invoke(
        build_app(),
        [
            "predict",
            str(shared("comp34812_nli/trial_jd0g.csv")),
            "--completion-format",
            "cot",
            "-o",
            str(tmp_path / "q.jsonl"),
        ],
    )
    assert bad.exit_code == 2 and "--completion-format must be one of thought_first" in bad.output
    assert "not 'cot'" in bad.output
