"""One accuracy run: train, predict and evaluate with the project's own CLI stages.

    python -m experiments.run <run> [<run> ...] [options]

Runs (same seed, same evaluation sets, prepared by ``python -m experiments.prepare_data``):

=================  ==========================================================================================
zero-shot          the embedded SmolLM2-135M-Instruct, no training, few-shot CoT prompt (``--prompt cot``)
tfidf              TF-IDF + logistic regression on the training pairs (CPU, scikit-learn; no GPU needed)
label-only         LoRA SFT on the same pairs with an empty thought: completion ``{"thought_process": "", ...}``
cot-original       LoRA SFT on the author's open-mistral-7b thoughts that reached the gold label
cot-reflected      as cot-original plus reflections on the wrong thoughts, written on the machine by the
                   embedded model (``nli-cot reflect --backend local:embedded``), kept if they reach gold
cot-esnli          as cot-original plus e-SNLI human explanations as thoughts (``nli-cot rationales``)
self-consistency   ``--base`` run's adapter, 5 sampled answers per pair, majority vote
fmt-<format>       LoRA SFT in one completion format (label-only, thought-first, label-first, multitask,
                   thought-first-weighted, label-first-weighted), written to ``<run>-s<seed>/`` and predicted
                   twice: generation and the log-probability read-out (``predictions_<set>_logprob.jsonl``),
                   with examples/s
=================  ==========================================================================================

Each run writes ``<results>/<run>/``: the predictions JSONL per evaluation set, ``eval_<set>/``
(``nli-cot evaluate``'s metrics.json + report.md + plots), ``metrics.json`` (the run's numbers per set,
the card, the date, every command and its wall time), ``report.md`` and ``run.log``. The adapter of a
trained run stays in ``<results>/<run>/adapter`` (ignored by git). Evaluation needs scikit-learn, scipy
and matplotlib; where they are missing (the GPU machine) it is skipped and ``python -m
experiments.summarise`` does it later with the same command.
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from experiments.common import (
    BUILD_JD0G,
    BUILD_JD0G_ESNLI,
    DEFAULT_RESULTS,
    DEFAULT_WORK,
    DEV_EVAL,
    JD0G_ORIGINALS,
    LABEL_ONLY,
    MANIFEST,
    MNLI_EVAL,
    MNLI_EVAL_STRICT,
    PAIRS,
    REPO,
    build_config,
    cli,
    read_json,
    run_stage,
    shorten,
    write_json,
)

RECIPE = REPO / "experiments" / "recipe_smollm2_h100.yaml"
EVAL_SETS = {"dev": DEV_EVAL, "mnli_hard": MNLI_EVAL}
# Scored views of the prediction files: MNLI hard is scored with both binary mappings (same predictions).
SCORED_VIEWS = {
    "dev": ("dev", None),
    "mnli_hard": ("mnli_hard", None),
    "mnli_hard_standard": ("mnli_hard", MNLI_EVAL_STRICT),
}
COT_RUNS = ("cot-original", "cot-reflected", "cot-esnli")
EVALUATE_NEEDS = ("sklearn", "scipy", "matplotlib")


@dataclass(frozen=True)
class RunSpec:
    description: str
    data: str | None = None  # training data, relative to the work folder (None: no training)
    config: str | None = None
    prompt: str = "finetune"
    max_new_tokens: int = 256
    reflect: bool = False
    samples: int = 1
    classic: bool = False
    completion_format: str | None = None  # a format run: trained and predicted in this completion format
    weighted: bool = False  # label_loss_weight from --label-weight, else label_weight, else the weight choice
    label_weight: float | None = None  # a weight fixed by the recipe, not chosen on validation


# Format runs are predicted twice: by parsing the generated answer and by the log-probability read-out.
READOUTS = ("generate", "logprob")
WEIGHT_CHOICE = "weight-choice/choice.json"  # under the results folder; written by experiments.choose_weight


RUNS = {
    "zero-shot": RunSpec("embedded SmolLM2-135M-Instruct, few-shot CoT prompt, no training", prompt="cot"),
    "tfidf": RunSpec("TF-IDF + logistic regression on the training pairs", classic=True),
    "label-only": RunSpec("LoRA SFT, label only (empty thought)", data=LABEL_ONLY, max_new_tokens=32),
    "cot-original": RunSpec(
        "LoRA SFT on the author's correct open-mistral-7b thoughts", data=BUILD_JD0G, config="original"
    ),
    "cot-reflected": RunSpec(
        "LoRA SFT on correct thoughts + embedded-model reflections that reached gold",
        data="build",
        config="combined",
        reflect=True,
    ),
    "cot-esnli": RunSpec(
        "LoRA SFT on correct thoughts + e-SNLI human explanations", data=BUILD_JD0G_ESNLI, config="original"
    ),
    "self-consistency": RunSpec("--base run's adapter, k sampled answers per pair, majority vote", samples=5),
    # Completion formats: the same training pairs (the author's thoughts that reached the gold label), one layout each.
    "fmt-label-only": RunSpec(
        'format label_only: {"predicted_label": y}',
        data=BUILD_JD0G,
        config="original",
        completion_format="label_only",
        max_new_tokens=16,
    ),
    "fmt-thought-first": RunSpec(
        "format thought_first: the thought, then the label",
        data=BUILD_JD0G,
        config="original",
        completion_format="thought_first",
    ),
    "fmt-label-first": RunSpec(
        "format label_first: the label, then its explanation",
        data=BUILD_JD0G,
        config="original",
        completion_format="label_first",
    ),
    "fmt-multitask": RunSpec(
        "format multitask: [label] and [explain] examples per pair (distilling step-by-step)",
        data=BUILD_JD0G,
        config="original",
        completion_format="multitask",
        max_new_tokens=16,
    ),
    "fmt-thought-first-weighted": RunSpec(
        "format thought_first, label token weighted in the loss (weight chosen "
        "on a validation split of the training data)",
        data=BUILD_JD0G,
        config="original",
        completion_format="thought_first",
        weighted=True,
    ),
    # label_first completions are 166 tokens at the median, label_only ones 9: weight 20 gives the label of a
    # label_first completion the share of the loss it has in label_only (1 token of 9), set before any run.
    "fmt-label-first-weighted": RunSpec(
        "format label_first, label token weighted x20 in the loss (its share of a label_only completion)",
        data=BUILD_JD0G,
        config="original",
        completion_format="label_first",
        weighted=True,
        label_weight=20.0,
    ),
}
FORMAT_RUNS = tuple(name for name, spec in RUNS.items() if spec.completion_format)


# ---------------------------------------------------------------- helpers


def environment() -> dict:
    info = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "host_cpu": platform.processor() or platform.machine(),
        "card": "CPU",
    }
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["card"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    for name in ("transformers", "peft", "trl", "datasets"):
        try:
            info[name] = __import__(name).__version__
        except ImportError:
            info[name] = None
    return info


def can_evaluate() -> list[str]:
    """The modules `nli-cot evaluate` needs that this machine lacks."""
    return [name for name in EVALUATE_NEEDS if importlib.util.find_spec(name) is None]


def best_cot_run(results: Path) -> str | None:
    """The CoT run with the highest dev accuracy among those already scored (by `nli-cot evaluate`, or by
    the quick count a machine without the evaluation packages makes)."""
    scores = {}
    for name in COT_RUNS:
        path = results / name / "metrics.json"
        if path.exists():
            record = read_json(path)
            dev = (record.get("sets") or {}).get("dev") or (record.get("quick") or {}).get("dev") or {}
            if dev.get("accuracy") is not None:
                scores[name] = dev["accuracy"]
    return max(scores, key=scores.get) if scores else None


def quick_scores(folder: Path) -> dict[str, dict]:
    """Accuracy and parse rate per prediction file, counted from the records alone (gold is stored in each):
    what a machine without scikit-learn can print at once. `nli-cot evaluate` gives the reported numbers."""
    from nli_cot_hub.store import read_records

    scores = {}
    for name in [f"{set_name}{suffix}" for set_name in EVAL_SETS for suffix in ("", "_logprob")]:
        path = folder / f"predictions_{name}.jsonl"
        if not path.exists():
            continue
        records = read_records(path)
        if records:
            scores[name] = {
                "rows": len(records),
                "accuracy": round(sum(bool(r.correct) for r in records) / len(records), 4),
                "parse_rate": round(sum(r.predicted_label is not None for r in records) / len(records), 4),
            }
    return scores


class Log:
    """Commands, their wall times and the outcome of each stage, kept for metrics.json."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.path = folder / "run.log"
        self.steps: list[dict] = []

    def cli(self, stage: str, *arguments: str, check: bool = True) -> int:
        done = cli(*arguments, log=self.path, check=False)
        self.steps.append(
            {
                "stage": stage,
                "command": "nli-cot " + " ".join(map(shorten, arguments)),
                "seconds": done.seconds,
                "exit_code": done.returncode,
            }
        )
        if check and done.returncode != 0:
            raise SystemExit(f"error: {stage} failed (exit {done.returncode}); see {self.path}")
        return done.returncode

    def run(self, stage: str, config, check: bool = True) -> int:
        """A stage config, run as its ``nli-cot`` command in a process of its own."""
        from nli_cot_hub.cli.derive import stage_argv

        return self.cli(stage, *stage_argv(config), check=check)


# ---------------------------------------------------------------- stages


def train_arguments(args, data: Path, config: str | None, output: Path, spec: RunSpec | None = None) -> list[str]:
    arguments = [
        "train",
        "--config",
        str(args.recipe),
        "--dataset_name",
        str(data),
        "--output_dir",
        str(output),
        "--num_train_epochs",
        str(args.epochs),
        "--per_device_train_batch_size",
        str(args.train_batch_size),
        "--learning_rate",
        str(args.learning_rate),
        "--max_length",
        str(args.max_length),
        "--seed",
        str(args.seed),
        "--data_seed",
        str(args.seed),
    ]
    if config:
        arguments += ["--dataset_config", config]
    if args.max_steps:
        arguments += ["--max_steps", str(args.max_steps)]
    if args.max_train_samples:
        arguments += ["--max_train_samples", str(args.max_train_samples)]
    if args.device == "cpu":
        arguments += ["--use_cpu", "true", "--bf16", "false", "--dtype", "float32"]
    if spec is not None and spec.completion_format:
        arguments += ["--completion_format", spec.completion_format]
    if spec is not None and spec.weighted:
        arguments += ["--label_loss_weight", str(label_weight(args, spec))]
    return arguments


def label_weight(args, spec: RunSpec | None = None) -> float:
    """--label-weight, else the run's fixed weight, else the weight experiments.choose_weight picked on the
    training data's validation split."""
    if args.label_weight is not None:
        return args.label_weight
    if spec is not None and spec.label_weight is not None:
        return spec.label_weight
    choice = args.results / WEIGHT_CHOICE
    if not choice.exists():
        raise SystemExit(
            f"error: {choice} missing: run `python -m experiments.choose_weight` first (or pass --label-weight)"
        )
    return float(read_json(choice)["chosen_weight"])


# An experiment measures how often a model fails (failed records are scored as wrong), so no failure
# share stops a run; the commands' default threshold is for production use.
MEASURE_FAILURES = {"max_failed_share": 1.0}


def reflect_and_build(args, log: Log, folder: Path) -> Path:
    """Reflections on the author's wrong thoughts by the embedded model, then the combined data set."""
    from nli_cot_hub.generate import ReflectConfig

    work = args.work
    store = folder / "reflected.jsonl"
    log.run(
        "reflect",
        ReflectConfig(
            records=str(work / JD0G_ORIGINALS),
            output=str(store),
            backend=args.reflector,
            concurrency=args.reflect_concurrency,
            max_new_tokens=args.reflect_max_tokens,
            max_reasks=args.reflect_reasks,
            seed=args.seed,
            sample=args.reflect_sample or None,
            **MEASURE_FAILURES,
        ),
    )
    build = folder / "build"
    log.run("build", build_config(work, build, store))
    return build


def predict_config(args, spec: RunSpec, data: Path, output: Path, adapter: Path | None, **options):
    """How every run predicts: the embedded base model (with the run's adapter), greedy unless sampled."""
    from nli_cot_hub.predict import PredictConfig

    settings = dict(
        data=str(data),
        output=str(output),
        id_col="id",
        model="embedded",
        prompt=spec.prompt,
        max_new_tokens=args.max_new_tokens or spec.max_new_tokens,
        batch_size=args.predict_batch_size,
        progress=False,
        adapter=str(adapter) if adapter is not None else None,
        limit=args.limit or None,
        threads=args.threads if args.device == "cpu" else None,
        **MEASURE_FAILURES,
    )
    return PredictConfig(**{**settings, **options})


def predict(args, log: Log, spec: RunSpec, folder: Path, adapter: Path | None, sets: list[str]) -> dict[str, str]:
    files = {}
    readouts = READOUTS if spec.completion_format else ("generate",)
    for name, readout in [(set_name, readout) for readout in readouts for set_name in sets]:
        suffix = "" if readout == "generate" else f"_{readout}"
        output = folder / f"predictions_{name}{suffix}.jsonl"
        options = {}
        if spec.completion_format:  # the adapter folder records it too; named here so the log says it
            options.update(
                completion_format=spec.completion_format,
                readout=readout,
                stats=str(folder / f"speed_{name}{suffix}.json"),
            )
        generated = folder / f"predictions_{name}.jsonl"
        if readout == "logprob" and spec.completion_format == "thought_first" and generated.exists():
            # The read-out after the thought reuses the thoughts the generation run wrote (same model, greedy).
            options["thoughts_from"] = str(generated)
        if spec.samples > 1:
            options.update(num_samples=args.samples, temperature=args.temperature, gen_seed=args.seed)
        log.run(
            f"predict {name}{suffix}",
            predict_config(args, spec, args.work / EVAL_SETS[name], output, adapter, **options),
        )
        files[f"{name}{suffix}"] = str(output)
    return files


def evaluate(run: str, folder: Path, work: Path, log: Log | None = None, in_process: bool = False) -> dict[str, dict]:
    """`nli-cot evaluate` on every prediction file of the run (MNLI hard twice: both label mappings).

    ``in_process`` runs the stage's function (``nli_cot_hub.report.run_evaluate``) in this process instead of
    a process of its own: the summariser scores many files and saves the start-ups."""
    from nli_cot_hub.report import EvaluateConfig, run_evaluate

    numbers = {}
    views = [
        (view + suffix, name + suffix, gold)
        for suffix in ("", "_logprob")
        for view, (name, gold) in SCORED_VIEWS.items()
    ]
    for view, name, gold in views:
        predictions = folder / f"predictions_{name}.jsonl"
        if not predictions.exists():
            continue
        output = folder / f"eval_{view}"
        config = EvaluateConfig(
            predictions=[str(predictions)],
            output_dir=str(output),
            names=run,
            gold=str(work / gold) if gold else None,
            id_col="id" if gold else None,
        )
        if in_process:
            run_evaluate(config)
        elif log is None:
            run_stage(config)
        else:
            log.run(f"evaluate {view}", config)
        numbers[view] = read_json(output / "metrics.json")["models"][run]
    return numbers


def classic(args, log: Log, folder: Path, sets: list[str]) -> None:
    from experiments.tfidf_baseline import run as tfidf_run

    started = time.monotonic()
    summary = tfidf_run(
        args.work / PAIRS,
        {name: args.work / EVAL_SETS[name] for name in sets},
        folder,
        seed=args.seed,
        limit_train=args.max_train_samples and max(args.max_train_samples, 400),
        limit_eval=args.limit,
    )
    log.steps.append(
        {
            "stage": "tfidf fit + predict",
            "command": "python -m experiments.tfidf_baseline (in process)",
            "seconds": round(time.monotonic() - started, 1),
            "exit_code": 0,
            **summary,
        }
    )


# ---------------------------------------------------------------- one run


def make_run(run: str, args) -> dict:
    spec = RUNS[run]
    # Format runs are repeated over seeds: each seed is a run folder of its own.
    name = run + (f"-s{args.seed}" if spec.completion_format else "") + (args.name_suffix or "")
    folder = args.results / name
    folder.mkdir(parents=True, exist_ok=True)
    log = Log(folder)
    record = {
        "run": name,
        "recipe": run,
        "description": spec.description,
        "environment": environment(),
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "runs"},
        "manifest": read_json(args.work / MANIFEST) if (args.work / MANIFEST).exists() else None,
    }
    started = time.monotonic()
    sets = args.eval_sets or (["dev"] if spec.samples > 1 else list(EVAL_SETS))
    adapter = None
    if spec.classic:
        classic(args, log, folder, sets)
    else:
        if spec.samples > 1:
            base = args.base or best_cot_run(args.results)
            if base is None:
                raise SystemExit("error: self-consistency needs --base RUN (no evaluated CoT run found to pick from)")
            adapter = args.results / base / "adapter"
            if not (adapter / "adapter_config.json").exists():
                raise SystemExit(f"error: {adapter}: no trained adapter; run `{base}` first on this machine")
            record["base"] = base
            record["samples"] = args.samples
            record["temperature"] = args.temperature
        elif spec.data is not None:
            adapter = folder / "adapter"
            if trained(adapter) and not args.retrain:
                # A rerun after a cut-off call: the finished adapter stands; predict resumes its JSONL.
                log.steps.append(
                    {
                        "stage": "train",
                        "command": f"(reused {adapter}; --retrain to train again)",
                        "seconds": 0.0,
                        "exit_code": 0,
                    }
                )
            else:
                if spec.reflect and name != run:
                    reuse_reflections(args.results / run, folder, log)
                data = reflect_and_build(args, log, folder) if spec.reflect else args.work / spec.data
                log.cli("train", *train_arguments(args, data, spec.config, adapter, spec))
        predict(args, log, spec, folder, adapter, sets)
    missing = can_evaluate()
    if args.skip_evaluate or missing:
        record["evaluation"] = (
            "skipped: "
            + ("--skip-evaluate" if args.skip_evaluate else f"this machine lacks {', '.join(missing)}")
            + "; `python -m experiments.summarise` evaluates later"
        )
        record["sets"] = {}
        record["quick"] = quick_scores(folder)
    else:
        record["sets"] = evaluate(name, folder, args.work, log)
        record["evaluation"] = "done"
    record["steps"] = log.steps
    record["seconds"] = round(time.monotonic() - started, 1)
    if spec.completion_format:
        record.update(
            completion_format=spec.completion_format,
            seed=args.seed,
            label_loss_weight=label_weight(args, spec) if spec.weighted else 1.0,
            speed={path.stem.removeprefix("speed_"): read_json(path) for path in sorted(folder.glob("speed_*.json"))},
        )
    if spec.reflect and (folder / "reflected.jsonl").exists():
        record["reflection"] = reflection_summary(folder / "reflected.jsonl")
    training = folder / "adapter" / "training_metrics.json"
    if training.exists():
        record["training"] = read_json(training).get("summary", {})
    write_json(folder / "metrics.json", record)
    write_report(folder, record)
    return record


def reuse_reflections(source: Path, folder: Path, log: Log) -> int:
    """Another training of a reflection run (``--name-suffix``) starts from the reflections its recipe's run
    already has, so that only the training differs; `nli-cot reflect` then resumes with nothing left to do."""
    from nli_cot_hub.store import read_records

    store, found = folder / "reflected.jsonl", source / "reflected.jsonl"
    if store.exists() or not found.exists():
        return 0
    shutil.copyfile(found, store)
    count = len(read_records(store))
    log.steps.append(
        {
            "stage": "reflect (copied)",
            "command": f"copy {shorten(str(found))} ({count} reflections)",
            "seconds": 0.0,
            "exit_code": 0,
        }
    )
    return count


def trained(adapter: Path) -> bool:
    """True when a training run finished there (train.py writes training_metrics.json at the end)."""
    return (adapter / "adapter_config.json").exists() and (adapter / "training_metrics.json").exists()


def reflection_summary(store: Path) -> dict:
    from collections import Counter

    from nli_cot_hub.store import read_records

    records = read_records(store)
    return {
        "records": len(records),
        "by_status": dict(Counter(r.status for r in records)),
        "reached_gold": sum(1 for r in records if r.status != "failed" and r.correct),
        "usable_thoughts": sum(
            1 for r in records if r.status != "failed" and r.correct and (r.thought_process or "").strip()
        ),
        "model": records[0].model if records else None,
    }


def write_report(folder: Path, record: dict) -> Path:
    lines = [
        f"# Run `{record['run']}`",
        "",
        record["description"],
        "",
        f"Card: {record['environment']['card']}; date: {record['environment']['date']}; "
        f"wall time {record.get('seconds', '?')} s.",
        "",
    ]
    if record.get("base"):
        lines += [
            f"Base adapter: `{record['base']}`, {record['samples']} samples at temperature {record['temperature']}.",
            "",
        ]
    if record.get("reflection"):
        lines += [f"Reflection: {record['reflection']}", ""]
    if record["sets"]:
        lines += ["| set | rows | accuracy | macro F1 | parse rate | report |", "|---|---|---|---|---|---|"]
        for view, metrics in record["sets"].items():
            lines.append(
                f"| {view} | {metrics['rows']} | {metrics['accuracy']:.4f} | {metrics['macro_f1']:.4f} | "
                f"{metrics['parse_rate']:.3f} | [report](eval_{view}/report.md) |"
            )
    else:
        lines.append(f"Evaluation {record['evaluation']}")
    lines += ["", "## Steps", "", "| stage | seconds | exit | command |", "|---|---|---|---|"]
    for step in record.get("steps", []):
        lines.append(f"| {step['stage']} | {step['seconds']} | {step['exit_code']} | `{step['command']}` |")
    path = folder / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ---------------------------------------------------------------- command line

SMOKE = {
    "limit": 4,
    "max_steps": 2,
    "max_train_samples": 8,
    "train_batch_size": 2,
    "max_length": 384,
    "predict_batch_size": 4,
    "max_new_tokens": 24,
    "reflect_sample": 2,
    "reflect_max_tokens": 48,
    "samples": 2,
    "reflect_concurrency": 2,
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="Runs: " + ", ".join(RUNS))
    p.add_argument("runs", nargs="+", choices=list(RUNS), metavar="RUN", help=f"One or more of: {', '.join(RUNS)}.")
    p.add_argument("--work", type=Path, default=DEFAULT_WORK, help="prepare_data's output (default .carry/exp).")
    p.add_argument(
        "--results", type=Path, default=DEFAULT_RESULTS, help="Results folder (default experiments/results)."
    )
    p.add_argument(
        "--device",
        choices=("cuda", "cpu"),
        default="cuda",
        help="Where to train (predict picks the GPU when there is one).",
    )
    p.add_argument("--smoke", action="store_true", help="Tiny sizes for a CPU check of the whole path: " + str(SMOKE))
    p.add_argument(
        "--eval-sets",
        type=lambda s: s.split(","),
        default=None,
        help="Comma-separated subset of dev,mnli_hard (default: both; self-consistency: dev).",
    )
    p.add_argument("--limit", type=int, default=None, help="Predict only the first N rows of each set.")
    p.add_argument("--recipe", type=Path, default=RECIPE, help="Training recipe (YAML).")
    p.add_argument("--epochs", type=float, default=2.0, help="Training epochs (default 2).")
    p.add_argument(
        "--train-batch-size", type=int, default=32, help="Examples per optimizer step (default 32, no accumulation)."
    )
    p.add_argument(
        "--learning-rate", type=float, default=2e-4, help="Peak LoRA learning rate (cosine, 10 warm-up steps)."
    )
    p.add_argument(
        "--max-length", type=int, default=512, help="Training sequence cap in tokens (prompt + completion)."
    )
    p.add_argument("--max-steps", type=int, default=None, help="Stop training after N optimizer steps.")
    p.add_argument("--max-train-samples", type=int, default=None, help="Train on the first N examples only.")
    p.add_argument("--predict-batch-size", type=int, default=256, help="Prompts per generation batch (default 256).")
    p.add_argument("--max-new-tokens", type=int, default=None, help="Default: 256 for thoughts, 32 for label-only.")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for prediction with --device cpu.")
    p.add_argument(
        "--reflector",
        default="local:embedded",
        help="nli-cot reflect backend (default: the embedded model on this machine, the best model "
        "available offline; mistral:mistral-small-latest where the API can be reached).",
    )
    p.add_argument(
        "--reflect-sample",
        type=int,
        default=0,
        help="Reflect on a seeded sample of N of the 739 wrong thoughts (default 0 = all). The local "
        "backend batches 64 requests at a time on a GPU.",
    )
    p.add_argument("--reflect-max-tokens", type=int, default=320, help="Token cap of each reflection.")
    p.add_argument(
        "--reflect-reasks", type=int, default=1, help="Re-asks after an unusable reflection (then stored as failed)."
    )
    p.add_argument(
        "--reflect-concurrency",
        type=int,
        default=128,
        help="Reflection requests in flight (the local backend batches 64 of them on a GPU, 8 on a CPU).",
    )
    p.add_argument(
        "--base",
        default=None,
        help="self-consistency: the run whose adapter samples (default: the "
        "CoT run with the best dev accuracy already evaluated).",
    )
    p.add_argument("--samples", type=int, default=5, help="self-consistency: answers per pair.")
    p.add_argument("--temperature", type=float, default=0.7, help="self-consistency: sampling temperature.")
    p.add_argument(
        "--seed",
        type=int,
        default=42,
        help="Seed of training, sampling and the reflection sample; format "
        "runs write <run>-s<seed>/ (the plan: 42, 43, 44).",
    )
    p.add_argument(
        "--label-weight",
        type=float,
        default=None,
        help="fmt-thought-first-weighted: label_loss_weight (default: the weight experiments.choose_weight "
        "picked, from <results>/weight-choice/choice.json).",
    )
    p.add_argument("--skip-evaluate", action="store_true", help="Train and predict only.")
    p.add_argument(
        "--name-suffix",
        default="",
        help="Write the run to <run><suffix>/ (--name-suffix=-retrain2: the = is needed before a "
        "leading -): another training of the same recipe beside the first, to measure how much one "
        "training varies. A reflection run starts from <run>/reflected.jsonl, so only the "
        "training differs.",
    )
    p.add_argument(
        "--retrain",
        action="store_true",
        help="Train again even where a finished adapter is there (default: reuse it, so a rerun resumes).",
    )
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.smoke:
        for key, value in SMOKE.items():
            setattr(args, key, value)
    for name in args.eval_sets or []:
        if name not in EVAL_SETS:
            raise SystemExit(f"error: unknown evaluation set {name!r}; choose from {', '.join(EVAL_SETS)}")
    if not (args.work / DEV_EVAL).exists():
        raise SystemExit(
            f"error: {args.work / DEV_EVAL} missing: run `python -m experiments.prepare_data --work "
            f"{args.work}` first (and carry the folder to the GPU machine)"
        )
    for run in args.runs:
        record = make_run(run, args)
        run = record["run"]
        scored = record["sets"] or {f"{name} (quick)": m for name, m in record.get("quick", {}).items()}
        shown = {view: round(m["accuracy"], 4) for view, m in scored.items() if m.get("accuracy") is not None}
        print(
            f"== {run}: {record['seconds']} s on {record['environment']['card']}; "
            f"accuracy {shown or record['evaluation']}",
            flush=True,
        )


if __name__ == "__main__":
    main()
