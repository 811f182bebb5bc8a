"""Predict: chain-of-thought answers for NLI pairs, streamed to a resumable predictions JSONL, and the
coursework submission CSV.

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
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from nli_cot_hub.extract import Extraction, extract_answer
from nli_cot_hub.records import CoTRecord, TokenUsage

PROMPTS = ("finetune", "cot")
FALLBACKS = ("majority", "0", "1")


@dataclass
class PredictConfig:
    prompt: str = "finetune"          # finetune: chat_format (fine-tuned models); cot: the few-shot CoT prompt
    max_new_tokens: int = 256
    temperature: float = 0.0
    num_samples: int = 1
    seed: int | None = None
    batch_size: int | None = None     # local engine (None: 512 on a GPU, 8 on a CPU)
    concurrency: int = 8              # remote backends
    max_retries: int = 6
    max_reasks: int = 0               # a prediction is the model's first answer unless asked otherwise
    timeout_s: float = 120.0

    def __post_init__(self):
        if self.prompt not in PROMPTS:
            raise ValueError(f"unknown prompt {self.prompt!r}; choose one of {PROMPTS}")
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


def messages_for(premise: str, hypothesis: str, prompt: str) -> list[dict[str, str]]:
    if prompt == "cot":
        from nli_cot_hub.prompts import cot_messages

        return cot_messages(premise, hypothesis)
    from nli_cot_hub.chat_format import prompt_messages

    return prompt_messages(premise, hypothesis)


def prompt_version(prompt: str) -> str:
    if prompt == "cot":
        from nli_cot_hub.prompts import COT_VERSION

        return COT_VERSION
    from nli_cot_hub.chat_format import FORMAT_VERSION

    return FORMAT_VERSION


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


def record_from_samples(row: dict, texts: Sequence[str], extractions: Sequence[Extraction], *, model: str,
                        version: str, usage: TokenUsage) -> CoTRecord:
    """One prediction record from one or more sampled answers of the same row."""
    labels = [extraction.label for extraction in extractions]
    winner, share = majority_vote(labels)
    chosen = next((i for i, label in enumerate(labels) if label == winner), 0) if winner is not None else 0
    extraction = extractions[chosen]
    many = len(extractions) > 1
    return CoTRecord(
        id=str(row["id"]), premise=row["premise"], hypothesis=row["hypothesis"], label=_gold(row.get("label")),
        thought_process=extraction.thought, predicted_label=winner, model=model, prompt_version=version,
        usage=usage, status=extraction.status if winner is not None else "failed",
        error=extraction.reason if extraction.status != "ok" else None, raw_output=texts[chosen],
        votes=list(labels) if many else None, vote_share=round(share, 4) if many else None,
    )


def failed_record(row: dict, error: BaseException, *, model: str, version: str) -> CoTRecord:
    return CoTRecord(id=str(row["id"]), premise=row["premise"], hypothesis=row["hypothesis"],
                     label=_gold(row.get("label")), model=model, prompt_version=version, status="failed",
                     error=f"{type(error).__name__}: {error}"[:500])


def _gold(value) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


def pair_rows(pairs: pd.DataFrame) -> list[dict]:
    return pairs[["id", "premise", "hypothesis", "label"]].to_dict("records")


def predict(pairs: pd.DataFrame, output: str | Path, *, backend: str = "local", model: str = "embedded",
            adapter: str | None = None, merge: bool | None = None, config: PredictConfig | None = None,
            retry_failed: bool = False, limit: int | None = None, progress: bool = True,
            engine_options: dict | None = None) -> PredictResult:
    """Predict every pair of ``pairs`` not yet in ``output``; return what was written.

    ``backend``: ``local`` (``model`` + ``adapter`` in this process) or a backends spec.
    ``engine_options``: extra :class:`LocalEngine` keyword arguments (dtype, mode, cache, threads).
    """
    import time

    from nli_cot_hub.store import RecordStore

    config = config or PredictConfig()
    if backend.startswith("local:"):  # the backends spec form: same engine, model named in the spec
        backend, model = "local", backend.split(":", 1)[1] or model
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
                _predict_local(todo, store, result, model=model, adapter=adapter, merge=merge, config=config,
                               progress=progress, engine_options=engine_options or {})
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


def _predict_local(rows, store, result, *, model, adapter, merge, config, progress, engine_options) -> None:
    from nli_cot_hub.local_engine import LocalEngine

    engine = LocalEngine(model, adapter, merge=merge, batch_size=config.batch_size, progress=progress,
                         **engine_options)
    name = engine.model_name + (f"+{engine.adapter}" if engine.adapter else "")
    version = prompt_version(config.prompt)
    conversations = [messages_for(row["premise"], row["hypothesis"], config.prompt) for row in rows]

    def write(indices, generations) -> None:
        records = []
        for index, samples in zip(indices, generations):
            prompt = "\n".join(message["content"] for message in conversations[index])
            extractions = [extract_answer(sample.text, prompt=prompt) for sample in samples]
            usage = TokenUsage(prompt_tokens=samples[0].prompt_tokens,
                               completion_tokens=sum(sample.completion_tokens for sample in samples))
            records.append(record_from_samples(rows[index], [s.text for s in samples], extractions, model=name,
                                               version=version, usage=usage))
        store.append_many(records)
        for record in records:
            _count(result, record)

    engine.generate(conversations, max_new_tokens=config.max_new_tokens, temperature=config.temperature,
                    num_samples=config.num_samples, seed=config.seed, on_batch=write)


async def _predict_remote(rows, store, result, *, spec, config, progress) -> None:
    from nli_cot_hub.backends import make_backend
    from nli_cot_hub.engine import Engine, EngineConfig, Ledger, run_jobs
    from nli_cot_hub.prompts import COT_SCHEMA

    backend = make_backend(spec, timeout_s=config.timeout_s)
    ledger = Ledger()
    base = EngineConfig(concurrency=config.concurrency, max_retries=config.max_retries,
                        max_reasks=config.max_reasks, request_timeout_s=config.timeout_s,
                        temperature=config.temperature, max_tokens=config.max_new_tokens, seed=config.seed)
    # One engine per sample, each with its own seed, so k samples are k different reasoning paths.
    engines = [Engine(backend, dataclasses.replace(base, seed=None if config.seed is None else config.seed + k),
                      ledger) for k in range(config.num_samples)]
    version = prompt_version(config.prompt)

    async def handle(row: dict) -> CoTRecord:
        messages = messages_for(row["premise"], row["hypothesis"], config.prompt)
        answers = await asyncio.gather(*(engine.ask(messages, json_schema=COT_SCHEMA) for engine in engines))
        usage = TokenUsage()
        for answer in answers:
            usage = usage + answer.usage
        return record_from_samples(row, [a.text for a in answers], [a.extraction for a in answers],
                                   model=answers[0].model, version=version, usage=usage)

    def on_error(row: dict, error: BaseException) -> CoTRecord:
        return failed_record(row, error, model=backend.model, version=version)

    try:
        report = await run_jobs(rows, handle, on_error, store, engines[0], desc="predicting", progress=progress)
    finally:
        await backend.aclose()
    result.written += report.written
    result.failed += report.failed
    result.first_error = result.first_error or report.first_error
    for status, count in report.by_status.items():
        result.by_status[status] = result.by_status.get(status, 0) + count


# ---------------------------------------------------------------- submission

class SubmissionRefused(RuntimeError):
    """Too many rows would carry the fallback label: such a CSV would only look like predictions."""


@dataclass
class Submission:
    path: Path
    rows: int
    fallback_label: int
    fallback_rows: list[str]      # ids that got the fallback label (failed or never predicted)
    missing_rows: list[str]       # ids with no record at all
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


def write_submission(pairs: pd.DataFrame, records: Sequence[CoTRecord], path: str | Path,
                     fallback: str = "majority", max_fallback_share: float = 1.0) -> Submission:
    """The coursework CSV: a single ``prediction`` column, one row per input row, in input order.

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
    report.write_text(json.dumps({
        "submission": str(path), "written": not refused, "rows": len(predictions),
        "predicted_rows": len(predictions) - len(fallback_rows), "fallback_rows": len(fallback_rows),
        "fallback_share": round(share, 4), "max_fallback_share": max_fallback_share, "fallback_label": label,
        "never_predicted": len(missing), "fallback_ids": fallback_rows}, indent=2) + "\n", encoding="utf-8")
    if refused:
        raise SubmissionRefused(
            f"{path}: not written: {len(fallback_rows)} of {len(predictions)} rows have no prediction and would get "
            f"the fallback label {label} ({share:.0%} > --max-failed-share {max_fallback_share:g}); see {report}")
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["prediction"])
        writer.writerows([value] for value in predictions)
    temporary.replace(path)
    return Submission(path, len(predictions), label, fallback_rows, missing, report)
