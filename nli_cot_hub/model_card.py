"""The model card of a trained adapter: Hub metadata + the ``templates/model_card.md`` body (the repository's
``model_card/template.md`` links to it), filled from a training output folder (recipe_resolved.yaml,
training_metrics.json, adapter_config.json) and, when given, the evaluation metrics (accuracy, precision,
recall, f1, parse_rate).

Nothing local reaches the card: data sets and models given as local paths are named by their
folder name (or the public id passed in), and no value is read from the environment.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nli_cot_hub.config import option, stage_config

TEMPLATE = Path(__file__).parent / "templates" / "model_card.md"
EVAL_METRICS = ("accuracy", "precision", "recall", "f1", "parse_rate")
TAGS = ["nli", "natural-language-inference", "chain-of-thought", "lora", "qlora", "peft", "trl", "sft", "nli-cot-hub"]
HYPERPARAMETERS = [
    ("model", "load_in_4bit"),
    ("model", "bnb_4bit_quant_type"),
    ("model", "use_bnb_nested_quant"),
    ("model", "dtype"),
    ("model", "lora_r"),
    ("model", "lora_alpha"),
    ("model", "lora_dropout"),
    ("model", "lora_target_modules"),
    ("training", "max_length"),
    ("training", "completion_only_loss"),
    ("training", "packing"),
    ("training", "padding_free"),
    ("training", "per_device_train_batch_size"),
    ("training", "gradient_accumulation_steps"),
    ("training", "num_train_epochs"),
    ("training", "max_steps"),
    ("training", "learning_rate"),
    ("training", "lr_scheduler_type"),
    ("training", "warmup_steps"),
    ("training", "weight_decay"),
    ("training", "max_grad_norm"),
    ("training", "optim"),
    ("training", "bf16"),
    ("training", "gradient_checkpointing"),
    ("training", "eval_steps"),
    ("training", "load_best_model_at_end"),
    ("training", "seed"),
]


def is_local_path(value: str) -> bool:
    return value.startswith(("/", "./", "../", "~")) or os.path.exists(value)


def public_name(value: str | None) -> str | None:
    """A Hub id as is; a local path reduced to its last component (no directories leak)."""
    if not value:
        return None
    if is_local_path(value):
        return Path(value.rstrip("/")).name
    return value


def looks_like_hub_id(value: str | None) -> bool:
    return bool(value) and not is_local_path(value) and re.fullmatch(r"[\w.-]+/[\w.-]+", value) is not None


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def read_recipe(output_dir: Path) -> dict[str, dict[str, Any]]:
    import yaml

    path = output_dir / "recipe_resolved.yaml"
    return yaml.safe_load(path.read_text()) if path.exists() else {"script": {}, "training": {}, "model": {}}


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(item) for item in value)
    return str(value)


def eval_results(metrics: dict[str, Any], dataset_id: str, dataset_label: str, split: str) -> list:
    from huggingface_hub import EvalResult

    return [
        EvalResult(
            task_type="text-classification",
            task_name="Natural Language Inference",
            dataset_type=dataset_id,
            dataset_name=dataset_label,
            dataset_split=split,
            metric_type=name,
            metric_name=name,
            metric_value=float(metrics[name]),
        )
        for name in EVAL_METRICS
        if isinstance(metrics.get(name), (int, float))
    ]


def flat_eval_metrics(data: dict[str, Any], model_name: str | None = None) -> dict[str, Any]:
    """Metrics as the card reads them: a flat mapping, or ``nli-cot evaluate``'s metrics.json, which nests
    them under ``models`` (then ``model_name`` picks one; it may be left out when there is only one)."""
    if "models" not in data:
        return data
    models = data["models"]
    if model_name is None:
        if len(models) != 1:
            raise ValueError(f"the metrics hold several models ({', '.join(models)}): name one")
        model_name = next(iter(models))
    if model_name not in models:
        raise ValueError(f"no model {model_name!r} in the metrics (has {', '.join(models)})")
    return models[model_name]


def render_card(
    output_dir: str | Path,
    eval_metrics: dict[str, Any] | None = None,
    hub_model_id: str | None = None,
    dataset_id: str | None = None,
    eval_dataset: str | None = None,
    eval_split: str = "validation",
    license: str = "apache-2.0",
    template: str | Path = TEMPLATE,
) -> str:
    """The card text (YAML metadata + Markdown) for the adapter in ``output_dir``."""
    from huggingface_hub import ModelCard, ModelCardData

    from nli_cot_hub.chat_format import FORMAT_VERSION, LABEL_DEFINITION
    from nli_cot_hub.formats import DESCRIPTIONS, completion_text, resolve_format

    output_dir = Path(output_dir)
    recipe = read_recipe(output_dir)
    script, training, model = recipe.get("script", {}), recipe.get("training", {}), recipe.get("model", {})
    summary = read_json(output_dir / "training_metrics.json").get("summary", {})
    adapter = read_json(output_dir / "adapter_config.json")

    base_model = (
        public_name(
            summary.get("base_model") or adapter.get("base_model_name_or_path") or model.get("model_name_or_path")
        )
        or "unknown"
    )
    dataset_id = dataset_id or script.get("hub_dataset_id") or script.get("dataset_name")
    dataset_label = public_name(dataset_id) or "unknown"
    hub_dataset = dataset_id if looks_like_hub_id(dataset_id) else None
    repo_id = hub_model_id or training.get("hub_model_id") or f"<your-user>/{output_dir.name}"
    model_name = repo_id.split("/")[-1]

    metrics = {key: value for key, value in (eval_metrics or {}).items() if key in EVAL_METRICS}
    eval_name = public_name(eval_dataset)  # the set the metrics were computed on, when named
    results = (
        eval_results(metrics, eval_name or hub_dataset or dataset_label, eval_name or dataset_label, eval_split)
        if metrics
        else None
    )
    card_data = ModelCardData(
        base_model=base_model if looks_like_hub_id(base_model) else None,
        library_name="peft",
        pipeline_tag="text-generation",
        license=license,
        language="en",
        datasets=[hub_dataset] if hub_dataset else None,
        tags=list(TAGS),
        model_name=model_name,
        eval_results=results,
        metrics=list(metrics) or None,
    )
    lora_modules = adapter.get("target_modules") or model.get("lora_target_modules") or []
    if isinstance(lora_modules, (list, set, tuple)):
        lora_modules = ", ".join(sorted(lora_modules))
    hyperparameters = [
        (name, format_value(section_values[name]))
        for section, name in HYPERPARAMETERS
        for section_values in [{"model": model, "training": training}[section]]
        if section_values.get(name) is not None
    ]
    per_device = training.get("per_device_train_batch_size") or 1
    accumulation = training.get("gradient_accumulation_steps") or 1
    processes = summary.get("processes") or 1
    hyperparameters.append(("effective batch", str(per_device * accumulation * processes)))
    run_facts = [
        (label, format_value(summary[key]))
        for key, label in (
            ("train_examples", "training examples"),
            ("eval_examples", "validation examples"),
            ("global_steps", "optimizer steps"),
            ("processes", "processes (GPUs)"),
            ("trainable_parameters", "trainable parameters"),
            ("total_parameters", "total parameters"),
            ("median_tokens", "median tokens per example"),
            ("max_tokens", "longest example (tokens)"),
            ("train_runtime_s", "training time (s)"),
            ("train_samples_per_second", "samples / s"),
            ("train_tokens_per_second", "tokens / s (non-pad)"),
            ("peak_memory_gib", "peak GPU memory (GiB)"),
            ("first_train_loss", "first train loss"),
            ("last_train_loss", "last train loss"),
            ("best_eval_loss", "best validation loss"),
        )
        if summary.get(key) is not None
    ]
    completion_format = resolve_format(None, output_dir)
    card = ModelCard.from_template(
        card_data,
        template_path=str(template),
        model_title=f"{model_name}: chain-of-thought NLI adapter for {base_model}",
        base_model=base_model,
        repo_id=repo_id,
        dataset_id=hub_dataset,
        dataset_label=dataset_label,
        license=license,
        label_definition=LABEL_DEFINITION,
        format_version=FORMAT_VERSION,
        lora_r=adapter.get("r", model.get("lora_r")),
        lora_alpha=adapter.get("lora_alpha", model.get("lora_alpha")),
        lora_dropout=adapter.get("lora_dropout", model.get("lora_dropout")),
        target_modules=lora_modules,
        load_in_4bit=model.get("load_in_4bit"),
        completion_only_loss=training.get("completion_only_loss"),
        max_length=training.get("max_length"),
        truncated_examples=summary.get("truncated_examples", "?"),
        train_examples=summary.get("train_examples", "?"),
        hyperparameters=hyperparameters,
        run_facts=run_facts,
        eval_rows=[(name, f"{float(value):.4f}") for name, value in metrics.items()],
        eval_dataset=public_name(eval_dataset),
        best_eval_loss=format_value(summary.get("best_eval_loss", "n/a")),
        completion_format=completion_format,
        format_description=DESCRIPTIONS[completion_format],
        answer_example=completion_text(completion_format, "...", 1),
        label_loss_weight=float(script.get("label_loss_weight") or 1.0),
    )
    return str(card)


def write_card(output_dir: str | Path, **options: Any) -> Path:
    """Render the card into ``output_dir/README.md``; picks up ``output_dir/metrics.json`` when present."""
    output_dir = Path(output_dir)
    if "eval_metrics" not in options:
        options["eval_metrics"] = flat_eval_metrics(read_json(output_dir / "metrics.json")) or None
    path = output_dir / "README.md"
    path.write_text(render_card(output_dir, **options), encoding="utf-8")
    return path


# -- the `nli-cot card` stage -----------------------------------------------------------------------------------


@stage_config
class CardConfig:
    """Write (or rewrite) the model card README.md of a trained adapter, optionally with evaluation results."""

    output_dir: str = option(
        help="train.py's output folder (adapter, recipe_resolved.yaml, training_metrics.json).", positional=True
    )
    eval_metrics: str | None = option(
        None,
        "metrics.json from evaluation (accuracy, precision, recall, f1, "
        "parse_rate); default: OUTPUT_DIR/metrics.json when present.",
    )
    hub_model_id: str | None = option(None, "Repo id named in the card (default: the recipe's hub_model_id).")
    dataset_id: str | None = option(None, "Hub id of the training data (default: the recipe's).")
    eval_model: str | None = option(
        None, "Which model's results to take when the metrics file is nli-cot evaluate's (several models)."
    )
    eval_dataset: str | None = option(None, "Name of the evaluation data set shown with the results.")
    eval_split: str = option("validation", "Split the evaluation metrics were computed on.")
    license: str = option("apache-2.0", "License identifier for the card metadata.")
    push: bool = option(False, "Also upload README.md to --hub-model-id (token from HF_TOKEN).", negatable=True)


@dataclass
class CardResult:
    path: Path  # the README.md written
    pushed_to: str | None = None  # the model repo it was uploaded to, with --push
    commit: str | None = None


def run_card(config: CardConfig) -> CardResult:
    """Render the card into ``config.output_dir/README.md``; with ``config.push``, upload it to the model repo."""
    from nli_cot_hub.data import DataError
    from nli_cot_hub.hub import hub_api, hub_token
    from nli_cot_hub.hub_transfer import hub_errors

    output_dir = Path(config.output_dir)
    if not output_dir.is_dir():
        raise FileNotFoundError(f"{output_dir}: no such output folder")
    if not (output_dir / "adapter_config.json").exists():
        raise DataError(
            f"{output_dir}: no adapter_config.json, so not an adapter folder (train.py's output); "
            f"its README.md is left as it is"
        )
    if config.push:
        if not config.hub_model_id:
            raise DataError("--push needs --hub-model-id")
        if not hub_token():
            raise DataError("--push needs a token with write access: set HF_TOKEN")
    metrics = None
    if config.eval_metrics is not None:
        try:
            metrics = flat_eval_metrics(json.loads(Path(config.eval_metrics).read_text()), config.eval_model)
        except ValueError as error:
            raise DataError(f"--eval-metrics {config.eval_metrics}: {error}") from None
        if not any(isinstance(metrics.get(name), (int, float)) for name in EVAL_METRICS):
            raise DataError(
                f"{config.eval_metrics}: no scored metric ({', '.join(EVAL_METRICS)} are all missing or null)"
            )
    options: dict[str, Any] = dict(
        hub_model_id=config.hub_model_id,
        dataset_id=config.dataset_id,
        eval_dataset=config.eval_dataset,
        eval_split=config.eval_split,
        license=config.license,
    )
    if metrics is not None:
        options["eval_metrics"] = metrics
    result = CardResult(write_card(output_dir, **options))
    if config.push:
        with hub_errors("pushing the card", config.hub_model_id, "model"):
            info = hub_api().upload_file(
                path_or_fileobj=str(result.path),
                path_in_repo="README.md",
                repo_id=config.hub_model_id,
                commit_message="Update model card",
            )
        result.pushed_to, result.commit = config.hub_model_id, getattr(info, "oid", None)
    return result
