import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nli_cot_hub.extract import extract_answer, parse_label
from tests.conftest import shared

COT = "comp34812_nli_jd0g_cot"


def _json_lines(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def thoughts():
    return _json_lines(shared(f"{COT}/sample_thoughts.json"))


def _answer(row) -> str:
    return json.dumps({"thought_process": row["thought_process"], "predicted_label": row["predicted_label"]})


def test_real_finetune_transcripts_give_the_assistant_answer():
    rows = _json_lines(shared(f"{COT}/sample_ft.jsonl"))
    assert len(rows) == 100
    for row in rows:
        completion = row["text"].rsplit("[/INST]", 1)[1].replace("</s>", "").strip()
        expected = json.loads(completion)
        result = extract_answer(row["text"])
        assert result.label == expected["predicted_label"], row["id"]
        assert result.thought == expected["thought_process"].strip()
        assert result.status == "repaired"
        assert "[/INST]" in result.reason
        # The completion on its own is clean JSON.
        assert extract_answer(completion).status == "ok"


def test_real_thoughts_round_trip_as_ok(thoughts):
    for row in thoughts:
        result = extract_answer(_answer(row))
        assert (result.label, result.status, result.reason) == (row["predicted_label"], "ok", None)
        assert result.thought == row["thought_process"].strip()


def test_real_reflections_expose_all_fields():
    rows = _json_lines(shared(f"{COT}/sample_reflections.json"))
    for row in rows:
        text = json.dumps(
            {k: row[k] for k in ("thought_process", "predicted_label", "error_analysis", "improved_thought_process")}
        )
        result = extract_answer(text)
        assert result.status == "ok"
        assert result.fields["error_analysis"] == row["error_analysis"]
        assert result.fields["improved_thought_process"] == row["improved_thought_process"]


def _system_prompt(row) -> str:
    return row["chat_history"][0]["content"]


def test_answer_after_few_shot_echo_is_the_models_own(thoughts):
    # The real system prompt's few-shot example answers 1; rows whose answer is 0 show which was taken.
    zero_rows = [row for row in thoughts if row["predicted_label"] == 0][:20]
    assert zero_rows
    for row in zero_rows:
        echoed = _system_prompt(row) + "\n" + row["chat_history"][1]["content"] + "\n" + _answer(row)
        result = extract_answer(echoed)
        assert result.label == 0
        assert result.thought == row["thought_process"].strip()


def test_never_takes_the_label_of_a_few_shot_example(thoughts):
    row = thoughts[0]
    truncated_answer = _answer(row)[:60]
    echoed = _system_prompt(row) + "\n" + truncated_answer
    for result in (extract_answer(echoed), extract_answer(echoed, prompt=_system_prompt(row))):
        assert result.label is None
        assert result.status == "failed"
    # Only the echoed prompt, no answer at all: with the prompt known, nothing is taken from it.
    assert extract_answer(_system_prompt(row), prompt=_system_prompt(row)).label is None


@pytest.mark.parametrize(
    "make_text, status",
    [
        (lambda a: f"```json\n{a}\n```", "ok"),
        (lambda a: f"Here is my analysis.\n{a}\nI hope this helps!", "repaired"),
        (lambda a: a + " </s>" + " <pad>" * 50, "repaired"),
        (lambda a: a + "<|im_end|>" + "\nassistant\n" * 20 + a[:40], "repaired"),
        (lambda a: (a + "\n") * 3 + a[:50], "repaired"),
        (lambda a: a.replace('"', "'"), "repaired"),
        (lambda a: a.replace("}", ",}"), "repaired"),
        (lambda a: a.replace("step 2", 'step "2"\n'), "repaired"),
        (lambda a: a.replace('"predicted_label"', '"Predicted Label"'), "ok"),
    ],
)
def test_corrupted_real_answers(thoughts, make_text, status):
    for row in thoughts[:25]:
        result = extract_answer(make_text(_answer(row)))
        assert result.label == row["predicted_label"]
        assert result.status == status
        assert result.thought and "step 1" in result.thought.lower()


def test_truncated_answer_keeps_the_thought_but_no_label(thoughts):
    text = _answer(thoughts[3])
    result = extract_answer(text[: text.index('"predicted_label"') - 3])
    assert result.label is None and result.status == "failed"
    assert result.thought.startswith("step 1")
    assert "no label" in result.reason


@pytest.mark.parametrize(
    "value, label",
    [
        (1, 1),
        (0, 0),
        (1.0, 1),
        (0.0, 0),
        ("1", 1),
        ("0", 0),
        ("1.0", 1),
        (True, 1),
        (False, 0),
        ("Entailment", 1),
        ("ENTAILED", 1),
        ("no entailment", 0),
        ("Not Entailed", 0),
        ("not_entailment", 0),
        ("non-entailment", 0),
        ("contradiction", 0),
        ("Neutral", 1),
        ("1 (entailment)", 1),
        ("0 - no entailment", 0),
        ("<0 for no entailment, 1 for entailment>", None),
        (2, None),
        ("", None),
        (None, None),
        ("maybe", None),
        ([1], 1),
        ({"x": 1}, None),
    ],
)
def test_label_values(value, label):
    assert parse_label(value) == label
    text = json.dumps({"thought_process": "t", "predicted_label": value})
    assert extract_answer(text).label == label


def test_neutral_policy_is_configurable():
    assert parse_label("neutral", neutral=0) == 0
    assert extract_answer('{"thought": "t", "label": "neutral"}', neutral=0).label == 0


@pytest.mark.parametrize(
    "text, label",
    [
        ("The predicted label is: no entailment.", 0),
        ("Final answer = 1", 1),
        ("**Label:** entailment", 1),
    ],
)
def test_label_in_prose_is_label_only(text, label):
    result = extract_answer(text)
    assert (result.label, result.status, result.thought) == (label, "label-only", None)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_never_raises_on_any_text(text):
    result = extract_answer(text)
    assert result.status in ("ok", "repaired", "label-only", "failed")
    assert result.label in (0, 1, None)


_json_noise = st.text(alphabet=st.sampled_from(list("{}[]\"',:0123456789 \nabcxyz_-")), max_size=120)


@settings(max_examples=300, deadline=None)
@given(_json_noise)
def test_never_raises_on_json_like_noise(text):
    assert extract_answer(text).label in (0, 1, None)


_prose = st.text(alphabet=st.sampled_from(list("abcdfghkmpqrsuvwxyz .,!?\n")), max_size=80)


@settings(max_examples=200, deadline=None)
@given(before=_prose, after=_prose, label=st.sampled_from([0, 1]), thought=_prose.filter(str.strip))
def test_answer_in_prose_keeps_its_label(before, after, label, thought):
    text = before + json.dumps({"thought_process": thought, "predicted_label": label}) + after
    result = extract_answer(text)
    assert result.label == label
    assert result.thought == thought.strip()


@settings(max_examples=200, deadline=None)
@given(junk=_prose, cut=st.integers(min_value=1, max_value=30), fewshot_label=st.sampled_from([0, 1]))
def test_truncated_answer_after_few_shot_never_borrows_its_label(junk, cut, fewshot_label):
    few_shot = json.dumps({"thought_process": "Step 1: the dog chases the cat.", "predicted_label": fewshot_label})
    prompt = f"Example:\n<response>\n{few_shot}\n</response>\n"
    answer_start = '{"thought_process": "Step 1: ' + junk
    text = prompt + answer_start[: len('{"thought_process": ') + cut]
    assert extract_answer(text).label is None
    assert extract_answer(text, prompt=prompt).label is None


# No digits, no braces, and no "e" or "l": no label word, key or JSON can appear, so no label may come out.
_labelless = st.text(
    alphabet=st.characters(blacklist_categories=("Nd", "Cs"), blacklist_characters="{}[]eElL0123456789"), max_size=200
)


@settings(max_examples=300, deadline=None)
@given(_labelless)
def test_never_invents_a_label_from_text_without_one(text):
    result = extract_answer(text)
    assert result.label is None and result.status == "failed"


# What a model that keeps going writes after its answer: prose, a second answer cut anywhere, the
# start of the pair again, a repetition of its own answer with another label.
def _continuations(answer_label: int):
    other = json.dumps(
        {"thought_process": "Step 1: the second try says otherwise.", "predicted_label": 1 - answer_label}
    )
    cut_other = st.integers(min_value=1, max_value=len(other) - 1).map(lambda n: other[:n])
    premise = st.sampled_from(
        [
            '{"premise": "A man',
            '{"thought_process": "',
            "{",
            '{"predicted_label": ',
            '\n{"thought_process": "Step 1: a dog runs',
            '<|im_start|>user\n{"premise": ',
        ]
    )
    return st.lists(st.one_of(_prose, cut_other, premise, st.just(other)), min_size=1, max_size=3).map("".join)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), label=st.sampled_from([0, 1]), thought=_prose.filter(str.strip))
def test_first_complete_answer_wins_over_what_follows(data, label, thought):
    answer = json.dumps({"thought_process": thought, "predicted_label": label})
    text = answer + data.draw(_continuations(label))
    result = extract_answer(text)
    assert result.label == label
    assert result.thought == thought.strip()
    assert result.status in ("ok", "repaired")


def test_real_answers_followed_by_the_start_of_another_object(thoughts):
    for row in thoughts[:25]:
        text = _answer(row) + '\n{"thought_process": "Step 1: ' + row["thought_process"][:30]
        result = extract_answer(text, prompt="Premise and hypothesis")
        assert (result.label, result.thought) == (row["predicted_label"], row["thought_process"].strip())


def test_answer_of_another_schema_keeps_its_fields():
    judgement = {"analysis": "The thought is sound.", "coherence": 4, "correctness": 5, "brevity": 3}
    for text in (
        json.dumps(judgement),
        json.dumps(judgement) + ' {"analysis": "The',
        "Sure:\n" + json.dumps(judgement),
    ):
        result = extract_answer(text)
        assert result.label is None
        assert result.fields == judgement


def test_a_whole_json_answer_without_label_keeps_its_fields():
    """A judgement (no label, no thought) is not an answer to parse for a label, but its fields
    are returned so that the judge stage can check them."""
    judgement = '{"analysis": "Clear steps.", "coherence": 4, "correctness": 5, "brevity": 3}'
    result = extract_answer(judgement)
    assert result.label is None and result.status == "failed"
    assert result.fields == {"analysis": "Clear steps.", "coherence": 4, "correctness": 5, "brevity": 3}
