import json

import pytest

from nli_cot_hub.chat_format import completion_text, prompt_messages, training_example


def test_training_example_shape_and_json_completion():
    example = training_example("A man sleeps.", "A person rests.", "Sleeping is resting.", 1)
    assert [m["role"] for m in example["prompt"]] == ["system", "user"]
    assert "Premise: A man sleeps." in example["prompt"][1]["content"]
    answer = json.loads(example["completion"][0]["content"])
    assert answer == {"thought_process": "Sleeping is resting.", "predicted_label": 1}
    assert example["prompt"] == prompt_messages("A man sleeps.", "A person rests.")


def test_completion_rejects_bad_label():
    with pytest.raises(ValueError):
        completion_text("x", 2)
