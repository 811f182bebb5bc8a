"""The local engine's compiled decode on a GPU, on a tiny Mistral-7B-v0.3-shaped model: the static cache, the decode
step of full batches compiled with CUDA graphs over the packed grouped-query attention. Skipped without a CUDA device;
on a GPU machine:

    python -m pytest -q tests/test_local_engine_gpu.py
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

PAIRS = [
    ("A man is sleeping on a bench in the park.", "A person rests."),
    ("Two kids play football.", "Children are outside."),
    ("The committee postponed the vote until next spring because several members were abroad.", "No vote was held."),
    ("A dog runs across the yard.", "An animal moves."),
    ("She sold the car last week.", "She still owns the car."),
]


@pytest.fixture(scope="module")
def tiny_mistral(tmp_path_factory) -> str:
    from tests.tiny_mistral import build_tiny_mistral

    return build_tiny_mistral(tmp_path_factory.mktemp("tiny-mistral"))


def test_compiled_static_decode_gives_the_same_answers(tiny_mistral):
    from nli_cot_hub.attention import PACKED_GQA
    from nli_cot_hub.chat_format import prompt_messages
    from nli_cot_hub.local_engine import LocalEngine

    conversations = [prompt_messages(premise, hypothesis) for premise, hypothesis in PAIRS]
    options = dict(batch_size=2, dtype="float32", progress=False)
    plain = LocalEngine(tiny_mistral, compile_decode=False, **options)
    assert plain.device.startswith("cuda") and plain.cache == "static"
    expected = plain.generate(conversations, max_new_tokens=12)
    engine = LocalEngine(tiny_mistral, compile_decode=True, **options)
    assert engine.model.config._attn_implementation == PACKED_GQA
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    try:
        answers = engine.generate(conversations, max_new_tokens=12)
        again = engine.generate(conversations, max_new_tokens=12)  # replayed graphs, nothing compiled
        stats = dict(torch._dynamo.utils.counters["stats"])
        skipped = dict(torch._dynamo.utils.counters["inductor"])
    finally:
        torch._dynamo.reset()
    # batches of 2, 2 and 1 rows: one static cache and one graph for the full batches; the last runs uncompiled
    assert stats["unique_graphs"] == 1, stats
    assert not any(key.startswith("cudagraph_skips") for key in skipped), skipped
    texts = [[g.text for g in row] for row in expected]
    assert [[g.text for g in row] for row in answers] == texts == [[g.text for g in row] for row in again]
    assert all(row[0].completion_tokens > 0 for row in answers)


def test_constrained_answers_under_the_compiled_decode_match_the_uncompiled_ones(tiny_mistral):
    """The schema's logits processor reads each step's logits after the CUDA graph has written them: the compiled
    engine's constrained answers are valid JSON of the schema and the uncompiled engine's, token for token."""
    import json

    from nli_cot_hub.chat_format import prompt_messages
    from nli_cot_hub.local_engine import LocalEngine
    from nli_cot_hub.prompts import COT_SCHEMA

    conversations = [prompt_messages(premise, hypothesis) for premise, hypothesis in PAIRS]
    options = dict(batch_size=2, dtype="float32", progress=False)
    runs = []
    for compile_decode in (False, True):
        engine = LocalEngine(tiny_mistral, compile_decode=compile_decode, **options)
        try:
            runs.append(engine.generate(conversations, max_new_tokens=48, json_schema=COT_SCHEMA))
        finally:
            torch._dynamo.reset()
    plain, compiled = ([g[0] for g in run] for run in runs)
    assert [g.text for g in compiled] == [g.text for g in plain]
    for generation in compiled:
        assert generation.constrained and json.loads(generation.text)["predicted_label"] in (0, 1)
