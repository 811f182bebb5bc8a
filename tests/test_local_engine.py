import json

import pytest

from nli_cot_hub import local_engine
from nli_cot_hub.chat_format import prompt_messages
from nli_cot_hub.local_engine import (
    GPU_BATCH_SIZE,
    KV_MEMORY_SHARE,
    LocalEngine,
    adapter_base,
    cpu_cache_config,
    default_cache,
    gpu_batch_size,
    kv_bytes_per_token,
    slow_continuous_note,
)
from nli_cot_hub.prompts import COT_SCHEMA
from nli_cot_hub.shared_prefix import shared_prefix_length

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
    for kwargs in (
        {"model": embedded_model_path, "adapter": str(tmp_path / "adapter")},
        {"model": embedded_model_path, "adapter": str(tmp_path / "adapter"), "merge": True},
        {"model": str(tmp_path / "adapter")},
    ):
        adapted = LocalEngine(**kwargs, progress=False)
        texts.append(adapted.generate(conversations, max_new_tokens=6)[0][0].text)
    plain = engine.generate(conversations, max_new_tokens=6)[0][0].text
    assert texts[0] == texts[1] == texts[2]
    assert texts[0] != plain


def test_shared_prompt_start_is_computed_once_with_the_same_answers(engine):
    conversations = _conversations()
    assert shared_prefix_length(engine.encode(conversations)) > 10  # the template and the system prompt
    shared = engine.generate(conversations, max_new_tokens=24)
    engine.share_prefix = False
    try:
        whole = engine.generate(conversations, max_new_tokens=24)
    finally:
        engine.share_prefix = True
    assert [g[0].text for g in shared] == [g[0].text for g in whole]
    assert [g[0].prompt_tokens for g in shared] == [g[0].prompt_tokens for g in whole]


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


def test_continuous_batching_warns_only_where_its_fast_path_is_missing():
    assert "flash-attn" in slow_continuous_note("sdpa", flash_installed=False)
    assert slow_continuous_note("sdpa", flash_installed=True) is None  # transformers switches to it
    assert slow_continuous_note("flash_attention_2", flash_installed=False) is None


def test_continuous_batching_failure_raises_instead_of_empty_answers(engine, monkeypatch):
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    # transformers' own sizing from a share of memory, with a share too small for any cache: the loop fails.
    monkeypatch.setattr(
        local_engine, "cpu_cache_config", lambda *args, **kwargs: ContinuousBatchingConfig(max_memory_percent=1e-9)
    )
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


# ---------------------------------------------------------------- the real 7B path, on the tiny Mistral


def test_base_mistral_without_template_trains_and_predicts_with_the_training_prompt(tiny_mistral_path, tmp_path):
    """Mistral-7B-v0.3 ships no chat template: training trains on it (the project's [INST] template), saves
    that template with the adapter, and the engine loads the adapter's base and tokenizer and sends the
    very prompt training masked."""
    from nli_cot_hub.chat_template import MISTRAL_INST_TEMPLATE, encode_prompts
    from nli_cot_hub.train.model import load_tokenizer
    from tests.test_training import parse, tiny_run_args

    output = tmp_path / "adapter"
    args = parse(
        *tiny_run_args(
            tiny_mistral_path,
            output,
            "--max_steps",
            "1",
            "--max_train_samples",
            "2",
            "--warmup_steps",
            "0",
            "--no_model_card",
        )
    )
    from nli_cot_hub.train.sft import main

    assert main(*args)["status"] == "completed"
    assert adapter_base(str(output)) == tiny_mistral_path

    engine = LocalEngine(None, adapter=str(output), batch_size=2, progress=False)
    assert (
        engine.model_name == tiny_mistral_path and type(engine.model.base_model.model).__name__ == "MistralForCausalLM"
    )
    assert engine.tokenizer.chat_template == MISTRAL_INST_TEMPLATE
    prompt = prompt_messages(*PAIRS[0])
    sent = engine.encode([prompt])[0]
    assert sent == encode_prompts(load_tokenizer(tiny_mistral_path), [prompt])[0]
    assert engine.tokenizer.convert_ids_to_tokens(sent[:2]) == ["<s>", "[INST]"] and sent.count(1) == 1
    assert prompt[0]["content"] in engine.tokenizer.decode(sent)
    generated = engine.generate([prompt], max_new_tokens=3)[0][0]
    assert generated.prompt_tokens == len(sent) and 0 < generated.completion_tokens <= 3


@pytest.mark.server
def test_hub_adapter_id_loads_its_base_and_its_tokenizer_from_the_hub(tiny_mistral_path, hub_server, tmp_path):
    """`nli-cot predict --adapter <repo>`: the adapter's config names a (private) base repo on the Hub, and the
    adapter ships its own tokenizer (here Mistral-Instruct's template, folded by the chat rule), so neither the
    embedded model nor the base tokenizer may be used."""
    import os
    import subprocess
    import sys
    import uuid

    from huggingface_hub import HfApi
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from nli_cot_hub.chat_template import FOLD_PREFIX
    from nli_cot_hub.train.model import load_tokenizer
    from tests.conftest import shared
    from tests.test_chat_template import template

    api = HfApi(endpoint=hub_server.url, token=hub_server.token)
    suffix = uuid.uuid4().hex[:8]
    base_repo, adapter_repo = f"tester/tiny-mistral-{suffix}", f"tester/tiny-mistral-nli-{suffix}"
    for repo in (base_repo, adapter_repo):
        api.create_repo(repo, private=True)
    api.upload_folder(repo_id=base_repo, folder_path=tiny_mistral_path)

    peft_model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_mistral_path),
        LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    peft_model.peft_config["default"].base_model_name_or_path = base_repo
    adapter_dir = tmp_path / "adapter"
    peft_model.save_pretrained(adapter_dir)
    instruct = template("mistral_7b_instruct_v0.3.jinja")
    tokenizer = load_tokenizer(tiny_mistral_path)
    tokenizer.chat_template = instruct
    tokenizer.save_pretrained(tmp_path / "instruct")
    load_tokenizer(str(tmp_path / "instruct")).save_pretrained(adapter_dir)  # as train.py saves it: rule applied
    api.upload_folder(repo_id=adapter_repo, folder_path=str(adapter_dir))

    engine = LocalEngine(None, adapter=adapter_repo, batch_size=2, progress=False)
    assert engine.model_name == base_repo and engine.model.config.hidden_size == 64  # the tiny Mistral, not SmolLM2
    assert engine.tokenizer.chat_template == FOLD_PREFIX + instruct  # the adapter's tokenizer

    output = tmp_path / "predictions.jsonl"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "nli_cot_hub",
            "predict",
            str(shared("comp34812_nli/trial_jd0g.csv")),
            "--adapter",
            adapter_repo,
            "--limit",
            "2",
            "--max-new-tokens",
            "3",
            "--no-constrain",  # what is checked is which weights and tokenizer load, not the answers
            "--max-failed-share",
            "1",
            "--threads",
            "1",
            "-o",
            str(output),
            "--no-progress",
        ],
        env={**os.environ, **hub_server.env(tmp_path / "cache")},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(records) == 2 and {record["model"] for record in records} == {f"{base_repo}+{adapter_repo}"}
    assert hub_server.token not in output.read_text() + done.stdout + done.stderr


def test_missing_adapter_config_is_one_clear_error(tmp_path):
    (tmp_path / "not-an-adapter").mkdir()
    with pytest.raises(ValueError, match="no adapter_config.json"):
        LocalEngine(None, adapter=str(tmp_path / "not-an-adapter"), progress=False)


# ---------------------------------------------------------------- GPU batch size from free memory

GIB = 2**30


def test_kv_cache_per_token_of_mistral_7b():
    from nli_cot_hub.train.model import model_config

    # 32 layers x 8 key/value heads x 128 dims, keys and values, bf16.
    assert kv_bytes_per_token(model_config("mistralai/Mistral-7B-v0.3"), 2) == 2 * 32 * 8 * 128 * 2 == 128 * 1024


@pytest.mark.parametrize("free_gib", [79.0, 39.0, 23.0, 15.5])
def test_gpu_batch_is_the_most_sequences_whose_cache_fits(free_gib):
    model, per_token, tokens = int(13.5 * GIB), 128 * 1024, 256 + 256  # Mistral-7B bf16, prompt + answer
    batch = gpu_batch_size(int(free_gib * GIB), model, per_token, tokens)
    spare = (free_gib * GIB - model) * KV_MEMORY_SHARE
    assert 1 <= batch <= GPU_BATCH_SIZE
    assert batch * per_token * tokens <= spare or batch == 1
    assert batch == GPU_BATCH_SIZE or (batch + 1) * per_token * tokens > spare


def test_gpu_batch_keeps_the_h100_cap_and_shrinks_with_memory():
    sizes = [gpu_batch_size(int(free * GIB), int(13.5 * GIB), 128 * 1024, 512) for free in (79, 39, 23, 14, 10)]
    assert sizes[0] == GPU_BATCH_SIZE == 512  # an H100 keeps the measured batch
    assert sizes == sorted(sizes, reverse=True) and sizes[2] < 128 and sizes[-1] == 1
    with pytest.raises(ValueError):
        gpu_batch_size(GIB, 0, 0, 512)


def test_engine_sizes_its_gpu_batch_from_the_prompts_it_gets(engine):
    """The engine's wiring on a real model (the formula itself is tested above): parameters + buffers as the
    model size, its own KV bytes per token, longest prompt + new tokens as the budget."""
    model_bytes = sum(p.numel() * p.element_size() for p in engine.model.parameters()) + sum(
        b.numel() * b.element_size() for b in engine.model.buffers()
    )
    per_token = kv_bytes_per_token(engine.model.config, 4)
    longest = max(len(ids) for ids in engine.encode(_conversations()))
    engine.free_bytes_before_load = model_bytes + 3 * per_token * (longest + 4)  # room for ~2 sequences
    engine.auto_batch = True
    try:
        engine.generate(_conversations(), max_new_tokens=4)
        assert (
            engine.batch_size
            == gpu_batch_size(engine.free_bytes_before_load, model_bytes, per_token, longest + 4)
            == 2
        )
    finally:
        engine.auto_batch, engine.batch_size = False, 2


# ------------------------------------------------------------ constrained decoding (JSON schema)


def _dev_pairs():
    import pandas as pd

    from tests.conftest import shared

    frame = pd.read_csv(shared("comp34812_nli/dev_jd0g.csv"))
    return list(zip(frame["premise"], frame["hypothesis"], frame["label"]))


DEV = None


def _stage_prompt(stage: str, premise: str, hypothesis: str, label: int):
    """The stage's real prompt and schema for one pair."""
    from nli_cot_hub import prompts

    if stage == "finetune":
        return prompt_messages(premise, hypothesis), prompts.COT_SCHEMA
    if stage == "cot":
        return prompts.cot_messages(premise, hypothesis), prompts.COT_SCHEMA
    if stage == "reflect":
        return (
            prompts.reflect_messages(
                premise, hypothesis, "1. Premise: ... 3. So the label is wrong.", 1 - label, label
            ),
            prompts.reflect_schema(label),
        )
    return prompts.judge_messages(
        premise, hypothesis, "1. Premise: a fact. 2. Hypothesis: a claim.", label, label
    ), prompts.JUDGE_SCHEMA


def test_constrained_answers_validate_on_real_pairs_and_budgets(engine):
    """Property test: real dev pairs, every stage's prompt and schema, token budgets from the
    smallest the schema allows (too small for a long thought) up: each answer is valid JSON of its
    schema, in json.dumps' layout, within the budget, with labels from the label set."""
    import jsonschema
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    global DEV
    DEV = DEV or _dev_pairs()

    @settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        rows=st.lists(st.integers(min_value=0, max_value=len(DEV) - 1), min_size=1, max_size=3),
        stage=st.sampled_from(["finetune", "cot", "reflect", "judge"]),
        extra=st.integers(min_value=0, max_value=24),
    )
    def check(rows, stage, extra):
        built = [_stage_prompt(stage, *DEV[row]) for row in rows]
        schemas = [schema for _, schema in built]
        budget = max(engine.compiled_schemas(schemas, len(schemas))[i].reserve for i in range(len(rows))) + extra
        generations = engine.generate([messages for messages, _ in built], max_new_tokens=budget, json_schema=schemas)
        for row, schema, (generation,) in zip(rows, schemas, generations):
            value = json.loads(generation.text)
            jsonschema.validate(value, schema)
            assert generation.text == json.dumps(value, ensure_ascii=False)
            assert generation.constrained and generation.completion_tokens <= budget
            if "predicted_label" in value:
                assert value["predicted_label"] in (0, 1)
            if stage == "reflect":
                assert value["predicted_label"] == DEV[row][2]

    check()


def test_reflection_schema_forces_each_rows_label(engine):
    """One batch, two rows with opposite correct labels: each gets its own label."""
    from nli_cot_hub.prompts import reflect_messages, reflect_schema

    conversations = [reflect_messages(p, h, "They say the same thing.", 1, 0) for p, h in PAIRS[:2]]
    conversations[1] = reflect_messages(*PAIRS[1], "They contradict.", 0, 1)
    generations = engine.generate(conversations, max_new_tokens=60, json_schema=[reflect_schema(0), reflect_schema(1)])
    assert [json.loads(g[0].text)["predicted_label"] for g in generations] == [0, 1]


def test_unconstrained_generation_is_plain_generate(engine):
    """Without a schema the engine is transformers' generate as before: same greedy text as calling
    the model directly, and the same with a list of None schemas."""
    import torch

    conversations = _conversations()[:1]
    plain = engine.generate(conversations, max_new_tokens=24)[0][0]
    assert not plain.constrained
    assert engine.generate(conversations, max_new_tokens=24, json_schema=[None])[0][0].text == plain.text
    ids = torch.tensor(engine.encode(conversations))
    with torch.inference_mode():
        direct = engine.model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=24,
            do_sample=False,
            eos_token_id=engine.eos_ids,
            pad_token_id=engine.tokenizer.pad_token_id,
        )
    assert engine.tokenizer.decode(direct[0, ids.shape[1] :], skip_special_tokens=True).strip() == plain.text
    constrained = engine.generate(conversations, max_new_tokens=40, json_schema=COT_SCHEMA)[0][0]
    assert constrained.text.startswith('{"thought_process": "') and constrained.text != plain.text


def test_sampled_constrained_answers_validate(engine):
    import jsonschema

    generations = engine.generate(
        _conversations()[:2],
        max_new_tokens=40,
        temperature=1.0,
        top_p=0.9,
        num_samples=2,
        seed=3,
        json_schema=COT_SCHEMA,
    )
    for samples in generations:
        for sample in samples:
            jsonschema.validate(json.loads(sample.text), COT_SCHEMA)


def test_schema_errors_are_clear(engine):
    from nli_cot_hub.constrained import SchemaError

    with pytest.raises(SchemaError, match="too small"):
        engine.generate(_conversations()[:1], max_new_tokens=5, json_schema=COT_SCHEMA)
    with pytest.raises(ValueError, match="2 JSON schemas for 1 conversations"):
        engine.generate(_conversations()[:1], max_new_tokens=30, json_schema=[COT_SCHEMA, COT_SCHEMA])
    engine.mode = "continuous"
    try:
        with pytest.raises(ValueError, match="continuous batching cannot constrain"):
            engine.generate(_conversations()[:1], max_new_tokens=30, json_schema=COT_SCHEMA)
    finally:
        engine.mode = "padded"


def test_unknown_cache_is_refused_before_the_model_loads(embedded_model_path, monkeypatch):
    from transformers import AutoModelForCausalLM

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", no_load)
    with pytest.raises(ValueError, match="Invalid `cache_implementation` \\(stattic\\)"):
        LocalEngine(embedded_model_path, cache="stattic", progress=False)


def test_compiled_decode_without_a_static_padded_cache_is_refused_before_the_model_loads(
    embedded_model_path, monkeypatch
):
    from transformers import AutoModelForCausalLM

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", no_load)
    for options in ({"cache": "dynamic"}, {}, {"cache": "static", "mode": "continuous"}):  # {}: a CPU's dynamic
        with pytest.raises(ValueError, match="needs the padded engine mode and the static cache"):
            LocalEngine(embedded_model_path, compile_decode=True, progress=False, **options)


def test_default_cache_is_static_on_a_gpu_and_dynamic_on_a_cpu():
    assert default_cache(on_gpu=True) == "static"
    assert default_cache(on_gpu=False) == "dynamic"


def test_static_cache_holds_the_shared_prefix_with_the_same_answers(engine):
    conversations = _conversations()
    full_width = max(len(ids) for ids in engine.encode(conversations[: engine.batch_size]))
    prefill_widths = {}  # the first forward of each generate call: the prompt tokens it computed
    embeddings = engine.model.get_input_embeddings()

    def record(module, args):
        if prefill_widths.setdefault(key, None) is None:
            prefill_widths[key] = args[0].shape[1]

    assert engine.cache == "dynamic"  # the CPU default; a GPU's is static
    hook = embeddings.register_forward_pre_hook(record)
    try:
        key = "dynamic"
        dynamic = engine.generate(conversations, max_new_tokens=12)
        engine.cache = "static"
        key = "static"
        static = engine.generate(conversations, max_new_tokens=12)
        # generate must not compile the static decode step (at 7B on a GPU that halved the rate).
        assert engine._generation_config(12, 0.0, 1, 1.0).disable_compile
    finally:
        engine.cache = "dynamic"
        hook.remove()
    assert not engine._generation_config(12, 0.0, 1, 1.0).disable_compile
    assert [g[0].text for g in static] == [g[0].text for g in dynamic]
    # The widest batch's prefill skipped the shared prefix with the static cache too.
    assert prefill_widths["static"] == prefill_widths["dynamic"] < full_width


def test_compiled_decode_attends_per_key_value_head_with_the_same_answers(
    tiny_mistral_path, repeated_while_compiling, monkeypatch
):
    """What a GPU does for a long run (compiled static decode), forced on the CPU: one graph serves every full batch,
    keys and values are never repeated per query head inside it, and the answers are the uncompiled engine's."""
    import torch

    from nli_cot_hub.attention import PACKED_GQA

    more = [("A dog runs across the yard.", "An animal moves."), ("She sold the car last week.", "She owns it.")]
    conversations = _conversations() + [prompt_messages(p, h) for p, h in more]  # batches of 2, 2 and 1
    plain = LocalEngine(tiny_mistral_path, batch_size=2, cache="static", progress=False)
    assert not plain.compile_decode  # the CPU default
    expected = plain.generate(conversations, max_new_tokens=8)
    engine = LocalEngine(tiny_mistral_path, batch_size=2, cache="static", compile_decode=True, progress=False)
    assert engine.model.config._attn_implementation == PACKED_GQA
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    try:
        answers = engine.generate(conversations, max_new_tokens=8)
        graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    finally:
        torch._dynamo.reset()
    assert graphs == 1  # the full batches share one cache and one compiled step; the last one runs uncompiled
    assert repeated_while_compiling and not any(repeated_while_compiling)  # the prefill alone repeats, uncompiled
    assert [[g.text for g in row] for row in answers] == [[g.text for g in row] for row in expected]
    assert all(row[0].completion_tokens > 0 for row in answers)

    # A GPU's default: compile only a call with enough full batches to pay for the compile.
    engine.compile_decode = None
    for min_full_batches, compiled_graphs in ((local_engine.COMPILE_MIN_FULL_BATCHES, 0), (2, 1)):
        monkeypatch.setattr(local_engine, "COMPILE_MIN_FULL_BATCHES", min_full_batches)
        torch._dynamo.reset()
        torch._dynamo.utils.counters.clear()
        try:
            answers = engine.generate(conversations, max_new_tokens=8)
            assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == compiled_graphs
        finally:
            torch._dynamo.reset()
        assert [[g.text for g in row] for row in answers] == [[g.text for g in row] for row in expected]
