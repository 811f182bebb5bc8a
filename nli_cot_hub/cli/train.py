"""``nli-cot train|merge|card``: fine-tune (nli_cot_hub.train.sft), merge the adapter for serving, write the model card."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from nli_cot_hub.cli.common import RunFailed, clean_errors

def train(context: typer.Context) -> None:
    """Fine-tune with nli_cot_hub.train.sft: every option is passed through to it.

    Usage: nli-cot train --config recipes/smollm2_demo.yaml [--field value ...]. The recipe fields are
    those of TRL's SFTConfig, ModelConfig and the project's script arguments (dataset_name,
    dataset_config, effective_batch_size, random_init, tokenizer_name_or_path, ...); run
    `python -m nli_cot_hub.train --help` for the full list. For several GPUs use
    `accelerate launch -m nli_cot_hub.train ...`.
    Exit code 128+N when signal N stopped it after saving a checkpoint.
    """
    arguments = list(context.args)
    if not arguments:
        print(train.__doc__)
        raise typer.Exit(2)
    from nli_cot_hub.train import sft as script

    try:
        script_args, training_args, model_args = script.make_parser().parse_args_and_config(arguments)
    except ValueError as error:  # bad recipe or flag value: one line, no traceback
        print(f"error: {error}", file=sys.stderr)
        raise typer.Exit(2) from None
    outcome = clean_errors(script.main)(script_args, training_args, model_args)
    if outcome["status"] == "interrupted":
        raise typer.Exit(128 + outcome["signal"])
    print(json.dumps({key: value for key, value in outcome.items() if key != "summary"}))


@clean_errors
def merge(
    adapter: Annotated[str, typer.Argument(help="Adapter folder (train.py's output_dir or a checkpoint) or Hub repo.")],
    output_dir: Annotated[Path, typer.Option(help="Where the merged model and tokenizer are written.")] = Path("merged"),
    base_model: Annotated[Optional[str], typer.Option(
        help="Base model id or folder; default: the adapter's base_model_name_or_path ('embedded' works).")] = None,
    dtype: Annotated[str, typer.Option(help="Weights dtype of the merged model: bfloat16, float16 or float32.")] = "bfloat16",
) -> None:
    """Merge a LoRA adapter into its base model and save a plain model for serving (bf16 by default)."""
    import torch
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from nli_cot_hub.chat_template import apply_chat_rule
    from nli_cot_hub.models import EMBEDDED_NAME, resolve_model

    if dtype not in ("bfloat16", "float16", "float32"):
        raise typer.BadParameter(f"--dtype must be bfloat16, float16 or float32, got {dtype!r}")
    config = PeftConfig.from_pretrained(adapter)
    base_name = base_model or config.base_model_name_or_path
    # The embedded model's adapters name its public id; it is available locally.
    base_path = resolve_model("embedded" if base_name == EMBEDDED_NAME and base_model is None else base_name)
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=getattr(torch, dtype))
    merged = PeftModel.from_pretrained(base, adapter).merge_and_unload()
    output_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(output_dir)
    try:
        tokenizer = AutoTokenizer.from_pretrained(adapter)
    except (OSError, ValueError):  # adapters saved without a tokenizer
        tokenizer = AutoTokenizer.from_pretrained(base_path)
    # The merged model is served by vLLM/TGI with this template: the one training rendered prompts with.
    apply_chat_rule(tokenizer)
    tokenizer.save_pretrained(output_dir)
    print(f"merged {adapter} into {base_name} ({dtype}) -> {output_dir}")


@clean_errors
def card(
    output_dir: Annotated[Path, typer.Argument(help="train.py's output folder (adapter, recipe_resolved.yaml, training_metrics.json).")],
    eval_metrics: Annotated[Optional[Path], typer.Option(
        help="metrics.json from evaluation (accuracy, precision, recall, f1, parse_rate); "
             "default: OUTPUT_DIR/metrics.json when present.")] = None,
    hub_model_id: Annotated[Optional[str], typer.Option(help="Repo id named in the card (default: the recipe's hub_model_id).")] = None,
    dataset_id: Annotated[Optional[str], typer.Option(help="Hub id of the training data (default: the recipe's).")] = None,
    eval_model: Annotated[Optional[str], typer.Option(
        help="Which model's results to take when the metrics file is nli-cot evaluate's (several models).")] = None,
    eval_dataset: Annotated[Optional[str], typer.Option(help="Name of the evaluation data set shown with the results.")] = None,
    eval_split: Annotated[str, typer.Option(help="Split the evaluation metrics were computed on.")] = "validation",
    license: Annotated[str, typer.Option(help="License identifier for the card metadata.")] = "apache-2.0",
    push: Annotated[bool, typer.Option(help="Also upload README.md to --hub-model-id (token from HF_TOKEN).")] = False,
) -> None:
    """Write (or rewrite) the model card README.md of a trained adapter, optionally with evaluation results."""
    from nli_cot_hub.data import DataError
    from nli_cot_hub.hub import hub_token
    from nli_cot_hub.model_card import EVAL_METRICS, flat_eval_metrics, write_card

    if not output_dir.is_dir():
        raise FileNotFoundError(f"{output_dir}: no such output folder")
    if not (output_dir / "adapter_config.json").exists():
        raise DataError(f"{output_dir}: no adapter_config.json, so not an adapter folder (train.py's output); "
                        f"its README.md is left as it is")
    if push:
        if not hub_model_id:
            raise typer.BadParameter("--push needs --hub-model-id")
        if not hub_token():
            raise typer.BadParameter("--push needs a token with write access: set HF_TOKEN", param_hint="--push")
    metrics = None
    if eval_metrics is not None:
        try:
            metrics = flat_eval_metrics(json.loads(eval_metrics.read_text()), eval_model)
        except ValueError as error:
            raise typer.BadParameter(f"{eval_metrics}: {error}") from None
        if not any(isinstance(metrics.get(name), (int, float)) for name in EVAL_METRICS):
            raise DataError(f"{eval_metrics}: no scored metric ({', '.join(EVAL_METRICS)} are all missing or null)")
    options = dict(hub_model_id=hub_model_id, dataset_id=dataset_id, eval_dataset=eval_dataset,
                   eval_split=eval_split, license=license)
    if metrics is not None:
        options["eval_metrics"] = metrics
    path = write_card(output_dir, **options)
    print(f"wrote {path}")
    if push:
        from huggingface_hub.errors import HfHubHTTPError

        from nli_cot_hub.hub import hub_api
        from nli_cot_hub.hub_transfer import hub_error_line

        try:
            hub_api().upload_file(path_or_fileobj=str(path), path_in_repo="README.md", repo_id=hub_model_id,
                                  commit_message="Update model card")
        except HfHubHTTPError as error:
            raise RunFailed(f"pushing the card failed: {hub_error_line(error, hub_model_id, 'model', None)}") from None
        print(f"pushed the card to {hub_model_id}")


def register(app: typer.Typer) -> None:
    app.command("train", context_settings={"allow_extra_args": True, "ignore_unknown_options": True,
                                           "help_option_names": []})(train)
    app.command("merge")(merge)
    app.command("card")(card)
