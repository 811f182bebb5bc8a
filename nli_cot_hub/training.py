"""What ``train.py`` needs besides TRL: data preparation, model/tokenizer loading, exact-resume
helpers, signal checkpointing and the training outputs (metrics JSON, curves PNG, resolved recipe).

TRL's ``SFTTrainer`` does the training itself; everything here is the part it leaves to the script.
"""

from __future__ import annotations

import json
import math
import os
import signal
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from nli_cot_hub.chat_template import MISTRAL_INST_TEMPLATE
from nli_cot_hub.data import DataError

# ---------------------------------------------------------------------------------------------
# Script arguments (the recipe's data/model extras on top of TRL's ScriptArguments)
# ---------------------------------------------------------------------------------------------

try:  # TRL is a hard dependency; the guard only keeps `import nli_cot_hub.training` cheap to inspect.
    from trl import ScriptArguments
except ImportError:  # pragma: no cover
    ScriptArguments = object  # type: ignore[misc,assignment]


@dataclass
class NliScriptArguments(ScriptArguments):
    """Recipe fields that are neither ``SFTConfig`` nor ``ModelConfig``."""

    dataset_test_split: str = field(
        default="validation",
        metadata={"help": "Evaluation split; when the data set lacks it, eval_fraction of train is held out."},
    )
    eval_fraction: float = field(
        default=0.05, metadata={"help": "Share of train held out for evaluation when no eval split exists."})
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Keep only the first N training examples (smoke runs)."})
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Keep only the first N evaluation examples."})
    effective_batch_size: int | None = field(
        default=None,
        metadata={"help": "Examples per optimizer step over all processes; sets gradient_accumulation_steps "
                          "= effective / (per_device_train_batch_size x processes), so 1 GPU and N GPUs take "
                          "the same optimizer steps with the same LR schedule."},
    )
    tokenizer_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Tokenizer to use instead of the model's; 'mistral-common:v3' builds the "
                          "Mistral-7B-v0.3 tokenizer from the mistral-common package (no download)."},
    )
    random_init: bool = field(
        default=False,
        metadata={"help": "BENCHMARKS ONLY: build the model from its config with random weights "
                          "instead of loading weights (for machines that cannot download them)."},
    )
    warmup_ratio: float | None = field(
        default=None,
        metadata={"help": "Warm-up as a share of the optimizer steps, in (0, 1): the same as a warmup_steps "
                          "value below 1 (transformers 5 reads warmup_steps < 1 as a share). Give one or the other."},
    )
    hub_dataset_id: str | None = field(
        default=None, metadata={"help": "Hub id of the training data, named in the model card when "
                                        "dataset_name is a local folder."})
    model_card: bool = field(
        default=True, metadata={"help": "Write README.md (the model card) into output_dir after training."})
    completion_format: str = field(
        default="thought_first",
        metadata={"help": "Answer layout (nli_cot_hub.formats): thought_first, label_first, multitask or "
                          "label_only; written to the adapter folder so prediction uses the same one."})
    label_loss_weight: float = field(
        default=1.0,
        metadata={"help": "Weight of the label token(s) against the other completion tokens in the "
                          "completion-only loss (1.0: every token counts the same)."})


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------

FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}
LABEL_ALIASES = ("label", "true_label", "gold_label")


def load_raw_dataset(source: str, config: str | None = None):
    """A ``DatasetDict`` from a data file, a ``save_to_disk`` folder, a Hub-layout folder or a Hub repo."""
    from datasets import DatasetDict, load_dataset, load_from_disk

    path = Path(source)
    if path.is_file():
        builder = FILE_BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise DataError(f"{source}: unsupported file type {path.suffix!r} (use json, jsonl, csv or parquet)")
        return load_dataset(builder, data_files={"train": str(path)})
    if path.is_dir():
        saved = path / config if config and (path / config).is_dir() else path
        if (saved / "dataset_dict.json").exists():
            return load_from_disk(str(saved))
        if (saved / "state.json").exists():
            return DatasetDict({"train": load_from_disk(str(saved))})
        return load_dataset(str(path), name=config)
    if source.startswith((".", "/", "~")):
        raise FileNotFoundError(f"{source}: no such data file or folder")
    return load_dataset(source, name=config)


def _row_label(row: dict[str, Any]) -> Any:
    for name in LABEL_ALIASES:
        if row.get(name) is not None:
            return row[name]
    return row.get("predicted_label")


def flat_row_to_examples(row: dict[str, Any], where: str,
                         completion_format: str = "thought_first") -> list[dict[str, Any]]:
    """One flat NLI row (premise, hypothesis, thought_process, label) as prompt/completion pairs in
    ``completion_format`` (two for a multitask row with a thought)."""
    from nli_cot_hub.formats import training_examples

    for name in ("premise", "hypothesis"):
        if not isinstance(row.get(name), str) or not row[name].strip():
            raise DataError(f"{where}, field {name!r}: missing or empty")
    label = _row_label(row)
    try:
        label = int(label)
    except (TypeError, ValueError):
        raise DataError(f"{where}, field 'label': expected 0 or 1, got {label!r}") from None
    if label not in (0, 1):
        raise DataError(f"{where}, field 'label': expected 0 or 1, got {label!r}")
    return training_examples(row["premise"], row["hypothesis"], row.get("thought_process"), label, completion_format)


def flat_row_to_example(row: dict[str, Any], where: str, completion_format: str = "thought_first") -> dict[str, Any]:
    """The first (for multitask: the label task's) example of one flat row."""
    return flat_row_to_examples(row, where, completion_format)[0]


def to_prompt_completion(dataset, source: str = "dataset", split: str = "train",
                         completion_format: str = "thought_first"):
    """Keep only TRL's conversational ``prompt``/``completion`` columns, building them from flat rows
    in ``completion_format`` (``nli_cot_hub.formats``). Ready-made prompt/completion columns are used as they
    are for thought_first (what ``nli-cot build`` writes); another format needs the flat fields."""
    from nli_cot_hub.formats import check_format

    check_format(completion_format)
    columns = dataset.column_names
    flat = {"premise", "hypothesis"} <= set(columns)
    if "prompt" in columns and "completion" in columns and (completion_format == "thought_first" or not flat):
        if completion_format != "thought_first":
            raise DataError(f"{source} [{split}]: completion_format {completion_format!r} needs the flat fields "
                            f"premise/hypothesis/thought_process/label (has {', '.join(columns)})")
        return dataset.select_columns(["prompt", "completion"])
    if not flat:
        raise DataError(f"{source} [{split}]: needs prompt/completion columns or premise/hypothesis/label "
                        f"(has {', '.join(columns)})")
    # A thought that reached another label than the gold one argues for the wrong answer: training on it
    # with the gold label would teach the model to contradict its own reasoning.
    gold = next((name for name in LABEL_ALIASES if name in columns), None)
    origin = list(range(len(dataset)))  # row numbers of the source, for error messages
    if gold and "predicted_label" in columns:
        keep = [index for index, (truth, predicted) in enumerate(zip(dataset[gold], dataset["predicted_label"]))
                if predicted is None or str(predicted) == str(truth)]
        if len(keep) < len(dataset):
            print(f"{source} [{split}]: left out {len(dataset) - len(keep)} of {len(dataset)} rows whose "
                  f"thought reached another label than the gold one", flush=True)
            dataset, origin = dataset.select(keep), keep

    def convert(batch, indices):
        rows = [dict(zip(batch, values)) for values in zip(*batch.values())]
        examples = [example for row, index in zip(rows, indices)
                    for example in flat_row_to_examples(row, f"{source} [{split}] row {origin[index]}",
                                                             completion_format)]
        return {"prompt": [e["prompt"] for e in examples], "completion": [e["completion"] for e in examples]}

    return dataset.map(convert, with_indices=True, batched=True, remove_columns=columns,
                       desc=f"{completion_format} examples for {split}")


def prepare_splits(script_args: NliScriptArguments, seed: int, want_eval: bool):
    """Train and eval splits in the fine-tuning chat format (eval is None when not wanted)."""
    raw = load_raw_dataset(script_args.dataset_name, script_args.dataset_config)
    source = script_args.dataset_name
    train_split = script_args.dataset_train_split
    if train_split not in raw:
        raise DataError(f"{source}: no split {train_split!r} (has {', '.join(raw)})")
    completion_format = script_args.completion_format
    train = to_prompt_completion(raw[train_split], source, train_split, completion_format)
    evaluation = None
    if want_eval:
        candidates = [script_args.dataset_test_split, "validation", "dev", "test"]
        eval_split = next((name for name in candidates if name in raw and name != train_split), None)
        if eval_split is not None:
            evaluation = to_prompt_completion(raw[eval_split], source, eval_split, completion_format)
        else:
            held = train.train_test_split(test_size=script_args.eval_fraction, seed=seed)
            train, evaluation = held["train"], held["test"]
    if script_args.max_train_samples:
        train = train.select(range(min(script_args.max_train_samples, len(train))))
    if evaluation is not None and script_args.max_eval_samples:
        evaluation = evaluation.select(range(min(script_args.max_eval_samples, len(evaluation))))
    return train, evaluation


def accumulation_steps(effective_batch_size: int, per_device_batch_size: int, processes: int) -> int:
    """Gradient accumulation that makes one optimizer step see exactly ``effective_batch_size`` examples."""
    per_step = per_device_batch_size * processes
    if effective_batch_size % per_step:
        raise ValueError(f"effective_batch_size {effective_batch_size} is not a multiple of "
                         f"per_device_train_batch_size {per_device_batch_size} x {processes} processes")
    return effective_batch_size // per_step


class RecipeError(DataError):
    """A recipe whose values cannot work together for this data; the message names them and the fix."""


# A warm-up longer than this share of the optimizer steps leaves too little of the run at the peak LR
# and in the decay for the schedule to do what the recipe says.
MAX_WARMUP_SHARE = 0.2


@dataclass(frozen=True)
class SchedulePlan:
    """The optimizer steps a run will take, computed before any model loads."""

    train_examples: int
    batches_per_process: int
    accumulation: int
    processes: int
    total_steps: int
    warmup_steps: int
    warmup_share: float | None = None  # set when the recipe gives the warm-up as a share of the run

    def line(self, peak: float, scheduler: Any) -> str:
        scheduler = str(getattr(scheduler, "value", scheduler))  # SFTConfig holds an enum
        text = (f"schedule: {self.total_steps} optimizer steps ({self.train_examples} examples, "
                f"{self.batches_per_process} micro-batches per process per epoch, accumulation {self.accumulation}, "
                f"{self.processes} process{'es' if self.processes > 1 else ''}), warm-up {self.warmup_steps}")
        if scheduler in SCHEDULES_WITH_WARMUP and self.total_steps > 0:
            last = learning_rate_at(self.total_steps - 1, peak, self.warmup_steps, self.total_steps, scheduler)
            text += f", then {scheduler}: LR peak {peak:g}, {last:.3g} at the last step"
        return text


def batches_per_process(examples: int, per_device_batch_size: int, processes: int, drop_last: bool) -> int:
    """Micro-batches each process sees per epoch: the DataLoader's length after accelerate shards it
    (``BatchSamplerShard`` with even batches: a short last round is padded, unless ``drop_last``)."""
    batches = examples // per_device_batch_size if drop_last else math.ceil(examples / per_device_batch_size)
    if processes == 1 or batches % processes == 0 or drop_last:
        return batches // processes
    return batches // processes + 1


def optimizer_steps(batches: int, accumulation: int, epochs: float, max_steps: int) -> int:
    """Total optimizer steps, as ``Trainer.set_initial_training_values`` counts them: a short last
    accumulation round still makes a step."""
    if max_steps > 0:
        return max_steps
    per_epoch = max(math.ceil(batches / accumulation), 1)
    return math.ceil(epochs * per_epoch)


def plan_schedule(training_args, train_examples: int) -> SchedulePlan:
    processes = max(1, training_args.world_size)
    batches = batches_per_process(train_examples, training_args.per_device_train_batch_size, processes,
                                  training_args.dataloader_drop_last)
    total = optimizer_steps(batches, training_args.gradient_accumulation_steps, training_args.num_train_epochs,
                            training_args.max_steps)
    # get_warmup_steps reads warmup_steps as a count (>= 1) or a share of the total (< 1), as the Trainer does.
    share = training_args.warmup_steps if 0 < training_args.warmup_steps < 1 else None
    return SchedulePlan(train_examples, batches, training_args.gradient_accumulation_steps, processes, total,
                        training_args.get_warmup_steps(total), share)


def check_schedule(plan: SchedulePlan, max_share: float = MAX_WARMUP_SHARE) -> None:
    """Refuse a warm-up that takes more than ``max_share`` of the run: the LR would barely (or never)
    reach its peak and the decay would not happen. A warm-up given as a share is judged by that share
    (the Trainer rounds it up to a whole step, which on a run of a few steps is more)."""
    if plan.warmup_share is not None:
        if plan.warmup_share <= max_share:
            return
        asked = f"warm-up share {plan.warmup_share:g}"
    elif plan.warmup_steps <= max_share * plan.total_steps:
        return
    else:
        asked = f"warm-up of {plan.warmup_steps} optimizer steps"
    fitting = math.floor(max_share * plan.total_steps)
    raise RecipeError(
        f"{asked} is more than {max_share:.0%} of the {plan.total_steps} optimizer steps this run takes "
        f"({plan.train_examples} train examples, {plan.batches_per_process} micro-batches per process per epoch, "
        f"accumulation {plan.accumulation}, {plan.processes} process(es)), so the LR would hardly reach its peak "
        f"or decay; set --warmup_steps to at most {fitting} (a count) or to a share such as 0.1")


def apply_warmup_ratio(script_args, training_args) -> None:
    """``warmup_ratio`` (transformers 4 recipes) becomes the share-valued ``warmup_steps`` transformers 5 reads."""
    ratio = script_args.warmup_ratio
    if ratio is None:
        return
    if not 0 < ratio < 1:
        raise RecipeError(f"warmup_ratio {ratio}: expected a share of the optimizer steps, between 0 and 1")
    if training_args.warmup_steps:
        raise RecipeError(f"warmup_ratio {ratio} and warmup_steps {training_args.warmup_steps} are both set; "
                          "give one of them")
    training_args.warmup_steps = ratio


def token_lengths(dataset, tokenizer) -> list[int]:
    """Tokens of each prompt + completion as SFTTrainer tokenizes them (``tokenizer`` from load_tokenizer)."""
    lengths = []
    for example in dataset:
        ids = tokenizer.apply_chat_template(example["prompt"] + example["completion"], tokenize=True,
                                            return_dict=True)["input_ids"]
        lengths.append(len(ids))
    return lengths


@dataclass
class TruncationReport:
    examples: int
    truncated: int
    max_tokens: int
    median_tokens: float
    max_length: int | None

    def line(self) -> str:
        return (f"max_length {self.max_length}: {self.truncated} of {self.examples} examples would be truncated "
                f"(longest {self.max_tokens} tokens, median {self.median_tokens:g})")


def truncation_report(dataset, tokenizer, max_length: int | None) -> TruncationReport:
    import statistics

    lengths = token_lengths(dataset, tokenizer)
    truncated = sum(length > max_length for length in lengths) if max_length else 0
    return TruncationReport(len(lengths), truncated, max(lengths, default=0),
                            statistics.median(lengths) if lengths else 0, max_length)


# ---------------------------------------------------------------------------------------------
# Label-weighted loss
# ---------------------------------------------------------------------------------------------

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
            anchors.add(tuple(ids[index - LABEL_ANCHOR_TOKENS:index]))
            values.add(ids[index])
    if not values:
        raise DataError("label_loss_weight: no example has a \"predicted_label\" value to weight")
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
            follows &= labels[:, offset:labels.shape[1] - width + offset] == token
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
                self._total_train_tokens += self.accelerator.gather_for_metrics(
                    inputs["attention_mask"].sum()).sum().item()
            self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
            return (loss, outputs) if return_outputs else loss

    LabelWeighted.__name__ = f"LabelWeighted{trainer_class.__name__}"
    return LabelWeighted


# ---------------------------------------------------------------------------------------------
# Tokenizer and model
# ---------------------------------------------------------------------------------------------

MISTRAL_COMMON_PREFIX = "mistral-common:"
# Mistral-7B-v0.3 uses the v3 SentencePiece vocabulary (32,768 tokens) that mistral-common ships.
MISTRAL_COMMON_FILES = {"v3": "mistral_instruct_tokenizer_240323.model.v3"}
# The v3 instruct format, as mistral-common renders it (kept under this name for existing imports).
MISTRAL_V3_CHAT_TEMPLATE = MISTRAL_INST_TEMPLATE


def mistral_common_tokenizer(version: str = "v3"):
    """A transformers tokenizer for Mistral models built from the tokenizer file that the
    ``mistral-common`` package ships (no Hub download), with the v3 chat template and ``<unk>`` as pad.

    SentencePiece conversion needs ``sentencepiece`` and ``protobuf``. Ids match mistral-common's own
    encoder on ordinary text; runs of several spaces after a newline may split differently.
    """
    import shutil
    import tempfile

    import mistral_common
    from transformers import LlamaTokenizer

    if version not in MISTRAL_COMMON_FILES:
        raise ValueError(f"unknown mistral-common tokenizer {version!r}; known: {', '.join(MISTRAL_COMMON_FILES)}")
    source = Path(mistral_common.__file__).parent / "data" / MISTRAL_COMMON_FILES[version]
    with tempfile.TemporaryDirectory() as folder:
        shutil.copy(source, Path(folder) / "tokenizer.model")
        tokenizer = LlamaTokenizer.from_pretrained(folder, legacy=False, add_bos_token=True, add_eos_token=False)
    tokenizer.pad_token = tokenizer.unk_token
    tokenizer.chat_template = MISTRAL_V3_CHAT_TEMPLATE
    tokenizer.name_or_path = f"{MISTRAL_COMMON_PREFIX}{version}"
    return tokenizer


def ensure_distinct_pad(tokenizer) -> None:
    """Padding with EOS masks EOS out of the loss, and the model never learns to stop."""
    if tokenizer.pad_token is not None and tokenizer.pad_token != tokenizer.eos_token:
        return
    for candidate in ("<|finetune_right_pad_id|>", "<|endoftext|>", "<pad>", tokenizer.unk_token):
        if candidate and candidate != tokenizer.eos_token and candidate in tokenizer.get_vocab():
            tokenizer.pad_token = candidate
            return
    raise ValueError(f"tokenizer {tokenizer.name_or_path!r} has no token to pad with other than EOS; "
                     "set one with --tokenizer_name_or_path or add a pad token to it")


def load_tokenizer(model_path: str, tokenizer_name: str | None = None, revision: str = "main"):
    """The training tokenizer, with a pad token other than EOS and the chat template the project's one
    rendering rule chooses (``nli_cot_hub.chat_template``); it is saved with the adapter, so inference
    renders prompts exactly as training did."""
    from transformers import AutoTokenizer

    from nli_cot_hub.chat_template import apply_chat_rule
    from nli_cot_hub.models import resolve_model

    if tokenizer_name and tokenizer_name.startswith(MISTRAL_COMMON_PREFIX):
        tokenizer = mistral_common_tokenizer(tokenizer_name.removeprefix(MISTRAL_COMMON_PREFIX))
    else:
        tokenizer = AutoTokenizer.from_pretrained(resolve_model(tokenizer_name or model_path), revision=revision)
    ensure_distinct_pad(tokenizer)
    return apply_chat_rule(tokenizer)


# Architectures known without any download, so --random_init works on a machine with no Hub access.
KNOWN_CONFIGS: dict[str, dict[str, Any]] = {
    "mistralai/Mistral-7B-v0.3": dict(
        model_type="mistral", vocab_size=32768, hidden_size=4096, intermediate_size=14336,
        num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, head_dim=128,
        max_position_embeddings=32768, rope_theta=1_000_000.0, sliding_window=None, rms_norm_eps=1e-5,
        hidden_act="silu", tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
    ),
}


def model_config(model_name: str):
    from transformers import AutoConfig, CONFIG_MAPPING

    if model_name in KNOWN_CONFIGS:
        values = dict(KNOWN_CONFIGS[model_name])
        return CONFIG_MAPPING[values.pop("model_type")](**values)
    from nli_cot_hub.models import resolve_model

    return AutoConfig.from_pretrained(resolve_model(model_name))


def random_init_checkpoint(model_name: str, dtype: str = "bfloat16", seed: int = 0) -> str:
    """BENCHMARKS ONLY: save a randomly initialised model of ``model_name``'s architecture once (in the
    cache) and return its folder, so the normal loading path, 4-bit quantization included, applies."""
    import torch
    from transformers import AutoModelForCausalLM

    from nli_cot_hub.models import cache_dir

    slug = model_name.strip("/").replace("/", "--")
    target = cache_dir() / "random-init" / f"{slug}-{dtype}-seed{seed}"
    if (target / "config.json").exists():
        return str(target)
    torch.manual_seed(seed)
    config = model_config(model_name)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):  # initialising 7B parameters on the GPU takes seconds, not minutes
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    scratch = target.with_name(target.name + f".partial-{os.getpid()}")
    model.save_pretrained(scratch)
    del model
    try:
        scratch.rename(target)
    except OSError:  # another process (e.g. the other rank of a launch) saved it first
        if not (target / "config.json").exists():
            raise
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)
    return str(target)


def sharded_loading() -> str | None:
    """'fsdp' or 'zero3' when the launcher shards the parameters themselves (accelerate sets these
    variables from its config), else None. Sharded parameters must share one dtype and go on no fixed device."""
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
        return "fsdp"
    if (os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
            and os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3"):
        return "zero3"
    return None


def quantization_config(model_args):
    """TRL's BitsAndBytesConfig from the recipe. Under FSDP or ZeRO-3 the packed 4-bit weights are stored
    in the compute dtype unless the recipe says otherwise: both flatten every parameter of a unit into one
    tensor, which needs one dtype for the frozen 4-bit weights and the trainable LoRA weights alike."""
    from trl import get_quantization_config

    if model_args.load_in_4bit and model_args.bnb_4bit_quant_storage is None and sharded_loading():
        if model_args.dtype in (None, "auto"):
            raise RecipeError(f"{sharded_loading()} with load_in_4bit needs dtype set (e.g. --dtype bfloat16): the "
                              "4-bit weights are stored in that dtype so they shard with the LoRA weights")
        model_args = replace(model_args, bnb_4bit_quant_storage=model_args.dtype)
    return get_quantization_config(model_args)


def model_init_kwargs(model_args, training_args) -> dict[str, Any]:
    """Keyword arguments for ``AutoModelForCausalLM.from_pretrained`` from the recipe."""
    import torch

    kwargs: dict[str, Any] = {
        "revision": model_args.model_revision,
        "attn_implementation": model_args.attn_implementation,
        "dtype": model_args.dtype if model_args.dtype in ("auto", None) else getattr(torch, model_args.dtype),
    }
    quantization = quantization_config(model_args)
    if quantization is not None:
        kwargs["quantization_config"] = quantization
        # FSDP and ZeRO-3 place the shards themselves (ZeRO-3 refuses a device_map); otherwise each
        # process puts its 4-bit copy on its own GPU.
        if sharded_loading() is None and torch.cuda.is_available():
            from accelerate import PartialState

            kwargs["device_map"] = {"": PartialState().local_process_index}
    if training_args.model_init_kwargs:
        kwargs.update(training_args.model_init_kwargs)
    if sharded_loading() == "zero3":
        kwargs.pop("device_map", None)
    return {key: value for key, value in kwargs.items() if value is not None}


def check_launch(training_args) -> None:
    """Two ways a multi-process launch silently becomes something else on a machine without GPUs."""
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and training_args.world_size == 1:
        raise RecipeError(f"{launched} processes were launched but did not join one process group (no GPU here): "
                          "pass --use_cpu true so they train together over gloo")
    if sharded_loading() == "fsdp" and training_args.use_cpu:
        raise RecipeError("FSDP needs GPUs: accelerate turns CPU processes into plain data parallel (gloo), "
                          "so nothing would be sharded; use accelerate_configs/multi_cpu.yaml on CPU")


# SFTConfig switches that need a package outside the base install, and the extra that provides it.
OPTIONAL_FEATURES = {"use_liger_kernel": ("liger_kernel", "gpu")}


def check_optional_features(training_args) -> None:
    """Before the model loads: a switched-on feature whose package is missing fails in one line, not after
    minutes of loading a 7B model."""
    import importlib.util

    for flag, (module, extra) in OPTIONAL_FEATURES.items():
        if getattr(training_args, flag, False) and importlib.util.find_spec(module) is None:
            raise RecipeError(f"{flag}: true needs the '{module}' package, which is missing; install the "
                              f"'{extra}' extra (pip install -e '.[{extra}]') or pass --{flag} false")


def load_model(model_args, training_args, random_init: bool = False, seed: int = 0):
    from transformers import AutoModelForCausalLM

    from nli_cot_hub.models import resolve_model

    path = resolve_model(model_args.model_name_or_path)
    kwargs = model_init_kwargs(model_args, training_args)
    if random_init:
        path = random_init_checkpoint(model_args.model_name_or_path, "bfloat16", seed)
        kwargs.pop("revision", None)
    return AutoModelForCausalLM.from_pretrained(path, **kwargs)


def use_full_state_dict_for_saving(trainer) -> None:
    """FSDP checkpoints during training stay sharded (each process writes its part, and resume reads them),
    but ``Trainer.save_model`` writes no weights at all for a sharded state dict. For the final adapter
    the plugin switches to a full state dict, gathered on the main process, as the PEFT FSDP guides do."""
    if getattr(trainer, "is_fsdp_enabled", False):
        switch_to_full_state_dict(trainer.accelerator.state.fsdp_plugin)


def switch_to_full_state_dict(plugin) -> None:
    """An accelerate ``FullyShardedDataParallelPlugin`` from here on gathers full state dicts on the main
    process (offloaded to CPU), whatever it was configured with."""
    if "FULL_STATE_DICT" in str(plugin.state_dict_type):
        return
    # set_state_dict_type keeps an existing (sharded) config object; clear them so it builds full ones.
    plugin.state_dict_config = None
    plugin.optim_state_dict_config = None
    plugin.set_state_dict_type("FULL_STATE_DICT")


def hub_base_model(model_name: str | None) -> str:
    """The base model's public name (never a local path) for cards and adapter configs."""
    from nli_cot_hub.models import EMBEDDED_ALIASES, EMBEDDED_NAME

    if model_name is None or model_name in EMBEDDED_ALIASES:
        return EMBEDDED_NAME
    return model_name


# ---------------------------------------------------------------------------------------------
# Resume and signals
# ---------------------------------------------------------------------------------------------

def resolve_resume(value: str | bool | None, output_dir: str) -> str | None:
    """``latest`` (or ``true``) -> the newest checkpoint in output_dir, or None when there is none yet;
    a path is checked; None/false -> no resume."""
    from transformers.trainer_utils import get_last_checkpoint

    if value in (None, False, "", "false", "False", "none", "None"):
        return None
    if value in (True, "latest", "true", "True", "last"):
        if not os.path.isdir(output_dir):
            return None
        return get_last_checkpoint(output_dir)
    if not os.path.isdir(str(value)):
        raise FileNotFoundError(f"--resume_from_checkpoint {value}: no such checkpoint folder")
    return str(value)


SCHEDULES_WITH_WARMUP = ("cosine", "linear", "constant_with_warmup")


def learning_rate_at(step: int, peak: float, warmup_steps: int, total_steps: int,
                     scheduler: str = "cosine") -> float:
    """The LR the optimizer uses for optimizer step ``step`` (0-based) — a pure function of the step,
    so a resumed run continues the very same schedule. Mirrors transformers' schedulers."""
    if step < warmup_steps:
        return peak * step / max(1, warmup_steps)
    if scheduler == "constant_with_warmup":
        return peak
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    if scheduler == "linear":
        return peak * max(0.0, 1.0 - progress)
    if scheduler == "cosine":
        return peak * max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))
    raise ValueError(f"unsupported scheduler {scheduler!r}")


def make_signal_callback():
    from transformers import TrainerCallback

    class SignalCheckpointCallback(TrainerCallback):
        """On SIGTERM/SIGINT, finish the current optimizer step, save a checkpoint and stop.

        The handler only sets a flag; the Trainer saves at the step boundary, so the checkpoint holds
        a consistent adapter, optimizer, scheduler, RNG and data position."""

        def __init__(self) -> None:
            self.received: int | None = None
            self._previous: dict[int, Any] = {}

        def _handle(self, signum, frame) -> None:
            if self.received is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt  # a second Ctrl-C means: stop now
            self.received = signum

        def on_train_begin(self, args, state, control, **kwargs):
            for signum in (signal.SIGTERM, signal.SIGINT):
                try:
                    self._previous[signum] = signal.signal(signum, self._handle)
                except ValueError:  # not the main thread: leave signals alone
                    pass

        def on_step_end(self, args, state, control, **kwargs):
            signalled = self._any_rank_signalled(args)  # every rank joins the collective, every step
            if self.received is None and not signalled:
                return control
            if self.received is None:  # another rank got it: stop at this same step with it
                self.received = signal.SIGTERM
            control.should_save = True
            control.should_training_stop = True
            return control

        def _any_rank_signalled(self, args) -> bool:
            """Ranks may see a signal at different steps; they must all stop at the same one, or the
            others would wait forever in the next collective."""
            import torch.distributed as dist

            if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
                return self.received is not None
            import torch

            flag = torch.tensor([0.0 if self.received is None else 1.0], device=args.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            return bool(flag.item())

        def on_train_end(self, args, state, control, **kwargs):
            for signum, handler in self._previous.items():
                signal.signal(signum, handler)
            self._previous.clear()

    return SignalCheckpointCallback()


# ---------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------

SECRET_FIELDS = {"hub_token", "push_to_hub_token", "token"}


def shareable_path(value: Any) -> Any:
    """Absolute paths (which name this machine's folders) become relative to the working directory when
    inside it, else ``.../<last part>``; the recipe is pushed to the Hub with the adapter."""
    if not isinstance(value, str) or not os.path.isabs(value):
        return value
    relative = os.path.relpath(value)
    return relative if not relative.startswith("..") else f".../{Path(value).name}"


def resolved_recipe(script_args, training_args, model_args) -> dict[str, Any]:
    """The three argument groups as plain data, secrets removed, for recipe_resolved.yaml."""
    def plain(args) -> dict[str, Any]:
        values = args.to_dict() if hasattr(args, "to_dict") else asdict(args)
        return {key: shareable_path(value) for key, value in values.items() if key not in SECRET_FIELDS}

    return {"script": plain(script_args), "training": plain(training_args), "model": plain(model_args)}


def write_resolved_recipe(recipe: dict[str, Any], output_dir: str) -> Path:
    import yaml

    path = Path(output_dir) / "recipe_resolved.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(json.loads(json.dumps(recipe, default=str)), sort_keys=False))
    return path


def training_summary(log_history: list[dict[str, Any]], extra: dict[str, Any]) -> dict[str, Any]:
    train_losses = [entry["loss"] for entry in log_history if "loss" in entry]
    eval_losses = [entry["eval_loss"] for entry in log_history if "eval_loss" in entry]
    final = next((entry for entry in reversed(log_history) if "train_runtime" in entry), {})
    # TRL's num_tokens: non-pad tokens seen so far, all processes together.
    tokens = next((entry["num_tokens"] for entry in reversed(log_history) if "num_tokens" in entry), None)
    runtime = final.get("train_runtime")
    return {
        "train_tokens": tokens,
        "train_tokens_per_second": round(tokens / runtime, 1) if tokens and runtime else None,
        "first_train_loss": train_losses[0] if train_losses else None,
        "last_train_loss": train_losses[-1] if train_losses else None,
        "best_eval_loss": min(eval_losses) if eval_losses else None,
        "train_runtime_s": final.get("train_runtime"),
        "train_samples_per_second": final.get("train_samples_per_second"),
        "train_steps_per_second": final.get("train_steps_per_second"),
        **extra,
    }


def write_metrics(log_history: list[dict[str, Any]], summary: dict[str, Any], output_dir: str) -> Path:
    path = Path(output_dir) / "training_metrics.json"
    path.write_text(json.dumps({"summary": summary, "log_history": log_history}, indent=2, default=str))
    return path


def plot_training_curves(log_history: list[dict[str, Any]], output_path: str | Path) -> Path:
    """Train/eval loss and learning rate against the optimizer step, one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def series(key: str) -> tuple[list[int], list[float]]:
        points = [(entry["step"], entry[key]) for entry in log_history if key in entry and "step" in entry]
        return [step for step, _ in points], [value for _, value in points]

    figure, (loss_axis, lr_axis) = plt.subplots(2, 1, figsize=(8, 6), sharex=True,
                                                gridspec_kw={"height_ratios": [2, 1]})
    for key, label, style in (("loss", "train loss", "-"), ("eval_loss", "eval loss", "o-")):
        steps, values = series(key)
        if steps:
            loss_axis.plot(steps, values, style, label=label)
    loss_axis.set_ylabel("loss (completion tokens)")
    loss_axis.legend()
    loss_axis.grid(alpha=0.3)
    steps, values = series("learning_rate")
    lr_axis.plot(steps, values, color="tab:green")
    lr_axis.set_ylabel("learning rate")
    lr_axis.set_xlabel("optimizer step")
    lr_axis.grid(alpha=0.3)
    figure.tight_layout()
    output_path = Path(output_path)
    figure.savefig(output_path, dpi=120)
    plt.close(figure)
    return output_path


def peak_memory_gib() -> float | None:
    import torch

    if torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return None


def trainable_parameters(model) -> dict[str, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable_parameters": trainable, "total_parameters": total}
