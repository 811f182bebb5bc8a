"""The fine-tuning chat format, shared by training and inference (and nothing else).

A training example is TRL's conversational prompt-completion shape::

    {"prompt": [{"role": "system", ...}, {"role": "user", ...}],
     "completion": [{"role": "assistant", "content": '{"thought_process": ..., "predicted_label": 1}'}]}

so SFTTrainer computes the loss on the completion only, and inference sends exactly ``prompt``. How these
messages become a model's text (its own template, the system message folded into the user turn, or the
project's template) is decided once per tokenizer by :mod:`nli_cot_hub.chat_template`.
"""

from __future__ import annotations

import json

FORMAT_VERSION = "ft-v1"

# What the labels mean in this data. The COMP34812 files label SNLI entailment -> 1 and
# contradiction -> 0, and MNLI neutral -> 1 and contradiction -> 0: wherever the source can be
# checked, 0 means the two sentences cannot both be true and 1 covers everything else.
LABEL_DEFINITION = (
    "1 (entailment): the hypothesis is true given the premise, or at least fits with it; "
    "0 (no entailment): the hypothesis conflicts with the premise, so both cannot be true."
)

# Kept short on purpose: it is repeated in every training and inference example, so each token
# here costs throughput; the fine-tuned model learns the task from the completions.
FINETUNE_SYSTEM = (
    "Decide if the premise entails the hypothesis (1) or not (0). Think in three short steps, then "
    'answer as JSON: {"thought_process": "...", "predicted_label": 0 or 1}.'
)


def prompt_messages(premise: str, hypothesis: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": FINETUNE_SYSTEM},
        {"role": "user", "content": f"Premise: {premise}\nHypothesis: {hypothesis}"},
    ]


def completion_text(thought_process: str | None, predicted_label: int) -> str:
    """The assistant's answer; a label-only example (no thought) keeps the same JSON shape."""
    if predicted_label not in (0, 1):
        raise ValueError(f"predicted_label must be 0 or 1, got {predicted_label!r}")
    return json.dumps(
        {"thought_process": thought_process or "", "predicted_label": predicted_label}, ensure_ascii=False
    )


def training_example(premise: str, hypothesis: str, thought_process: str | None, label: int) -> dict:
    return {
        "prompt": prompt_messages(premise, hypothesis),
        "completion": [{"role": "assistant", "content": completion_text(thought_process, label)}],
    }
