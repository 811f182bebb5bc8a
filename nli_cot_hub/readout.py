"""Log-probability label read-out: the label from the log-probabilities of ``0`` and ``1`` at the label position.

The answer is laid out as the model was trained (``nli_cot_hub.formats``) up to the label value, and the two
label tokens are compared there: at once for the answer-first formats, after the generated thought for
thought_first. Every row gets a label, with ``p(label = 1)`` = the two tokens' probabilities renormalised.

Local models: one forward pass per batch over prompt + answer prefix (:func:`score_labels`). Endpoints: the
label position inside a generated answer whose tokens came back with their top alternatives
(:func:`label_from_token_alternatives`, OpenAI-compatible ``logprobs``/``top_logprobs`` or TGI ``top_n_tokens``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from nli_cot_hub.formats import completion_text

_LABEL_VALUE = re.compile(r'"predicted_label"\s*:\s*"?([01])')


@dataclass(frozen=True)
class LabelScore:
    logprob_0: float
    logprob_1: float

    @property
    def p_label_1(self) -> float:
        return probability_of_one(self.logprob_0, self.logprob_1)

    @property
    def label(self) -> int:
        return int(self.logprob_1 > self.logprob_0)


def probability_of_one(logprob_0: float, logprob_1: float) -> float:
    """p(1) over the two labels alone (a softmax of the two log-probabilities)."""
    if logprob_0 == -math.inf and logprob_1 == -math.inf:
        raise ValueError("neither label has a probability")
    top = max(logprob_0, logprob_1)
    zero, one = math.exp(logprob_0 - top), math.exp(logprob_1 - top)
    return one / (zero + one)


def label_split(
    tokenizer, context: str, completion_format: str, thought: str | None = None
) -> tuple[list[int], int, int]:
    """The token ids up to the label position of ``context`` (the rendered prompt) + the answer, and the ids of
    the ``0`` and ``1`` tokens there: where the tokenisations of the two full answers part."""
    with_zero = tokenizer(context + completion_text(completion_format, thought, 0), add_special_tokens=False)[
        "input_ids"
    ]
    with_one = tokenizer(context + completion_text(completion_format, thought, 1), add_special_tokens=False)[
        "input_ids"
    ]
    shared = 0
    while shared < min(len(with_zero), len(with_one)) and with_zero[shared] == with_one[shared]:
        shared += 1
    if shared >= min(len(with_zero), len(with_one)):
        raise ValueError("the two labels tokenise the same")
    return with_zero[:shared], with_zero[shared], with_one[shared]


def score_labels(
    model,
    tokenizer,
    splits: Sequence[tuple[list[int], int, int]],
    batch_size: int = 8,
    device: str = "cpu",
    share_prefix: bool = True,
) -> list[LabelScore]:
    """Log-probabilities of the two label tokens after each prefix: one forward pass per batch (left padded).

    With ``share_prefix`` the tokens every row starts with (the system prompt, for one) are computed once and
    their keys and values reused by every batch, so each batch computes only the rows' own tokens."""
    import torch

    from nli_cot_hub.shared_prefix import SharedPrefix

    scores: list[LabelScore | None] = [None] * len(splits)
    order = sorted(range(len(splits)), key=lambda i: len(splits[i][0]), reverse=True)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    prefix = SharedPrefix(model, [split[0] for split in splits], device, share_prefix)
    shared = prefix.length
    for start in range(0, len(order), batch_size):
        indices = order[start : start + batch_size]
        ids, mask, positions, extra = prefix.batch([splits[i][0] for i in indices], pad)
        with torch.inference_mode():
            logits = model(
                input_ids=ids[:, shared:].to(device),
                attention_mask=mask.to(device),
                position_ids=positions[:, shared:].to(device),
                logits_to_keep=1,
                **extra,
            ).logits[:, -1, :]
        logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
        for row, index in enumerate(indices):
            _, zero, one = splits[index]
            scores[index] = LabelScore(float(logprobs[row, zero]), float(logprobs[row, one]))
    return scores  # type: ignore[return-value]


def continue_texts(
    model,
    tokenizer,
    texts: Sequence[str],
    max_new_tokens: int,
    eos_ids: Sequence[int],
    batch_size: int = 8,
    device: str = "cpu",
    share_prefix: bool = True,
) -> list[str]:
    """Greedy continuations of raw texts (a prompt with the start of the answer already written); the tokens all
    texts start with are computed once, as in :func:`score_labels`."""
    import torch

    from nli_cot_hub.shared_prefix import SharedPrefix

    results: list[str] = [""] * len(texts)
    encoded = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    order = sorted(range(len(texts)), key=lambda i: len(encoded[i]), reverse=True)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    prefix = SharedPrefix(model, encoded, device, share_prefix)
    for start in range(0, len(order), batch_size):
        indices = order[start : start + batch_size]
        ids, mask, _, extra = prefix.batch([encoded[i] for i in indices], pad)
        with torch.inference_mode():
            output = model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                eos_token_id=list(eos_ids),
                pad_token_id=pad,
                **extra,
            )
        for row, index in enumerate(indices):
            results[index] = tokenizer.decode(output[row, ids.shape[1] :].tolist(), skip_special_tokens=True)
    return results


def label_from_token_alternatives(tokens: Sequence[str], alternatives: Sequence[dict[str, float]]) -> LabelScore:
    """The label read-out of an endpoint's generated answer: ``tokens`` are the generated tokens' texts and
    ``alternatives[i]`` maps the top token texts at position i to their log-probabilities. The label position
    is the token holding the value of the last ``"predicted_label"``; a label absent from the alternatives
    there has log-probability -inf."""
    text = "".join(tokens)
    matches = list(_LABEL_VALUE.finditer(text))
    if not matches:
        raise ValueError("the answer has no predicted_label value to read the label position from")
    digit = matches[-1].start(1)
    position, end = None, 0
    for index, token in enumerate(tokens):
        end += len(token)
        if end > digit:
            position = index
            break
    best = {0: -math.inf, 1: -math.inf}
    for token, logprob in alternatives[position].items():
        value = token.strip().strip('"')
        if value in ("0", "1"):
            best[int(value)] = max(best[int(value)], logprob)
    if best[0] == -math.inf and best[1] == -math.inf:
        raise ValueError("neither 0 nor 1 is among the top tokens at the label position")
    return LabelScore(best[0], best[1])
