"""Merge a LoRA adapter into its base model: a plain model (and tokenizer with the training chat template) that
vLLM or TGI can serve."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nli_cot_hub.config import option, stage_config

DTYPES = ("bfloat16", "float16", "float32")


@stage_config
class MergeConfig:
    """Merge a LoRA adapter into its base model and save a plain model for serving (bf16 by default)."""

    adapter: str = option(help="Adapter folder (train.py's output_dir or a checkpoint) or Hub repo.", positional=True)
    output_dir: str = option("merged", "Where the merged model and tokenizer are written.")
    base_model: str | None = option(
        None, "Base model id or folder; default: the adapter's base_model_name_or_path ('embedded' works)."
    )
    dtype: str = option("bfloat16", "Weights dtype of the merged model: bfloat16, float16 or float32.", choices=DTYPES)


@dataclass
class MergeResult:
    adapter: str
    base_model: str  # as the adapter or --base-model named it
    dtype: str
    output_dir: Path


def run_merge(config: MergeConfig) -> MergeResult:
    """Load the base model in ``config.dtype``, merge the adapter into it and save model + tokenizer."""
    import torch
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from nli_cot_hub.chat_template import apply_chat_rule
    from nli_cot_hub.models import EMBEDDED_NAME, resolve_model

    adapter_config = PeftConfig.from_pretrained(config.adapter)
    base_name = config.base_model or adapter_config.base_model_name_or_path
    # The embedded model's adapters name its public id; it is available locally.
    base_path = resolve_model("embedded" if base_name == EMBEDDED_NAME and config.base_model is None else base_name)
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=getattr(torch, config.dtype))
    merged = PeftModel.from_pretrained(base, config.adapter).merge_and_unload()
    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(output_dir)
    try:
        tokenizer = AutoTokenizer.from_pretrained(config.adapter)
    except (OSError, ValueError):  # adapters saved without a tokenizer
        tokenizer = AutoTokenizer.from_pretrained(base_path)
    # The merged model is served by vLLM/TGI with this template: the one training rendered prompts with.
    apply_chat_rule(tokenizer)
    tokenizer.save_pretrained(output_dir)
    return MergeResult(config.adapter, base_name, config.dtype, output_dir)
