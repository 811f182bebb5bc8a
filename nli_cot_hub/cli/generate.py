"""``nli-cot generate | reflect | judge | rationales``: annotate NLI pairs with chains of thought."""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated, Optional

import typer

from nli_cot_hub.cli.common import (
    DEFAULT_MAX_FAILED_SHARE, Config, HypothesisCol, IdCol, LabelCol, LabelMapSpec, LabelScheme, MaxFailedShare,
    PremiseCol, Split, ThreeClass, check_failed_share, clean_errors, columns_and_labels, refuse_input_as_output,
)
from nli_cot_hub.models import DEFAULT_API_GENERATOR, DEFAULT_API_REFLECTOR

BACKEND_HELP = (
    "Backend spec: mistral:MODEL (MISTRAL_API_KEY), mistral:URL#MODEL, openai:URL#MODEL (vLLM, SGLang, "
    "TGI Messages API, transformers serve), llamacpp:URL#MODEL, tgi:URL#TOKENIZER, local:embedded or local:PATH.")

Output = Annotated[str, typer.Option("--output", "-o", help="JSONL store to append to; ids already in it are skipped.")]
Backend = Annotated[str, typer.Option("--backend", "-b", help=BACKEND_HELP)]
Concurrency = Annotated[int, typer.Option(min=1, help="Requests in flight at once.")]
Rpm = Annotated[Optional[float], typer.Option("--rpm", help="Cap on requests per minute (default: none).")]
Tpm = Annotated[Optional[float], typer.Option("--tpm", help="Cap on estimated tokens per minute (default: none).")]
MaxRetries = Annotated[int, typer.Option(min=0, help="Retries of a request on 429/5xx/timeouts/dropped connections.")]
MaxReasks = Annotated[int, typer.Option(min=0, help="Re-asks when the reply is not usable JSON (counted per record).")]
Timeout = Annotated[Optional[float], typer.Option("--timeout", help="Seconds to wait for one reply before retrying "
                                                  "(default: 120 for servers, 1800 for the local backend).")]
REMOTE_TIMEOUT_S, LOCAL_TIMEOUT_S = 120.0, 1800.0


def _timeout(spec: str, timeout: float | None) -> float:
    """A local batch on a busy CPU can take minutes, and a retry would only redo the same work."""
    if timeout is not None:
        return timeout
    return LOCAL_TIMEOUT_S if spec.startswith("local") else REMOTE_TIMEOUT_S
Temperature = Annotated[float, typer.Option(help="Sampling temperature (0 = greedy).")]
GenSeed = Annotated[Optional[int], typer.Option("--gen-seed", help="Sampling seed sent to the backend, if it takes one.")]
JsonMode = Annotated[str, typer.Option(
    "--json-mode", help="How to request JSON: auto (per backend), schema (response_format json_schema), "
    "object (json_object + schema, llama.cpp), none (prompt only).")]
SystemRole = Annotated[str, typer.Option(
    "--system-role", help="Endpoints that apply their own chat template (mistral, openai, llamacpp): keep the "
    "system message, fold it into the user turn, or auto (fold when the served model's tokenizer, readable "
    "offline, cannot take a system message as it is).")]
Constrain = Annotated[bool, typer.Option(
    "--constrain/--no-constrain", help="Constrain answers to the stage's JSON schema where the backend can "
    "(local: constrained decoding; servers: as --json-mode says). --no-constrain asks for JSON in the prompt only.")]
RetryFailed = Annotated[bool, typer.Option("--retry-failed", help="Drop stored failures first and try them again.")]
Prices = Annotated[Optional[str], typer.Option(help="YAML of USD per million tokens per model (default: shipped list prices).")]
Limit = Annotated[Optional[int], typer.Option(min=1, help="Only the first N rows (after --sample).")]
Sample = Annotated[Optional[int], typer.Option(min=1, help="A random sample of N rows (see --seed).")]
Seed = Annotated[int, typer.Option(help="Seed of --sample.")]
Progress = Annotated[bool, typer.Option(help="Show a progress bar.")]


def _engine_config(concurrency, rpm, tpm, max_retries, max_reasks, timeout, temperature, max_tokens, gen_seed):
    from nli_cot_hub.engine import EngineConfig

    return EngineConfig(concurrency=concurrency, requests_per_minute=rpm, tokens_per_minute=tpm,
                        max_retries=max_retries, max_reasks=max_reasks, request_timeout_s=timeout,
                        temperature=temperature, max_tokens=max_tokens, seed=gen_seed)


def _backend(spec: str, json_mode: str, timeout: float, system_role: str = "auto", constrain: bool = True):
    from nli_cot_hub.backends import make_backend

    if json_mode not in ("auto", "schema", "object", "none"):
        raise typer.BadParameter(f"--json-mode must be auto, schema, object or none, not {json_mode!r}")
    if system_role not in ("auto", "keep", "fold"):
        raise typer.BadParameter(f"must be auto, keep or fold, not {system_role!r}", param_hint="--system-role")
    if not constrain:
        json_mode = "none"
    try:
        return make_backend(spec, timeout_s=timeout, json_mode=json_mode,  # type: ignore[arg-type]
                            system_role=system_role)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--backend") from None


def _run(coroutine):
    """A fatal backend error or a locked store reaches the error boundary: one line, exit code 1."""
    return asyncio.run(coroutine)


def _print_result(result, stage: str, max_failed_share: float) -> None:
    """The run's summary; then exit code 1 when too many of this run's records failed."""
    from rich.console import Console

    from nli_cot_hub.store import read_records, summarize

    console = Console(stderr=True)
    report = result.report
    console.print(f"{stage}: {report.written} written ({report.by_status or {}}) in {report.seconds:.1f} s; "
                  f"{result.already_done} already in {result.output}"
                  + (f"; {result.dropped_failed} earlier failures retried" if result.dropped_failed else ""))
    summary = summarize(read_records(result.output))
    if result.note:
        console.print(f"{stage}: nothing to do: {result.note}")
    console.print(f"store: {summary['records']} records, by status {summary['by_status']}"
                  + (f", accuracy {summary['accuracy']:.1%}" if summary["accuracy"] is not None else ""))
    for model, counts in result.ledger.items():
        cost = "unknown price" if counts["cost_usd"] is None else f"${counts['cost_usd']:.4f}"
        console.print(f"ledger {model}: {counts['requests']} requests, {counts['retries']} retries, "
                      f"{counts['reasks']} re-asks, {counts['prompt_tokens']}+{counts['completion_tokens']} tokens, "
                      f"{cost} (all runs, {result.ledger_path})")
    check_failed_share(stage, report.failed, report.written, report.first_error, max_failed_share, result.output)


def register(app: typer.Typer) -> None:
    @app.command("generate")
    @clean_errors
    def generate_command(
        data: Annotated[str, typer.Argument(help="NLI pairs: CSV/TSV/JSONL/JSON/Parquet, data set folder or Hub repo id.")],
        output: Output = "cot.jsonl",
        backend: Backend = f"mistral:{DEFAULT_API_GENERATOR}",
        premise_col: PremiseCol = "premise",
        hypothesis_col: HypothesisCol = "hypothesis",
        label_col: LabelCol = "label",
        id_col: IdCol = None,
        labels: LabelScheme = "binary",
        three_class: ThreeClass = None,
        label_map: LabelMapSpec = None,
        config: Config = None,
        split: Split = "train",
        unlabeled: Annotated[bool, typer.Option(help="Accept data without labels.")] = False,
        limit: Limit = None,
        sample: Sample = None,
        seed: Seed = 0,
        concurrency: Concurrency = 8,
        rpm: Rpm = None,
        tpm: Tpm = None,
        max_retries: MaxRetries = 6,
        max_reasks: MaxReasks = 2,
        timeout: Timeout = None,
        temperature: Temperature = 0.0,
        max_tokens: Annotated[int, typer.Option(min=1, help="Token cap of each reply.")] = 256,
        gen_seed: GenSeed = None,
        json_mode: JsonMode = "auto",
        system_role: SystemRole = "auto",
        constrain: Constrain = True,
        retry_failed: RetryFailed = False,
        prices: Prices = None,
        progress: Progress = True,
        max_failed_share: MaxFailedShare = DEFAULT_MAX_FAILED_SHARE,
    ) -> None:
        """Ask an LLM for a chain of thought and a label for each pair (prompt cot-v1).

        Appends one record per pair to OUTPUT (failures included, with their error) and adds
        this run's tokens and cost to OUTPUT.ledger.json. Rerun the same command to resume.
        """
        from nli_cot_hub import generate as stage
        from nli_cot_hub.data import load_pairs
        from nli_cot_hub.engine import load_prices

        refuse_input_as_output(output, [data], "--output")
        columns, mapping = columns_and_labels(premise_col, hypothesis_col, label_col, id_col, labels, three_class, label_map)
        pairs = load_pairs(data, columns=columns, labels=mapping, require_labels=not unlabeled, config=config, split=split)
        timeout = _timeout(backend, timeout)
        chat = _backend(backend, json_mode, timeout, system_role, constrain)
        engine_config = _engine_config(concurrency, rpm, tpm, max_retries, max_reasks, timeout, temperature,
                                       max_tokens, gen_seed)
        result = _run(stage.generate(pairs, output, chat, engine_config, limit=limit, sample=sample, seed=seed,
                                     prices=load_prices(prices), retry_failed=retry_failed, progress=progress))
        _print_result(result, "generate", max_failed_share)

    @app.command("reflect")
    @clean_errors
    def reflect_command(
        records: Annotated[str, typer.Argument(help="JSONL store written by `nli-cot generate`.")],
        output: Output = "reflected.jsonl",
        backend: Backend = f"mistral:{DEFAULT_API_REFLECTOR}",
        include_correct: Annotated[bool, typer.Option(
            "--all", help="Reflect on every labelled record, not only those whose prediction differs from the label.")] = False,
        limit: Limit = None,
        sample: Sample = None,
        seed: Seed = 0,
        concurrency: Concurrency = 8,
        rpm: Rpm = None,
        tpm: Tpm = None,
        max_retries: MaxRetries = 6,
        max_reasks: MaxReasks = 2,
        timeout: Timeout = None,
        temperature: Temperature = 0.0,
        max_tokens: Annotated[int, typer.Option(min=1, help="Token cap of each reply.")] = 384,
        gen_seed: GenSeed = None,
        json_mode: JsonMode = "auto",
        system_role: SystemRole = "auto",
        constrain: Constrain = True,
        retry_failed: RetryFailed = False,
        prices: Prices = None,
        progress: Progress = True,
        max_failed_share: MaxFailedShare = DEFAULT_MAX_FAILED_SHARE,
    ) -> None:
        """Repair wrong chains of thought with a (stronger) model that is told the true label.

        Writes records with source "reflected": error_analysis, the improved thought and the
        true label as predicted_label (prompt reflect-v1). A reply that does not reach the true
        label is re-asked, then stored as failed.
        """
        from nli_cot_hub import generate as stage
        from nli_cot_hub.engine import load_prices

        refuse_input_as_output(output, [records], "--output")
        timeout = _timeout(backend, timeout)
        chat = _backend(backend, json_mode, timeout, system_role, constrain)
        engine_config = _engine_config(concurrency, rpm, tpm, max_retries, max_reasks, timeout, temperature,
                                       max_tokens, gen_seed)
        result = _run(stage.reflect(records, output, chat, engine_config, include_correct=include_correct,
                                    limit=limit, sample=sample, seed=seed, prices=load_prices(prices),
                                    retry_failed=retry_failed, progress=progress))
        _print_result(result, "reflect", max_failed_share)

    @app.command("judge")
    @clean_errors
    def judge_command(
        records: Annotated[str, typer.Argument(help="JSONL store of chains of thought (generate, reflect or rationales).")],
        output: Output = "judged.jsonl",
        backend: Backend = f"mistral:{DEFAULT_API_REFLECTOR}",
        limit: Limit = None,
        sample: Sample = None,
        seed: Seed = 0,
        concurrency: Concurrency = 8,
        rpm: Rpm = None,
        tpm: Tpm = None,
        max_retries: MaxRetries = 6,
        max_reasks: MaxReasks = 2,
        timeout: Timeout = None,
        temperature: Temperature = 0.0,
        max_tokens: Annotated[int, typer.Option(min=1, help="Token cap of each reply.")] = 384,
        gen_seed: GenSeed = None,
        json_mode: JsonMode = "auto",
        system_role: SystemRole = "auto",
        constrain: Constrain = True,
        retry_failed: RetryFailed = False,
        prices: Prices = None,
        progress: Progress = True,
        max_failed_share: MaxFailedShare = DEFAULT_MAX_FAILED_SHARE,
    ) -> None:
        """Score each chain of thought 1-5 on coherence, correctness and brevity (prompt judge-v1).

        Writes a copy of each record with a `judge` field: analysis, the scores, an optional
        improved thought, and the judge's model, usage and status.
        """
        from nli_cot_hub import generate as stage
        from nli_cot_hub.engine import load_prices

        refuse_input_as_output(output, [records], "--output")
        timeout = _timeout(backend, timeout)
        chat = _backend(backend, json_mode, timeout, system_role, constrain)
        engine_config = _engine_config(concurrency, rpm, tpm, max_retries, max_reasks, timeout, temperature,
                                       max_tokens, gen_seed)
        result = _run(stage.judge(records, output, chat, engine_config, limit=limit, sample=sample, seed=seed,
                                  prices=load_prices(prices), retry_failed=retry_failed, progress=progress))
        _print_result(result, "judge", max_failed_share)

    @app.command("rationales")
    @clean_errors
    def rationales_command(
        data: Annotated[str, typer.Argument(help="e-SNLI split folder (s1/s2/labels/preproc1_expl_N files).")],
        output: Output = "human.jsonl",
        explanation: Annotated[int, typer.Option(min=1, max=3, help="Which of the human explanations to use (1-3).")] = 1,
        neutral: Annotated[str, typer.Option(help="Neutral pairs: drop, strict (-> 0) or non-contradiction (-> 1).")] = "drop",
        limit: Limit = None,
        sample: Sample = None,
        seed: Seed = 0,
    ) -> None:
        """Turn human e-SNLI explanations into chain-of-thought records (source "human"), no API needed."""
        from nli_cot_hub.generate import NEUTRAL_POLICIES, write_human_rationales

        if neutral not in NEUTRAL_POLICIES:
            raise typer.BadParameter(f"choose one of {NEUTRAL_POLICIES}", param_hint="--neutral")
        refuse_input_as_output(output, [data], "--output")
        written, existing = write_human_rationales(data, output, explanation=explanation, neutral=neutral,
                                                   limit=limit, sample=sample, seed=seed)
        print(f"rationales: {written} written, {existing} already in {output}", file=sys.stderr)
