"""Completion formats: how a fine-tuned model lays out its answer, shared by training, prediction and cards.

==============  ================================================================================================
``thought_first``  ``{"thought_process": ..., "predicted_label": y}``: reasoning, then the label (the default;
                   every adapter trained before formats existed uses it)
``label_first``    ``{"predicted_label": y, "explanation": ...}``: the label, then the explanation of it
``multitask``      distilling step-by-step (Hsieh et al., 2023): each pair gives two examples with a task tag in
                   the prompt, ``[label]`` -> ``{"predicted_label": y}`` and ``[explain]`` -> ``{"explanation": ...}``
``label_only``     ``{"predicted_label": y}``
==============  ================================================================================================

Everything here is a pure function of its arguments. An adapter folder records its format in
``completion_format.json`` (and in ``recipe_resolved.yaml``), so it is always predicted as it was trained.
"""

from __future__ import annotations

import json
from pathlib import Path

from nli_cot_hub.chat_format import FINETUNE_SYSTEM
from nli_cot_hub.data import DataError

FORMATS = ("thought_first", "label_first", "multitask", "label_only")
DEFAULT_FORMAT = "thought_first"
ANSWER_FIRST = ("label_first", "multitask", "label_only")
TASKS = ("label", "explain")
FORMAT_FILE = "completion_format.json"
LABEL_KEY = "predicted_label"

# thought_first keeps the original system prompt word for word, so adapters trained on it see what they saw.
SYSTEM_PROMPTS = {
    "thought_first": FINETUNE_SYSTEM,
    "label_first": (
        "Decide if the premise entails the hypothesis (1) or not (0). Answer as JSON, the label first, "
        'then a short explanation of it: {"predicted_label": 0 or 1, "explanation": "..."}.'
    ),
    "label_only": (
        'Decide if the premise entails the hypothesis (1) or not (0). Answer as JSON: {"predicted_label": 0 or 1}.'
    ),
    "multitask": (
        "Decide if the premise entails the hypothesis (1) or not (0). The tag says the task: [label] "
        'answers {"predicted_label": 0 or 1}; [explain] answers {"explanation": "..."}, the reasoning '
        "that decides it."
    ),
}


DESCRIPTIONS = {
    "thought_first": "the reasoning, then the label",
    "label_first": "the label, then the explanation of it",
    "multitask": "the label on a [label] prompt, the rationale on an [explain] prompt",
    "label_only": "the label alone",
}


class FormatError(DataError):
    """An unknown format, or an adapter folder whose recorded format is unreadable (one line, exit code 2)."""


def check_format(completion_format: str) -> str:
    if completion_format not in FORMATS:
        raise FormatError(f"unknown completion format {completion_format!r}; choose one of {', '.join(FORMATS)}")
    return completion_format


def _check_label(label: int) -> int:
    if label not in (0, 1):
        raise ValueError(f"predicted_label must be 0 or 1, got {label!r}")
    return label


def prompt_messages(
    premise: str, hypothesis: str, completion_format: str = DEFAULT_FORMAT, task: str = "label"
) -> list[dict[str, str]]:
    """The chat prompt of one pair; ``task`` matters only for multitask (``label`` or ``explain``)."""
    check_format(completion_format)
    if task not in TASKS:
        raise FormatError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    user = f"Premise: {premise}\nHypothesis: {hypothesis}"
    if completion_format == "multitask":
        user = f"[{task}] {user}"
    return [{"role": "system", "content": SYSTEM_PROMPTS[completion_format]}, {"role": "user", "content": user}]


def completion_text(completion_format: str, thought: str | None, label: int | None, task: str = "label") -> str:
    """The assistant's answer JSON in ``completion_format`` (multitask: the answer of ``task``)."""
    check_format(completion_format)
    thought = thought or ""
    if completion_format == "multitask" and task == "explain":
        return json.dumps({"explanation": thought}, ensure_ascii=False)
    _check_label(label)
    if completion_format == "thought_first":
        return json.dumps({"thought_process": thought, LABEL_KEY: label}, ensure_ascii=False)
    if completion_format == "label_first":
        return json.dumps({LABEL_KEY: label, "explanation": thought}, ensure_ascii=False)
    return json.dumps({LABEL_KEY: label}, ensure_ascii=False)


def training_examples(
    premise: str, hypothesis: str, thought: str | None, label: int, completion_format: str = DEFAULT_FORMAT
) -> list[dict]:
    """TRL conversational prompt/completion examples of one pair: two for multitask when there is a thought
    (label task and explain task), else one."""

    def example(task: str) -> dict:
        return {
            "prompt": prompt_messages(premise, hypothesis, completion_format, task),
            "completion": [{"role": "assistant", "content": completion_text(completion_format, thought, label, task)}],
        }

    examples = [example("label")]
    if completion_format == "multitask" and (thought or "").strip():
        examples.append(example("explain"))
    return examples


def answer_prefix(completion_format: str, thought: str | None = None) -> str:
    """The answer text up to the label value: where the log-probability read-out scores ``0`` against ``1``.
    For thought_first it holds the (generated) thought."""
    check_format(completion_format)
    if completion_format == "thought_first":
        return json.dumps({"thought_process": thought or "", LABEL_KEY: 0}, ensure_ascii=False)[: -len("0}")]
    return json.dumps({LABEL_KEY: 0}, ensure_ascii=False)[: -len("0}")]


def explanation_prefix(label: int) -> str:
    """label_first: the answer up to the explanation's text, once the label is chosen."""
    return json.dumps({LABEL_KEY: _check_label(label), "explanation": ""}, ensure_ascii=False)[: -len('"}')]


def answer_schema(completion_format: str, task: str = "label") -> dict:
    """JSON schema of one answer in ``completion_format`` (for schema-constrained decoding)."""
    check_format(completion_format)
    label = {"type": "integer", "enum": [0, 1]}
    text = {"type": "string"}
    if completion_format == "multitask" and task == "explain":
        properties, required = {"explanation": text}, ["explanation"]
    elif completion_format == "thought_first":
        properties, required = {"thought_process": text, LABEL_KEY: label}, ["thought_process", LABEL_KEY]
    elif completion_format == "label_first":
        properties, required = {LABEL_KEY: label, "explanation": text}, [LABEL_KEY, "explanation"]
    else:
        properties, required = {LABEL_KEY: label}, [LABEL_KEY]
    return {
        "title": f"nli_{completion_format}_{task}",
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


# ---------------------------------------------------------------- the adapter folder


def write_format(folder: str | Path, completion_format: str, label_loss_weight: float = 1.0) -> Path:
    path = Path(folder) / FORMAT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {"completion_format": check_format(completion_format), "label_loss_weight": label_loss_weight}, indent=2
        )
        + "\n",
        encoding="utf-8",
    )
    return path


def read_format(folder: str | Path | None) -> str | None:
    """The format an adapter folder was trained in: its completion_format.json, else recipe_resolved.yaml,
    else thought_first for an adapter from before formats existed; None when ``folder`` is no local folder."""
    if folder is None or not Path(folder).is_dir():
        return None
    folder = Path(folder)
    saved = folder / FORMAT_FILE
    if saved.exists():
        try:
            return check_format(json.loads(saved.read_text(encoding="utf-8"))["completion_format"])
        except (ValueError, KeyError, TypeError) as error:
            raise FormatError(f"{saved}: field 'completion_format': {error}") from None
    recipe = folder / "recipe_resolved.yaml"
    if recipe.exists():
        import yaml

        value = ((yaml.safe_load(recipe.read_text(encoding="utf-8")) or {}).get("script") or {}).get(
            "completion_format"
        )
        if value is not None:
            return check_format(value)
    return DEFAULT_FORMAT if (folder / "adapter_config.json").exists() else None


def resolve_format(explicit: str | None, *folders: str | Path | None) -> str:
    """An explicit format wins; else the first adapter folder that records one; else thought_first."""
    if explicit is not None:
        return check_format(explicit)
    for folder in folders:
        found = read_format(folder)
        if found is not None:
            return found
    return DEFAULT_FORMAT
