"""``nli-cot predict | evaluate``: answer NLI pairs with a CoT model, then score and report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from nli_cot_hub.cli.common import (
    DEFAULT_MAX_FAILED_SHARE, Config, HypothesisCol, IdCol, LabelCol, LabelMapSpec, LabelScheme, MaxFailedShare, RunFailed,
    PremiseCol, Split, ThreeClass, check_failed_share, check_output_file, clean_errors, columns_and_labels,
    refuse_input_as_output,
)

BACKEND_HELP = (
    "local (the model below, in this process, batched) or a remote spec: tgi:URL#TOKENIZER (TGI /generate "
    "with the JSON grammar), openai:URL#MODEL (vLLM, SGLang, TGI Messages API, HF Inference Endpoints, "
    "transformers serve), llamacpp:URL#MODEL, mistral:MODEL.")


def register(app: typer.Typer) -> None:
    @app.command("predict")
    @clean_errors
    def predict_command(
        data: Annotated[str, typer.Argument(help="NLI pairs: CSV/TSV/JSONL/JSON/Parquet, data set folder or Hub repo id.")],
        output: Annotated[str, typer.Option("--output", "-o", help="Predictions JSONL; ids already in it are skipped (resume).")] = "predictions.jsonl",
        submission: Annotated[Optional[str], typer.Option(help="Coursework CSV to write: one 'prediction' column, one row per input row, in order.")] = None,
        backend: Annotated[str, typer.Option("--backend", "-b", help=BACKEND_HELP)] = "local",
        model: Annotated[Optional[str], typer.Option(help="Local model: folder, Hub id, 'embedded', or a PEFT adapter (default: the base model --adapter names, else embedded).")] = None,
        adapter: Annotated[Optional[str], typer.Option(help="PEFT adapter (folder or Hub id) on top of --model.")] = None,
        merge: Annotated[Optional[bool], typer.Option(help="Merge the adapter into the weights before generating (default: on a GPU).")] = None,
        prompt: Annotated[str, typer.Option(help="finetune: the fine-tuning chat format (fine-tuned models); cot: the few-shot CoT prompt (zero-shot base/instruct models).")] = "finetune",
        max_new_tokens: Annotated[int, typer.Option(min=1, help="Token cap of each answer.")] = 256,
        num_samples: Annotated[int, typer.Option(min=1, help="Self-consistency: answers per pair, majority vote (needs --temperature > 0).")] = 1,
        temperature: Annotated[float, typer.Option(min=0.0, help="Sampling temperature (0 = greedy).")] = 0.0,
        gen_seed: Annotated[Optional[int], typer.Option("--gen-seed", help="Sampling seed.")] = None,
        batch_size: Annotated[Optional[int], typer.Option(min=1, help="Local engine: prompts per batch, sorted by length (default: what GPU memory holds, up to 512; 8 on a CPU).")] = None,
        dtype: Annotated[str, typer.Option(help="Local engine: auto (bf16 on GPU, fp32 on CPU), bfloat16, float16, float32.")] = "auto",
        engine_mode: Annotated[str, typer.Option(help="Local engine: padded (generate on padded batches) or continuous (continuous batching).")] = "padded",
        cache: Annotated[Optional[str], typer.Option(help="Local engine: generate's cache_implementation, e.g. static (GPU).")] = None,
        threads: Annotated[Optional[int], typer.Option(min=1, help="Local engine: CPU threads for torch.")] = None,
        constrain: Annotated[bool, typer.Option("--constrain/--no-constrain", help="Constrain each answer to the answer's JSON schema (local engine: constrained decoding, padded mode only; servers: the schema is sent). --no-constrain asks for JSON in the prompt only.")] = True,
        concurrency: Annotated[int, typer.Option(min=1, help="Remote backends: requests in flight.")] = 8,
        max_retries: Annotated[int, typer.Option(min=0, help="Remote backends: retries on 429/5xx/timeouts.")] = 6,
        max_reasks: Annotated[int, typer.Option(min=0, help="Remote backends: re-asks after an unusable answer (0: score the first answer).")] = 0,
        timeout: Annotated[float, typer.Option(help="Remote backends: seconds to wait for one answer.")] = 120.0,
        system_role: Annotated[str, typer.Option(help="Endpoints that apply their own chat template (openai, llamacpp, mistral): keep the system message, fold it into the user turn, or auto (fold when the served model's tokenizer, readable offline, cannot take it as it is).")] = "auto",
        completion_format: Annotated[Optional[str], typer.Option(help="Answer format: thought_first, label_first, multitask or label_only (default: the one the adapter folder records, else thought_first).")] = None,
        readout: Annotated[str, typer.Option(help="generate: parse the generated answer; logprob: compare the log-probabilities of 0 and 1 at the label position (every row gets a label and p(label = 1)).")] = "generate",
        explain: Annotated[bool, typer.Option(help="Answer-first formats: also write the explanation (label_first: after the chosen label; multitask: the [explain] task).")] = False,
        thoughts_from: Annotated[Optional[str], typer.Option(help="--readout logprob on thought_first: read each row's thought from these earlier (generation) predictions instead of generating it again; rows missing there are generated.")] = None,
        stats: Annotated[Optional[str], typer.Option(help="JSON file for this run's counts, seconds and examples per second.")] = None,
        fallback_label: Annotated[str, typer.Option(help="Submission label for rows without a prediction: majority (most common predicted label), 0 or 1.")] = "majority",
        retry_failed: Annotated[bool, typer.Option(help="Drop stored failures first and predict them again.")] = False,
        limit: Annotated[Optional[int], typer.Option(min=1, help="Only the first N rows.")] = None,
        premise_col: PremiseCol = "premise",
        hypothesis_col: HypothesisCol = "hypothesis",
        label_col: LabelCol = "label",
        id_col: IdCol = None,
        labels: LabelScheme = "binary",
        three_class: ThreeClass = None,
        label_map: LabelMapSpec = None,
        config: Config = None,
        split: Split = "test",
        progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
        max_failed_share: MaxFailedShare = DEFAULT_MAX_FAILED_SHARE,
    ) -> None:
        """Predict a label and a chain of thought for every pair; gold labels are kept when present.

        Streams one record per pair to OUTPUT (failures too, with the reason). Rerun the same
        command to resume. With --submission, also writes the coursework CSV.
        """
        from rich.console import Console

        from nli_cot_hub.constrained import SchemaError
        from nli_cot_hub.data import load_pairs
        from nli_cot_hub.predict import (
            FALLBACKS, PredictConfig, ReadoutUnsupported, predict, write_stats, write_submission,
        )
        from nli_cot_hub.store import StoreLockedError, read_records

        if fallback_label not in FALLBACKS:
            raise typer.BadParameter(f"must be one of {FALLBACKS}", param_hint="--fallback-label")
        refuse_input_as_output(output, [data, model, adapter], "--output")
        refuse_input_as_output(submission, [data, output], "--submission")
        check_output_file(submission, "--submission")
        columns, mapping = columns_and_labels(premise_col, hypothesis_col, label_col, id_col, labels, three_class, label_map)
        pairs = load_pairs(data, columns=columns, labels=mapping, require_labels=False, config=config, split=split)
        try:
            settings = PredictConfig(prompt=prompt, max_new_tokens=max_new_tokens, temperature=temperature,
                                     num_samples=num_samples, seed=gen_seed, batch_size=batch_size,
                                     concurrency=concurrency, max_retries=max_retries, max_reasks=max_reasks,
                                     timeout_s=timeout, system_role=system_role, completion_format=completion_format,
                                     readout=readout, explain=explain, thoughts_from=thoughts_from,
                                     constrain=constrain)
        except ValueError as error:
            raise typer.BadParameter(str(error)) from None
        if constrain and engine_mode == "continuous" and backend.split(":", 1)[0] == "local":
            raise typer.BadParameter("continuous batching cannot constrain answers to a JSON schema: "
                                     "use --engine-mode padded or add --no-constrain", param_hint="--engine-mode")
        options = {"dtype": dtype, "mode": engine_mode, "cache": cache, "threads": threads}
        console = Console(stderr=True, soft_wrap=True)
        try:
            result = predict(pairs, output, backend=backend, model=model, adapter=adapter, merge=merge,
                             config=settings, retry_failed=retry_failed, limit=limit, progress=progress,
                             engine_options=options)
        except StoreLockedError as error:
            print(f"error: {error}", file=sys.stderr)
            raise typer.Exit(1) from None
        except ReadoutUnsupported as error:
            print(f"error: {error}", file=sys.stderr)
            raise typer.Exit(2) from None
        except SchemaError as error:
            print(f"error: {error}", file=sys.stderr)
            raise typer.Exit(2) from None
        console.print(f"predict: {result.written} written {result.by_status or {}} in {result.seconds:.1f} s "
                      f"({result.examples_per_second or 0:.1f} examples/s after {result.load_seconds:.1f} s of "
                      f"loading); {result.already_done} already in {output}"
                      + (f"; {result.dropped_failed} earlier failures retried" if result.dropped_failed else ""))
        # A rerun that finds every row done measured nothing: the speed of the run that did the work stays.
        if stats and (result.written or not Path(stats).exists()):
            write_stats(stats, result)
        if submission:
            rows = pairs if limit is None else pairs.iloc[:limit]
            written = write_submission(rows, read_records(output), submission, fallback_label,
                                       max_fallback_share=max_failed_share)
            console.print(f"submission: {written.rows} rows -> {written.path}; {len(written.fallback_rows)} got the "
                          f"fallback label {written.fallback_label}"
                          + (f" ({len(written.missing_rows)} never predicted)" if written.missing_rows else "")
                          + f"; report: {written.report_path}")
        check_failed_share("predict", result.failed, result.written, result.first_error, max_failed_share, output)

    @app.command("evaluate")
    @clean_errors
    def evaluate_command(
        predictions: Annotated[list[str], typer.Argument(help="One or more predictions JSONL files (from predict); two or more are compared pairwise.")],
        output_dir: Annotated[str, typer.Option("--output-dir", "-o", help="Folder for metrics.json, report.md, plots and the audit.")] = "evaluation",
        gold: Annotated[Optional[str], typer.Option(help="Gold labels (any data file load_pairs reads) when the predictions lack them; matched by id.")] = None,
        names: Annotated[Optional[str], typer.Option(help="Comma-separated display names of the prediction files (default: file stems).")] = None,
        unparsed: Annotated[str, typer.Option(help="How an answer without a label counts: wrong, drop, 0 or 1.")] = "wrong",
        worst: Annotated[int, typer.Option(min=0, help="How many errors to list in the report.")] = 10,
        audit_min_votes: Annotated[int, typer.Option(min=2, help="Audit: flag a pair when at least this many predictions (files or samples) agree with each other against gold.")] = 2,
        threshold: Annotated[float, typer.Option(min=0.0, max=1.0, help="Predictions with p(label = 1) (--readout logprob): accuracy when label 1 is given at p >= this.")] = 0.5,
        premise_col: PremiseCol = "premise",
        hypothesis_col: HypothesisCol = "hypothesis",
        label_col: LabelCol = "label",
        id_col: IdCol = None,
        labels: LabelScheme = "binary",
        three_class: ThreeClass = None,
        label_map: LabelMapSpec = None,
    ) -> None:
        """Score predictions with the nli_cot metric; write metrics.json, report.md with PNG plots,
        a McNemar comparison when given two or more files, and a label-disagreement audit."""
        from rich.console import Console

        from nli_cot_hub.report import evaluate_files

        if unparsed not in ("wrong", "drop", "0", "1"):
            raise typer.BadParameter("must be wrong, drop, 0 or 1", param_hint="--unparsed")
        refuse_input_as_output(output_dir, [*predictions, gold], "--output-dir")
        gold_labels = gold_texts = None
        if gold:
            from nli_cot_hub.data import load_pairs

            columns, mapping = columns_and_labels(premise_col, hypothesis_col, label_col, id_col, labels,
                                                  three_class, label_map)
            gold_pairs = load_pairs(gold, columns=columns, labels=mapping, require_labels=True)
            gold_labels = dict(zip(gold_pairs["id"].astype(str), gold_pairs["label"].astype(int)))
            gold_texts = dict(zip(gold_pairs["id"].astype(str), zip(gold_pairs["premise"], gold_pairs["hypothesis"])))
        display = [name.strip() for name in names.split(",")] if names else None
        if display is not None and len(display) != len(predictions):
            raise typer.BadParameter(f"{len(display)} names for {len(predictions)} files", param_hint="--names")
        summary = evaluate_files(predictions, output_dir, gold=gold_labels, names=display,
                                 unparsed=unparsed if unparsed in ("wrong", "drop") else int(unparsed),
                                 worst=worst, audit_min_votes=audit_min_votes, threshold=threshold,
                                 gold_texts=gold_texts, gold_name=f"--gold {gold}")
        console = Console(stderr=True, soft_wrap=True)
        for warning in summary["warnings"]:
            console.print(f"warning: {warning}")
        for name, metrics in summary["models"].items():
            accuracy = metrics.get("accuracy")
            console.print(f"{name}: accuracy {accuracy:.4f}, macro F1 {metrics['macro_f1']:.4f}, parse rate "
                          f"{metrics['parse_rate']:.3f} on {metrics['rows']} rows" if accuracy is not None
                          else f"{name}: no scored rows")
            if metrics.get("ece") is not None:
                auc = metrics["roc_auc"]
                console.print(f"{name}: ROC-AUC {'n/a' if auc is None else f'{auc:.4f}'}, Brier {metrics['brier']:.4f}, "
                              f"ECE {metrics['ece']:.4f}, accuracy at p >= {threshold:g} "
                              f"{metrics['accuracy_at_threshold']:.4f}")
        for comparison in summary.get("comparisons", []):
            console.print(f"McNemar {comparison['a']} vs {comparison['b']}: b={comparison['only_a_right']} "
                          f"c={comparison['only_b_right']} p={comparison['p_value']:.4g} ({comparison['test']})")
        console.print(f"audit: {summary['audit']['flagged']} pairs flagged; report: {summary['report']}")

    @app.command("push-metric")
    def push_metric_command(
        repo_id: Annotated[str, typer.Argument(help="Space to create or update, e.g. your-name/nli_cot.")],
        private: Annotated[bool, typer.Option(help="Create the Space private.")] = False,
    ) -> None:
        """Publish the nli_cot evaluate metric as a Hub Space (token from HF_TOKEN); then
        evaluate.load(REPO_ID) loads it (with nli-cot-hub installed)."""
        from huggingface_hub.errors import HfHubHTTPError

        from nli_cot_hub.report import push_metric

        try:
            repo = push_metric(repo_id, private=private)
        except HfHubHTTPError as error:
            from nli_cot_hub.hub_transfer import hub_error_line

            raise RunFailed(f"pushing the metric failed: {hub_error_line(error, repo_id, 'space', None)}") from None
        print(f"metric pushed: evaluate.load({repo!r})")
