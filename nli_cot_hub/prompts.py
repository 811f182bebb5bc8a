"""The prompts of the annotation stages, versioned: initial CoT, reflection, judging.

Each prompt has a version string stored with every record it produced (``prompt_version``), so a
changed prompt never mixes silently with old output: bump the version whenever the text changes.
Each also has the JSON schema of its answer, sent to backends that can constrain decoding.
The fine-tuning prompt lives in :mod:`nli_cot_hub.chat_format` (training and inference share it).
"""

from __future__ import annotations

import json

from nli_cot_hub.chat_format import LABEL_DEFINITION

COT_VERSION = "cot-v1"
REFLECT_VERSION = "reflect-v1"
JUDGE_VERSION = "judge-v1"
HUMAN_VERSION = "esnli-human-v1"

Messages = list[dict[str, str]]

COT_SCHEMA = {
    "title": "nli_answer",
    "type": "object",
    "properties": {
        "thought_process": {"type": "string"},
        "predicted_label": {"type": "integer", "enum": [0, 1]},
    },
    "required": ["thought_process", "predicted_label"],
    "additionalProperties": False,
}

REFLECT_SCHEMA = {
    "title": "nli_reflection",
    "type": "object",
    "properties": {
        "error_analysis": {"type": "string"},
        "improved_thought_process": {"type": "string"},
        "predicted_label": {"type": "integer", "enum": [0, 1]},
    },
    "required": ["error_analysis", "improved_thought_process", "predicted_label"],
    "additionalProperties": False,
}


def reflect_schema(label: int) -> dict:
    """The reflection schema for one pair: constrained backends can then only answer its true label."""
    schema = json.loads(json.dumps(REFLECT_SCHEMA))
    schema["properties"]["predicted_label"]["enum"] = [label]
    return schema


SCORE = {"type": "integer", "minimum": 1, "maximum": 5}
JUDGE_SCORES = ("coherence", "correctness", "brevity")
JUDGE_SCHEMA = {
    "title": "nli_judgement",
    "type": "object",
    "properties": {
        "analysis": {"type": "string"},
        "coherence": SCORE,
        "correctness": SCORE,
        "brevity": SCORE,
        "improved_thought_process": {"type": "string"},
    },
    "required": ["analysis", "coherence", "correctness", "brevity"],
    "additionalProperties": False,
}

_LABELS = "\n".join(f"- {part.strip()}" for part in LABEL_DEFINITION.rstrip(".").split(";"))


def _answer(thought: str, label: int) -> str:
    return json.dumps({"thought_process": thought, "predicted_label": label}, ensure_ascii=False)


def pair_block(premise: str, hypothesis: str) -> str:
    return f"<premise>{premise}</premise>\n<hypothesis>{hypothesis}</hypothesis>"


# ---------------------------------------------------------------- initial chain of thought

_COT_EXAMPLES = (
    (
        "Two boys in swim trunks are jumping off a wooden dock into a lake.",
        "Some children are indoors.",
        "1. Premise: two boys jump from a dock into a lake, so they are outdoors. "
        "2. Hypothesis: the children are indoors. "
        "3. Being at a lake and being indoors cannot both hold, so the claim conflicts with the premise.",
        0,
    ),
    (
        "A chef in a white apron is slicing onions in a busy restaurant kitchen.",
        "Someone is preparing food.",
        "1. Premise: a chef is slicing onions in a kitchen. "
        "2. Hypothesis: someone is preparing food. "
        "3. Slicing onions is preparing food, so the claim follows from the premise.",
        1,
    ),
)

COT_SYSTEM = f"""# Task
You decide whether a hypothesis follows from a premise (natural language inference).

# Labels
{_LABELS}

# Reasoning
Think in exactly three numbered steps:
1. Premise: the facts in the premise that matter for the hypothesis.
2. Hypothesis: what the hypothesis claims, in your own words.
3. Verdict: whether that claim conflicts with those facts (label 0) or is supported by or fits with them (label 1).

# Brevity
Keep each step to one short sentence and the whole thought process under 60 words. Do not restate the task.

# Input and response
The pair comes as <premise>...</premise> and <hypothesis>...</hypothesis>. Answer with one JSON object and nothing else
(no Markdown, no text around it):
{{"thought_process": "<your three steps>", "predicted_label": <0 or 1>}}

# Examples
""" + "\n".join(
    f"<example>\n{pair_block(p, h)}\n<response>{_answer(t, y)}</response>\n</example>" for p, h, t, y in _COT_EXAMPLES
)


def cot_messages(premise: str, hypothesis: str) -> Messages:
    return [{"role": "system", "content": COT_SYSTEM}, {"role": "user", "content": pair_block(premise, hypothesis)}]


# ---------------------------------------------------------------- reflection on wrong answers

REFLECT_SYSTEM = f"""# Task
You review a chain of thought written for a natural language inference pair and repair it.
You are told the correct label. Find where the original reasoning went wrong, then write a new
reasoning that reaches the correct label on its own merits.

# Labels
{_LABELS}

# What to write
- error_analysis: one or two sentences naming the exact mistake (a misread fact, an unsupported
  assumption, a wrong reading of what the labels mean). If the original reasoning was right, say so.
- improved_thought_process: three numbered steps (1. Premise, 2. Hypothesis, 3. Verdict), under
  60 words, that a reader could follow without knowing the answer. Never mention that the label was given.
- predicted_label: the correct label.

# Input and response
You receive <premise>, <hypothesis>, <original_thought>, <original_label> and <correct_label>.
Answer with one JSON object and nothing else:
{{"error_analysis": "...", "improved_thought_process": "...", "predicted_label": <correct label>}}"""


def reflect_messages(
    premise: str, hypothesis: str, thought: str | None, predicted: int | None, label: int
) -> Messages:
    original_label = "none (the answer could not be read)" if predicted is None else str(predicted)
    user = (
        f"{pair_block(premise, hypothesis)}\n"
        f"<original_thought>{thought or '(no reasoning was given)'}</original_thought>\n"
        f"<original_label>{original_label}</original_label>\n"
        f"<correct_label>{label}</correct_label>"
    )
    return [{"role": "system", "content": REFLECT_SYSTEM}, {"role": "user", "content": user}]


# ---------------------------------------------------------------- judging a chain of thought

JUDGE_SYSTEM = f"""# Task
You grade a chain of thought written for a natural language inference pair whose correct label is known.

# Labels
{_LABELS}

# Scores (integers 1 to 5)
- coherence: 5 the steps follow from one another with no gap; 3 a step is vague or skipped; 1 the steps contradict each other.
- correctness: 5 every statement is true of the premise and the verdict matches the correct label; 3 a minor
  misstatement or a weak link to the label; 1 the reasoning supports the wrong label.
- brevity: 5 under 60 words with nothing superfluous; 3 some repetition or filler; 1 long and rambling.

# What to write
- analysis: two sentences at most on the strengths and faults of the reasoning.
- the three scores.
- improved_thought_process: a better three-step reasoning (under 60 words) if any score is below 4, else "".

# Input and response
You receive <premise>, <hypothesis>, <thought>, <predicted_label> and <correct_label>.
Answer with one JSON object and nothing else:
{{"analysis": "...", "coherence": <1-5>, "correctness": <1-5>, "brevity": <1-5>, "improved_thought_process": "..."}}"""


def judge_messages(
    premise: str, hypothesis: str, thought: str | None, predicted: int | None, label: int | None
) -> Messages:
    user = (
        f"{pair_block(premise, hypothesis)}\n"
        f"<thought>{thought or '(no reasoning was given)'}</thought>\n"
        f"<predicted_label>{'none' if predicted is None else predicted}</predicted_label>\n"
        f"<correct_label>{'unknown' if label is None else label}</correct_label>"
    )
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]


def prompt_text(messages: Messages) -> str:
    """All message contents joined: what the answer parser must not mistake for the answer."""
    return "\n".join(message["content"] for message in messages)
