import asyncio
import email.utils
import json
import time

import jsonschema
import pytest

from nli_cot_hub import prompts
from nli_cot_hub.backends import (
    BackendError,
    LocalBackend,
    OpenAICompatibleBackend,
    TGIBackend,
    http_error,
    make_backend,
    parse_retry_after,
    parse_spec,
)
from tests.servers import fault_proxy, proxy_counts

HELLO = [{"role": "user", "content": 'Reply with the JSON object {"answer": 1} and nothing else.'}]


# ---------------------------------------------------------------- pure parts


@pytest.mark.parametrize(
    "spec, kind, url, model",
    [
        ("mistral:open-mistral-7b", "mistral", None, "open-mistral-7b"),
        ("mistral:http://127.0.0.1:9/#m", "mistral", "http://127.0.0.1:9/", "m"),
        ("openai:http://127.0.0.1:8000/v1#org/model", "openai", "http://127.0.0.1:8000/v1", "org/model"),
        ("llamacpp:http://h:8080/v1#x", "llamacpp", "http://h:8080/v1", "x"),
        ("tgi:https://e.endpoints.huggingface.cloud", "tgi", "https://e.endpoints.huggingface.cloud", None),
        ("local:embedded", "local", None, "embedded"),
    ],
)
def test_parse_spec(spec, kind, url, model):
    parsed = parse_spec(spec)
    assert (parsed.kind, parsed.url, parsed.model) == (kind, url, model)


@pytest.mark.parametrize("spec", ["gpt4", "vllm:http://x", "openai:model-without-url", "mistral:"])
def test_bad_specs_are_rejected_with_the_reason(spec):
    with pytest.raises(ValueError, match="backend"):
        parse_spec(spec)


def test_mistral_without_key_says_which_variable(monkeypatch):
    monkeypatch.delenv("MISTRAL_API_KEY", raising=False)
    with pytest.raises(ValueError, match="MISTRAL_API_KEY"):
        make_backend("mistral:open-mistral-7b")


def test_retry_after_seconds_and_http_date():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= parse_retry_after(later) <= 31


@pytest.mark.parametrize(
    "status, retryable", [(429, True), (500, True), (503, True), (400, False), (401, False), (422, False)]
)
def test_http_error_classification(status, retryable):
    error = http_error(status, {"retry-after": "2"}, "body")
    assert error.retryable is retryable and error.status == status and error.retry_after == 2.0


def test_llamacpp_gets_json_object_with_schema_and_openai_gets_json_schema():
    llama = OpenAICompatibleBackend("http://127.0.0.1:9/v1", "m", flavour="llamacpp")
    assert llama.response_format(prompts.COT_SCHEMA) == {"type": "json_object", "schema": prompts.COT_SCHEMA}
    openai = OpenAICompatibleBackend("http://127.0.0.1:9/v1", "m")
    assert openai.response_format(prompts.COT_SCHEMA)["json_schema"]["schema"] == prompts.COT_SCHEMA
    assert (
        OpenAICompatibleBackend("http://127.0.0.1:9/v1", "m", json_mode="none").response_format(prompts.COT_SCHEMA)
        is None
    )


# ---------------------------------------------------------------- real servers


@pytest.mark.server
def test_openai_client_against_transformers_serve(openai_server, embedded_model_path):
    async def go():
        backend = make_backend(f"openai:{openai_server.url}/v1#{embedded_model_path}")
        try:
            return await backend.complete(HELLO, json_schema={"type": "object"}, max_tokens=12)
        finally:
            await backend.aclose()

    completion = asyncio.run(go())
    assert completion.text.strip()
    assert completion.prompt_tokens > 10 and 0 < completion.completion_tokens <= 12


@pytest.mark.server
def test_mistralai_client_against_transformers_serve(openai_server, embedded_model_path):
    async def go():
        backend = make_backend(f"mistral:{openai_server.url}#{embedded_model_path}")
        try:
            return await backend.complete(HELLO, max_tokens=12)
        finally:
            await backend.aclose()

    completion = asyncio.run(go())
    assert completion.text.strip() and completion.completion_tokens > 0


@pytest.mark.server
def test_transport_faults_become_retryable_backend_errors(openai_server, embedded_model_path):
    with fault_proxy(openai_server.url, "429,500,drop,401", stall_s=5) as proxy:

        async def one():
            backend = make_backend(f"openai:{proxy.url}/v1#{embedded_model_path}", timeout_s=20)
            try:
                await backend.complete(HELLO, max_tokens=4)
            except BackendError as error:
                return error
            finally:
                await backend.aclose()

        errors = [asyncio.run(one()) for _ in range(4)]
        assert proxy_counts(proxy) == {"429": 1, "500": 1, "drop": 1, "401": 1}
    rate_limited, server_error, dropped, unauthorised = errors
    assert (rate_limited.status, rate_limited.retryable, rate_limited.retry_after) == (429, True, 1.0)
    assert (server_error.status, server_error.retryable) == (500, True)
    assert dropped.status is None and dropped.retryable
    assert (unauthorised.status, unauthorised.retryable) == (401, False)


@pytest.mark.server
def test_tgi_native_generate_with_grammar(tgi_test_server, embedded_model_path):
    async def go(schema):
        backend = TGIBackend(tgi_test_server.url, embedded_model_path)
        try:
            return await backend.complete(HELLO, json_schema=schema, max_tokens=8)
        finally:
            await backend.aclose()

    completion = asyncio.run(go(prompts.COT_SCHEMA))
    assert completion.text.strip() and 0 < completion.completion_tokens <= 8 and completion.prompt_tokens > 10
    # The grammar is really sent and checked: an invalid schema is a 422 validation error, not retried.
    with pytest.raises(BackendError) as raised:
        asyncio.run(go({"type": "object", "properties": {"x": {"type": "no-such-type"}}}))
    assert raised.value.status == 422 and not raised.value.retryable
    assert "grammar" in str(raised.value)


@pytest.mark.server
def test_tgi_backend_finds_the_tokenizer_through_info(tgi_test_server):
    async def go():
        backend = make_backend(f"tgi:{tgi_test_server.url}")
        try:
            return await backend.complete(HELLO, max_tokens=4), backend.model
        finally:
            await backend.aclose()

    completion, model = asyncio.run(go())
    assert completion.completion_tokens > 0 and model.endswith("smollm2-135m-instruct")


@pytest.mark.server
def test_tgi_prompt_reaches_the_model_with_one_bos_as_training_tokenized_it(tiny_mistral_path):
    """TGI's /generate tokenizes the inputs with the tokenizer's special tokens, so a rendered template that
    already starts with <s> reaches a Mistral model as <s><s>[INST]...; the backend sends it without its BOS."""
    from huggingface_hub import InferenceClient

    from nli_cot_hub.chat_format import prompt_messages
    from nli_cot_hub.chat_template import encode_prompts
    from tests.servers import tgi_server

    messages = prompt_messages("A man is sleeping on a bench.", "A person rests.")
    with tgi_server(tiny_mistral_path) as server:

        async def go():
            backend = TGIBackend(server.url, tiny_mistral_path)
            try:
                return await backend.complete(messages, max_tokens=2), await backend._load_tokenizer()
            finally:
                await backend.aclose()

        completion, tokenizer = asyncio.run(go())
        client = InferenceClient(model=server.url)

        def prefill(text: str) -> list[int]:
            output = client.text_generation(text, max_new_tokens=1, details=True, decoder_input_details=True)
            return [token.id for token in output.details.prefill]

        sent = prefill(TGIBackend.prompt_for(tokenizer, messages))
        doubled = prefill(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    training_prompt = encode_prompts(tokenizer, [messages])[0]
    assert sent == training_prompt and sent.count(tokenizer.bos_token_id) == 1
    assert doubled[:2] == [tokenizer.bos_token_id] * 2  # the template's text as it is: two BOS
    assert completion.prompt_tokens == len(sent) and completion.completion_tokens > 0


@pytest.mark.server
def test_llama_cpp_server_constrains_output_to_the_schema(llama_server):
    async def go():
        backend = make_backend(f"llamacpp:{llama_server.url}/v1#embedded")
        try:
            return await backend.complete(
                prompts.cot_messages("A dog runs in a park.", "An animal is outside."),
                json_schema=prompts.COT_SCHEMA,
                max_tokens=200,
            )
        finally:
            await backend.aclose()

    completion = asyncio.run(go())
    # A 135M model never keeps to a schema by itself; constrained decoding makes it valid JSON.
    jsonschema.validate(json.loads(completion.text), prompts.COT_SCHEMA)


@pytest.mark.slow
def test_local_backend_batches_concurrent_requests(embedded_model_path):
    backend = LocalBackend(embedded_model_path, batch_size=4)
    questions = [[{"role": "user", "content": f"Say the number {n}."}] for n in range(3)]

    async def go():
        return await asyncio.gather(*(backend.complete(q, max_tokens=6) for q in questions))

    completions = asyncio.run(go())
    assert len(completions) == 3 and all(c.completion_tokens > 0 for c in completions)
    # Same prompts one by one give the same greedy text: batching (left padding) changes nothing.
    alone = asyncio.run(backend.complete(questions[1], max_tokens=6))
    assert alone.text == completions[1].text


@pytest.mark.slow
def test_local_backend_constrains_to_each_requests_schema(embedded_model_path):
    """Concurrent requests with different schemas share a batch; each answer follows its own schema.
    json_mode none turns constraining off."""
    backend = LocalBackend(embedded_model_path, batch_size=4)
    assert backend.json_support == "schema"
    pair = ("A dog runs in a park.", "An animal is outside.")

    async def go(chat):
        try:
            return await asyncio.gather(
                chat.complete(
                    prompts.reflect_messages(*pair, "No animal.", 0, 1),
                    json_schema=prompts.reflect_schema(1),
                    max_tokens=48,
                ),
                chat.complete(prompts.cot_messages(*pair), json_schema=prompts.COT_SCHEMA, max_tokens=32),
            )
        finally:
            await chat.aclose()

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two threads on a busy 2-core machine crawl
    try:
        reflection, answer = asyncio.run(go(backend))
        free = LocalBackend(embedded_model_path, json_mode="none")
        free._engine = backend._engine  # the same loaded model
        _, unconstrained = asyncio.run(go(free))
    finally:
        torch.set_num_threads(threads)
    jsonschema.validate(json.loads(reflection.text), prompts.reflect_schema(1))
    jsonschema.validate(json.loads(answer.text), prompts.COT_SCHEMA)
    assert reflection.constrained and answer.constrained
    assert free.json_support == "none"
    assert unconstrained.constrained is False and unconstrained.text != answer.text


def test_local_backend_gathers_more_requests_per_batch_on_a_gpu():
    # Nothing is loaded until the first request, so the defaults can be read without a model.
    assert LocalBackend("embedded", device="cuda")._batch_limit() == 64
    assert LocalBackend("embedded", device="cpu")._batch_limit() == 8
    assert LocalBackend("embedded", device="cuda", batch_size=3)._batch_limit() == 3
    assert make_backend("local:embedded", batch_size=5)._batch_limit() == 5


def test_tgi_backend_loads_its_tokenizer_once_under_concurrency(embedded_model_path):
    """A fresh interpreter, as the CLI is: concurrent first requests must neither race on transformers'
    lazy imports in threads nor load the tokenizer once per request."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import asyncio, sys
        from nli_cot_hub import backends

        calls = []
        load = backends._load_tokenizer
        backends._load_tokenizer = lambda source: calls.append(source) or load(source)
        backend = backends.TGIBackend("http://127.0.0.1:9", {embedded_model_path!r})

        async def main():
            tokenizers = await asyncio.gather(*(backend._load_tokenizer() for _ in range(8)))
            assert len({{id(t) for t in tokenizers}}) == 1, "several tokenizers"
        asyncio.run(main())
        assert "transformers" in sys.modules
        print(len(calls))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "1"
