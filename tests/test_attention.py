"""The packed grouped-query attention of the compiled decode step, on a tiny Mistral-7B-v0.3-shaped model."""

from __future__ import annotations

import pytest

from nli_cot_hub.attention import PACKED_GQA, decode_compile_config, register_packed_gqa, use_packed_gqa

pytestmark = pytest.mark.slow


def tiny_mistral(attention: str):
    import torch
    from transformers import AutoModelForCausalLM

    from bench.common import tiny_mistral_config

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(tiny_mistral_config(), attn_implementation=attention).eval()
    assert model.config.num_attention_heads > model.config.num_key_value_heads  # grouped-query attention
    return model


def test_packed_attention_decodes_on_the_key_value_heads_even_compiled(repeated_while_compiling):
    import torch

    ids = torch.randint(3, 32768, (3, 9), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[0, :4] = 0  # left padding: a mask reaches the attention, as in every batched decode

    def decode(attention: str, compiled: bool):
        model = tiny_mistral(attention)
        repeated_while_compiling.clear()
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=6,
            do_sample=False,
            cache_implementation="static",
            compile_config=decode_compile_config(on_accelerator=False),
            disable_compile=not compiled,
            output_scores=True,
            return_dict_in_generate=True,
        )
        torch._dynamo.reset()
        return torch.stack(out.scores), any(repeated_while_compiling)

    reference, _ = decode("sdpa", compiled=False)
    # transformers' own SDPA path repeats the keys and values once traced; this one never does.
    assert decode("sdpa", compiled=True)[1]
    packed, repeated = decode(register_packed_gqa(), compiled=True)
    assert not repeated
    torch.testing.assert_close(packed, reference, rtol=1e-5, atol=1e-5)


def test_only_sdpa_models_switch_to_the_packed_attention():
    sdpa, eager = tiny_mistral("sdpa"), tiny_mistral("eager")
    assert use_packed_gqa(sdpa) and sdpa.config._attn_implementation == PACKED_GQA
    assert not use_packed_gqa(eager) and eager.config._attn_implementation == "eager"
