import re

import jsonschema
import pytest

from nli_cot_hub import prompts
from nli_cot_hub.chat_format import LABEL_DEFINITION
from nli_cot_hub.extract import extract_answer


def test_versions_are_distinct_and_named():
    versions = [prompts.COT_VERSION, prompts.REFLECT_VERSION, prompts.JUDGE_VERSION, prompts.HUMAN_VERSION]
    assert len(set(versions)) == 4
    assert all(re.fullmatch(r"[a-z-]+-v\d+", v) for v in versions)


@pytest.mark.parametrize("schema", [prompts.COT_SCHEMA, prompts.REFLECT_SCHEMA, prompts.JUDGE_SCHEMA])
def test_schemas_are_valid_json_schemas(schema):
    jsonschema.validators.validator_for(schema).check_schema(schema)


def test_cot_prompt_structure():
    system = prompts.COT_SYSTEM
    for heading in ("# Task", "# Labels", "# Reasoning", "# Brevity", "# Input and response", "# Examples"):
        assert heading in system
    # The label meaning is stated exactly as the fine-tuning format states it (1 covers "fits with").
    for part in LABEL_DEFINITION.rstrip(".").split(";"):
        assert part.strip() in system
    assert re.search(r"1\. Premise.*\n2\. Hypothesis.*\n3\. Verdict", system)
    assert "under 60 words" in system
    messages = prompts.cot_messages("A dog runs.", "An animal moves.")
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[1]["content"] == "<premise>A dog runs.</premise>\n<hypothesis>An animal moves.</hypothesis>"


def test_few_shot_answers_parse_match_the_schema_and_cover_both_labels():
    answers = re.findall(r"<response>(.*?)</response>", prompts.COT_SYSTEM)
    labels = []
    for answer in answers:
        extraction = extract_answer(answer)
        assert extraction.status == "ok"
        jsonschema.validate(extraction.fields, prompts.COT_SCHEMA)
        labels.append(extraction.label)
    assert sorted(labels) == [0, 1]


def test_echoed_examples_are_never_taken_for_a_usable_answer():
    messages = prompts.cot_messages("A man sleeps.", "A man is awake.")
    echo = prompts.COT_SYSTEM  # a small model may repeat its instructions and stop
    extraction = extract_answer(echo, prompt=prompts.prompt_text(messages))
    # Not ok/repaired, so the engine re-asks instead of storing a few-shot example as the answer.
    assert extraction.status in ("label-only", "failed")
    assert extraction.thought is None


def test_reflection_prompt_carries_the_original_and_the_true_label():
    messages = prompts.reflect_messages("P.", "H.", "1. wrong.", 1, 0)
    user = messages[1]["content"]
    assert "<original_thought>1. wrong.</original_thought>" in user
    assert "<original_label>1</original_label>" in user
    assert "<correct_label>0</correct_label>" in user
    unreadable = prompts.reflect_messages("P.", "H.", None, None, 1)[1]["content"]
    assert "(no reasoning was given)" in unreadable and "could not be read" in unreadable
    assert "error_analysis" in messages[0]["content"] and "improved_thought_process" in messages[0]["content"]


def test_judge_prompt_asks_for_every_score():
    system = prompts.JUDGE_SYSTEM
    for score in prompts.JUDGE_SCORES:
        assert f"- {score}:" in system
        assert score in prompts.JUDGE_SCHEMA["required"]
    user = prompts.judge_messages("P.", "H.", "T.", None, None)[1]["content"]
    assert "<predicted_label>none</predicted_label>" in user and "<correct_label>unknown</correct_label>" in user


def test_reflection_schema_admits_only_the_true_label():
    schema = prompts.reflect_schema(0)
    jsonschema.validate({"error_analysis": "a", "improved_thought_process": "b", "predicted_label": 0}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"error_analysis": "a", "improved_thought_process": "b", "predicted_label": 1}, schema)
    assert prompts.REFLECT_SCHEMA["properties"]["predicted_label"]["enum"] == [0, 1]  # the shared one is untouched
