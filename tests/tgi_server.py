"""A small server speaking Text Generation Inference's native protocol, backed by a real local model.

It implements what ``huggingface_hub.InferenceClient.text_generation`` uses of TGI:

``POST /generate`` and ``POST /``  ``{"inputs": str, "parameters": {...}}`` ->
    ``{"generated_text": str, "details": {"finish_reason", "generated_tokens", "seed", "prefill", "tokens"}}``
    (``details`` only when asked; ``prefill`` lists the prompt tokens when ``decoder_input_details`` is set).
    The prompt is tokenized with the tokenizer's special tokens (a BOS for Mistral/Llama tokenizers), as TGI's
    router does for ``/generate`` unless the request says ``"add_special_tokens": false``. Errors are
    ``{"error": str, "error_type": "validation"|"generation"}`` with 422 / 500 as TGI answers them.
``GET /info``, ``GET /health``.

``parameters.grammar`` (``{"type": "json", "value": <JSON schema>}`` or ``{"type": "regex", "value": str}``)
is validated the way TGI does before generating (unknown type, a schema that is not a valid JSON
schema, a regex that does not compile -> 422), but decoding is not constrained: this server has no
grammar engine. Tests therefore check the request path, not the shape of the output.

Run: ``python tests/tgi_server.py --model <folder> --port 8080``. The predict tests can reuse it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import threading

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

MAX_INPUT_TOKENS = 4096
MAX_TOTAL_TOKENS = 8192


class ValidationFailure(ValueError):
    pass


def validate_grammar(grammar) -> None:
    if grammar is None:
        return
    if not isinstance(grammar, dict) or "type" not in grammar or "value" not in grammar:
        raise ValidationFailure("grammar must be an object with 'type' and 'value'")
    kind, value = grammar["type"], grammar["value"]
    if kind in ("json", "json_schema"):
        import jsonschema

        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError as error:
                raise ValidationFailure(f"grammar is not valid JSON: {error}") from None
        if not isinstance(value, dict):
            raise ValidationFailure("a json grammar value must be a JSON schema object")
        try:
            jsonschema.validators.validator_for(value).check_schema(value)
        except jsonschema.SchemaError as error:
            raise ValidationFailure(f"grammar is not a valid JSON schema: {error.message}") from None
    elif kind == "regex":
        try:
            re.compile(value)
        except (re.error, TypeError) as error:
            raise ValidationFailure(f"grammar regex does not compile: {error}") from None
    else:
        raise ValidationFailure(f"unknown grammar type {kind!r} (json, json_schema or regex)")


def validate_parameters(body) -> tuple[str, dict]:
    """The prompt and the parameters (with the request's top-level ``add_special_tokens``, default true)."""
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), str) or not body["inputs"]:
        raise ValidationFailure("`inputs` must be a non-empty string")
    parameters = body.get("parameters") or {}
    max_new = parameters.get("max_new_tokens") or 100
    if not isinstance(max_new, int) or max_new < 1:
        raise ValidationFailure("`max_new_tokens` must be strictly positive")
    temperature = parameters.get("temperature")
    if temperature is not None and temperature <= 0:
        raise ValidationFailure("`temperature` must be strictly positive")
    validate_grammar(parameters.get("grammar"))
    add_special = body.get("add_special_tokens", True)
    return body["inputs"], {**parameters, "max_new_tokens": max_new, "add_special_tokens": add_special is not False}


def build_app(model_dir: str) -> FastAPI:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    lock = threading.Lock()
    eos = tokenizer.eos_token_id

    def generate(prompt: str, parameters: dict) -> dict:
        ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=parameters["add_special_tokens"])
        if ids["input_ids"].shape[1] > MAX_INPUT_TOKENS:
            raise ValidationFailure(f"`inputs` must have less than {MAX_INPUT_TOKENS} tokens")
        options = {"max_new_tokens": parameters["max_new_tokens"], "pad_token_id": tokenizer.pad_token_id}
        sampling = bool(parameters.get("do_sample")) or (parameters.get("temperature") or 0) > 0
        if sampling:
            options.update(
                do_sample=True,
                temperature=parameters.get("temperature") or 1.0,
                top_p=parameters.get("top_p"),
                top_k=parameters.get("top_k"),
            )
            if parameters.get("seed") is not None:
                torch.manual_seed(int(parameters["seed"]))
        else:
            options.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        top_n = int(parameters.get("top_n_tokens") or 0)
        with lock, torch.inference_mode():
            output = model.generate(**ids, **options, output_scores=True, return_dict_in_generate=True)
        new = output.sequences[0, ids["input_ids"].shape[1] :].tolist()
        # Log-probabilities of the chosen tokens and the top_n_tokens alternatives, from the scores generate used.
        logprobs = [torch.log_softmax(step[0].float(), dim=-1) for step in output.scores]
        finished = eos in new
        if finished:
            new = new[: new.index(eos) + 1]
        text = tokenizer.decode(new, skip_special_tokens=True)
        for stop in parameters.get("stop") or []:
            if stop in text:
                text, finished = text[: text.index(stop) + len(stop)], True
        if parameters.get("return_full_text"):
            text = prompt + text
        result = {"generated_text": text}
        if parameters.get("details"):
            result["details"] = {
                "finish_reason": "eos_token" if finished else "length",
                "generated_tokens": len(new),
                "seed": parameters.get("seed"),
                "prefill": [
                    {"id": t, "text": tokenizer.decode([t]), "logprob": None} for t in ids["input_ids"][0].tolist()
                ]
                if parameters.get("decoder_input_details")
                else [],
                "tokens": [
                    {"id": t, "text": tokenizer.decode([t]), "logprob": float(logprobs[i][t]), "special": t == eos}
                    for i, t in enumerate(new)
                ],
            }
            if top_n:
                result["details"]["top_tokens"] = [
                    [
                        {
                            "id": int(t),
                            "text": tokenizer.decode([int(t)]),
                            "logprob": float(logprobs[i][t]),
                            "special": int(t) == eos,
                        }
                        for t in torch.topk(logprobs[i], top_n).indices
                    ]
                    for i in range(len(new))
                ]
        return result

    app = FastAPI()

    async def handle(request: Request):
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": "body is not JSON", "error_type": "validation"}, status_code=422)
        try:
            prompt, parameters = validate_parameters(body)
            return JSONResponse(await asyncio.to_thread(generate, prompt, parameters))
        except ValidationFailure as error:
            return JSONResponse({"error": str(error), "error_type": "validation"}, status_code=422)
        except Exception as error:
            return JSONResponse({"error": str(error), "error_type": "generation"}, status_code=500)

    app.add_api_route("/generate", handle, methods=["POST"])
    app.add_api_route("/", handle, methods=["POST"])

    @app.get("/health")
    async def health():
        return JSONResponse({})

    @app.get("/info")
    async def info():
        return {
            "model_id": model_dir,
            "model_dtype": "float32",
            "model_device_type": "cpu",
            "max_input_tokens": MAX_INPUT_TOKENS,
            "max_total_tokens": MAX_TOTAL_TOKENS,
            "version": "nli-cot-hub-test",
            "router": "text-generation-router",
        }

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="TGI-protocol test server")
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(build_app(args.model), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
