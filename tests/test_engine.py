import asyncio
import json

import pytest

from nli_cot_hub import prompts
from nli_cot_hub.backends import BackendError, make_backend
from nli_cot_hub.engine import (
    Engine,
    EngineConfig,
    FatalBackendError,
    Ledger,
    load_prices,
    retry_wait,
    run_jobs,
    subset,
)
from nli_cot_hub.generate import failed_pair, generate_one
from nli_cot_hub.store import RecordStore, read_records
from tests.fault_proxy import BAD_REPLY
from tests.servers import fault_proxy, proxy_counts

QUICK = dict(backoff_initial_s=0.05, backoff_max_s=0.2, max_tokens=8)
PAIR = {"id": "7", "premise": "A man plays a guitar on a stage.", "hypothesis": "A man is sleeping.", "label": 0}


def engine_for(url: str, model: str, **config) -> Engine:
    backend = make_backend(f"openai:{url}/v1#{model}", timeout_s=60)
    return Engine(backend, EngineConfig(**{**QUICK, **config}), Ledger(load_prices()))


async def closing(engine: Engine, coroutine):
    try:
        return await coroutine
    finally:
        await engine.backend.aclose()


# ---------------------------------------------------------------- pure parts


def test_retry_wait_honours_retry_after_but_caps_it():
    assert retry_wait(BackendError("x", retryable=True, retry_after=3.0), 0.5, 60) == 3.0
    assert retry_wait(BackendError("x", retryable=True), 0.5, 60) == 0.5
    assert retry_wait(BackendError("x", retryable=True, retry_after=10_000), 0.5, 60) == 300


def test_ledger_prices_and_merges_across_runs(tmp_path):
    prices = load_prices()
    assert prices["open-mistral-7b"] == {"input": 0.25, "output": 0.25}
    ledger = Ledger(prices)
    usage = ledger.of("open-mistral-7b")
    usage.requests, usage.prompt_tokens, usage.completion_tokens = 2, 3_000_000, 1_000_000
    ledger.of("my-local-model").requests = 1
    assert ledger.cost("open-mistral-7b") == pytest.approx(1.0)
    path = tmp_path / "cot.jsonl.ledger.json"
    ledger.merge_into_file(path)
    usage.requests += 1  # checkpoints during a run add only what is new
    assert ledger.merge_into_file(path)["open-mistral-7b"]["requests"] == 3
    next_run = Ledger(prices)
    next_run.of("open-mistral-7b").prompt_tokens = 4_000_000
    total = next_run.merge_into_file(path)
    assert total["open-mistral-7b"]["requests"] == 3
    assert total["open-mistral-7b"]["cost_usd"] == pytest.approx(2.0)
    assert total["my-local-model"]["cost_usd"] is None
    assert json.loads(path.read_text()) == total


def test_prices_file_errors_name_the_model(tmp_path):
    bad = tmp_path / "prices.yaml"
    bad.write_text("some-model: {input: 1}\n")
    with pytest.raises(ValueError, match="some-model"):
        load_prices(bad)


def test_subset_is_reproducible_and_keeps_order():
    rows = list(range(100))
    first = subset(rows, sample=10, seed=3)
    assert first == subset(rows, sample=10, seed=3) and first == sorted(first)
    assert first != subset(rows, sample=10, seed=4)
    assert subset(rows, sample=10, seed=3, limit=4) == first[:4]
    assert subset(rows, limit=5) == [0, 1, 2, 3, 4]


# ---------------------------------------------------------------- against the real server behind the proxy


@pytest.mark.server
def test_faults_are_retried_and_counted(openai_server, embedded_model_path):
    with fault_proxy(openai_server.url, "429,500,drop,stall,ok", stall_s=60) as proxy:
        engine = engine_for(proxy.url, embedded_model_path, request_timeout_s=15)
        completion = asyncio.run(closing(engine, engine.request([{"role": "user", "content": "Hi"}])))
        assert proxy_counts(proxy) == {"429": 1, "500": 1, "drop": 1, "stall": 1, "ok": 1}
    assert completion.completion_tokens > 0
    usage = engine.ledger.of(embedded_model_path)
    assert (usage.requests, usage.retries, usage.failed_requests) == (5, 4, 4)
    assert usage.completion_tokens == completion.completion_tokens


@pytest.mark.server
def test_retries_run_out_into_an_error(openai_server, embedded_model_path):
    with fault_proxy(openai_server.url, "500") as proxy:
        engine = engine_for(proxy.url, embedded_model_path, max_retries=2)
        with pytest.raises(BackendError, match="HTTP 500"):
            asyncio.run(closing(engine, engine.request([{"role": "user", "content": "Hi"}])))
        assert proxy_counts(proxy) == {"500": 3}


@pytest.mark.server
def test_invalid_json_is_reasked_counted_and_finally_recorded(openai_server, embedded_model_path, tmp_path):
    with fault_proxy(openai_server.url, "badjson") as proxy:
        engine = engine_for(proxy.url, embedded_model_path, max_reasks=2)
        with RecordStore(tmp_path / "cot.jsonl") as store:
            report = asyncio.run(
                closing(
                    engine,
                    run_jobs(
                        [PAIR],
                        handle=lambda row: generate_one(engine, row),
                        on_error=lambda row, error: failed_pair(row, error, model="m"),
                        store=store,
                        engine=engine,
                        progress=False,
                    ),
                )
            )
        assert proxy_counts(proxy) == {"badjson": 3}
    [record] = read_records(tmp_path / "cot.jsonl")
    assert report.written == 1 and report.failed == 1
    assert (record.id, record.status, record.reask_count) == ("7", "failed", 2)
    assert record.raw_output == BAD_REPLY and "no JSON object" in record.error
    assert record.prompt_version == prompts.COT_VERSION
    assert engine.ledger.of(embedded_model_path).reasks == 2
    # The record's usage covers all three answers, not only the last.
    assert record.usage.completion_tokens == engine.ledger.of(embedded_model_path).completion_tokens > 0


@pytest.mark.server
def test_a_reask_gets_the_real_model_answer(openai_server, embedded_model_path):
    with fault_proxy(openai_server.url, "badjson,ok") as proxy:
        engine = engine_for(proxy.url, embedded_model_path, max_reasks=1, max_tokens=12)
        answer = asyncio.run(
            closing(
                engine,
                engine.ask(prompts.cot_messages(PAIR["premise"], PAIR["hypothesis"]), json_schema=prompts.COT_SCHEMA),
            )
        )
        assert proxy_counts(proxy) == {"badjson": 1, "ok": 1}
    assert answer.reask_count == 1 and answer.text != BAD_REPLY and answer.text.strip()


@pytest.mark.server
def test_bad_key_stops_the_run_without_writing(openai_server, embedded_model_path, tmp_path):
    with fault_proxy(openai_server.url, "401") as proxy:
        engine = engine_for(proxy.url, embedded_model_path)
        with RecordStore(tmp_path / "cot.jsonl") as store:
            with pytest.raises(FatalBackendError, match="HTTP 401"):
                asyncio.run(
                    closing(
                        engine,
                        run_jobs(
                            [PAIR, {**PAIR, "id": "8"}],
                            handle=lambda row: generate_one(engine, row),
                            on_error=lambda row, error: failed_pair(row, error, model="m"),
                            store=store,
                            engine=engine,
                            progress=False,
                        ),
                    )
                )
    assert read_records(tmp_path / "cot.jsonl") == []
