"""Robust answer extraction: from any generated text to (label, thought, status, reason).

Models asked for ``{"thought_process": ..., "predicted_label": ...}`` answer in many shapes: fenced,
wrapped in prose, with single quotes or trailing commas, truncated, echoing the few-shot examples of
the prompt, or followed by junk after the end of sequence. :func:`extract_answer` never raises; it
returns an :class:`Extraction` whose ``status`` says how much trust the answer deserves:

``ok``          the text (whitespace and one Markdown fence aside) is strict JSON with a label and a thought;
``repaired``    a label and a thought, but only after cutting text around the JSON or repairing it;
``label-only``  a label but no usable thought (an empty thought, or a label stated in prose);
``failed``      no label (``thought`` may still hold a truncated thought); ``reason`` says why.

Label words: entailment -> 1; no/not/non entailment and contradiction -> 0; neutral -> 1 by default.
The neutral default follows the COMP34812 data (``data.LabelMapping(three_class="non-contradiction")``
and ``chat_format.LABEL_DEFINITION``: 0 means the sentences cannot both be true, 1 covers the rest);
pass ``neutral=0`` for data sets where only entailment is 1.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Literal

import json_repair

ExtractionStatus = Literal["ok", "repaired", "label-only", "failed"]

LABEL_KEYS = ("predicted_label", "label", "final_label", "prediction", "predicted", "final_answer", "answer")
THOUGHT_KEYS = (
    "thought_process",
    "thought",
    "thoughts",
    "reasoning",
    "chain_of_thought",
    "rationale",
    "explanation",
    "improved_thought_process",
)
# Where a chat transcript hands over to the assistant: the answer is after the last one.
_ASSISTANT_MARKERS = (
    "[/INST]",
    "<|im_start|>assistant",
    "<|assistant|>",
    "<|start_header_id|>assistant<|end_header_id|>",
)
# End-of-sequence tokens: whatever follows one is padding or runaway generation, never the answer.
_EOS_MARKERS = ("</s>", "<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end|>", "<eos>", "<end_of_turn>")
_FENCE = re.compile(r"^```[\w-]*\s*\n?(.*?)\n?\s*```$", re.DOTALL)
_MAX_CANDIDATE_STARTS = 40
# A truncated copy this long of an earlier complete answer (or of one already repeated) is runaway
# repetition, not a new answer.
_MIN_REPEATED_CHARS = 40

_NEGATED_ENTAILMENT = re.compile(r"\b(?:no|not|non|never)[\s_-]*(?:an?\s+)?entail\w*")
_ENTAILMENT = re.compile(r"\bentail\w*")
_CONTRADICTION = re.compile(r"\bcontradict\w*")
_NEUTRAL = re.compile(r"\bneutral\b")
_DIGIT_LABEL = re.compile(r"(?<![\w.])([01])(?:\.0+)?(?![\w.]|\.\d)")
_PROSE_LABEL = re.compile(
    r"(?:predicted[ _]label|final[ _]label|final[ _]answer|label|answer|prediction)[\"']?(?:\s*(?:is|was|:|=))+\s*"
    r"[\"'*]*\s*([\w][\w -]{0,30})",
    re.IGNORECASE,
)


@dataclass
class Extraction:
    label: int | None
    thought: str | None
    status: ExtractionStatus
    reason: str | None = None
    # The parsed JSON object with normalised keys (lower case, spaces/hyphens -> "_"), so callers can
    # read other keys such as ``error_analysis`` or ``improved_thought_process``.
    fields: dict = field(default_factory=dict)

    @property
    def parsed(self) -> bool:
        return self.label is not None


def normalise_key(key) -> str:
    return re.sub(r"[\s\-]+", "_", str(key).strip().lower())


def parse_label(value, neutral: int = 1) -> int | None:
    """A 0/1 label from an int, float, bool, digit string or label word; None when absent or ambiguous."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return int(value) if value in (0, 1) else None
    if isinstance(value, list) and len(value) == 1:
        return parse_label(value[0], neutral)
    if not isinstance(value, str):
        return None
    text = value.strip().strip("\"'`*<>[](){}.,;:!").strip().lower()
    if text in ("true", "yes"):
        return 1
    if text in ("false", "no"):
        return 0
    votes: set[int] = {int(digit) for digit in _DIGIT_LABEL.findall(text)}
    words = _NEGATED_ENTAILMENT.sub(" ", text)
    if _NEGATED_ENTAILMENT.search(text) or _CONTRADICTION.search(text):
        votes.add(0)
    if _ENTAILMENT.search(words):
        votes.add(1)
    if _NEUTRAL.search(text):
        votes.add(neutral)
    return votes.pop() if len(votes) == 1 else None


def extract_answer(text, prompt: str | None = None, neutral: int = 1) -> Extraction:
    """Extract the answer from generated ``text``; never raises.

    ``prompt``: the prompt text, if the output may echo it; JSON objects that occur in the prompt
    (few-shot examples, the schema) are never taken as the answer.
    """
    try:
        return _extract(text, prompt, neutral)
    except Exception as error:
        return Extraction(None, None, "failed", f"extraction error: {type(error).__name__}: {error}")


def _extract(text, prompt: str | None, neutral: int) -> Extraction:
    if not isinstance(text, str):
        return Extraction(None, None, "failed", f"output is {type(text).__name__}, not text")
    if not text.strip():
        return Extraction(None, None, "failed", "empty output")

    strict = _strict_whole(text)
    if strict is not None:
        result = _from_object(strict, neutral)
        if result.label is not None:
            if result.thought:
                result.status, result.reason = "ok", None
            else:
                result.status, result.reason = "label-only", "JSON has a label but no thought"
            return result
        if _is_other_answer(strict):
            result.reason = "JSON object without a label"
            return result

    answer_text, notes = _answer_region(text, prompt)
    excluded = _objects_in(prompt, neutral) if prompt else []
    leading = _leading_object(answer_text)
    if leading is not None and _signature(leading, neutral) not in excluded:
        result = _from_object(leading, neutral)
        reasons = notes + ["took the complete JSON object the reply starts with and ignored the text after it"]
        if result.label is not None and result.thought:
            result.status, result.reason = "repaired", "; ".join(reasons)
            return result
        if _is_other_answer(leading):
            result.reason = "; ".join(reasons + ["JSON object without a label"])
            return result
    found, how = _candidates(answer_text)
    candidates = [c for c in found if _signature(c, neutral) not in excluded]
    chosen, why = _choose(candidates, neutral)
    if chosen is not None:
        result = _from_object(chosen, neutral)
        reasons = notes + [how] + ([why] if why else [])
        if result.label is None:
            result.status = "failed"
            result.reason = "; ".join(reasons + ["the answer has no label (truncated or missing)"])
        elif not result.thought:
            result.status = "label-only"
            result.reason = "; ".join(reasons + ["the answer has a label but no thought"])
        else:
            result.status = "repaired"
            result.reason = "; ".join(reasons)
        return result

    label = _prose_label(answer_text, neutral)
    # A JSON object that is not a chain-of-thought answer (e.g. a judgement) still exposes its fields.
    fields = _normalised(candidates[-1]) if candidates and _INCOMPLETE not in candidates[-1] else {}
    if label is not None:
        return Extraction(label, None, "label-only", "no JSON object; label stated in prose", fields=fields)
    if fields:
        return Extraction(None, None, "failed", "JSON object without a label", fields=fields)
    return Extraction(None, None, "failed", "no JSON object and no label in the text")


def _strict_whole(text: str) -> dict | None:
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1).strip()
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _leading_object(text: str) -> dict | None:
    """The complete JSON object ``text`` starts with, if it does. A model that keeps generating after
    its answer (another object, prose, a repetition) has still given that answer first."""
    body = text.lstrip()
    if not body.startswith("{"):
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(body)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) and value else None


def _is_other_answer(obj: dict) -> bool:
    """An object with neither a label nor a thought key: an answer to another schema (a judgement)."""
    return not _has_label_key(obj) and not _has_thought_key(obj)


def _answer_region(text: str, prompt: str | None) -> tuple[str, list[str]]:
    notes = []
    if prompt and prompt.strip() and prompt.strip() in text:
        text = text[text.rindex(prompt.strip()) + len(prompt.strip()) :]
        notes.append("cut the echoed prompt")
    for marker in _ASSISTANT_MARKERS:
        if marker in text:
            text = text[text.rindex(marker) + len(marker) :]
            notes.append(f"took the text after {marker}")
    for marker in _EOS_MARKERS:
        position = text.find(marker)
        if position > 0 and text[:position].strip():
            text = text[:position]
            notes.append(f"cut the text after {marker}")
    stripped = text.strip()
    fenced = _FENCE.search(stripped)
    if fenced and fenced.group(1).strip():
        stripped = fenced.group(1).strip()
        notes.append("took the Markdown code block")
    elif stripped.count("```") >= 1:
        stripped = stripped.replace("```json", " ").replace("```", " ")
    return stripped, notes


_INCOMPLETE = "__incomplete_object__"


def _candidates(text: str) -> tuple[list[dict], str]:
    """JSON objects in ``text`` in order of appearance, and how they were found.

    An object the model started after the last complete one (a truncated answer) is kept, repaired
    or as an empty marker, so that an earlier echo is never mistaken for the answer.
    """
    spans = _strict_objects(text)
    if not spans:
        return _repaired_objects(text), "JSON repaired"
    strict = [obj for obj, _ in spans]
    tail = text[spans[-1][1] :]
    if "{" not in tail:
        return strict, "took the JSON out of the text around it"
    tail_objects = _repaired_objects(tail) or [{_INCOMPLETE: True}]
    return strict + tail_objects, "repaired the JSON that follows"


def _strict_objects(text: str) -> list[tuple[dict, int]]:
    decoder = json.JSONDecoder()
    found, position = [], 0
    while True:
        start = text.find("{", position)
        if start < 0:
            return found
        try:
            value, end = decoder.raw_decode(text, start)
        except (ValueError, RecursionError):
            position = start + 1
            continue
        if isinstance(value, dict):
            found.append((value, end))
        position = end


def _repaired_objects(text: str) -> list[dict]:
    if "{" not in text:
        return []
    start = text.index("{")
    try:
        value = json_repair.loads(text[start:])
    except Exception:
        value = None
    objects = _dicts(value)
    if objects:
        return objects
    # The whole-text repair found nothing with keys: try again from later braces.
    starts = [m.start() for m in re.finditer(r"\{", text)][1:_MAX_CANDIDATE_STARTS]
    for begin in starts:
        try:
            objects = _dicts(json_repair.loads(text[begin:]))
        except Exception:
            continue
        if objects:
            return objects
    return []


def _dicts(value) -> list[dict]:
    if isinstance(value, dict):
        return [value] if value else []
    if isinstance(value, list):
        return [item for element in value for item in _dicts(element)]
    return []


def _choose(candidates: list[dict], neutral: int) -> tuple[dict | None, str | None]:
    """The answer is the last object holding a label or thought; earlier ones are echoes."""
    relevant = [c for c in candidates if _has_label_key(c) or _has_thought_key(c) or _INCOMPLETE in c]
    if not relevant:
        return None, None
    last = relevant[-1]
    why = f"took the last of {len(relevant)} JSON objects" if len(relevant) > 1 else None
    if _label_of(last, neutral) is None and len(relevant) > 1:
        # Runaway repetition: a truncated copy of an earlier complete answer.
        partial = _thought_of(last) or ""
        for earlier in reversed(relevant[:-1]):
            thought = _thought_of(earlier) or ""
            copies = sum(_thought_of(other) == thought for other in relevant[:-1])
            long_enough = len(partial) >= _MIN_REPEATED_CHARS or (partial and copies >= 2)
            if long_enough and thought.startswith(partial) and _label_of(earlier, neutral) is not None:
                return earlier, "took the complete answer before its truncated repetition"
    return last, why


def _normalised(obj: dict) -> dict:
    return {normalise_key(k): v for k, v in obj.items()}


def _has_label_key(obj: dict) -> bool:
    return any(key in _normalised(obj) for key in LABEL_KEYS)


def _has_thought_key(obj: dict) -> bool:
    return any(key in _normalised(obj) for key in THOUGHT_KEYS)


def _label_of(obj: dict, neutral: int) -> int | None:
    fields = _normalised(obj)
    for key in LABEL_KEYS:
        if key in fields:
            return parse_label(fields[key], neutral)
    return None


def _thought_of(obj: dict) -> str | None:
    fields = _normalised(obj)
    for key in THOUGHT_KEYS:
        value = fields.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return " ".join(v.strip() for v in value)
    return None


def _from_object(obj: dict, neutral: int) -> Extraction:
    fields = {k: v for k, v in _normalised(obj).items() if k != _INCOMPLETE}
    return Extraction(label=_label_of(obj, neutral), thought=_thought_of(obj), status="failed", fields=fields)


def _signature(obj: dict, neutral: int) -> tuple:
    return (_label_of(obj, neutral), (_thought_of(obj) or "").lower())


def _objects_in(prompt: str, neutral: int) -> list[tuple]:
    return [_signature(obj, neutral) for obj in _candidates(prompt)[0]]


def _prose_label(text: str, neutral: int) -> int | None:
    matches = list(_PROSE_LABEL.finditer(text))
    for match in reversed(matches):
        label = parse_label(match.group(1), neutral)
        if label is not None:
            return label
    return None
