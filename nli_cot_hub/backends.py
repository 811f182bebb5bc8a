"""Chat backends behind one async interface: Mistral API, OpenAI-compatible servers, TGI, local transformers.

Every backend turns chat ``messages`` into a :class:`Completion` and every failure into a
:class:`BackendError` that says whether trying again may help (429, 5xx, timeouts, dropped
connections) and how long the server asked us to wait (``Retry-After``). Retrying is the engine's
job, so the clients' own retries are switched off here.

``make_backend(spec)`` builds one from a string:

=====================================  ==============================================================
``mistral:open-mistral-7b``             Mistral API (key from ``MISTRAL_API_KEY``)
``mistral:http://host:8000#model``      the ``mistralai`` client against another server (``server_url``)
``openai:http://host:8000/v1#model``    any OpenAI-compatible server: vLLM, SGLang, TGI Messages API,
                                        ``transformers serve`` (JSON schema via ``response_format``)
``llamacpp:http://host:8080/v1#model``  llama.cpp / llama-cpp-python server (``{"type": "json_object",
                                        "schema": ...}``, the form it honours)
``tgi:http://host:8080#tokenizer``      TGI native ``/generate`` with ``grammar``; the chat template comes
                                        from ``tokenizer`` (a folder, Hub id or ``embedded``)
``local:embedded`` / ``local:PATH``     transformers ``generate`` in this process, batched
=====================================  ==============================================================
"""

from __future__ import annotations

import abc
import asyncio
import email.utils
import os
import time
from dataclasses import dataclass, field
from typing import Any, Literal

Message = dict[str, str]
JsonMode = Literal["auto", "schema", "object", "none"]
KINDS = ("mistral", "openai", "llamacpp", "tgi", "local")
RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529}
DEFAULT_TIMEOUT_S = 120.0


@dataclass
class Completion:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str = ""
    finish_reason: str | None = None
    # With top_logprobs asked for: each generated token's text and its top alternatives' log-probabilities.
    tokens: list[str] | None = None
    alternatives: list[dict[str, float]] | None = None
    # True/False when the backend knows whether decoding followed the JSON schema; None otherwise.
    constrained: bool | None = None


class BackendError(Exception):
    """A failed request. ``retryable``: trying again may succeed; ``retry_after``: seconds the
    server asked us to wait, if it said."""

    def __init__(self, message: str, *, retryable: bool, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: either a number or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def http_error(status: int, headers: Any, detail: str) -> BackendError:
    retry_after = parse_retry_after(headers.get("retry-after") if headers is not None else None)
    return BackendError(
        f"HTTP {status}: {detail[:300]}", retryable=status in RETRYABLE_STATUS, status=status, retry_after=retry_after
    )


def transport_error(error: BaseException) -> BackendError:
    return BackendError(f"{type(error).__name__}: {error}"[:300] or type(error).__name__, retryable=True)


class ChatBackend(abc.ABC):
    """One chat model behind one interface; each backend implements ``complete``."""

    kind: str = "base"
    model: str = ""
    # What the backend can do with a JSON schema: "schema" (constrained/validated), or "none".
    json_support: str = "none"
    # Endpoints that template server-side: keep the system message, fold it into the user turn, or decide
    # by the served model's tokenizer when it is readable offline (nli_cot_hub.chat_template.fold_for_endpoint).
    system_role: str = "keep"
    _fold: bool | None = None
    _fold_lock: asyncio.Lock | None = None
    # Top alternatives per generated token to ask for (openai/llamacpp/tgi); None: no log-probabilities.
    top_logprobs: int | None = None

    @abc.abstractmethod
    async def complete(
        self,
        messages: list[Message],
        *,
        json_schema: dict | None = None,
        temperature: float = 0.0,
        max_tokens: int = 512,
        seed: int | None = None,
    ) -> Completion:
        """One reply to ``messages``; raises BackendError (retryable or not) on failure."""

    async def aclose(self) -> None:
        return None

    async def server_messages(self, messages: list[Message]) -> list[Message]:
        """``messages`` as this endpoint should receive them (system message folded when needed)."""
        from nli_cot_hub.chat_template import fold_for_endpoint, fold_system

        if self._fold is None:
            self._fold_lock = self._fold_lock or asyncio.Lock()
            async with self._fold_lock:
                if self._fold is None:
                    self._fold = await asyncio.to_thread(fold_for_endpoint, self.model, self.system_role)
        return fold_system(messages) if self._fold else messages

    def describe(self) -> str:
        return f"{self.kind}:{self.model}"


# ---------------------------------------------------------------- Mistral API


class MistralBackend(ChatBackend):
    kind = "mistral"

    def __init__(
        self,
        model: str,
        *,
        server_url: str | None = None,
        api_key: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        json_mode: JsonMode = "auto",
        system_role: str = "auto",
    ):
        from mistralai.client import Mistral

        self.model = model
        self.system_role = system_role
        key = api_key or os.environ.get("MISTRAL_API_KEY")
        if not key and server_url is None:
            raise ValueError("the Mistral API needs MISTRAL_API_KEY in the environment")
        self.json_mode = "schema" if json_mode == "auto" else json_mode
        self.json_support = self.json_mode
        self._client = Mistral(
            api_key=key or "unused", server_url=server_url, retry_config=None, timeout_ms=int(timeout_s * 1000)
        )

    async def complete(self, messages, *, json_schema=None, temperature=0.0, max_tokens=512, seed=None):
        from mistralai.client.errors import MistralError, NoResponseError

        kwargs: dict[str, Any] = {}
        if json_schema is not None and self.json_mode == "schema":
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": json_schema.get("title", "answer"), "schema": json_schema, "strict": True},
            }
        elif json_schema is not None and self.json_mode == "object":
            kwargs["response_format"] = {"type": "json_object"}
        if seed is not None:
            kwargs["random_seed"] = seed
        messages = await self.server_messages(messages)
        try:
            response = await self._client.chat.complete_async(
                model=self.model,
                messages=messages,
                temperature=temperature,
                max_tokens=max_tokens,
                retries=None,
                **kwargs,
            )
        except MistralError as error:
            raise http_error(error.status_code, error.headers, error.body or str(error)) from None
        except NoResponseError as error:
            raise transport_error(error) from None
        except Exception as error:
            if _is_transport_error(error):
                raise transport_error(error) from None
            raise
        choice = response.choices[0]
        usage = response.usage
        return Completion(
            text=_content_text(choice.message.content),
            prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
            completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
            model=response.model or self.model,
            finish_reason=str(choice.finish_reason),
        )

    async def aclose(self):
        await _maybe_close(self._client)


def _content_text(content) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    # Newer APIs may return a list of chunks; keep the text ones.
    return "".join(getattr(chunk, "text", "") or "" for chunk in content)


# ---------------------------------------------------------------- OpenAI-compatible servers


class OpenAICompatibleBackend(ChatBackend):
    """vLLM, SGLang, TGI's Messages API, ``transformers serve``, llama.cpp server, hosted routers."""

    kind = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        json_mode: JsonMode = "auto",
        flavour: str = "openai",
        system_role: str = "auto",
    ):
        from openai import AsyncOpenAI

        self.kind = flavour
        self.base_url = base_url
        self.model = model
        self.system_role = system_role
        default = "object" if flavour == "llamacpp" else "schema"
        self.json_mode = default if json_mode == "auto" else json_mode
        self.json_support = self.json_mode
        self._client = AsyncOpenAI(
            base_url=base_url, api_key=api_key or _openai_key(base_url), max_retries=0, timeout=timeout_s
        )

    def response_format(self, json_schema: dict | None) -> dict | None:
        if json_schema is None or self.json_mode == "none":
            return None
        if self.json_mode == "object":
            # llama.cpp's server constrains decoding with a schema given this way.
            return {"type": "json_object", "schema": json_schema}
        return {
            "type": "json_schema",
            "json_schema": {"name": json_schema.get("title", "answer"), "schema": json_schema, "strict": True},
        }

    async def complete(self, messages, *, json_schema=None, temperature=0.0, max_tokens=512, seed=None):
        import openai

        kwargs: dict[str, Any] = {}
        response_format = self.response_format(json_schema)
        if response_format is not None:
            kwargs["response_format"] = response_format
        if seed is not None:
            kwargs["seed"] = seed
        messages = await self.server_messages(messages)
        if self.top_logprobs:
            kwargs.update(logprobs=True, top_logprobs=self.top_logprobs)
        try:
            response = await self._client.chat.completions.create(
                model=self.model, messages=messages, temperature=temperature, max_tokens=max_tokens, **kwargs
            )
        except openai.APIStatusError as error:
            raise http_error(error.status_code, error.response.headers, _body_text(error.response)) from None
        except (openai.APITimeoutError, openai.APIConnectionError) as error:
            raise transport_error(error) from None
        except openai.APIResponseValidationError as error:
            raise BackendError(f"malformed response: {error}", retryable=True) from None
        if not response.choices:
            raise BackendError("response has no choices", retryable=True)
        choice = response.choices[0]
        usage = response.usage
        tokens = alternatives = None
        content = getattr(choice.logprobs, "content", None) if self.top_logprobs else None
        if content:
            tokens = [item.token for item in content]
            alternatives = [
                {**{top.token: top.logprob for top in item.top_logprobs or []}, item.token: item.logprob}
                for item in content
            ]
        return Completion(
            text=choice.message.content or "",
            prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
            completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
            model=response.model or self.model,
            finish_reason=choice.finish_reason,
            tokens=tokens,
            alternatives=alternatives,
        )

    async def aclose(self):
        await self._client.close()


def _openai_key(base_url: str) -> str:
    if "huggingface.co" in base_url and os.environ.get("HF_TOKEN"):
        return os.environ["HF_TOKEN"]
    # Local servers (vLLM, llama.cpp, transformers serve) accept any key unless started with one.
    return os.environ.get("OPENAI_API_KEY") or "EMPTY"


def _body_text(response) -> str:
    try:
        return response.text
    except Exception:
        return ""


# ---------------------------------------------------------------- TGI native


class TGIBackend(ChatBackend):
    """TGI's native ``/generate``: the chat template is applied here, JSON is forced by ``grammar``."""

    kind = "tgi"
    json_support = "schema"

    def __init__(
        self,
        url: str,
        tokenizer: str | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        json_mode: JsonMode = "auto",
    ):
        from huggingface_hub import AsyncInferenceClient

        self.url = url.rstrip("/")
        self.tokenizer_source = tokenizer
        self.model = tokenizer or self.url
        self.json_mode = "schema" if json_mode == "auto" else json_mode
        self.json_support = "none" if self.json_mode == "none" else "schema"
        token = os.environ.get("HF_TOKEN") if "huggingface.cloud" in url or "huggingface.co" in url else None
        self._token = token
        self._client = AsyncInferenceClient(model=self.url, token=token, timeout=timeout_s)
        self._tokenizer = None
        self._tokenizer_lock: asyncio.Lock | None = None
        # transformers imports its classes lazily, and two threads importing at once can fail
        # ("cannot import name 'AutoTokenizer'"): import here, before any request goes to a thread.
        from transformers import AutoTokenizer  # noqa: F401

    async def _load_tokenizer(self):
        if self._tokenizer_lock is None:
            self._tokenizer_lock = asyncio.Lock()
        async with self._tokenizer_lock:  # concurrent requests load it once
            if self._tokenizer is None:
                source = self.tokenizer_source
                if source is None:
                    source = await self._served_model_id()
                    self.model = source
                self._tokenizer = await asyncio.to_thread(_load_tokenizer, source)
        return self._tokenizer

    @staticmethod
    def prompt_for(tokenizer, messages: list[Message]) -> str:
        """The ``inputs`` text: the prompt as training rendered it, less the BOS that TGI's ``/generate``
        adds itself when it tokenizes (with it the model would see two)."""
        from nli_cot_hub.chat_template import render_prompt, without_leading_bos

        return without_leading_bos(tokenizer, render_prompt(tokenizer, messages))

    async def _served_model_id(self) -> str:
        """TGI's ``GET /info`` names the model it serves; its tokenizer renders our chat template."""
        import httpx2

        try:
            async with httpx2.AsyncClient(timeout=30) as client:
                headers = {"Authorization": f"Bearer {self._token}"} if self._token else None
                response = await client.get(f"{self.url}/info", headers=headers)
                response.raise_for_status()
                return response.json()["model_id"]
        except (httpx2.HTTPError, KeyError, ValueError) as error:
            raise BackendError(
                f"{self.url}/info did not name the served model ({error}); give the tokenizer as tgi:URL#TOKENIZER",
                retryable=False,
            ) from None

    async def complete(self, messages, *, json_schema=None, temperature=0.0, max_tokens=512, seed=None):
        from huggingface_hub.errors import HfHubHTTPError, InferenceTimeoutError, TextGenerationError

        tokenizer = await self._load_tokenizer()
        prompt = self.prompt_for(tokenizer, messages)
        kwargs: dict[str, Any] = {"max_new_tokens": max_tokens, "details": True, "seed": seed}
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=temperature)
        if json_schema is not None and self.json_mode != "none":
            kwargs["grammar"] = {"type": "json", "value": json_schema}
        if self.top_logprobs:
            kwargs["top_n_tokens"] = self.top_logprobs
        try:
            output = await self._client.text_generation(prompt, **kwargs)
        except TextGenerationError as error:
            cause = error.__cause__
            response = getattr(cause, "response", None)
            if response is not None:
                raise http_error(response.status_code, response.headers, str(error)) from None
            raise BackendError(str(error), retryable=type(error).__name__ == "OverloadedError") from None
        except HfHubHTTPError as error:
            response = error.response
            raise http_error(response.status_code, response.headers, _body_text(response)) from None
        except InferenceTimeoutError as error:
            raise transport_error(error) from None
        except Exception as error:
            if _is_transport_error(error):
                raise transport_error(error) from None
            raise
        details = output.details
        prompt_tokens = len(tokenizer(prompt)["input_ids"])  # as the server counts them, its own BOS included
        tokens = alternatives = None
        if self.top_logprobs and details is not None and details.top_tokens:
            tokens = [_field(token, "text") for token in details.tokens]
            alternatives = [
                {
                    **{_field(top, "text"): _field(top, "logprob") for top in tops},
                    _field(token, "text"): _field(token, "logprob"),
                }
                for token, tops in zip(details.tokens, details.top_tokens)
            ]
        return Completion(
            text=output.generated_text,
            prompt_tokens=prompt_tokens,
            completion_tokens=details.generated_tokens if details else 0,
            model=self.model,
            finish_reason=str(details.finish_reason) if details else None,
            tokens=tokens,
            alternatives=alternatives,
        )

    async def next_token_logprobs(self, text: str, top_n: int) -> tuple[dict[int, float], int]:
        """The top ``top_n`` next tokens after the raw ``text`` (no chat template applied) as {id: log-probability},
        and the token count of ``text``: TGI's /generate continues any text, so the answer can be laid out up to
        the label position and the label read from the first generated token."""
        from huggingface_hub.errors import HfHubHTTPError, TextGenerationError

        try:
            output = await self._client.text_generation(text, max_new_tokens=1, details=True, top_n_tokens=top_n)
        except TextGenerationError as error:
            response = getattr(error.__cause__, "response", None)
            if response is not None:
                raise http_error(response.status_code, response.headers, str(error)) from None
            raise BackendError(str(error), retryable=type(error).__name__ == "OverloadedError") from None
        except HfHubHTTPError as error:
            raise http_error(error.response.status_code, error.response.headers, _body_text(error.response)) from None
        except Exception as error:
            if _is_transport_error(error):
                raise transport_error(error) from None
            raise
        details = output.details
        if details is None or not details.top_tokens:
            raise BackendError(f"{self.url} returned no top_n_tokens", retryable=False, status=422)
        chosen = details.tokens[0]
        scores = {_field(top, "id"): _field(top, "logprob") for top in details.top_tokens[0]}
        scores[_field(chosen, "id")] = _field(chosen, "logprob")
        return scores, len(details.prefill or [])

    async def aclose(self):
        await self._client.close()


def _field(value, name: str):
    """A field of a parsed TGI token, which huggingface_hub leaves a dict inside nested lists."""
    return value[name] if isinstance(value, dict) else getattr(value, name)


def _load_tokenizer(source: str):
    """The served model's tokenizer with the chat template the project's one rule chooses (training's)."""
    from transformers import AutoTokenizer

    from nli_cot_hub.chat_template import apply_chat_rule
    from nli_cot_hub.models import resolve_model

    return apply_chat_rule(AutoTokenizer.from_pretrained(resolve_model(source)))


# ---------------------------------------------------------------- local transformers


@dataclass
class _Pending:
    messages: list[Message]
    temperature: float
    max_tokens: int
    seed: int | None
    future: asyncio.Future = field(repr=False)
    json_schema: dict | None = None


# Requests gathered into one local generate call: a 135M-7B model on a GPU is far from saturated at 8.
GPU_REQUEST_BATCH, CPU_REQUEST_BATCH = 64, 8


class LocalBackend(ChatBackend):
    """transformers ``generate`` in this process, through :class:`nli_cot_hub.local_engine.LocalEngine`.

    Concurrent ``complete`` calls are gathered into batches (same sampling settings; ``batch_size``
    defaults to 64 on a GPU and 8 on a CPU, and ``--concurrency`` should be at least that) and run in a
    worker thread, so the event loop keeps serving the engine while the model works. A request's JSON
    schema constrains its decoding (``json_mode`` ``none`` turns that off: JSON is then asked for in
    the prompt only), and requests with different schemas share a batch.
    """

    kind = "local"
    json_support = "schema"

    def __init__(
        self,
        model: str = "embedded",
        *,
        adapter: str | None = None,
        batch_size: int | None = None,
        device: str | None = None,
        json_mode: JsonMode = "auto",
    ):
        if json_mode not in ("auto", "schema", "none"):
            raise ValueError(
                f"the local backend constrains to the schema (auto/schema) or not at all (none), not {json_mode!r}"
            )
        self.json_support = "none" if json_mode == "none" else "schema"
        self.model_source = model
        self.adapter = adapter
        self.model = model if adapter is None else f"{model}+{adapter}"
        self.batch_size = batch_size
        self.device = device
        self._queue: list[_Pending] = []
        self._worker: asyncio.Task | None = None
        self._engine = None

    def _load(self):
        if self._engine is None:
            from nli_cot_hub.local_engine import LocalEngine

            self._engine = LocalEngine(
                self.model_source, self.adapter, batch_size=self._batch_limit(), device=self._device(), progress=False
            )
        return self._engine

    def _device(self) -> str:
        if self.device is None:
            import torch

            self.device = "cuda" if torch.cuda.is_available() else "cpu"
        return self.device

    def _batch_limit(self) -> int:
        if self.batch_size is None:
            self.batch_size = GPU_REQUEST_BATCH if self._device().startswith("cuda") else CPU_REQUEST_BATCH
        return self.batch_size

    async def complete(self, messages, *, json_schema=None, temperature=0.0, max_tokens=512, seed=None):
        future = asyncio.get_running_loop().create_future()
        schema = json_schema if self.json_support == "schema" else None
        self._queue.append(_Pending(messages, temperature, max_tokens, seed, future, schema))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return await future

    async def _drain(self):
        while self._queue:
            await asyncio.sleep(0.02)  # let concurrent callers join the batch
            head = self._queue[0]
            batch = [
                p
                for p in self._queue
                if (p.temperature, p.max_tokens, p.seed) == (head.temperature, head.max_tokens, head.seed)
            ][: self._batch_limit()]
            for pending in batch:
                self._queue.remove(pending)
            try:
                results = await asyncio.to_thread(self._generate, batch)
            except Exception as error:
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(_local_failure(error))
                continue
            for pending, completion in zip(batch, results):
                if not pending.future.done():
                    pending.future.set_result(completion)

    def _generate(self, batch: list[_Pending]) -> list[Completion]:
        engine = self._load()
        head = batch[0]
        schemas = [p.json_schema for p in batch]
        generations = engine.generate(
            [p.messages for p in batch],
            max_new_tokens=head.max_tokens,
            temperature=head.temperature,
            seed=head.seed,
            json_schema=None if all(s is None for s in schemas) else schemas,
        )
        return [
            Completion(
                text=samples[0].text,
                prompt_tokens=samples[0].prompt_tokens,
                completion_tokens=samples[0].completion_tokens,
                model=self.model,
                finish_reason="stop" if samples[0].finished else "length",
                constrained=samples[0].constrained,
            )
            for samples in generations
        ]


def _local_failure(error: Exception) -> Exception:
    """A schema the engine cannot use (or a token cap too small to close it) fails every request
    alike, so it stops the run; anything else fails the batch's requests."""
    from nli_cot_hub.constrained import SchemaError

    if isinstance(error, SchemaError):
        from nli_cot_hub.engine import FatalBackendError

        return FatalBackendError(f"local: {error}")
    return BackendError(f"local generation failed: {type(error).__name__}: {error}", retryable=False)


# ---------------------------------------------------------------- helpers and factory


def _is_transport_error(error: BaseException) -> bool:
    try:
        import httpx2
    except ImportError:  # pragma: no cover - every client we use depends on it
        return isinstance(error, (ConnectionError, TimeoutError))
    return isinstance(error, (httpx2.TransportError, ConnectionError, TimeoutError, asyncio.TimeoutError))


async def _maybe_close(client) -> None:
    closer = getattr(client, "__aexit__", None)
    if closer is not None:
        try:
            await closer(None, None, None)
        except Exception:
            pass


@dataclass(frozen=True)
class BackendSpec:
    kind: str
    url: str | None
    model: str | None


def parse_spec(spec: str) -> BackendSpec:
    """``KIND:MODEL`` or ``KIND:URL#MODEL`` (see the module docstring)."""
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in KINDS:
        raise ValueError(f"backend {spec!r}: expected KIND:MODEL or KIND:URL#MODEL with KIND one of {KINDS}")
    if rest.startswith(("http://", "https://")):
        url, _, model = rest.partition("#")
        return BackendSpec(kind, url, model or None)
    if kind in ("openai", "llamacpp", "tgi"):
        raise ValueError(f"backend {spec!r}: {kind} needs a server URL, e.g. {kind}:http://127.0.0.1:8000/v1#model")
    if not rest:
        raise ValueError(f"backend {spec!r}: no model given")
    return BackendSpec(kind, None, rest)


def make_backend(
    spec: str,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    json_mode: JsonMode = "auto",
    adapter: str | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    system_role: str = "auto",
) -> ChatBackend:
    """``system_role`` (auto/keep/fold) applies to the endpoints that template server-side (mistral, openai,
    llamacpp); tgi and local render with the project's chat rule themselves."""
    from nli_cot_hub.chat_template import SYSTEM_ROLE_MODES

    if system_role not in SYSTEM_ROLE_MODES:
        raise ValueError(f"system role mode must be one of {SYSTEM_ROLE_MODES}, not {system_role!r}")
    parsed = parse_spec(spec)
    if parsed.kind == "mistral":
        from nli_cot_hub.models import DEFAULT_API_GENERATOR

        return MistralBackend(
            parsed.model or DEFAULT_API_GENERATOR,
            server_url=parsed.url,
            timeout_s=timeout_s,
            json_mode=json_mode,
            system_role=system_role,
        )
    if parsed.kind in ("openai", "llamacpp"):
        return OpenAICompatibleBackend(
            parsed.url,
            parsed.model or "default",
            timeout_s=timeout_s,
            json_mode=json_mode,
            flavour=parsed.kind,
            system_role=system_role,
        )
    if parsed.kind == "tgi":
        return TGIBackend(parsed.url, parsed.model, timeout_s=timeout_s, json_mode=json_mode)
    return LocalBackend(
        parsed.model or "embedded",
        adapter=adapter,
        batch_size=batch_size,
        device=device,
        json_mode="schema" if json_mode == "object" else json_mode,
    )
