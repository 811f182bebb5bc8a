"""Attention for a compiled decode step: grouped-query attention read on the key/value heads, traced or not.

transformers' SDPA path folds a one-token query's heads onto the key/value heads (its ``pack_gqa``) only outside
``torch.compile``; traced with a padding mask it repeats the keys and values to every query head instead. At 7B
(32 query heads, 8 key/value heads) and batch 512 that copies the whole static cache four times over in every layer
of every step, and generate's compiled decode ran at 0.45x the uncompiled rate on an H100 (bench/README.md).
:func:`packed_gqa_sdpa` folds in both cases; compiled with CUDA graphs it decoded at 1.16-1.23x the uncompiled rate.
Everything other than a one-token grouped query goes to transformers' own SDPA function unchanged.
"""

from __future__ import annotations

PACKED_GQA = "sdpa_packed_gqa"


def packed_gqa_sdpa(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None, **kwargs):
    """transformers' SDPA attention, with a one-token query of grouped heads folded onto the key/value heads while
    compiling too (query (b, h, 1, d) -> (b, h_kv, h / h_kv, d), the mask broadcast over the folded rows); not
    compiling, transformers' function as it is (it folds there itself)."""
    import torch
    from transformers.integrations.sdpa_attention import pack_gqa, sdpa_attention_forward

    groups = getattr(module, "num_key_value_groups", 1)
    if (
        not torch.compiler.is_compiling()
        or query.shape[2] != 1
        or groups == 1
        or kwargs.get("position_bias") is not None
    ):
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )
    output = torch.nn.functional.scaled_dot_product_attention(
        pack_gqa(query, groups),
        key,
        value,
        attn_mask=pack_gqa(attention_mask, groups),
        dropout_p=dropout,
        scale=scaling,
    )
    return output.reshape(query.shape[0], -1, 1, value.shape[-1]).transpose(1, 2).contiguous(), None


def register_packed_gqa() -> str:
    """Register :func:`packed_gqa_sdpa` (with SDPA's mask) as an ``attn_implementation``; returns its name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(PACKED_GQA, packed_gqa_sdpa)
    AttentionMaskInterface.register(PACKED_GQA, sdpa_mask)
    return PACKED_GQA


def use_packed_gqa(model) -> bool:
    """Switch a model that attends with SDPA to :func:`packed_gqa_sdpa` (uncompiled, the same computation); False
    (nothing changed) for any other attention (eager, flash, flex), whose compiled decode this does not concern."""
    if getattr(model.config, "_attn_implementation", None) != "sdpa":
        return False
    model.set_attn_implementation(register_packed_gqa())
    return True


def decode_compile_config(on_accelerator: bool):
    """generate's compile of the static cache's decode step: fixed shapes (one graph per batch shape, each batch
    reusing one cache) and, on an accelerator, CUDA graphs; elsewhere plain inductor, which generate only applies
    when told to compile on every device."""
    from transformers import CompileConfig

    config = CompileConfig(dynamic=False, mode="reduce-overhead" if on_accelerator else "default")
    config._compile_all_devices = not on_accelerator
    return config
