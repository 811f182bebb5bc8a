"""Predict: chain-of-thought answers for NLI pairs, streamed to a resumable predictions JSONL, and the
submission CSV.

Backends: the in-process :class:`~nli_cot_hub.local_engine.LocalEngine` (``local``), or any
``nli_cot_hub.backends`` spec (``tgi:URL#TOKENIZER`` with the JSON grammar, ``openai:URL#MODEL``, ...)
driven by :mod:`nli_cot_hub.engine` (concurrency, retries). Every row becomes one
:class:`~nli_cot_hub.records.CoTRecord` (``predicted_label``, ``thought_process``, ``status``,
``raw_output``; ``votes``/``vote_share`` under self-consistency), appended to the store as soon as it
is ready, so a rerun of the same command continues where the last one stopped.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from nli_cot_hub.config import failed_share_problem, option, stage_config
from nli_cot_hub.data import DataError, PairOptions, pair_rows
from nli_cot_hub.engine import BaseRequestOptions
from nli_cot_hub.extract import Extraction, extract_answer
from nli_cot_hub.formats import FORMATS
from nli_cot_hub.local_engine import COMPILE_MIN_FULL_BATCHES
from nli_cot_hub.local_engine import MODES as ENGINE_MODES
from nli_cot_hub.records import CoTRecord, TokenUsage

PROMPTS = ("finetune", "cot")
FALLBACKS = ("majority", "0", "1")
READOUTS = ("generate", "logprob")
JSON_MODES = ("auto", "schema", "object", "none")


@dataclass
class PredictSettings:
    """How :func:`predict` asks its model (the stage config :class:`PredictConfig` builds one)."""

    prompt: str = "finetune"  # finetune: chat_format (fine-tuned models); cot: the few-shot CoT prompt
    max_new_tokens: int = 256
    temperature: float = 0.0
    num_samples: int = 1
    seed: int | None = None
    batch_size: int | None = None  # local engine (None: what GPU memory holds up to 512; 8 on a CPU)
    concurrency: int = 8  # remote backends
    max_retries: int = 6
    max_reasks: int = 0  # a prediction is the model's first answer unless asked otherwise
    timeout_s: float = 120.0
    requests_per_minute: float | None = None  # remote backends: rate limits (None: none)
    tokens_per_minute: float | None = None
    json_mode: str = "auto"  # remote backends: how the answer's JSON schema is sent (when constrained)
    system_role: str = "auto"  # endpoints with a server-side template: auto, keep or fold
    completion_format: str | None = None  # None: the adapter folder's (completion_format.json), else thought_first
    readout: str = "generate"  # generate: parse the generated answer; logprob: compare p(0) and p(1)
    explain: bool = False  # answer-first formats: also write the explanation of the label
    thoughts_from: str | None = None  # logprob + thought_first: take each row's thought from these predictions
    constrain: bool = True  # decode to the answer's JSON schema (local engine; remote: send it)

    def __post_init__(self):
        from nli_cot_hub.chat_template import SYSTEM_ROLE_MODES
        from nli_cot_hub.formats import check_format

        if self.prompt not in PROMPTS:
            raise ValueError(f"unknown prompt {self.prompt!r}; choose one of {PROMPTS}")
        if self.system_role not in SYSTEM_ROLE_MODES:
            raise ValueError(f"unknown system role mode {self.system_role!r}; choose one of {SYSTEM_ROLE_MODES}")
        if self.completion_format is not None:
            check_format(self.completion_format)
        if self.json_mode not in JSON_MODES:
            raise ValueError(f"unknown JSON mode {self.json_mode!r}; choose one of {JSON_MODES}")
        if self.readout not in READOUTS:
            raise ValueError(f"unknown read-out {self.readout!r}; choose one of {READOUTS}")
        if self.readout == "logprob" and (self.prompt != "finetune" or self.num_samples > 1):
            raise ValueError(
                "--readout logprob reads the label of a fine-tuned format: it needs --prompt finetune "
                "and one sample per pair"
            )
        if self.num_samples > 1 and self.temperature <= 0:
            raise ValueError("self-consistency (num_samples > 1) needs a temperature > 0, e.g. 0.7")


@dataclass
class PredictResult:
    output: Path
    written: int = 0
    already_done: int = 0
    dropped_failed: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    failed: int = 0
    first_error: str | None = None
    load_seconds: float = 0.0  # of ``seconds``: loading the local model, before the first pair
    stats: Path | None = None  # the --stats file, when this run wrote it
    submission: Submission | None = None  # the --submission CSV written, when one was asked for and written
    problem: str | None = None  # why this run counts as failed (too many failures, a refused submission)

    @property
    def examples_per_second(self) -> float | None:
        """Rows written per second of prediction, model loading left out."""
        busy = self.seconds - self.load_seconds
        return self.written / busy if self.written and busy > 0 else None


def messages_for(
    premise: str, hypothesis: str, prompt: str, completion_format: str = "thought_first", task: str = "label"
) -> list[dict[str, str]]:
    if prompt == "cot":
        from nli_cot_hub.prompts import cot_messages

        return cot_messages(premise, hypothesis)
    from nli_cot_hub.formats import prompt_messages

    return prompt_messages(premise, hypothesis, completion_format, task)


def prompt_version(prompt: str, completion_format: str = "thought_first") -> str:
    if prompt == "cot":
        from nli_cot_hub.prompts import COT_VERSION

        return COT_VERSION
    from nli_cot_hub.chat_format import FORMAT_VERSION

    return FORMAT_VERSION if completion_format == "thought_first" else f"{FORMAT_VERSION}/{completion_format}"


def majority_vote(labels: Sequence[int | None]) -> tuple[int | None, float]:
    """The most common label and its share of all samples (unparsed ones included).

    A tie goes to the label of the earliest sample that has one; no label at all gives (None, 0.0).
    """
    counts = Counter(label for label in labels if label is not None)
    if not counts:
        return None, 0.0
    top = max(counts.values())
    tied = {label for label, count in counts.items() if count == top}
    winner = next(label for label in labels if label in tied)
    return winner, top / len(labels)


def record_from_samples(
    row: dict,
    texts: Sequence[str],
    extractions: Sequence[Extraction],
    *,
    model: str,
    version: str,
    usage: TokenUsage,
    constrained: bool | None = None,
) -> CoTRecord:
    """One prediction record from one or more sampled answers of the same row."""
    labels = [extraction.label for extraction in extractions]
    winner, share = majority_vote(labels)
    chosen = next((i for i, label in enumerate(labels) if label == winner), 0) if winner is not None else 0
    extraction = extractions[chosen]
    many = len(extractions) > 1
    return CoTRecord(
        id=str(row["id"]),
        premise=row["premise"],
        hypothesis=row["hypothesis"],
        label=_gold(row.get("label")),
        thought_process=extraction.thought,
        predicted_label=winner,
        model=model,
        prompt_version=version,
        usage=usage,
        status=extraction.status if winner is not None else "failed",
        error=extraction.reason if extraction.status != "ok" else None,
        raw_output=texts[chosen],
        votes=list(labels) if many else None,
        vote_share=round(share, 4) if many else None,
        constrained=constrained,
    )


def failed_record(row: dict, error: BaseException, *, model: str, version: str) -> CoTRecord:
    return CoTRecord(
        id=str(row["id"]),
        premise=row["premise"],
        hypothesis=row["hypothesis"],
        label=_gold(row.get("label")),
        model=model,
        prompt_version=version,
        status="failed",
        error=f"{type(error).__name__}: {error}"[:500],
    )


def _gold(value) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


def predict(
    pairs: pd.DataFrame,
    output: str | Path,
    *,
    backend: str = "local",
    model: str | None = None,
    adapter: str | None = None,
    merge: bool | None = None,
    settings: PredictSettings | None = None,
    retry_failed: bool = False,
    limit: int | None = None,
    progress: bool = True,
    engine_options: dict | None = None,
) -> PredictResult:
    """Predict every pair of ``pairs`` not yet in ``output``; return what was written.

    ``backend``: ``local`` (``model`` + ``adapter`` in this process; no model: the base the adapter names,
    else the embedded model) or a backends spec.
    ``settings``: prompt, sampling and request settings (default: :class:`PredictSettings`'s).
    ``engine_options``: extra :class:`LocalEngine` keyword arguments (dtype, mode, cache, compile_decode, threads,
    share_prefix).
    """
    import time

    from nli_cot_hub.formats import resolve_format
    from nli_cot_hub.store import RecordStore

    config = settings or PredictSettings()
    if backend.startswith("local:"):  # the backends spec form: same engine, model named in the spec
        backend, model = "local", backend.split(":", 1)[1] or model
    # A model is predicted in the format it was trained in, unless told otherwise.
    config = dataclasses.replace(
        config,
        completion_format=resolve_format(config.completion_format, adapter, model if backend == "local" else None),
    )
    started = time.monotonic()
    with RecordStore(output, stage="predict") as store:
        result = PredictResult(Path(output))
        if retry_failed:
            result.dropped_failed = store.drop(store.failed_ids())
        rows = pair_rows(pairs)
        if limit is not None:
            rows = rows[:limit]
        todo = [row for row in rows if str(row["id"]) not in store]
        result.already_done = len(rows) - len(todo)
        if todo:
            if backend == "local":
                local = _predict_local_logprob if config.readout == "logprob" else _predict_local
                local(
                    todo,
                    store,
                    result,
                    model=model,
                    adapter=adapter,
                    merge=merge,
                    config=config,
                    progress=progress,
                    engine_options=engine_options or {},
                )
            else:
                asyncio.run(_predict_remote(todo, store, result, spec=backend, config=config, progress=progress))
    result.seconds = time.monotonic() - started
    return result


def _count(result: PredictResult, record: CoTRecord) -> None:
    result.written += 1
    result.by_status[record.status] = result.by_status.get(record.status, 0) + 1
    if record.status == "failed":
        result.failed += 1
        result.first_error = result.first_error or record.error


def answer_schema_for(prompt: str, completion_format: str) -> dict:
    """The JSON schema of one answer: the generation stage's for the CoT prompt and for thought_first (the
    same shape, so old runs send the very same request), else the completion format's."""
    from nli_cot_hub.formats import answer_schema
    from nli_cot_hub.prompts import COT_SCHEMA

    return COT_SCHEMA if prompt == "cot" or completion_format == "thought_first" else answer_schema(completion_format)


def _load_engine(model, adapter, merge, config, progress, engine_options, result):
    """The local engine (its loading time kept apart from the prediction's), the records' model name, the
    completion format and the prompt version."""
    import time

    from nli_cot_hub.local_engine import LocalEngine

    started = time.monotonic()
    engine = LocalEngine(
        model, adapter, merge=merge, batch_size=config.batch_size, progress=progress, **engine_options
    )
    result.load_seconds = time.monotonic() - started
    name = engine.model_name + (f"+{engine.adapter}" if engine.adapter else "")
    completion_format = config.completion_format or "thought_first"
    return engine, name, completion_format, prompt_version(config.prompt, completion_format)


def _predict_local(rows, store, result, *, model, adapter, merge, config, progress, engine_options) -> None:
    engine, name, completion_format, version = _load_engine(
        model, adapter, merge, config, progress, engine_options, result
    )
    conversations = [messages_for(row["premise"], row["hypothesis"], config.prompt, completion_format) for row in rows]
    explain_on_demand = config.explain and completion_format == "multitask" and config.prompt == "finetune"

    def write(indices, generations) -> None:
        records = []
        for index, samples in zip(indices, generations):
            prompt = "\n".join(message["content"] for message in conversations[index])
            extractions = [extract_answer(sample.text, prompt=prompt) for sample in samples]
            usage = TokenUsage(
                prompt_tokens=samples[0].prompt_tokens,
                completion_tokens=sum(sample.completion_tokens for sample in samples),
            )
            records.append(
                record_from_samples(
                    rows[index],
                    [s.text for s in samples],
                    extractions,
                    model=name,
                    version=version,
                    usage=usage,
                    constrained=samples[0].constrained,
                )
            )
        if explain_on_demand:
            rationales = explanations(
                engine, [rows[index] for index in indices], config.max_new_tokens, constrain=config.constrain
            )
            records = [with_explanation(record, rationale) for record, rationale in zip(records, rationales)]
        store.append_many(records)
        for record in records:
            _count(result, record)

    engine.generate(
        conversations,
        max_new_tokens=config.max_new_tokens,
        temperature=config.temperature,
        num_samples=config.num_samples,
        seed=config.seed,
        on_batch=write,
        json_schema=answer_schema_for(config.prompt, completion_format) if config.constrain else None,
    )


def explanations(engine, rows: Sequence[dict], max_new_tokens: int, constrain: bool = False) -> list[str | None]:
    """multitask: the rationale of each pair, asked with the [explain] task tag."""
    from nli_cot_hub.formats import answer_schema

    conversations = [
        messages_for(row["premise"], row["hypothesis"], "finetune", "multitask", "explain") for row in rows
    ]
    generations = engine.generate(
        conversations,
        max_new_tokens=max_new_tokens,
        json_schema=answer_schema("multitask", "explain") if constrain else None,
    )
    # The rationale is the answer: a reply that is not the asked-for JSON still is one, as plain text.
    return [extract_answer(samples[0].text).thought or samples[0].text.strip() or None for samples in generations]


def with_explanation(record: CoTRecord, explanation: str | None) -> CoTRecord:
    if not explanation:
        return record
    status = "ok" if record.status == "label-only" else record.status
    return record.model_copy(
        update={"thought_process": explanation, "status": status, "error": None if status == "ok" else record.error}
    )


def _predict_local_logprob(rows, store, result, *, model, adapter, merge, config, progress, engine_options) -> None:
    """The label from log p(0) against log p(1) at the label position; thought_first generates its thought
    first, answer-first formats score at once and write the explanation only with ``explain``."""
    from tqdm.auto import tqdm

    from nli_cot_hub.formats import explanation_prefix
    from nli_cot_hub.readout import continue_texts, label_split, score_labels

    engine, name, completion_format, version = _load_engine(
        model, adapter, merge, config, False, engine_options, result
    )
    earlier = earlier_thoughts(config.thoughts_from, rows)
    chunk = engine.batch_size * 4
    with tqdm(total=len(rows), desc="log-prob read-out", unit="pair", disable=not progress) as bar:
        for start in range(0, len(rows), chunk):
            batch = rows[start : start + chunk]
            conversations = [messages_for(r["premise"], r["hypothesis"], "finetune", completion_format) for r in batch]
            contexts = [engine.prompt_text(messages) for messages in conversations]
            thoughts: list[str | None] = [None] * len(batch)
            generated = [0] * len(batch)
            if completion_format == "thought_first":
                # Thoughts an earlier generation run wrote are read, not generated again.
                todo = [i for i, row in enumerate(batch) if str(row["id"]) not in earlier]
                for i, row in enumerate(batch):
                    if str(row["id"]) in earlier:
                        thoughts[i] = earlier[str(row["id"])].thought_process
                        generated[i] = earlier[str(row["id"])].usage.completion_tokens
                if todo:
                    fresh = engine.generate([conversations[i] for i in todo], max_new_tokens=config.max_new_tokens)
                    for i, samples in zip(todo, fresh):
                        thoughts[i] = extract_answer(samples[0].text).thought
                        generated[i] = samples[0].completion_tokens
            splits = [
                label_split(engine.tokenizer, context, completion_format, thought)
                for context, thought in zip(contexts, thoughts)
            ]
            scores = score_labels(
                engine.model, engine.tokenizer, splits, engine.batch_size, engine.device, engine.share_prefix
            )
            if config.explain and completion_format == "label_first":
                texts = [context + explanation_prefix(score.label) for context, score in zip(contexts, scores)]
                continued = continue_texts(
                    engine.model,
                    engine.tokenizer,
                    texts,
                    config.max_new_tokens,
                    engine.eos_ids,
                    engine.batch_size,
                    engine.device,
                    engine.share_prefix,
                )
                thoughts = [
                    extract_answer(explanation_prefix(score.label) + text).thought
                    for score, text in zip(scores, continued)
                ]
            elif config.explain and completion_format == "multitask":
                thoughts = explanations(engine, batch, config.max_new_tokens)
            records = [
                logprob_record(
                    row,
                    score,
                    thought,
                    completion_format,
                    model=name,
                    version=version,
                    usage=TokenUsage(prompt_tokens=len(split[0]), completion_tokens=tokens),
                )
                for row, score, thought, split, tokens in zip(batch, scores, thoughts, splits, generated)
            ]
            store.append_many(records)
            for record in records:
                _count(result, record)
            bar.update(len(batch))


def earlier_thoughts(path: str | None, rows: Sequence[dict]) -> dict[str, CoTRecord]:
    """The records of an earlier generation run for these rows (same id and same pair), by id."""
    if path is None:
        return {}
    from nli_cot_hub.store import read_records

    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: no such predictions file (--thoughts-from)")
    pairs = {str(row["id"]): (row["premise"], row["hypothesis"]) for row in rows}
    return {r.id: r for r in read_records(path) if pairs.get(r.id) == (r.premise, r.hypothesis)}


def logprob_record(
    row: dict, score, thought: str | None, completion_format: str, *, model: str, version: str, usage: TokenUsage
) -> CoTRecord:
    from nli_cot_hub.formats import completion_text

    label = score.label
    return CoTRecord(
        id=str(row["id"]),
        premise=row["premise"],
        hypothesis=row["hypothesis"],
        label=_gold(row.get("label")),
        thought_process=thought or None,
        predicted_label=label,
        model=model,
        prompt_version=version,
        usage=usage,
        status="ok" if thought else "label-only",
        raw_output=completion_text(completion_format, thought, label),
        p_label_1=round(score.p_label_1, 6),
    )


LOGPROB_KINDS = ("openai", "llamacpp", "tgi")
TOP_LOGPROBS = 5
# Enough new tokens for an answer-first JSON to reach its label value.
ANSWER_FIRST_LABEL_TOKENS = 16


class ReadoutUnsupported(ValueError):
    """The endpoint cannot give what --readout logprob needs."""


async def _predict_remote(rows, store, result, *, spec, config, progress) -> None:
    from nli_cot_hub.backends import BackendError, make_backend
    from nli_cot_hub.engine import Engine, EngineConfig, Ledger, run_jobs
    from nli_cot_hub.formats import completion_text

    backend = make_backend(
        spec,
        timeout_s=config.timeout_s,
        system_role=config.system_role,
        json_mode=config.json_mode if config.constrain else "none",
    )
    completion_format = config.completion_format or "thought_first"
    logprob = config.readout == "logprob"
    if logprob and backend.kind not in LOGPROB_KINDS:
        raise ReadoutUnsupported(
            f"--readout logprob: the {backend.kind} backend returns no log-probabilities; use "
            f"one of {', '.join(LOGPROB_KINDS)} or --readout generate"
        )
    if logprob:
        backend.top_logprobs = TOP_LOGPROBS
    max_tokens = config.max_new_tokens
    if logprob and completion_format != "thought_first" and not config.explain:
        max_tokens = min(max_tokens, ANSWER_FIRST_LABEL_TOKENS)
    ledger = Ledger()
    base = EngineConfig(
        concurrency=config.concurrency,
        requests_per_minute=config.requests_per_minute,
        tokens_per_minute=config.tokens_per_minute,
        max_retries=config.max_retries,
        max_reasks=config.max_reasks,
        request_timeout_s=config.timeout_s,
        temperature=config.temperature,
        max_tokens=max_tokens,
        seed=config.seed,
    )
    # One engine per sample, each with its own seed, so k samples are k different reasoning paths.
    engines = [
        Engine(backend, dataclasses.replace(base, seed=None if config.seed is None else config.seed + k), ledger)
        for k in range(config.num_samples)
    ]
    version = prompt_version(config.prompt, completion_format)
    schema = answer_schema_for(config.prompt, completion_format)

    def messages(row: dict) -> list[dict[str, str]]:
        return messages_for(row["premise"], row["hypothesis"], config.prompt, completion_format)

    async def handle(row: dict) -> CoTRecord:
        answers = await asyncio.gather(*(engine.ask(messages(row), json_schema=schema) for engine in engines))
        usage = TokenUsage()
        for answer in answers:
            usage = usage + answer.usage
        return record_from_samples(
            row,
            [a.text for a in answers],
            [a.extraction for a in answers],
            model=answers[0].model,
            version=version,
            usage=usage,
            constrained=answers[0].constrained,
        )

    def read_out(row: dict, thought, score, model: str, usage: TokenUsage, raw: str) -> CoTRecord:
        """The record of a label read from log-probabilities (and the thought before it, if any)."""
        return CoTRecord(
            id=str(row["id"]),
            premise=row["premise"],
            hypothesis=row["hypothesis"],
            label=_gold(row.get("label")),
            thought_process=thought,
            predicted_label=score.label,
            model=model,
            prompt_version=version,
            usage=usage,
            status="ok" if thought else "label-only",
            raw_output=raw,
            p_label_1=round(score.p_label_1, 6),
        )

    async def read_label(row: dict) -> CoTRecord:
        if backend.kind == "tgi":
            return await read_label_tgi(row)
        from nli_cot_hub.readout import label_from_token_alternatives

        completion = await engines[0].request(messages(row), json_schema=schema)
        if completion.alternatives is None:
            raise ReadoutUnsupported(f"--readout logprob: {backend.describe()} returned no log-probabilities")
        score = label_from_token_alternatives(completion.tokens, completion.alternatives)
        thought = extract_answer(completion.text).thought
        usage = TokenUsage(prompt_tokens=completion.prompt_tokens, completion_tokens=completion.completion_tokens)
        return read_out(row, thought, score, completion.model or backend.model, usage, completion.text)

    async def read_label_tgi(row: dict) -> CoTRecord:
        """TGI continues raw text: lay the answer out up to the label position (after the generated thought for
        thought_first) and read the two label tokens' log-probabilities from the next token's top alternatives."""
        from nli_cot_hub.readout import LabelScore, label_split

        thought, usage = None, TokenUsage()
        if completion_format == "thought_first":
            answer = await engines[0].ask(messages(row), json_schema=schema)
            thought, usage = answer.extraction.thought, answer.usage
        tokenizer = await backend._load_tokenizer()
        context = tokenizer.apply_chat_template(messages(row), tokenize=False, add_generation_prompt=True)
        prefix, zero, one = label_split(tokenizer, context, completion_format, thought)
        from nli_cot_hub.chat_template import without_leading_bos

        # /generate adds the served tokenizer's own BOS: the text goes without the template's.
        text = without_leading_bos(tokenizer, tokenizer.decode(prefix))
        scores, _ = await backend.next_token_logprobs(text, TOP_LOGPROBS)
        if zero not in scores and one not in scores:
            raise ValueError("neither 0 nor 1 is among the top tokens at the label position")
        score = LabelScore(scores.get(zero, -math.inf), scores.get(one, -math.inf))
        usage = usage + TokenUsage(prompt_tokens=len(prefix))
        return read_out(
            row, thought, score, backend.model, usage, completion_text(completion_format, thought, score.label)
        )

    def on_error(row: dict, error: BaseException) -> CoTRecord:
        return failed_record(row, error, model=backend.model, version=version)

    try:
        if logprob:  # one request first: an endpoint that refuses log-probabilities stops the run at once
            try:
                first = await read_label(rows[0])
            except BackendError as error:
                if error.status is not None and 400 <= error.status < 500:
                    raise ReadoutUnsupported(
                        f"--readout logprob: {backend.describe()} refused the log-probability "
                        f"request ({error}); use --readout generate"
                    ) from None
                raise
            except ValueError as error:  # this row had no label position; the endpoint itself works
                first = on_error(rows[0], error)
            store.append_many([first])
            _count(result, first)
            rows = rows[1:]
        report = await run_jobs(
            rows, read_label if logprob else handle, on_error, store, engines[0], desc="predicting", progress=progress
        )
    finally:
        await backend.aclose()
    result.written += report.written
    result.failed += report.failed
    result.first_error = result.first_error or report.first_error
    for status, count in report.by_status.items():
        result.by_status[status] = result.by_status.get(status, 0) + count


def write_stats(path: str | Path, result: PredictResult) -> Path:
    """This run's counts and speed as JSON (examples/s: rows written per second, model loading left out)."""
    import json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "written": result.written,
                "already_done": result.already_done,
                "by_status": result.by_status,
                "seconds": round(result.seconds, 2),
                "load_seconds": round(result.load_seconds, 2),
                "examples_per_second": round(result.examples_per_second, 3) if result.examples_per_second else None,
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    return path


# ---------------------------------------------------------------- submission


class SubmissionRefused(RuntimeError):
    """Too many rows would carry the fallback label: such a CSV would only look like predictions."""


@dataclass
class Submission:
    path: Path
    rows: int
    fallback_label: int
    fallback_rows: list[str]  # ids that got the fallback label (failed or never predicted)
    missing_rows: list[str]  # ids with no record at all
    report_path: Path | None = None


def submission_report_path(path: str | Path) -> Path:
    """The report beside a submission CSV that says how many of its rows are fallback labels."""
    path = Path(path)
    return path.with_name(path.stem + ".report.json")


def fallback_for(records: Sequence[CoTRecord], fallback: str) -> int:
    if fallback in ("0", "1"):
        return int(fallback)
    if fallback != "majority":
        raise ValueError(f"fallback must be one of {FALLBACKS}, not {fallback!r}")
    counts = Counter(r.predicted_label for r in records if r.predicted_label is not None)
    # The most common predicted label; 1 when nothing was predicted at all (or a tie).
    return 0 if counts[0] > counts[1] else 1


def write_submission(
    pairs: pd.DataFrame,
    records: Sequence[CoTRecord],
    path: str | Path,
    fallback: str = "majority",
    max_fallback_share: float = 1.0,
) -> Submission:
    """The submission CSV: a single ``prediction`` column, one row per input row, in input order.

    Beside it, ``<name>.report.json`` counts the rows that got the fallback label. When their share
    is above ``max_fallback_share`` the CSV is not written (:class:`SubmissionRefused`); the report is.
    """
    by_id = {record.id: record for record in records}
    label = fallback_for(records, fallback)
    predictions, fallback_rows, missing = [], [], []
    for row_id in pairs["id"].astype(str):
        record = by_id.get(row_id)
        if record is None:
            missing.append(row_id)
        if record is None or record.predicted_label is None:
            fallback_rows.append(row_id)
            predictions.append(label)
        else:
            predictions.append(record.predicted_label)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    share = len(fallback_rows) / len(predictions) if predictions else 1.0
    refused = share > max_fallback_share
    report = submission_report_path(path)
    report.write_text(
        json.dumps(
            {
                "submission": str(path),
                "written": not refused,
                "rows": len(predictions),
                "predicted_rows": len(predictions) - len(fallback_rows),
                "fallback_rows": len(fallback_rows),
                "fallback_share": round(share, 4),
                "max_fallback_share": max_fallback_share,
                "fallback_label": label,
                "never_predicted": len(missing),
                "fallback_ids": fallback_rows,
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    if refused:
        raise SubmissionRefused(
            f"{path}: not written: {len(fallback_rows)} of {len(predictions)} rows have no prediction and would get "
            f"the fallback label {label} ({share:.0%} > --max-failed-share {max_fallback_share:g}); see {report}"
        )
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["prediction"])
        writer.writerows([value] for value in predictions)
    temporary.replace(path)
    return Submission(path, len(predictions), label, fallback_rows, missing, report)


# ---------------------------------------------------------------- stage config and entry point

BACKEND_HELP = (
    "local (the model below, in this process, batched) or a remote spec: tgi:URL#TOKENIZER (TGI /generate "
    "with the JSON grammar), openai:URL#MODEL (vLLM, SGLang, TGI Messages API, HF Inference Endpoints, "
    "transformers serve), llamacpp:URL#MODEL, mistral:MODEL."
)


@stage_config
class PredictConfig(PairOptions, BaseRequestOptions):
    """Predict a label and a chain of thought for every pair; gold labels are kept when present.

    Streams one record per pair to OUTPUT (failures too, with the reason). Rerun the same
    command to resume. With --submission, also writes the submission CSV. The request options
    (--concurrency, --rpm, --tpm, --max-retries, --max-reasks, --timeout, --json-mode, --system-role)
    apply to remote backends; the local engine batches in this process.
    """

    data: str = option(help="NLI pairs: CSV/TSV/JSONL/JSON/Parquet, data set folder or Hub repo id.", positional=True)
    output: str = option("predictions.jsonl", "Predictions JSONL; ids already in it are skipped (resume).", short="-o")
    submission: str | None = option(
        None, "Submission CSV to write: one 'prediction' column, one row per input row, in order."
    )
    backend: str = option("local", BACKEND_HELP, short="-b")
    model: str | None = option(
        None,
        "Local model: folder, Hub id, 'embedded', or a PEFT adapter (default: the base "
        "model --adapter names, else embedded).",
    )
    adapter: str | None = option(None, "PEFT adapter (folder or Hub id) on top of --model.")
    merge: bool | None = option(
        None, "Merge the adapter into the weights before generating (default: on a GPU).", negatable=True
    )
    prompt: str = option(
        "finetune",
        "finetune: the fine-tuning chat format (fine-tuned models); cot: the few-shot "
        "CoT prompt (zero-shot base/instruct models).",
        choices=PROMPTS,
    )
    num_samples: int = option(1, "Self-consistency: answers per pair, majority vote (needs --temperature > 0).", min=1)
    batch_size: int | None = option(
        None,
        "Local engine: prompts per batch, sorted by length (default: what GPU memory holds, up to 512; 8 on a CPU).",
        min=1,
    )
    dtype: str = option("auto", "Local engine: auto (bf16 on GPU, fp32 on CPU), bfloat16, float16, float32.")
    engine_mode: str = option(
        "padded",
        "Local engine: padded (generate on padded batches) or continuous (continuous batching).",
        choices=ENGINE_MODES,
    )
    cache: str | None = option(
        None,
        "Local engine: static (one preallocated KV cache reused by every batch; the GPU default), dynamic (grows "
        "each step; the CPU default) or another generate cache_implementation.",
    )
    compile_decode: bool | None = option(
        None,
        "Local engine: compile the decode step of full batches over the static cache with CUDA graphs (default: on "
        f"a GPU, for a run of at least {COMPILE_MIN_FULL_BATCHES} full batches, where the ~25 s compile at 7B pays).",
        negatable=True,
    )
    share_prefix: bool = option(
        True,
        "Local engine: compute the tokens every prompt starts with (template, system prompt) once and reuse their "
        "keys/values in each batch; the same answers, faster.",
    )
    threads: int | None = option(None, "Local engine: CPU threads for torch.", min=1)
    max_reasks: int = option(
        0, "Remote backends: re-asks after an unusable answer (0: score the first answer).", min=0
    )
    timeout: float = option(120.0, "Remote backends: seconds to wait for one answer.")
    completion_format: str | None = option(
        None,
        "Answer format: thought_first, label_first, multitask or "
        "label_only (default: the one the adapter folder records, else "
        "thought_first).",
        choices=FORMATS,
    )
    readout: str = option(
        "generate",
        "generate: parse the generated answer; logprob: compare the log-probabilities "
        "of 0 and 1 at the label position (every row gets a label and p(label = 1)).",
        choices=READOUTS,
    )
    explain: bool = option(
        False,
        "Answer-first formats: also write the explanation (label_first: after the chosen "
        "label; multitask: the [explain] task).",
    )
    thoughts_from: str | None = option(
        None,
        "--readout logprob on thought_first: read each row's thought from "
        "these earlier (generation) predictions instead of generating it again; "
        "rows missing there are generated.",
    )
    stats: str | None = option(None, "JSON file for this run's counts, seconds and examples per second.")
    fallback_label: str = option(
        "majority",
        "Submission label for rows without a prediction: majority (most common predicted label), 0 or 1.",
        choices=FALLBACKS,
    )
    limit: int | None = option(None, "Only the first N rows.", min=1)
    split: str = option("test", "Split to read from a data set folder or Hub repo.")

    def settings(self) -> PredictSettings:
        """The prompt, sampling and request settings of :func:`predict`; bad combinations are a DataError."""
        try:
            return PredictSettings(
                prompt=self.prompt,
                max_new_tokens=self.max_new_tokens,
                temperature=self.temperature,
                num_samples=self.num_samples,
                seed=self.gen_seed,
                batch_size=self.batch_size,
                concurrency=self.concurrency,
                max_retries=self.max_retries,
                max_reasks=self.max_reasks,
                timeout_s=self.timeout,
                requests_per_minute=self.rpm,
                tokens_per_minute=self.tpm,
                json_mode=self.json_mode,
                system_role=self.system_role,
                completion_format=self.completion_format,
                readout=self.readout,
                explain=self.explain,
                thoughts_from=self.thoughts_from,
                constrain=self.constrain,
            )
        except ValueError as error:
            raise DataError(str(error)) from None

    def engine_options(self) -> dict:
        return {
            "dtype": self.dtype,
            "mode": self.engine_mode,
            "cache": self.cache,
            "compile_decode": self.compile_decode,
            "threads": self.threads,
            "share_prefix": self.share_prefix,
        }


def run_predict(config: PredictConfig) -> PredictResult:
    """Predict every pair of ``config.data`` into ``config.output`` (resumable); then ``--stats`` and
    ``--submission``. ``result.problem`` says why the run counts as failed, when it does."""
    from nli_cot_hub.paths import check_output_file, refuse_input_as_output
    from nli_cot_hub.store import read_records

    refuse_input_as_output(config.output, [config.data, config.model, config.adapter], "--output")
    check_output_file(config.output, "--output")
    refuse_input_as_output(config.submission, [config.data, config.output], "--submission")
    check_output_file(config.submission, "--submission")
    settings = config.settings()
    if config.constrain and config.engine_mode == "continuous" and config.backend.split(":", 1)[0] == "local":
        raise DataError(
            "--engine-mode continuous: continuous batching cannot constrain answers to a JSON schema: "
            "use --engine-mode padded or add --no-constrain"
        )
    pairs = config.load(config.data, require_labels=False)
    result = predict(
        pairs,
        config.output,
        backend=config.backend,
        model=config.model,
        adapter=config.adapter,
        merge=config.merge,
        settings=settings,
        retry_failed=config.retry_failed,
        limit=config.limit,
        progress=config.progress,
        engine_options=config.engine_options(),
    )
    # A rerun that finds every row done measured nothing: the speed of the run that did the work stays.
    if config.stats and (result.written or not Path(config.stats).exists()):
        result.stats = write_stats(config.stats, result)
    if config.submission:
        rows = pairs if config.limit is None else pairs.iloc[: config.limit]
        try:
            result.submission = write_submission(
                rows,
                read_records(config.output),
                config.submission,
                config.fallback_label,
                max_fallback_share=config.max_failed_share,
            )
        except SubmissionRefused as refused:
            result.problem = str(refused)
    result.problem = result.problem or failed_share_problem(
        "predict", result.failed, result.written, result.first_error, config.max_failed_share, config.output
    )
    return result
