"""A tiny random-weight model of the real Mistral-7B-v0.3 architecture with the real v0.3 tokenizer.

Every layer type, the grouped-query attention, the 32,768-token vocabulary and the tokenizer are Mistral's;
only the widths and the depth are cut down, so a CPU trains and generates with it in seconds. It stands in
for the 7B model on every path where the model's quality does not matter (templates, masks, saving,
loading, prediction plumbing).
"""

from __future__ import annotations

from pathlib import Path

from bench.common import tiny_mistral_config


def build_tiny_mistral(folder: str | Path, chat_template: str | None = None, seed: int = 0) -> str:
    """Save the model and tokenizer to ``folder``; ``chat_template`` replaces the tokenizer's own
    (``None`` keeps none at all, as the base Mistral-7B-v0.3 ships)."""
    import torch
    from transformers import AutoModelForCausalLM

    from nli_cot_hub.train.model import mistral_common_tokenizer

    config = tiny_mistral_config(pad_token_id=None)  # the tokenizer's pad is set below
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
