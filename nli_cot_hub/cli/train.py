"""``nli-cot train|merge|card``: fine-tune (nli_cot_hub.train.sft), merge the adapter for serving, write the model
card."""

from __future__ import annotations

import json
import sys

import typer

from nli_cot_hub.cli.common import error_boundary
from nli_cot_hub.cli.derive import command
from nli_cot_hub.merge import MergeConfig, MergeResult, run_merge
from nli_cot_hub.model_card import CardConfig, CardResult, run_card


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
    outcome = error_boundary(script.main)(script_args, training_args, model_args)
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
    app.command(
        "train", context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}
    )(train)
    command(app, "merge", MergeConfig, lambda config: show_merge(run_merge(config)))
    command(app, "card", CardConfig, lambda config: show_card(run_card(config)))
