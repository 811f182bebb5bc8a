"""``nli-cot train|merge|card``: fine-tune (train.py), merge the adapter for serving, write the model card."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import typer

from nli_cot_hub.cli.common import clean_errors
from nli_cot_hub.cli.derive import command
from nli_cot_hub.merge import MergeConfig, MergeResult, run_merge
from nli_cot_hub.model_card import CardConfig, CardResult, run_card

TRAIN_SCRIPT = Path(__file__).resolve().parents[2] / "train.py"


def load_train_script():
    """The repository's ``train.py`` as a module (it is a script, not part of the package)."""
    if not TRAIN_SCRIPT.exists():
        raise FileNotFoundError(f"{TRAIN_SCRIPT} not found: nli-cot train runs from a source checkout")
    spec = importlib.util.spec_from_file_location("nli_cot_train_script", TRAIN_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train(context: typer.Context) -> None:
    """Fine-tune with train.py: every option is passed through to it.

    Usage: nli-cot train --config recipes/smollm2_demo.yaml [--field value ...]. The recipe fields are
    those of TRL's SFTConfig, ModelConfig and train.py's script arguments (dataset_name,
    dataset_config, effective_batch_size, random_init, tokenizer_name_or_path, ...); run
    `python train.py --help` for the full list. For several GPUs use `accelerate launch train.py ...`.
    Exit code 128+N when signal N stopped it after saving a checkpoint.
    """
    arguments = list(context.args)
    if not arguments:
        print(train.__doc__)
        raise typer.Exit(2)
    script = load_train_script()
    try:
        script_args, training_args, model_args = script.make_parser().parse_args_and_config(arguments)
    except ValueError as error:  # bad recipe or flag value: one line, no traceback
        print(f"error: {error}", file=sys.stderr)
        raise typer.Exit(2) from None
    outcome = clean_errors(script.main)(script_args, training_args, model_args)
    if outcome["status"] == "interrupted":
        raise typer.Exit(128 + outcome["signal"])
    print(json.dumps({key: value for key, value in outcome.items() if key != "summary"}))


def show_merge(result: MergeResult) -> None:
    print(f"merged {result.adapter} into {result.base_model} ({result.dtype}) -> {result.output_dir}")


def show_card(result: CardResult) -> None:
    print(f"wrote {result.path}")
    if result.pushed_to:
        print(f"pushed the card to {result.pushed_to}")


def register(app: typer.Typer) -> None:
    app.command("train", context_settings={"allow_extra_args": True, "ignore_unknown_options": True,
                                           "help_option_names": []})(train)
    command(app, "merge", MergeConfig, lambda config: show_merge(run_merge(config)))
    command(app, "card", CardConfig, lambda config: show_card(run_card(config)))
