"""Constrained decoding (nli_cot_hub/constrained.py) on the embedded model's real tokenizer.

The processor is driven here by random scores, an adversary that picks any token the mask leaves
(one-byte tokens, non-ASCII, ...), so the guarantees hold for any model, not only for a polite one.
Real-model runs are in tests/test_local_engine.py.
"""

import json

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nli_cot_hub.constrained import (
    STRING_PATTERN,
    Grammars,
    SchemaError,
    SchemaLogitsProcessor,
    decoding_schema,
)
from nli_cot_hub.prompts import COT_SCHEMA, JUDGE_SCHEMA, reflect_schema

SCHEMAS = {"cot": COT_SCHEMA, "reflect-0": reflect_schema(0), "reflect-1": reflect_schema(1), "judge": JUDGE_SCHEMA}


@pytest.fixture(scope="module")
def grammars(embedded_model_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(embedded_model_path)
    return Grammars(tokenizer, [tokenizer.eos_token_id], len(tokenizer))


def drive(grammars, schemas, budget: int, seed: int, bias: dict[int, float] | None = None) -> list[bytes]:
    """Decode with random scores under the processor, as generate would; returns each row's bytes."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    processor = SchemaLogitsProcessor([grammars.compile(s) for s in schemas], budget)
    rows = len(schemas)
    input_ids = torch.zeros((rows, 1), dtype=torch.long)
    finished = [False] * rows
    out = [bytearray() for _ in range(rows)]
    eos = grammars.eos_ids[0]
    for _ in range(budget):
        scores = torch.rand((rows, grammars.vocab_size), generator=generator)
        for token, weight in (bias or {}).items():
            scores[:, token] += weight
        chosen = processor(input_ids, scores).argmax(dim=-1)
        for row in range(rows):
            if finished[row]:
                chosen[row] = eos
            elif chosen[row].item() == eos:
                finished[row] = True
            else:
                out[row] += grammars.lltokenizer.decode_bytes([chosen[row].item()])
        input_ids = torch.cat([input_ids, chosen.unsqueeze(1)], dim=1)
        if all(finished):
            break
    return [bytes(row) for row in out]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    names=st.lists(st.sampled_from(sorted(SCHEMAS)), min_size=1, max_size=4),
    extra=st.integers(min_value=0, max_value=40),
    seed=st.integers(min_value=0, max_value=2**31),
)
def test_any_model_closes_a_valid_answer_within_the_budget(grammars, names, extra, seed):
    schemas = [SCHEMAS[name] for name in names]
    budget = max(grammars.compile(s).reserve for s in schemas) + extra
    for name, schema, answer in zip(names, schemas, drive(grammars, schemas, budget, seed)):
        value = json.loads(answer.decode("utf-8"))
        jsonschema.validate(value, schema)
        if name.startswith("reflect"):
            assert value["predicted_label"] == int(name[-1])
        # json.dumps' layout exactly: ", " and ": " separators, no other whitespace between tokens.
        assert answer.decode("utf-8") == json.dumps(value, ensure_ascii=False)


def test_a_model_that_would_write_forever_is_closed(grammars):
    """Scores that favour a long-thought token (' the') at every step: the thought fills the
    budget, then the answer still closes; a budget of exactly the reserve leaves a valid answer too."""
    (the,) = grammars.lltokenizer.tokenize_str(" the")
    (quote,) = grammars.lltokenizer.tokenize_str(' "')
    reserve = grammars.compile(COT_SCHEMA).reserve
    for budget in (reserve, reserve + 1, reserve + 30, 200):
        (answer,) = drive(grammars, [COT_SCHEMA], budget, seed=budget, bias={the: 10.0, quote: 5.0})
        value = json.loads(answer)
        jsonschema.validate(value, COT_SCHEMA)
        if budget >= reserve + 30:
            assert value["thought_process"].count(" the") >= 20
            assert len(grammars.lltokenizer.tokenize_str(answer.decode())) > budget - reserve


def test_whitespace_and_escapes_cannot_loop(grammars):
    """Newlines, tabs, space runs and backslashes are never allowed: a model that prefers them
    still writes a one-line answer."""
    vocab = grammars.lltokenizer
    favourites = {}
    for text in ("\n", "\n\n", "  ", "\t", "\\", " \\n", "    "):
        tokens = vocab.tokenize_str(text)
        if len(tokens) == 1:
            favourites[tokens[0]] = 20.0
    assert len(favourites) >= 4
    for seed in range(3):
        (answer,) = drive(grammars, [COT_SCHEMA], 60, seed, bias=favourites)
        text = answer.decode()
        assert "\n" not in text and "\t" not in text and "\\" not in text and "  " not in text
        jsonschema.validate(json.loads(text), COT_SCHEMA)


def test_budget_below_the_reserve_is_refused(grammars):
    compiled = grammars.compile(COT_SCHEMA)
    with pytest.raises(SchemaError, match=f"budget of {compiled.reserve - 1} new tokens is too small"):
        SchemaLogitsProcessor([compiled], compiled.reserve - 1)


def test_several_strings_share_the_budget(grammars):
    """The reflection's error analysis may not eat the improved thought's tokens."""
    (the,) = grammars.lltokenizer.tokenize_str(" the")
    (quote,) = grammars.lltokenizer.tokenize_str(' "')  # opens each string (and would close it, but " the" wins)
    (answer,) = drive(grammars, [reflect_schema(1)], 120, seed=3, bias={the: 10.0, quote: 5.0})
    value = json.loads(answer)
    analysis, improved = value["error_analysis"], value["improved_thought_process"]
    assert analysis.count(" the") >= 10 and improved.count(" the") >= 10
    assert value["predicted_label"] == 1


def test_decoding_schema_restricts_strings_only():
    schema = decoding_schema(JUDGE_SCHEMA)
    assert schema["properties"]["analysis"]["pattern"] == STRING_PATTERN
    assert "pattern" not in schema["properties"]["coherence"]
    assert "pattern" not in JUDGE_SCHEMA["properties"]["analysis"]  # the shared schema is not changed


def test_compiled_schemas_are_cached(grammars):
    assert grammars.compile(reflect_schema(0)) is grammars.compile(reflect_schema(0))
    assert grammars.compile(reflect_schema(0)) is not grammars.compile(reflect_schema(1))
