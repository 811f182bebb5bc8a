"""The label-weighted completion loss: the label value token(s) weigh ``label_loss_weight`` against the other
completion tokens, on top of TRL's completion-only loss (weight 1 is TRL's loss exactly)."""

from __future__ import annotations

from dataclasses import dataclass

from nli_cot_hub.data import DataError

# Tokens before the label value that identify it: enough to tell `"predicted_label": 1` from a digit in a thought.
LABEL_ANCHOR_TOKENS = 3


@dataclass(frozen=True)
class LabelTokenPattern:
    """How the label value shows up in tokenised completions: the token ids right before it (``anchors``)
    and the value tokens themselves (``values``), collected from the training examples."""

    anchors: frozenset
    values: frozenset


def label_value_token(text: str, tokenizer) -> tuple[list[int], int | None]:
    """Token ids of ``text`` (a rendered prompt + completion) and the index of the token that holds its last
    label value (the digit after ``"predicted_label": ``); None when the text has no label."""
    import re

    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    matches = list(re.finditer(r'"predicted_label":\s*([01])', text))
    if not matches:
        return encoded["input_ids"], None
    digit = matches[-1].start(1)
    for index, (start, end) in enumerate(encoded["offset_mapping"]):
        if start <= digit < end:
            return encoded["input_ids"], index
    return encoded["input_ids"], None


def label_token_pattern(dataset, tokenizer) -> LabelTokenPattern:
    """The anchors and value tokens of every labelled example of a prompt/completion data set."""
    anchors, values = set(), set()
    for example in dataset:
        text = tokenizer.apply_chat_template(example["prompt"] + example["completion"], tokenize=False)
        ids, index = label_value_token(text, tokenizer)
        if index is not None and index >= LABEL_ANCHOR_TOKENS:
            anchors.add(tuple(ids[index - LABEL_ANCHOR_TOKENS : index]))
            values.add(ids[index])
    if not values:
        raise DataError('label_loss_weight: no example has a "predicted_label" value to weight')
    return LabelTokenPattern(frozenset(anchors), frozenset(values))


def label_token_mask(labels, pattern: LabelTokenPattern):
    """True where ``labels`` (TRL's labels: token ids on completion tokens, -100 elsewhere) holds a label value
    token that follows one of the pattern's anchors."""
    import torch

    mask = torch.zeros_like(labels, dtype=torch.bool)
    values = torch.tensor(sorted(pattern.values), device=labels.device)
    is_value = torch.isin(labels, values)
    width = LABEL_ANCHOR_TOKENS
    for anchor in pattern.anchors:
        follows = torch.ones_like(labels[:, width:], dtype=torch.bool)
        for offset, token in enumerate(anchor):
            follows &= labels[:, offset : labels.shape[1] - width + offset] == token
        mask[:, width:] |= follows & is_value[:, width:]
    return mask


def label_loss_weights(labels, pattern: LabelTokenPattern, weight: float):
    """Per-token loss weights: ``weight`` on label value tokens, 1 on the other completion tokens, 0 on the rest."""
    import torch

    weights = (labels != -100).to(torch.float32)
    weights[label_token_mask(labels, pattern)] = weight
    return weights


def label_weighted(trainer_class):
    """``trainer_class`` (TRL's SFTTrainer) with its completion-only loss weighting the label token(s): set
    ``label_pattern`` and ``label_weight`` on the instance. TRL's loss has no per-token weights, so this
    overrides ``compute_loss`` with the same fused forward (per-token log-probabilities, no full logits) and
    the same normalisation (by the completion tokens), so weight 1 is TRL's loss exactly."""
    import torch

    class LabelWeighted(trainer_class):
        label_pattern: LabelTokenPattern | None = None
        label_weight: float = 1.0

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if self.label_pattern is None or self.label_weight == 1.0:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            mode = "train" if self.model.training else "eval"
            weights = label_loss_weights(inputs["labels"], self.label_pattern, self.label_weight)[:, 1:]
            outputs = model(**{**inputs, "use_cache": False}, fused_lm_head=True)
            count = outputs.label_mask.sum() if num_items_in_batch is None else num_items_in_batch
            loss = (-outputs.log_probs * weights.to(outputs.log_probs.device)).sum()
            loss = loss / torch.as_tensor(count, device=loss.device).clamp(min=1)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes
            # The metrics TRL logs (token accuracy, tokens seen), so the training summary reads the same.
            valid = self.accelerator.gather_for_metrics(outputs.label_mask.sum()).sum()
            if outputs.is_top1 is not None:
                right = self.accelerator.gather_for_metrics(outputs.is_top1.sum()).sum()
                self._metrics[mode]["mean_token_accuracy"].append((right / valid).item() if valid > 0 else 0.0)
            if mode == "train" and "attention_mask" in inputs:
                self._total_train_tokens += (
                    self.accelerator.gather_for_metrics(inputs["attention_mask"].sum()).sum().item()
                )
            self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
            return (loss, outputs) if return_outputs else loss

    LabelWeighted.__name__ = f"LabelWeighted{trainer_class.__name__}"
    return LabelWeighted
