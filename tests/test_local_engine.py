import json

import pytest

from nli_cot_hub.chat_format import prompt_messages
from nli_cot_hub import local_engine
from nli_cot_hub.local_engine import LocalEngine, adapter_base, cpu_cache_config

pytestmark = pytest.mark.slow

PAIRS = [
    ("A man is sleeping on a bench in the park.", "A person rests."),
    ("Two kids play football.", "Children are outside."),
    ("The committee postponed the vote until next spring because several members were abroad.", "No vote was held."),
]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Two torch threads on two busy cores spin against each other; one thread is steady.
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def engine(embedded_model_path):
    return LocalEngine(embedded_model_path, batch_size=2, progress=False)


def _conversations():
    return [prompt_messages(p, h) for p, h in PAIRS]


def test_pad_is_not_eos_and_padding_is_left(engine):
    tok = engine.tokenizer
    assert tok.pad_token_id != tok.eos_token_id
    assert tok.padding_side == "left"
    assert tok.pad_token_id not in engine.eos_ids
    assert str(engine.model.dtype) == "torch.float32"  # CPU: full precision (bf16 is for GPUs)


def test_results_come_back_in_input_order_with_bounded_length(engine):
    conversations = _conversations()
    generations = engine.generate(conversations, max_new_tokens=6)
    lengths = [len(ids) for ids in engine.encode(conversations)]
    assert len(set(lengths)) == 3  # different lengths, so sorting into batches really reorders
    assert [g[0].prompt_tokens for g in generations] == lengths
    for (generation,) in generations:
        assert 1 <= generation.completion_tokens <= 6
        assert generation.text and "<|endoftext|>" not in generation.text
        assert generation.finished == (generation.completion_tokens < 6)
    # Greedy decoding does not depend on which prompts share a batch.
    alone = engine.generate(conversations[2:], max_new_tokens=6)
    assert alone[0][0].text == generations[2][0].text


def test_streams_each_batch(engine):
    seen = []
    engine.generate(_conversations(), max_new_tokens=2, on_batch=lambda idx, gens: seen.append((idx, len(gens))))
    assert sorted(i for indices, _ in seen for i in indices) == [0, 1, 2]
    assert [n for _, n in seen] == [2, 1]  # batch_size 2


def test_sampling_gives_several_answers_per_prompt(engine):
    generations = engine.generate(_conversations()[:2], max_new_tokens=5, temperature=1.0, num_samples=3, seed=1)
    assert [len(samples) for samples in generations] == [3, 3]
    assert all(sample.completion_tokens <= 5 for samples in generations for sample in samples)
    with pytest.raises(ValueError, match="temperature"):
        engine.generate(_conversations(), max_new_tokens=2, num_samples=2)


def test_peft_adapter_loaded_merged_or_as_model(engine, embedded_model_path, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(embedded_model_path)
    # Random (not zero) LoRA weights, so the adapter really changes the model.
    config = LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(base, config).save_pretrained(tmp_path / "adapter")
    assert adapter_base(str(tmp_path / "adapter")) == embedded_model_path
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["r"] == 4

    conversations = _conversations()[:1]
    texts = []
    for kwargs in ({"model": embedded_model_path, "adapter": str(tmp_path / "adapter")},
                   {"model": embedded_model_path, "adapter": str(tmp_path / "adapter"), "merge": True},
                   {"model": str(tmp_path / "adapter")}):
        adapted = LocalEngine(**kwargs, progress=False)
        texts.append(adapted.generate(conversations, max_new_tokens=6)[0][0].text)
    plain = engine.generate(conversations, max_new_tokens=6)[0][0].text
    assert texts[0] == texts[1] == texts[2]
    assert texts[0] != plain


def test_continuous_batching_matches_padded_greedy(engine):
    padded = engine.generate(_conversations()[:2], max_new_tokens=3)
    engine.mode = "continuous"
    try:
        continuous = engine.generate(_conversations()[:2], max_new_tokens=3)
    finally:
        engine.mode = "padded"
    assert [g[0].text for g in continuous] == [g[0].text for g in padded]


def test_cpu_cache_is_sized_from_the_prompts_not_from_memory():
    prompts = [[1] * 100, [1] * 30]
    config = cpu_cache_config(prompts, max_new_tokens=40)
    # 140 tokens -> 3 blocks of 64, 70 tokens -> 2 blocks; prefill chunk = all prompt tokens.
    assert (config.num_blocks, config.max_batch_tokens) == (5, 130)
    assert cpu_cache_config(prompts, max_new_tokens=40, num_samples=3).num_blocks == 15
    huge = cpu_cache_config([[1] * 5000] * 100, max_new_tokens=256)
    assert huge.num_blocks == local_engine.CPU_MAX_CACHE_BLOCKS
    assert huge.max_batch_tokens == 5000  # never below the longest prompt


def test_continuous_batching_failure_raises_instead_of_empty_answers(engine, monkeypatch):
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    # transformers' own sizing from a share of memory, with a share too small for any cache: the loop fails.
    monkeypatch.setattr(local_engine, "cpu_cache_config",
                        lambda *args, **kwargs: ContinuousBatchingConfig(max_memory_percent=1e-9))
    engine.mode = "continuous"
    try:
        with pytest.raises(RuntimeError, match="continuous batching failed"):
            engine.generate(_conversations()[:2], max_new_tokens=3)
    finally:
        engine.mode = "padded"


def test_rejects_bad_options(embedded_model_path):
    with pytest.raises(ValueError, match="mode"):
        LocalEngine(embedded_model_path, mode="warp")
    with pytest.raises(ValueError, match="dtype"):
        LocalEngine(embedded_model_path, dtype="int3")
