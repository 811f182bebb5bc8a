"""The request engine: concurrency, rate limits, retries, re-asks, usage/cost ledger, progress.

``Engine.ask`` sends one conversation and returns a parsed answer:

* transport faults (429, 5xx, timeouts, dropped connections) are retried with exponential backoff
  and jitter, waiting at least what ``Retry-After`` asks (tenacity);
* an answer that cannot be used (invalid JSON, missing fields, or rejected by ``check``) is
  re-asked: the bad reply and a short correction go back to the model, up to ``max_reasks`` times;
* requests and estimated tokens per minute are capped (aiolimiter leaky buckets).

``run_jobs`` drives many ``ask``-based jobs through a worker pool and appends each finished record
to a :class:`~nli_cot_hub.store.RecordStore` at once, so a crash loses only the requests in flight.
Auth/not-found errors (401/403/404) stop the run instead of failing every pair.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nli_cot_hub.backends import BackendError, ChatBackend, Completion
from nli_cot_hub.config import option
from nli_cot_hub.extract import Extraction, extract_answer
from nli_cot_hub.records import CoTRecord, TokenUsage
from nli_cot_hub.redact import redact

FATAL_STATUS = {401, 402, 403, 404}


class FatalBackendError(RuntimeError):
    """An error every later request would hit too (bad key, unknown model): the run stops."""


@dataclass
class EngineConfig:
    concurrency: int = 8
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    max_retries: int = 6
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    request_timeout_s: float = 120.0
    max_reasks: int = 2
    temperature: float = 0.0
    max_tokens: int = 256
    seed: int | None = None


REMOTE_TIMEOUT_S, LOCAL_TIMEOUT_S = 120.0, 1800.0
BACKEND_HELP = (
    "Backend spec: mistral:MODEL (MISTRAL_API_KEY), mistral:URL#MODEL, openai:URL#MODEL (vLLM, SGLang, "
    "TGI Messages API, transformers serve), llamacpp:URL#MODEL, tgi:URL#TOKENIZER, local:embedded or local:PATH."
)


@dataclass(kw_only=True)
class BaseRequestOptions:
    """How a stage asks its backend: concurrency, limits, retries, sampling, JSON, and when a run fails."""

    concurrency: int = option(8, "Requests in flight at once.", min=1)
    rpm: float | None = option(None, "Cap on requests per minute (default: none).")
    tpm: float | None = option(None, "Cap on estimated tokens per minute (default: none).")
    max_retries: int = option(6, "Retries of a request on 429/5xx/timeouts/dropped connections.", min=0)
    max_reasks: int = option(2, "Re-asks when the reply is not usable JSON (counted per record).", min=0)
    timeout: float | None = option(
        None, "Seconds to wait for one reply before retrying (default: 120 for servers, 1800 for the local backend)."
    )
    temperature: float = option(0.0, "Sampling temperature (0 = greedy).", min=0.0)
    max_new_tokens: int = option(256, "Token cap of each reply.", min=1)
    gen_seed: int | None = option(None, "Sampling seed sent to the backend, if it takes one.")
    json_mode: str = option(
        "auto",
        "How to request JSON: auto (per backend), schema (response_format "
        "json_schema), object (json_object + schema, llama.cpp), none (prompt only).",
        choices=("auto", "schema", "object", "none"),
    )
    system_role: str = option(
        "auto",
        "Endpoints that apply their own chat template (mistral, openai, llamacpp): "
        "keep the system message, fold it into the user turn, or auto (fold when the served "
        "model's tokenizer, readable offline, cannot take a system message as it is).",
        choices=("auto", "keep", "fold"),
    )
    constrain: bool = option(
        True,
        "Constrain answers to the stage's JSON schema where the backend can (local: "
        "constrained decoding; servers: as --json-mode says). --no-constrain asks for JSON in "
        "the prompt only.",
        negatable=True,
    )
    retry_failed: bool = option(False, "Drop stored failures first and try them again.")
    progress: bool = option(True, "Show a progress bar.")
    max_failed_share: float = option(
        0.5,
        "Fail the run (exit code 1) when more than this share of its records failed (every record is kept).",
        min=0.0,
        max=1.0,
    )

    def timeout_for(self, backend: str) -> float:
        """A local batch on a busy CPU can take minutes, and a retry would only redo the same work."""
        if self.timeout is not None:
            return self.timeout
        return LOCAL_TIMEOUT_S if backend.startswith("local") else REMOTE_TIMEOUT_S

    def engine_config(self, backend: str) -> EngineConfig:
        return EngineConfig(
            concurrency=self.concurrency,
            requests_per_minute=self.rpm,
            tokens_per_minute=self.tpm,
            max_retries=self.max_retries,
            max_reasks=self.max_reasks,
            request_timeout_s=self.timeout_for(backend),
            temperature=self.temperature,
            max_tokens=self.max_new_tokens,
            seed=self.gen_seed,
        )

    def make_backend(self, backend: str) -> ChatBackend:
        from nli_cot_hub.backends import make_backend
        from nli_cot_hub.data import DataError

        try:
            return make_backend(
                backend,
                timeout_s=self.timeout_for(backend),
                json_mode=self.json_mode if self.constrain else "none",  # type: ignore[arg-type]
                system_role=self.system_role,
            )
        except ValueError as error:
            raise DataError(f"--backend: {error}") from None


@dataclass(kw_only=True)
class RequestOptions(BaseRequestOptions):
    """The request options of a stage that keeps a cost ledger, and the prices it counts the cost at."""

    prices: str | None = option(None, "YAML of USD per million tokens per model (default: shipped list prices).")


# ---------------------------------------------------------------- ledger


def load_prices(path: str | Path | None = None) -> dict[str, dict[str, float]]:
    """US dollars per million tokens, ``{model: {"input": x, "output": y}}``, from a YAML file
    (default: the list prices shipped in ``prices.yaml``)."""
    import yaml

    source = Path(path) if path else Path(__file__).with_name("prices.yaml")
    data = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
    prices = {}
    for model, entry in data.items():
        if not isinstance(entry, dict) or not {"input", "output"} <= set(entry):
            raise ValueError(f"{source}: model {model!r}: needs 'input' and 'output' prices per million tokens")
        prices[str(model)] = {"input": float(entry["input"]), "output": float(entry["output"])}
    return prices


@dataclass
class ModelUsage:
    requests: int = 0
    retries: int = 0
    reasks: int = 0
    failed_requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Ledger:
    """Tokens, requests, retries and cost per model for one run."""

    def __init__(self, prices: dict[str, dict[str, float]] | None = None):
        self.prices = prices or {}
        self.models: dict[str, ModelUsage] = {}
        self._merged: dict[str, dict[str, int]] = {}  # counts already added to the ledger file

    def of(self, model: str) -> ModelUsage:
        return self.models.setdefault(model, ModelUsage())

    def cost(self, model: str) -> float | None:
        price = self.prices.get(model)
        if price is None:
            return None
        usage = self.of(model)
        return (usage.prompt_tokens * price["input"] + usage.completion_tokens * price["output"]) / 1e6

    def as_dict(self) -> dict[str, Any]:
        report = {}
        for model, usage in self.models.items():
            cost = self.cost(model)
            report[model] = {**usage.__dict__, "cost_usd": None if cost is None else round(cost, 6)}
        return report

    def merge_into_file(self, path: str | Path) -> dict[str, Any]:
        """Add the counts since the last merge to the ledger file beside the store (one per output
        file), so calling it now and then during a run loses little to a crash and counts nothing twice."""
        path = Path(path)
        total = json.loads(path.read_text()) if path.exists() else {}
        for model, usage in self.models.items():
            counts = usage.__dict__
            before = self._merged.get(model, {})
            previous = total.get(model, {})
            merged = {key: (previous.get(key) or 0) + value - before.get(key, 0) for key, value in counts.items()}
            self._merged[model] = dict(counts)
            price = self.prices.get(model)
            merged["cost_usd"] = (
                None
                if price is None
                else round(
                    (merged["prompt_tokens"] * price["input"] + merged["completion_tokens"] * price["output"]) / 1e6, 6
                )
            )
            total[model] = merged
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(total, indent=2))
        tmp.replace(path)
        return total


# ---------------------------------------------------------------- answers


@dataclass
class Answer:
    extraction: Extraction
    text: str
    usage: TokenUsage
    reask_count: int
    model: str
    problem: str | None = None  # why the final answer is not usable, if it is not
    constrained: bool | None = None  # the final answer's decoding followed the schema (None: unknown)

    @property
    def status(self) -> str:
        """The record status: the parser's, or ``failed`` when a check rejected a parsed answer."""
        if self.problem and self.extraction.status in ("ok", "repaired"):
            return "failed"
        return self.extraction.status


Check = Callable[[Extraction], str | None]


def retry_wait(error: BaseException | None, backoff_s: float, backoff_max_s: float) -> float:
    """Seconds before the next try: the exponential backoff, but at least what the server asked
    for in ``Retry-After`` (capped at five times the backoff cap, against absurd values)."""
    asked = getattr(error, "retry_after", None) or 0.0
    return max(backoff_s, min(asked, backoff_max_s * 5))


def reask_message(problem: str, schema: dict | None) -> dict[str, str]:
    keys = ", ".join(f'"{key}"' for key in (schema or {}).get("properties", {})) or "the requested keys"
    return {
        "role": "user",
        "content": (
            f"Your reply could not be used: {problem}. Reply again with a single JSON object with the keys "
            f"{keys} and nothing else."
        ),
    }


# ---------------------------------------------------------------- engine


class Engine:
    def __init__(self, backend: ChatBackend, config: EngineConfig | None = None, ledger: Ledger | None = None):
        from aiolimiter import AsyncLimiter

        self.backend = backend
        self.config = config or EngineConfig()
        self.ledger = ledger or Ledger()
        c = self.config
        self._requests = AsyncLimiter(c.requests_per_minute, 60) if c.requests_per_minute else None
        self._tokens = AsyncLimiter(c.tokens_per_minute, 60) if c.tokens_per_minute else None
        self.errors = 0  # requests that failed (before any retry succeeded)
        self.last_problem: str | None = None  # why the latest request is being retried, for the progress line

    async def _throttle(self, messages: list[dict[str, str]], max_tokens: int) -> None:
        if self._requests is not None:
            await self._requests.acquire()
        if self._tokens is not None:
            # Before the reply we only know an estimate: about 4 characters a token, plus the cap.
            estimate = sum(len(m["content"]) for m in messages) / 4 + max_tokens
            await self._tokens.acquire(min(estimate, self._tokens.max_rate))

    async def request(
        self, messages: list[dict[str, str]], *, json_schema: dict | None = None, max_tokens: int | None = None
    ) -> Completion:
        """One completion, retried on transient failures."""
        from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

        c = self.config
        max_tokens = max_tokens or c.max_tokens
        usage = self.ledger.of(self.backend.model)
        backoff = wait_exponential_jitter(initial=c.backoff_initial_s, max=c.backoff_max_s, jitter=c.backoff_initial_s)

        def wait(state) -> float:
            return retry_wait(state.outcome.exception(), backoff(state), c.backoff_max_s)

        def before_sleep(state) -> None:
            usage.retries += 1
            self.last_problem = f"{state.outcome.exception()}"[:120]

        retrying = AsyncRetrying(
            retry=retry_if_exception(lambda e: isinstance(e, BackendError) and e.retryable),
            stop=stop_after_attempt(c.max_retries + 1),
            wait=wait,
            before_sleep=before_sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                await self._throttle(messages, max_tokens)
                usage.requests += 1
                try:
                    completion = await asyncio.wait_for(
                        self.backend.complete(
                            messages,
                            json_schema=json_schema,
                            temperature=c.temperature,
                            max_tokens=max_tokens,
                            seed=c.seed,
                        ),
                        timeout=c.request_timeout_s,
                    )
                except TimeoutError:
                    usage.failed_requests += 1
                    self.errors += 1
                    raise BackendError(f"no answer within {c.request_timeout_s:g} s", retryable=True) from None
                except BackendError as error:
                    usage.failed_requests += 1
                    self.errors += 1
                    if error.status in FATAL_STATUS:
                        raise FatalBackendError(f"{self.backend.describe()}: {error}") from None
                    raise
        usage.prompt_tokens += completion.prompt_tokens
        usage.completion_tokens += completion.completion_tokens
        return completion

    async def ask(
        self,
        messages: list[dict[str, str]],
        *,
        json_schema: dict | None = None,
        check: Check | None = None,
        max_tokens: int | None = None,
        needs_label: bool = True,
    ) -> Answer:
        """Ask until the answer parses (and passes ``check``) or the re-asks run out.

        ``needs_label=False`` (e.g. judging): any JSON object is acceptable to the parser, and
        ``check`` alone decides whether its fields are usable."""
        conversation = list(messages)
        prompt = "\n".join(m["content"] for m in messages)
        total = TokenUsage()
        reasks = 0
        while True:
            completion = await self.request(conversation, json_schema=json_schema, max_tokens=max_tokens)
            total = total + TokenUsage(
                prompt_tokens=completion.prompt_tokens, completion_tokens=completion.completion_tokens
            )
            extraction = extract_answer(completion.text, prompt=prompt)
            problem = _problem(extraction, completion, check, needs_label)
            if problem is None or reasks >= self.config.max_reasks:
                return Answer(
                    extraction,
                    completion.text,
                    total,
                    reasks,
                    completion.model or self.backend.model,
                    problem,
                    completion.constrained,
                )
            reasks += 1
            self.ledger.of(self.backend.model).reasks += 1
            conversation = [
                *conversation,
                {"role": "assistant", "content": completion.text},
                reask_message(problem, json_schema),
            ]


def _problem(
    extraction: Extraction, completion: Completion, check: Check | None, needs_label: bool = True
) -> str | None:
    usable = extraction.status in ("ok", "repaired") or (not needs_label and bool(extraction.fields))
    if not usable:
        reason = extraction.reason or extraction.status
        if completion.finish_reason == "length":
            reason += " (the reply hit the token limit)"
        return reason
    return check(extraction) if check else None


# ---------------------------------------------------------------- running many jobs


@dataclass
class RunReport:
    written: int = 0
    failed: int = 0
    skipped: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    first_error: str | None = None  # the error of the first failed record, for the summary line


def record_status(record: CoTRecord) -> tuple[str, str | None]:
    """The status a stage reports for ``record`` and its error."""
    return record.status, record.error


def judgement_status(record: CoTRecord) -> tuple[str, str | None]:
    """A judged record keeps the status of its thought; the judgement's own status is in ``judge``."""
    verdict = record.judge or {}
    return verdict.get("status", "failed"), verdict.get("error")


async def run_jobs(
    jobs: Iterable[Any],
    handle: Callable[[Any], Awaitable[CoTRecord]],
    on_error: Callable[[Any, BaseException], CoTRecord],
    store,
    engine: Engine,
    *,
    desc: str = "pairs",
    total: int | None = None,
    progress: bool = True,
    checkpoint: Callable[[], None] | None = None,
    checkpoint_every_s: float = 30.0,
    status_of: Callable[[CoTRecord], tuple[str, str | None]] = record_status,
    heartbeat_s: float | None = None,
) -> RunReport:
    """Run ``handle(job)`` for every job with ``engine.config.concurrency`` workers; append each
    resulting record to ``store`` as soon as it is ready. A job whose request finally fails becomes
    ``on_error(job, error)`` (a failed record). A fatal backend error cancels the run and re-raises.
    ``checkpoint()`` (e.g. saving the ledger) runs at most every ``checkpoint_every_s`` seconds.
    ``status_of(record)``: the (status, error) counted in the report."""
    from tqdm.auto import tqdm

    report = RunReport()
    started = time.monotonic()
    queue: asyncio.Queue = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)
    total = total if total is not None else queue.qsize()
    bar = tqdm(total=total, desc=desc, unit="pair", disable=not progress, dynamic_ncols=True)
    last_checkpoint = [time.monotonic()]
    last_finished = [time.monotonic()]
    # Often enough to show life within one request timeout, rarely enough not to flood a log.
    heartbeat_s = heartbeat_s or min(5.0, max(0.5, engine.config.request_timeout_s / 2))

    async def heartbeat() -> None:
        """While no reply arrives, say so on the bar (waiting, retries, why), so it never looks frozen."""
        while True:
            await asyncio.sleep(heartbeat_s)
            idle = time.monotonic() - last_finished[0]
            if idle >= heartbeat_s:
                usage = engine.ledger.of(engine.backend.model)
                line = f"waiting {idle:.0f} s for a reply; {usage.retries} retries"
                if engine.last_problem:
                    line += f" (last: {engine.last_problem})"
                bar.set_postfix_str(redact(line), refresh=True)

    def postfix() -> None:
        usage = engine.ledger.of(engine.backend.model)
        bar.set_postfix(
            failed=report.failed, errors=engine.errors, retries=usage.retries, reasks=usage.reasks, refresh=False
        )

    async def worker() -> None:
        while True:
            try:
                job = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                record = await handle(job)
            except FatalBackendError:
                raise
            except (TimeoutError, BackendError) as error:
                record = on_error(job, error)
            store.append(record)
            report.written += 1
            status, error = status_of(record)
            report.by_status[status] = report.by_status.get(status, 0) + 1
            if status == "failed":
                report.failed += 1
                report.first_error = report.first_error or error
            last_finished[0] = time.monotonic()
            postfix()
            bar.update(1)
            if checkpoint is not None and time.monotonic() - last_checkpoint[0] >= checkpoint_every_s:
                last_checkpoint[0] = time.monotonic()
                checkpoint()

    workers = [asyncio.create_task(worker()) for _ in range(max(1, engine.config.concurrency))]
    beat = asyncio.create_task(heartbeat()) if progress else None
    try:
        await asyncio.gather(*workers)
    except BaseException:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        raise
    finally:
        if beat is not None:
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)
        bar.close()
        report.seconds = time.monotonic() - started
    return report


def subset(rows: list, *, limit: int | None = None, sample: int | None = None, seed: int = 0) -> list:
    """``sample`` rows drawn at random (reproducible with ``seed``, original order kept), then the
    first ``limit``. Chosen from the whole input, so a restart picks the same subset."""
    import random

    chosen = rows
    if sample is not None and sample < len(rows):
        picked = sorted(random.Random(seed).sample(range(len(rows)), sample))
        chosen = [rows[i] for i in picked]
    if limit is not None:
        chosen = chosen[:limit]
    return chosen
