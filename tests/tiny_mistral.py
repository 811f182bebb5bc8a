"""A tiny random-weight model of the real Mistral-7B-v0.3 architecture with the real v0.3 tokenizer.

Every layer type, the grouped-query attention, the 32,768-token vocabulary and the tokenizer are Mistral's;
only the widths and the depth are cut down, so a CPU trains and generates with it in seconds. It stands in
for the 7B model on every path where the model's quality does not matter (templates, masks, saving,
loading, prediction plumbing).
"""

from __future__ import annotations

from pathlib import Path

TINY_SIZES = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
)


def build_tiny_mistral(folder: str | Path, chat_template: str | None = None, seed: int = 0) -> str:
    """Save the model and tokenizer to ``folder``; ``chat_template`` replaces the tokenizer's own
    (``None`` keeps none at all, as the base Mistral-7B-v0.3 ships)."""
    import torch
    from transformers import CONFIG_MAPPING, AutoModelForCausalLM

    from nli_cot_hub.train.model import KNOWN_CONFIGS, mistral_common_tokenizer

    values = {**KNOWN_CONFIGS["mistralai/Mistral-7B-v0.3"], **TINY_SIZES}
    config = CONFIG_MAPPING[values.pop("model_type")](**values)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    tokenizer = mistral_common_tokenizer("v3")
    tokenizer.chat_template = chat_template
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    folder = Path(folder)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)
