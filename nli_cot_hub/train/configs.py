"""The recipe fields that are neither TRL's ``SFTConfig`` nor its ``ModelConfig``."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import ScriptArguments

from nli_cot_hub.data import DataError


class RecipeError(DataError):
    """A recipe whose values cannot work together for this data; the message names them and the fix."""


@dataclass
class NliScriptArguments(ScriptArguments):
    """Recipe fields that are neither ``SFTConfig`` nor ``ModelConfig``."""

    dataset_test_split: str = field(
        default="validation",
        metadata={"help": "Evaluation split; when the data set lacks it, eval_fraction of train is held out."},
    )
    eval_fraction: float = field(
        default=0.05, metadata={"help": "Share of train held out for evaluation when no eval split exists."}
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Keep only the first N training examples (smoke runs)."}
    )
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep only the first N evaluation examples."})
    effective_batch_size: int | None = field(
        default=None,
        metadata={
            "help": "Examples per optimizer step over all processes; sets gradient_accumulation_steps "
            "= effective / (per_device_train_batch_size x processes), so 1 GPU and N GPUs take "
            "the same optimizer steps with the same LR schedule."
        },
    )
    tokenizer_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Tokenizer to use instead of the model's; 'mistral-common:v3' builds the "
            "Mistral-7B-v0.3 tokenizer from the mistral-common package (no download)."
        },
    )
    random_init: bool = field(
        default=False,
        metadata={
            "help": "BENCHMARKS ONLY: build the model from its config with random weights "
            "instead of loading weights (for machines that cannot download them)."
        },
    )
    warmup_ratio: float | None = field(
        default=None,
        metadata={
            "help": "Warm-up as a share of the optimizer steps, in (0, 1): the same as a warmup_steps "
            "value below 1 (transformers 5 reads warmup_steps < 1 as a share). Give one or the other."
        },
    )
    hub_dataset_id: str | None = field(
        default=None,
        metadata={"help": "Hub id of the training data, named in the model card when dataset_name is a local folder."},
    )
    model_card: bool = field(
        default=True, metadata={"help": "Write README.md (the model card) into output_dir after training."}
    )
    completion_format: str = field(
        default="thought_first",
        metadata={
            "help": "Answer layout (nli_cot_hub.formats): thought_first, label_first, multitask or "
            "label_only; written to the adapter folder so prediction uses the same one."
        },
    )
    cudnn_attention: bool = field(
        default=True,
        metadata={
            "help": "Let SDPA use its cuDNN backend while training. False leaves attention to the flash / "
            "memory-efficient kernels: 1.05x the real tokens/s of 7B QLoRA on an H100 (bench/README.md)."
        },
    )
    kept_layers: int | None = field(
        default=None,
        metadata={
            "help": "With gradient checkpointing: how many decoder layers keep their activations instead of "
            "recomputing them in the backward pass (spread evenly, the last one among them). Each kept layer "
            "costs memory and saves a third of its work; None leaves the choice to "
            "gradient_checkpointing_kwargs (every_n_layers)."
        },
    )
    kept_layer_tokens: int | None = field(
        default=None,
        metadata={
            "help": "With gradient checkpointing: a budget of layer-tokens for kept activations, instead of "
            "kept_layers. Each micro-batch of T padded tokens lets min(layers, budget // T) decoder layers keep "
            "their activations, so narrow micro-batches recompute less and the widest stays within the budget "
            "(e.g. 114688 = 14 layers x 16 rows x 512 tokens)."
        },
    )
    label_loss_weight: float = field(
        default=1.0,
        metadata={
            "help": "Weight of the label token(s) against the other completion tokens in the "
            "completion-only loss (1.0: every token counts the same)."
        },
    )
