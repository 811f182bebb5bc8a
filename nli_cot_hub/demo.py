"""The offline demo: every stage of the pipeline on the embedded model and real coursework rows.

Each step is a stage config run by the very function its ``nli-cot`` command runs, in this process, so
the model and libraries load once. The demo prints each step's equivalent command line before running it
and writes them all to ``commands.sh``, so the run can be repeated or adapted stage by stage.

The embedded model (SmolLM2-135M-Instruct) stands in for the API models: its chains of thought are real
output of the real stages, decoded to each stage's JSON schema (the local engine constrains decoding),
so its records parse, though a 135M model's reasoning is weak. The data set therefore also imports the
original author's real open-mistral-7b thoughts and reflections on coursework rows (``--import-artifacts``),
as a real run's API output would be, so the training step has good examples to learn from.

Rerunning the demo into the same folder reuses the chain-of-thought stores (rows already annotated are
skipped, as with any ``nli-cot generate`` rerun) and recomputes everything after them.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from nli_cot_hub.config import option, stage_config

PACKAGE = Path(__file__).resolve().parent
RECIPE = PACKAGE / "recipes" / "smollm2_demo.yaml"
TRIAL_FILE = Path("comp34812_nli") / "trial_jd0g.csv"
DEV_FILE = Path("comp34812_nli") / "dev_jd0g.csv"
# The original author's real open-mistral-7b thoughts and mistral reflections on coursework rows.
ARTIFACTS_FOLDER = Path("comp34812_nli_jd0g_cot")
HUB_DATASET_REPO = "nli-cot-demo"
HUB_ADAPTER_REPO = "nli-cot-demo-adapter"


def default_data_root() -> Path:
    """``NLI_COT_SHARED_DATA``, else ``shared/data`` beside the source checkout (CI lays ``../shared`` there)."""
    configured = os.environ.get("NLI_COT_SHARED_DATA")
    return Path(configured) if configured else PACKAGE.parent.parent / "shared" / "data"


@dataclass(frozen=True)
class DemoPlan:
    """How much work each stage does. The defaults fit 15 minutes on 2 CPU cores with room to spare."""

    rows: int = 50  # coursework trial rows annotated (all of trial_jd0g.csv)
    eval_rows: int = 50  # coursework dev rows predicted and scored
    generate_tokens: int = 96  # most answers of the embedded model end well before this
    reflect_tokens: int = 128
    judge_tokens: int = 96  # the analysis and an optional improved thought share what the JSON leaves
    predict_tokens: int = 96
    max_reasks: int = 0  # each re-ask re-reads a ~500-token prompt: real runs use 2, the demo none
    reflect_rows: int = 16  # the first N wrong answers
    judge_rows: int = 10  # judging is a quality check on a sample, not a training input
    train_steps: int = 16
    train_batch: int = 4
    baseline: bool = True  # also predict with the untrained base model (same prompt), so the report compares two

    def quick(self) -> DemoPlan:
        """A few rows and steps through the same code: the smoke test CI runs."""
        return replace(
            self,
            rows=8,
            eval_rows=8,
            generate_tokens=48,
            reflect_tokens=64,
            judge_tokens=64,
            predict_tokens=48,
            reflect_rows=2,
            judge_rows=2,
            train_steps=2,
            train_batch=2,
        )


@dataclass
class Step:
    """One stage of the demo: its config, run in this process by the very function ``nli-cot`` runs."""

    name: str
    title: str
    config: Any = None  # a stage config (nli_cot_hub.config)
    train_argv: list[str] | None = None  # or training's own recipe + overrides (TrlParser)
    outputs: dict[str, Path] = field(default_factory=dict)
    subprocess_env: dict[str, str] | None = None  # run in a fresh process with this environment

    @property
    def argv(self) -> list[str]:
        """The ``nli-cot`` command line that does the same."""
        if self.train_argv is not None:
            return ["train", *self.train_argv]
        from nli_cot_hub.cli.derive import stage_argv

        return stage_argv(self.config)

    def run(self) -> None:
        if self.train_argv is not None:
            train(self.train_argv)
            return
        from nli_cot_hub.cli.derive import registered

        _, runner = registered(type(self.config))
        runner(self.config)


@dataclass
class StepResult:
    name: str
    seconds: float
    cpu_seconds: float


@dataclass
class Layout:
    """Where every artifact of the demo lives."""

    root: Path

    def __post_init__(self):
        self.root = Path(self.root)
        self.cot = self.root / "cot"
        self.generated = self.cot / "generated.jsonl"
        self.reflected = self.cot / "reflected.jsonl"
        self.judged = self.cot / "judged.jsonl"
        self.dataset = self.root / "dataset"
        self.lengths_png = self.root / "lengths.png"
        self.adapter = self.root / "adapter"
        self.predictions = self.root / "predictions"
        self.adapter_predictions = self.predictions / "adapter.jsonl"
        self.base_predictions = self.predictions / "base.jsonl"
        self.submission = self.root / "submission.csv"
        self.report = self.root / "report"
        self.commands = self.root / "commands.sh"
        self.summary = self.root / "demo_summary.json"
        self.index = self.root / "README.md"
        self.hub_download = self.root / "hub_download"


def shown(path: Path | str) -> str:
    """A path as the user would type it: relative to the current folder when it is below it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def command_line(argv: list[str]) -> str:
    return shlex.join(["nli-cot", *argv])


# ---------------------------------------------------------------- the steps


def plan_steps(
    plan: DemoPlan, layout: Layout, data_root: Path, hub_env: dict[str, str] | None = None, hub_user: str | None = None
) -> list[Step]:
    from nli_cot_hub.build import BuildConfig
    from nli_cot_hub.generate import GenerateConfig, JudgeConfig, ReflectConfig
    from nli_cot_hub.hub_transfer import DownloadConfig, UploadConfig
    from nli_cot_hub.lengths import LengthsConfig
    from nli_cot_hub.model_card import CardConfig
    from nli_cot_hub.predict import PredictConfig
    from nli_cot_hub.report import EvaluateConfig

    trial, dev = data_root / TRIAL_FILE, data_root / DEV_FILE
    # A local batch on a busy CPU can take minutes; a timeout would only start the same work again.
    # Local decoding is constrained to each stage's schema, so the default failure threshold applies.
    local = dict(backend="local:embedded", max_reasks=plan.max_reasks, concurrency=8, timeout=1800.0)
    steps = [
        Step(
            "generate",
            "chains of thought from the embedded model (the API model's job in real use)",
            GenerateConfig(
                data=shown(trial),
                output=shown(layout.generated),
                limit=plan.rows,
                max_new_tokens=plan.generate_tokens,
                **local,
            ),
            outputs={"chains of thought": layout.generated},
        ),
        Step(
            "reflect",
            "the wrong answers, repaired by a model told the gold label",
            ReflectConfig(
                records=shown(layout.generated),
                output=shown(layout.reflected),
                limit=plan.reflect_rows,
                max_new_tokens=plan.reflect_tokens,
                **local,
            ),
            outputs={"reflections": layout.reflected},
        ),
        Step(
            "judge",
            "1-5 scores for coherence, correctness and brevity on a sample",
            JudgeConfig(
                records=shown(layout.generated),
                output=shown(layout.judged),
                limit=plan.judge_rows,
                max_new_tokens=plan.judge_tokens,
                **local,
            ),
            outputs={"judgements": layout.judged},
        ),
        Step(
            "build",
            "the Hub data set (with the original author's real API thoughts): configs, splits, card",
            BuildConfig(
                store=[shown(layout.generated), shown(layout.reflected)],
                import_artifacts=shown(data_root / ARTIFACTS_FOLDER),
                output_dir=shown(layout.dataset),
                overwrite=True,
                eval_set=[shown(dev)],
                on_contamination="drop",
                pretty_name="NLI chain-of-thought (demo)",
            ),
            outputs={"data set + card": layout.dataset},
        ),
    ]
    if hub_env is not None:
        repo = f"{hub_user}/{HUB_DATASET_REPO}"
        steps += [
            Step(
                "hub upload data set",
                "push the data set to the local Hub-protocol server",
                UploadConfig(path=shown(layout.dataset), repo_id=repo, repo_type="dataset"),
                subprocess_env=hub_env,
            ),
            Step(
                "hub download data set",
                "and fetch it back, as another machine would",
                DownloadConfig(repo_id=repo, repo_type="dataset", local_dir=shown(layout.hub_download / "dataset")),
                subprocess_env=hub_env,
                outputs={"data set from the Hub": layout.hub_download / "dataset"},
            ),
        ]
    steps += [
        Step(
            "lengths",
            "token lengths under the chat template and a max_length recommendation",
            LengthsConfig(
                dataset=shown(layout.dataset),
                tokenizer="embedded",
                dataset_config="combined",
                split="all",
                png=shown(layout.lengths_png),
            ),
            outputs={"length histogram": layout.lengths_png},
        ),
        Step(
            "train",
            "LoRA on the embedded model with TRL's SFTTrainer (the demo recipe)",
            train_argv=[
                "--config",
                shown(RECIPE),
                "--dataset_name",
                shown(layout.dataset),
                "--dataset_config",
                "combined",
                "--output_dir",
                shown(layout.adapter),
                "--max_steps",
                str(plan.train_steps),
                "--per_device_train_batch_size",
                str(plan.train_batch),
                "--gradient_accumulation_steps",
                "1",
                "--eval_steps",
                str(max(1, plan.train_steps // 2)),
                "--save_steps",
                str(max(1, plan.train_steps // 2)),
            ],
            outputs={"adapter + model card": layout.adapter},
        ),
        Step(
            "predict",
            "the fine-tuned adapter answers unseen dev pairs; the submission CSV",
            PredictConfig(
                data=shown(dev),
                output=shown(layout.adapter_predictions),
                adapter=shown(layout.adapter),
                limit=plan.eval_rows,
                max_new_tokens=plan.predict_tokens,
                submission=shown(layout.submission),
            ),
            outputs={"predictions": layout.adapter_predictions, "submission CSV": layout.submission},
        ),
    ]
    names = "adapter"
    predictions = [shown(layout.adapter_predictions)]
    if plan.baseline:
        steps.append(
            Step(
                "predict (base)",
                "the base model without the adapter, same prompt and pairs: what training changed",
                PredictConfig(
                    data=shown(dev),
                    output=shown(layout.base_predictions),
                    model="embedded",
                    limit=plan.eval_rows,
                    max_new_tokens=plan.predict_tokens,
                ),
                outputs={"base-model predictions": layout.base_predictions},
            )
        )
        names += ",base"
        predictions.append(shown(layout.base_predictions))
    steps += [
        Step(
            "evaluate",
            "the nli_cot metric, plots, McNemar comparison, label-disagreement audit",
            EvaluateConfig(predictions=predictions, output_dir=shown(layout.report), names=names),
            outputs={"report + plots": layout.report / "report.md"},
        ),
        Step(
            "card",
            "the model card with the evaluation results in its metadata",
            CardConfig(
                output_dir=shown(layout.adapter),
                eval_metrics=shown(layout.report / "metrics.json"),
                eval_model="adapter",
                eval_dataset="comp34812-nli-dev",
                eval_split=f"dev[:{plan.eval_rows}]",
            ),
            outputs={"model card": layout.adapter / "README.md"},
        ),
    ]
    if hub_env is not None:
        repo = f"{hub_user}/{HUB_ADAPTER_REPO}"
        steps += [
            Step(
                "hub upload adapter",
                "push the adapter and its card to the local Hub-protocol server",
                UploadConfig(path=shown(layout.adapter), repo_id=repo),
                subprocess_env=hub_env,
            ),
            Step(
                "hub upload results",
                "and the evaluation report beside it",
                UploadConfig(path=shown(layout.report), repo_id=repo, repo_type="model", path_in_repo="results"),
                subprocess_env=hub_env,
            ),
        ]
    return steps


# ---------------------------------------------------------------- running


class StepFailed(RuntimeError):
    pass


def train(argv: list[str]) -> None:
    """Training's own entry point on a recipe + overrides, as ``nli-cot train`` runs it."""
    from nli_cot_hub.train import sft

    outcome = sft.main(*sft.make_parser().parse_args_and_config(argv))
    if outcome["status"] != "completed":
        raise StepFailed(f"`{command_line(['train', *argv])}` stopped: {outcome['status']}")


def run_step(step: Step) -> StepResult:
    started, cpu_started = time.monotonic(), time.process_time()
    if step.subprocess_env is not None:  # the Hub client reads its endpoint from the environment at import
        result = subprocess.run(
            [sys.executable, "-m", "nli_cot_hub", *step.argv], env={**os.environ, **step.subprocess_env}
        )
        if result.returncode:
            raise StepFailed(f"`{command_line(step.argv)}` exited with {result.returncode}")
    else:
        step.run()
    return StepResult(step.name, time.monotonic() - started, time.process_time() - cpu_started)


def commands_script(steps: list[Step], hub_url: str | None = None) -> str:
    lines = [
        "#!/usr/bin/env bash",
        "# The commands `nli-cot demo` ran, in order (from the folder it was started in).",
        "set -euo pipefail",
        "",
    ]
    if hub_url:
        lines += [
            f"# hub steps ran against the local Hub-protocol server at {hub_url}; for the real Hub set HF_TOKEN",
            "# and use your own namespace.",
            "",
        ]
    for step in steps:
        lines.append(f"# {step.name}: {step.title}")
        lines.append(command_line(step.argv))
        lines.append("")
    return "\n".join(lines)


def clear_stale_outputs(layout: Layout) -> None:
    """Predictions belong to one trained adapter: a rerun retrains, so they are redone too."""
    for path in (layout.adapter_predictions, layout.base_predictions):
        for stale in (path, path.with_name(path.name + ".lock")):
            if stale.exists():
                stale.unlink()


# ---------------------------------------------------------------- summary


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def collect_summary(layout: Layout, plan: DemoPlan, results: list[StepResult], steps: list[Step]) -> dict:
    from nli_cot_hub.store import read_records, summarize

    summary: dict = {"plan": asdict(plan), "steps": [asdict(r) for r in results]}
    summary["total_seconds"] = round(sum(r.seconds for r in results), 1)
    summary["total_cpu_seconds"] = round(sum(r.cpu_seconds for r in results), 1)
    stores = {}
    for name, path in (("generated", layout.generated), ("reflected", layout.reflected), ("judged", layout.judged)):
        if path.exists():
            stores[name] = summarize(read_records(path))
    if layout.judged.exists():
        scores: dict[str, list[int]] = {}
        for record in read_records(layout.judged):
            for key in ("coherence", "correctness", "brevity"):
                if isinstance((record.judge or {}).get(key), int):
                    scores.setdefault(key, []).append(record.judge[key])
        stores["judge_mean_scores"] = {k: round(sum(v) / len(v), 2) for k, v in scores.items()}
    summary["cot"] = stores
    summary["parsing"] = parse_counts(layout)
    training = read_json(layout.adapter / "training_metrics.json").get("summary", {})
    summary["training"] = {
        key: training.get(key)
        for key in (
            "train_examples",
            "eval_examples",
            "global_steps",
            "first_train_loss",
            "last_train_loss",
            "best_eval_loss",
            "train_runtime_s",
            "trainable_parameters",
        )
    }
    summary["evaluation"] = read_json(layout.report / "metrics.json").get("models", {})
    summary["artifacts"] = {label: str(path) for step in steps for label, path in step.outputs.items()}
    summary["artifacts"].update({"commands": str(layout.commands), "summary": str(layout.summary)})
    return summary


def parse_counts(layout: Layout) -> dict[str, dict[str, int]]:
    """Per stage: records whose answer parsed (any status but failed; for the judge, its verdict)
    and those that failed, and how many were decoded under their JSON schema."""
    from nli_cot_hub.store import read_records

    stages = (
        ("generate", layout.generated),
        ("reflect", layout.reflected),
        ("judge", layout.judged),
        ("predict (adapter)", layout.adapter_predictions),
        ("predict (base)", layout.base_predictions),
    )
    counts = {}
    for stage, path in stages:
        if not path.exists():
            continue
        records = read_records(path)
        outcomes = [
            ((r.judge or {}).get("status"), (r.judge or {}).get("constrained"))
            if stage == "judge"
            else (r.status, r.constrained)
            for r in records
        ]
        counts[stage] = {
            "records": len(records),
            "parsed": sum(status != "failed" for status, _ in outcomes),
            "failed": sum(status == "failed" for status, _ in outcomes),
            "constrained": sum(bool(constrained) for _, constrained in outcomes),
        }
    return counts


PARSE_COLUMNS = ("records", "parsed", "failed", "constrained")


def parse_rows(summary: dict) -> list[list[str]]:
    return [
        [stage, *(str(counts[key]) for key in PARSE_COLUMNS)] for stage, counts in summary.get("parsing", {}).items()
    ]


METRIC_COLUMNS = (
    ("rows", "rows"),
    ("accuracy", "accuracy"),
    ("macro_f1", "macro F1"),
    ("f1", "F1 (label 1)"),
    ("parse_rate", "parse rate"),
)


def _format(value) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def metric_rows(summary: dict) -> list[list[str]]:
    return [
        [name, *(_format(metrics.get(key)) for key, _ in METRIC_COLUMNS)]
        for name, metrics in summary["evaluation"].items()
    ]


def index_markdown(summary: dict, layout: Layout) -> str:
    """demo_output/README.md: what each artifact is, the metrics and the timings."""

    def link(path: str) -> str:
        relative = Path(path).resolve().relative_to(layout.root.resolve()).as_posix()
        return f"[`{relative}`]({relative})"

    lines = [
        "# nli-cot demo output",
        "",
        "Every stage of nli-cot-hub, run offline by `nli-cot demo` on the embedded model "
        "(SmolLM2-135M-Instruct) and real COMP34812 coursework rows. The numbers show that the pipeline works "
        "end to end, not what a 7B model reaches: a 135M model after a few LoRA steps is near chance.",
        "",
        "## Artifacts",
        "",
        "| what | where |",
        "|---|---|",
    ]
    for label, path in summary["artifacts"].items():
        if Path(path).resolve().is_relative_to(layout.root.resolve()):
            lines.append(f"| {label} | {link(path)} |")
    lines += [
        "",
        "## Evaluation (coursework dev rows)",
        "",
        "| model | " + " | ".join(title for _, title in METRIC_COLUMNS) + " |",
        "|---" * (len(METRIC_COLUMNS) + 1) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in metric_rows(summary)]
    cot = summary["cot"]
    generated = cot.get("generated", {})
    lines += [
        "",
        "## Answers parsed per stage",
        "",
        "Parsed: the answer gave a label (and a thought, or a judgement's scores); constrained: decoded to "
        "the stage's JSON schema.",
        "",
        "| stage | " + " | ".join(PARSE_COLUMNS) + " |",
        "|---" * (len(PARSE_COLUMNS) + 1) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in parse_rows(summary)]
    lines += [
        "",
        "## Chain-of-thought stages",
        "",
        f"- generate: {generated.get('records', 0)} records, by status {generated.get('by_status', {})}, "
        f"accuracy against gold {_format(generated.get('accuracy'))}",
        f"- reflect: {cot.get('reflected', {}).get('records', 0)} records, by status "
        f"{cot.get('reflected', {}).get('by_status', {})}",
        f"- judge: mean scores {cot.get('judge_mean_scores', {})}",
    ]
    training = summary["training"]
    lines += [
        "",
        "## Training",
        "",
        f"- {training.get('train_examples')} training examples, {training.get('global_steps')} optimizer steps, "
        f"train loss {_format(training.get('first_train_loss'))} -> {_format(training.get('last_train_loss'))}, "
        f"best validation loss {_format(training.get('best_eval_loss'))}",
    ]
    lines += ["", "## Time per step", "", "| step | wall s | CPU s |", "|---|---|---|"]
    lines += [f"| {s['name']} | {s['seconds']:.1f} | {s['cpu_seconds']:.1f} |" for s in summary["steps"]]
    lines += [
        f"| total | {summary['total_seconds']:.1f} | {summary['total_cpu_seconds']:.1f} |",
        "",
        "Repeat or adapt any stage with the commands in [`commands.sh`](commands.sh).",
        "",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------- hub server


def start_hub_server(root: Path):
    """The local Hub-protocol server (``nli_cot_hub.hub_server``), started with its store under ``root``."""
    from nli_cot_hub.hub_server import HubServer

    return HubServer(root=root).start()


@stage_config
class DemoConfig:
    """Run every stage offline: generate -> reflect -> judge -> build -> lengths -> train -> predict ->
    evaluate -> model card, on the embedded model (SmolLM2-135M-Instruct) and real coursework rows.

    Prints each step's `nli-cot` command before running it (all of them land in OUTPUT_DIR/commands.sh), then
    where every artifact is and the metrics table. OUTPUT_DIR/README.md indexes the results.
    """

    output_dir: str = option("demo_output", "Where every artifact is written (reruns reuse its CoT stores).")
    data_root: str | None = option(
        None,
        "The shared real-data folder holding comp34812_nli/ (default: "
        "NLI_COT_SHARED_DATA, else shared/data beside the source checkout).",
    )
    rows: int | None = option(None, "Trial rows to annotate (default 50, all of them).", min=1, max=50)
    eval_rows: int | None = option(None, "Dev rows to predict and score (default 50).", min=1)
    train_steps: int | None = option(None, "LoRA optimizer steps (default 16).", min=1)
    baseline: bool | None = option(
        None, "Also predict with the base model without the adapter and compare (default: on).", negatable=True
    )
    threads: int | None = option(
        None,
        "CPU threads for torch (default: torch's choice, one per core). On a "
        "machine busy with other work, 1 is often faster.",
        min=1,
    )
    quick: bool = option(
        False,
        "8 rows, 2 training steps, short answers: the same code path in a few minutes "
        "(CI's smoke run). Explicit options still win.",
    )
    hub_server: bool = option(
        False,
        "Also push the data set, adapter and report to a local Hub-protocol server "
        "(nli_cot_hub.hub_server) and download the data set back.",
    )

    def plan(self) -> DemoPlan:
        plan = DemoPlan().quick() if self.quick else DemoPlan()
        overrides = {
            "rows": self.rows,
            "eval_rows": self.eval_rows,
            "train_steps": self.train_steps,
            "baseline": self.baseline,
        }
        return replace(plan, **{key: value for key, value in overrides.items() if value is not None})


def run_demo(config: DemoConfig, console=None) -> dict:
    """Run every step, write commands.sh, demo_summary.json and README.md into the output folder; return the
    summary."""
    import tempfile

    from rich.console import Console

    if config.threads:
        import torch

        torch.set_num_threads(config.threads)
    console = console or Console(stderr=True)
    output_dir, plan, hub_server = Path(config.output_dir), config.plan(), config.hub_server
    data_root = Path(config.data_root) if config.data_root else default_data_root()
    for needed in (data_root / TRIAL_FILE, data_root / DEV_FILE, data_root / ARTIFACTS_FOLDER):
        if not needed.exists():
            raise FileNotFoundError(f"{needed}: the demo reads the coursework data there (set --data-root)")
    layout = Layout(output_dir)
    layout.cot.mkdir(parents=True, exist_ok=True)
    clear_stale_outputs(layout)

    server, scratch = None, None
    if hub_server:
        scratch = tempfile.TemporaryDirectory(prefix="nli_cot_demo_hub_")
        server = start_hub_server(Path(scratch.name) / "server")
        console.print(f"local Hub-protocol server at {server.url} (user {server.user})")
    try:
        steps = plan_steps(
            plan,
            layout,
            data_root,
            server.env(Path(scratch.name) / "cache") if server else None,
            server.user if server else None,
        )
        layout.commands.write_text(commands_script(steps, server.url if server else None), encoding="utf-8")
        results = []
        for number, step in enumerate(steps, 1):
            console.rule(f"[bold][{number}/{len(steps)}] {step.name}[/bold]: {step.title}")
            console.print(f"$ {command_line(step.argv)}", markup=False, highlight=False, soft_wrap=True)
            results.append(run_step(step))
            console.print(f"{step.name}: {results[-1].seconds:.1f} s", style="dim")
    finally:
        if server is not None:
            server.stop()
            scratch.cleanup()
    summary = collect_summary(layout, plan, results, steps)
    layout.summary.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    layout.index.write_text(index_markdown(summary, layout), encoding="utf-8")
    return summary
