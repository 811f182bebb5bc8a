"""Which decoder layers keep their activations under gradient checkpointing (nli_cot_hub/train/activations.py):
counted by how often each layer's first module runs in a forward and backward pass on a small Mistral."""

from __future__ import annotations

import pytest
import torch

from nli_cot_hub.train import activations
from nli_cot_hub.train.configs import RecipeError


def small_mistral(layers: int):
    from transformers import MistralConfig, MistralForCausalLM

    config = MistralConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    model = MistralForCausalLM(config).train()
    model.activation_checkpointing_enable()
    return model


def forward_counts(model, ids) -> list[int]:
    """How many times each decoder layer starts its forward in one forward + backward pass."""
    calls = [0] * len(model.model.layers)
    handles = [
        # on the layer's first module: the checkpoint wraps forward (the layer's own hooks stay outside it), and
        # the recompute may stop once it has what the backward needs
        layer.input_layernorm.register_forward_pre_hook(
            lambda *_, index=index: calls.__setitem__(index, calls[index] + 1)
        )
        for index, layer in enumerate(model.model.layers)
    ]
    model(input_ids=ids, labels=ids).loss.backward()
    for handle in handles:
        handle.remove()
    return calls


def ids(rows: int, width: int):
    return torch.arange(rows * width).reshape(rows, width) % 64


@pytest.mark.parametrize(("kept", "layers"), [(3, 8), (0, 4), (4, 4)])
def test_kept_layers_run_once_and_the_others_again_in_the_backward_pass(kept, layers):
    model = small_mistral(layers)
    chosen = activations.keep_activations(model, kept)
    assert len(chosen) == kept
    assert forward_counts(model, ids(2, 6)) == [1 if index in chosen else 2 for index in range(layers)]
    with pytest.raises(RecipeError, match="decoder layers"):
        activations.keep_activations(model, layers + 1)


def test_kept_layers_are_spread_and_always_include_the_last():
    for layers in range(1, 33):
        for kept in range(layers + 1):
            chosen = activations.spread(kept, layers)
            assert len(set(chosen)) == kept and all(0 <= index < layers for index in chosen)
            assert not kept or chosen[-1] == layers - 1  # the backward pass starts at a kept layer
    assert activations.spread(15, 32)[:3] == [1, 3, 5]


def test_a_token_budget_keeps_more_layers_for_narrower_micro_batches():
    model = small_mistral(4)
    seen = []
    handle = activations.keep_within_budget(
        model, budget=2 * 12, record=lambda tokens, kept: seen.append((tokens, kept))
    )
    # 12 tokens: 2 of 4 layers fit the budget, spread to layers 1 and 3; the others run again in the backward pass
    assert forward_counts(model, ids(2, 6)) == [2, 1, 2, 1]
    assert forward_counts(model, ids(2, 3)) == [1, 1, 1, 1]  # 6 tokens: all four fit
    assert forward_counts(model, ids(2, 24)) == [2, 2, 2, 2]  # 48 tokens: none
    assert seen == [(12, 2), (6, 4), (48, 0)]
    model.eval()
    with torch.no_grad():
        model(input_ids=ids(2, 6))
    assert len(seen) == 3  # evaluation leaves the choice alone
    handle.remove()
    model.train()
    forward_counts(model, ids(2, 6))
    assert len(seen) == 3


def test_kept_for_tokens_is_the_budget_over_the_tokens_capped_at_the_layers():
    assert activations.kept_for_tokens(14 * 16 * 512, 16 * 512, 32) == 14
    assert activations.kept_for_tokens(14 * 16 * 512, 16 * 224, 32) == 32
    assert activations.kept_for_tokens(14 * 16 * 512, 16 * 300, 32) == 23
    assert activations.kept_for_tokens(100, 0, 32) == 32
