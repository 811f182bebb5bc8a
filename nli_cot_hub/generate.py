"""Stages 1-2: chain-of-thought generation, reflection on wrong answers, judging, human rationales.

Every stage reads pairs (or records), skips the ids its output store already holds, asks the
backend through the :class:`~nli_cot_hub.engine.Engine`, and appends one :class:`CoTRecord` per
pair, failures included, so a rerun after a crash picks up exactly where the last one stopped.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from nli_cot_hub import prompts
from nli_cot_hub.backends import ChatBackend
from nli_cot_hub.config import failed_share_problem, option, stage_config
from nli_cot_hub.data import PairOptions, pair_rows
from nli_cot_hub.engine import (
    BACKEND_HELP,
    Answer,
    Engine,
    EngineConfig,
    Ledger,
    RequestOptions,
    RunReport,
    judgement_status,
    load_prices,
    record_status,
    run_jobs,
    subset,
)
from nli_cot_hub.extract import Extraction
from nli_cot_hub.models import DEFAULT_API_GENERATOR, DEFAULT_API_REFLECTOR
from nli_cot_hub.paths import refuse_input_as_output
from nli_cot_hub.records import CoTRecord, TokenUsage
from nli_cot_hub.store import RecordStore, read_input_records


@dataclass
class StageResult:
    report: RunReport
    output: Path
    ledger_path: Path
    ledger: dict
    pending: int
    already_done: int
    dropped_failed: int
    note: str | None = None  # why nothing was asked, when nothing was
    problem: str | None = None  # why this run counts as failed (too many failed records), when it does


def ledger_path_for(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(output.name + ".ledger.json")


def _raw_if_not_ok(answer: Answer) -> str | None:
    return None if answer.status == "ok" else answer.text


def _label(value) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


# ---------------------------------------------------------------- generation


def cot_record(row: dict, answer: Answer) -> CoTRecord:
    extraction = answer.extraction
    return CoTRecord(
        id=str(row["id"]),
        premise=row["premise"],
        hypothesis=row["hypothesis"],
        label=_label(row.get("label")),
        thought_process=extraction.thought,
        predicted_label=extraction.label,
        source="original",
        model=answer.model,
        prompt_version=prompts.COT_VERSION,
        reask_count=answer.reask_count,
        usage=answer.usage,
        status=answer.status,
        error=answer.problem,
        raw_output=_raw_if_not_ok(answer),
        constrained=answer.constrained,
    )


async def generate_one(engine: Engine, row: dict) -> CoTRecord:
    messages = prompts.cot_messages(row["premise"], row["hypothesis"])
    answer = await engine.ask(messages, json_schema=prompts.COT_SCHEMA)
    return cot_record(row, answer)


def failed_pair(
    row: dict, error: BaseException, *, model: str, source: str = "original", prompt_version: str = prompts.COT_VERSION
) -> CoTRecord:
    return CoTRecord(
        id=str(row["id"]),
        premise=row["premise"],
        hypothesis=row["hypothesis"],
        label=_label(row.get("label")),
        source=source,
        model=model,
        prompt_version=prompt_version,
        status="failed",
        error=f"request failed: {error}",
    )


# ---------------------------------------------------------------- reflection


def needs_reflection(record: CoTRecord, include_correct: bool = False) -> bool:
    if record.label is None:
        return False
    return include_correct or record.predicted_label != record.label


def _reflection_check(label: int) -> Callable[[Extraction], str | None]:
    def check(extraction: Extraction) -> str | None:
        if extraction.label != label:
            return f"predicted_label must be the correct label {label}"
        if not str(extraction.fields.get("error_analysis") or "").strip():
            return "error_analysis is missing or empty"
        if not str(extraction.fields.get("improved_thought_process") or "").strip():
            return "improved_thought_process is missing or empty"
        return None

    return check


async def reflect_one(engine: Engine, record: CoTRecord) -> CoTRecord:
    messages = prompts.reflect_messages(
        record.premise, record.hypothesis, record.thought_process, record.predicted_label, record.label
    )
    answer = await engine.ask(
        messages, json_schema=prompts.reflect_schema(record.label), check=_reflection_check(record.label)
    )
    fields = answer.extraction.fields
    improved = str(fields.get("improved_thought_process") or "").strip() or answer.extraction.thought
    return CoTRecord(
        id=record.id,
        premise=record.premise,
        hypothesis=record.hypothesis,
        label=record.label,
        thought_process=improved,
        predicted_label=answer.extraction.label,
        error_analysis=str(fields.get("error_analysis") or "").strip() or None,
        source="reflected",
        model=answer.model,
        prompt_version=prompts.REFLECT_VERSION,
        reask_count=answer.reask_count,
        usage=answer.usage,
        status=answer.status,
        error=answer.problem,
        raw_output=_raw_if_not_ok(answer),
        constrained=answer.constrained,
    )


def failed_reflection(record: CoTRecord, error: BaseException, *, model: str) -> CoTRecord:
    return CoTRecord(
        id=record.id,
        premise=record.premise,
        hypothesis=record.hypothesis,
        label=record.label,
        source="reflected",
        model=model,
        prompt_version=prompts.REFLECT_VERSION,
        status="failed",
        error=f"request failed: {error}",
    )


# ---------------------------------------------------------------- judging


def judge_scores(fields: dict) -> tuple[dict, str | None]:
    """The 1-5 scores of a judge answer (digits in strings accepted), or what is wrong with them."""
    scores = {}
    for name in prompts.JUDGE_SCORES:
        value = fields.get(name)
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 5:
            return {}, f"{name} must be an integer from 1 to 5, got {value!r}"
        scores[name] = value
    return scores, None


def _judge_check(extraction: Extraction) -> str | None:
    if not extraction.fields:
        return extraction.reason or "no JSON object in the reply"
    if not str(extraction.fields.get("analysis") or "").strip():
        return "analysis is missing or empty"
    return judge_scores(extraction.fields)[1]


async def judge_one(engine: Engine, record: CoTRecord) -> CoTRecord:
    messages = prompts.judge_messages(
        record.premise, record.hypothesis, record.thought_process, record.predicted_label, record.label
    )
    answer = await engine.ask(messages, json_schema=prompts.JUDGE_SCHEMA, check=_judge_check, needs_label=False)
    fields = answer.extraction.fields
    scores, _ = judge_scores(fields)
    verdict = {
        "analysis": str(fields.get("analysis") or "").strip() or None,
        **scores,
        "improved_thought_process": str(fields.get("improved_thought_process") or "").strip() or None,
        "model": answer.model,
        "prompt_version": prompts.JUDGE_VERSION,
        "reask_count": answer.reask_count,
        "usage": answer.usage.model_dump(),
        "status": "failed" if answer.problem else "ok",
        "error": answer.problem,
        "raw_output": answer.text if answer.problem else None,
        "constrained": answer.constrained,
    }
    return record.model_copy(update={"judge": verdict})


def failed_judgement(record: CoTRecord, error: BaseException, *, model: str) -> CoTRecord:
    return record.model_copy(
        update={
            "judge": {
                "model": model,
                "prompt_version": prompts.JUDGE_VERSION,
                "status": "failed",
                "error": f"request failed: {error}",
            }
        }
    )


# ---------------------------------------------------------------- running a stage


async def run_stage(
    jobs: list,
    *,
    key: Callable[[object], str],
    handle,
    on_error,
    output: str | Path,
    backend: ChatBackend,
    config: EngineConfig,
    prices: dict | None = None,
    retry_failed: bool = False,
    desc: str = "pairs",
    progress: bool = True,
    status_of=record_status,
) -> StageResult:
    """Run ``handle`` on every job whose id is not yet in ``output``; write the ledger beside it.
    ``desc`` names the stage, which the store records and checks."""
    ledger = Ledger(prices)
    engine = Engine(backend, config, ledger)
    ledger_path = ledger_path_for(output)
    with RecordStore(output, stage=desc) as store:
        dropped = store.drop(store.failed_ids() & {key(job) for job in jobs}) if retry_failed else 0
        done = store.done_ids()
        pending = [job for job in jobs if key(job) not in done]
        try:
            report = await run_jobs(
                pending,
                handle=lambda job: handle(engine, job),
                on_error=lambda job, error: on_error(job, error, model=backend.model),
                store=store,
                engine=engine,
                desc=desc,
                progress=progress,
                checkpoint=lambda: ledger.merge_into_file(ledger_path),
                status_of=status_of,
            )
        finally:
            total = ledger.merge_into_file(ledger_path) if ledger.models else {}
            await backend.aclose()
    return StageResult(report, Path(output), ledger_path, total, len(pending), len(jobs) - len(pending), dropped)


async def generate(
    pairs: pd.DataFrame,
    output: str | Path,
    backend: ChatBackend,
    config: EngineConfig,
    *,
    limit: int | None = None,
    sample: int | None = None,
    seed: int = 0,
    prices: dict | None = None,
    retry_failed: bool = False,
    progress: bool = True,
) -> StageResult:
    rows = subset(pair_rows(pairs), limit=limit, sample=sample, seed=seed)
    return await run_stage(
        rows,
        key=lambda row: str(row["id"]),
        handle=generate_one,
        on_error=failed_pair,
        output=output,
        backend=backend,
        config=config,
        prices=prices,
        retry_failed=retry_failed,
        desc="generate",
        progress=progress,
    )


async def reflect(
    source: str | Path,
    output: str | Path,
    backend: ChatBackend,
    config: EngineConfig,
    *,
    include_correct: bool = False,
    limit: int | None = None,
    sample: int | None = None,
    seed: int = 0,
    prices: dict | None = None,
    retry_failed: bool = False,
    progress: bool = True,
) -> StageResult:
    stored = read_input_records(source)
    records = [r for r in stored if needs_reflection(r, include_correct)]
    records = subset(records, limit=limit, sample=sample, seed=seed)
    result = await run_stage(
        records,
        key=lambda r: r.id,
        handle=reflect_one,
        on_error=failed_reflection,
        output=output,
        backend=backend,
        config=config,
        prices=prices,
        retry_failed=retry_failed,
        desc="reflect",
        progress=progress,
    )
    if not records:
        result.note = nothing_to_reflect(stored, source, include_correct)
    return result


def nothing_to_reflect(stored: list[CoTRecord], source: str | Path, include_correct: bool) -> str:
    labelled = [r for r in stored if r.label is not None]
    if not stored:
        return f"{source} holds no records"
    if not labelled:
        return f"none of the {len(stored)} records in {source} has a gold label to reflect towards"
    if include_correct:
        return f"{source}: no labelled record left to reflect on"
    return (
        f"none of the {len(labelled)} labelled records in {source} has a prediction that differs from its gold "
        f"label (--all reflects on every labelled record)"
    )


async def judge(
    source: str | Path,
    output: str | Path,
    backend: ChatBackend,
    config: EngineConfig,
    *,
    limit: int | None = None,
    sample: int | None = None,
    seed: int = 0,
    prices: dict | None = None,
    retry_failed: bool = False,
    progress: bool = True,
) -> StageResult:
    stored = read_input_records(source)
    records = [r for r in stored if r.thought_process]
    records = subset(records, limit=limit, sample=sample, seed=seed)
    if retry_failed:
        # A failed judgement is a stored record whose judge.status is "failed".
        with RecordStore(output, stage="judge") as store:
            store.drop({r.id for r in store.records() if (r.judge or {}).get("status") == "failed"})
    result = await run_stage(
        records,
        key=lambda r: r.id,
        handle=judge_one,
        on_error=failed_judgement,
        output=output,
        backend=backend,
        config=config,
        prices=prices,
        retry_failed=False,
        desc="judge",
        progress=progress,
        status_of=judgement_status,
    )
    if not records:
        result.note = f"none of the {len(stored)} records in {source} has a thought to judge"
    return result


# ---------------------------------------------------------------- human rationales (e-SNLI)

NEUTRAL_POLICIES = ("drop", "strict", "non-contradiction")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,;:!?')])")
_SPACE_AFTER_OPEN = re.compile(r"([(])\s+")


def tidy_explanation(text: str) -> str:
    """e-SNLI explanations are lower-cased and tokenised ("a man is outside , so ..."): undo the
    spacing, capitalise the first letter and end with a full stop."""
    text = " ".join(str(text).split())
    # PTB-style quotes: `` opens, '' closes.
    text = re.sub(r"``\s*", '"', text)
    text = re.sub(r"\s*''", '"', text)
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    text = _SPACE_AFTER_OPEN.sub(r"\1", text)
    text = re.sub(r"\s+n't\b", "n't", text)
    text = re.sub(r"\s+'(s|re|ve|ll|d|m)\b", r"'\1", text)
    if not text:
        return text
    first = next((i for i, char in enumerate(text) if char.isalpha()), 0)
    text = text[:first] + text[first].upper() + text[first + 1 :]
    return text if text.rstrip('"')[-1:] in (".", "!", "?") else text + "."


def load_rationale_pairs(source: str | Path, neutral: str = "drop") -> pd.DataFrame:
    """e-SNLI pairs (line-aligned folder) with their explanations; ids are the 0-based line numbers.

    ``neutral``: ``drop`` (default: the COMP34812 data has no SNLI neutral pair, and a neutral
    explanation argues "cannot tell", which fits neither binary label cleanly), ``strict`` (-> 0)
    or ``non-contradiction`` (-> 1)."""
    from nli_cot_hub.data import Columns, DataError, LabelMapping, normalise_pairs, read_table

    if neutral not in NEUTRAL_POLICIES:
        raise ValueError(f"unknown neutral policy {neutral!r}; choose one of {NEUTRAL_POLICIES}")
    raw = read_table(source)
    if "label" not in raw.columns:
        raise DataError(f"{source}: human rationales need gold labels (a labels.* file)")
    if not any(column.startswith("explanation_") for column in raw.columns):
        raise DataError(f"{source}: no explanations found (expected preproc1_expl_N.* files or explanation_N columns)")
    raw = raw.assign(line=[str(i) for i in range(len(raw))])
    if neutral == "drop":
        raw = raw[raw["label"].astype(str).str.strip().str.lower() != "neutral"]
    mapping = LabelMapping(three_class=None if neutral == "drop" else neutral)
    return normalise_pairs(raw.reset_index(drop=True), str(source), columns=Columns(id="line"), labels=mapping)


def human_records(pairs: pd.DataFrame, explanation: int = 1) -> list[CoTRecord]:
    column = f"explanation_{explanation}"
    if column not in pairs.columns:
        from nli_cot_hub.data import DataError

        raise DataError(
            f"no column {column!r}: this split has {sorted(c for c in pairs.columns if c.startswith('explanation_'))}"
        )
    records = []
    for row in pairs.to_dict("records"):
        text = str(row[column] or "").strip()
        label = _label(row["label"])
        if text:
            records.append(
                CoTRecord(
                    id=str(row["id"]),
                    premise=row["premise"],
                    hypothesis=row["hypothesis"],
                    label=label,
                    thought_process=tidy_explanation(text),
                    predicted_label=label,
                    source="human",
                    model=None,
                    prompt_version=f"{prompts.HUMAN_VERSION}:{column}",
                    usage=TokenUsage(),
                )
            )
        else:
            records.append(
                CoTRecord(
                    id=str(row["id"]),
                    premise=row["premise"],
                    hypothesis=row["hypothesis"],
                    label=label,
                    predicted_label=label,
                    source="human",
                    prompt_version=f"{prompts.HUMAN_VERSION}:{column}",
                    status="label-only",
                    error=f"{column} is empty for this pair",
                )
            )
    return records


def write_human_rationales(
    source: str | Path,
    output: str | Path,
    *,
    explanation: int = 1,
    neutral: str = "drop",
    limit: int | None = None,
    sample: int | None = None,
    seed: int = 0,
) -> tuple[int, int]:
    """Append the e-SNLI explanations of ``source`` to ``output``; returns (written, already there)."""
    records = subset(
        human_records(load_rationale_pairs(source, neutral), explanation), limit=limit, sample=sample, seed=seed
    )
    with RecordStore(output, stage="rationales") as store:
        done = store.done_ids()
        new = [record for record in records if record.id not in done]
        for start in range(0, len(new), 1000):
            store.append_many(new[start : start + 1000])
    return len(new), len(records) - len(new)


# ---------------------------------------------------------------- stage configs and entry points


@dataclass(kw_only=True)
class SubsetOptions:
    limit: int | None = option(None, "Only the first N rows (after --sample).", min=1)
    sample: int | None = option(None, "A random sample of N rows (see --seed).", min=1)
    seed: int = option(0, "Seed of --sample.")


@stage_config
class GenerateConfig(PairOptions, SubsetOptions, RequestOptions):
    """Ask an LLM for a chain of thought and a label for each pair (prompt cot-v1).

    Appends one record per pair to OUTPUT (failures included, with their error) and adds this run's tokens
    and cost to OUTPUT.ledger.json. Rerun the same command to resume.
    """

    data: str = option(help="NLI pairs: CSV/TSV/JSONL/JSON/Parquet, data set folder or Hub repo id.", positional=True)
    output: str = option("cot.jsonl", "JSONL store to append to; ids already in it are skipped.", short="-o")
    backend: str = option(f"mistral:{DEFAULT_API_GENERATOR}", BACKEND_HELP, short="-b")
    unlabeled: bool = option(False, "Accept data without labels.")


@stage_config
class ReflectConfig(SubsetOptions, RequestOptions):
    """Repair wrong chains of thought with a (stronger) model that is told the true label.

    Writes records with source "reflected": error_analysis, the improved thought and the true label as
    predicted_label (prompt reflect-v1). A reply that does not reach the true label is re-asked, then stored
    as failed.
    """

    records: str = option(help="JSONL store written by `nli-cot generate`.", positional=True)
    output: str = option("reflected.jsonl", "JSONL store to append to; ids already in it are skipped.", short="-o")
    backend: str = option(f"mistral:{DEFAULT_API_REFLECTOR}", BACKEND_HELP, short="-b")
    include_correct: bool = option(
        False,
        "Reflect on every labelled record, not only those whose prediction differs from the label.",
        flag="--all",
    )
    max_new_tokens: int = option(384, "Token cap of each reply.", min=1)


@stage_config
class JudgeConfig(SubsetOptions, RequestOptions):
    """Score each chain of thought 1-5 on coherence, correctness and brevity (prompt judge-v1).

    Writes a copy of each record with a `judge` field: analysis, the scores, an optional improved thought,
    and the judge's model, usage and status.
    """

    records: str = option(help="JSONL store of chains of thought (generate, reflect or rationales).", positional=True)
    output: str = option("judged.jsonl", "JSONL store to append to; ids already in it are skipped.", short="-o")
    backend: str = option(f"mistral:{DEFAULT_API_REFLECTOR}", BACKEND_HELP, short="-b")
    max_new_tokens: int = option(384, "Token cap of each reply.", min=1)


@stage_config
class RationalesConfig(SubsetOptions):
    """Turn human e-SNLI explanations into chain-of-thought records (source "human"), no API needed."""

    data: str = option(help="e-SNLI split folder (s1/s2/labels/preproc1_expl_N files).", positional=True)
    output: str = option("human.jsonl", "JSONL store to append to; ids already in it are skipped.", short="-o")
    explanation: int = option(1, "Which of the human explanations to use (1-3).", min=1, max=3)
    neutral: str = option(
        "drop", "Neutral pairs: drop, strict (-> 0) or non-contradiction (-> 1).", choices=NEUTRAL_POLICIES
    )


@dataclass
class RationalesResult:
    output: Path
    written: int
    already_done: int


def _ask(stage: str, ask, source, config, **options) -> StageResult:
    """Run one of the asking stages on ``source`` (pairs or a store) as ``config`` says; a share of failed
    records above ``config.max_failed_share`` becomes the result's ``problem``."""
    backend = config.make_backend(config.backend)
    result = asyncio.run(
        ask(
            source,
            config.output,
            backend,
            config.engine_config(config.backend),
            limit=config.limit,
            sample=config.sample,
            seed=config.seed,
            prices=load_prices(config.prices),
            retry_failed=config.retry_failed,
            progress=config.progress,
            **options,
        )
    )
    report = result.report
    result.problem = failed_share_problem(
        stage, report.failed, report.written, report.first_error, config.max_failed_share, result.output
    )
    return result


def run_generate(config: GenerateConfig) -> StageResult:
    """Generate a chain of thought for every pair of ``config.data`` into ``config.output`` (resumable)."""
    refuse_input_as_output(config.output, [config.data], "--output")
    pairs = config.load(config.data, require_labels=not config.unlabeled)
    return _ask("generate", generate, pairs, config)


def run_reflect(config: ReflectConfig) -> StageResult:
    """Reflect on the wrong thoughts of ``config.records`` into ``config.output`` (resumable)."""
    refuse_input_as_output(config.output, [config.records], "--output")
    return _ask("reflect", reflect, config.records, config, include_correct=config.include_correct)


def run_judge(config: JudgeConfig) -> StageResult:
    """Judge every thought of ``config.records`` into ``config.output`` (resumable)."""
    refuse_input_as_output(config.output, [config.records], "--output")
    return _ask("judge", judge, config.records, config)


def run_rationales(config: RationalesConfig) -> RationalesResult:
    """Append the human explanations of an e-SNLI split to ``config.output``."""
    refuse_input_as_output(config.output, [config.data], "--output")
    written, existing = write_human_rationales(
        config.data,
        config.output,
        explanation=config.explanation,
        neutral=config.neutral,
        limit=config.limit,
        sample=config.sample,
        seed=config.seed,
    )
    return RationalesResult(Path(config.output), written, existing)
