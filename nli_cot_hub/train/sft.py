"""QLoRA fine-tuning of a chain-of-thought NLI model with TRL's SFTTrainer + PEFT + bitsandbytes.

    accelerate launch -m nli_cot_hub.train --config recipes/mistral7b_qlora.yaml [--any_field value ...]
    accelerate launch --config_file accelerate_configs/multi_gpu.yaml train.py --config recipes/mistral7b_qlora.yaml
    python -m nli_cot_hub.train --config recipes/smollm2_demo.yaml   # the embedded model, CPU, minutes
    nli-cot train --config recipes/smollm2_demo.yaml                 # the same through the CLI

A recipe is a YAML file of ScriptArguments (data, extras), SFTConfig (training) and ModelConfig
(model, LoRA, 4-bit) fields; command-line flags override it. Outputs in ``output_dir``: the adapter
(safetensors) and tokenizer, recipe_resolved.yaml, training_metrics.json, training_curves.png and
README.md (the model card). ``--resume_from_checkpoint latest`` continues an interrupted run exactly;
SIGTERM/SIGINT saves a checkpoint first.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

from accelerate.logging import get_logger

logger = get_logger(__name__)


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is when a record comes (the CLI's test runner swaps it)."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:
        pass


def console_logging() -> None:
    """Training's INFO messages (the plan, truncation, resume) on stdout, set up once, whoever runs training."""
    training = logging.getLogger("nli_cot_hub.train")
    if not any(isinstance(handler, _StdoutHandler) for handler in training.handlers):
        handler = _StdoutHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        training.addHandler(handler)
        training.propagate = False
    if training.getEffectiveLevel() > logging.INFO:
        training.setLevel(logging.INFO)


def make_parser():
    from trl import ModelConfig, SFTConfig, TrlParser

    from nli_cot_hub.train.configs import NliScriptArguments

    return TrlParser((NliScriptArguments, SFTConfig, ModelConfig))


def main(script_args, training_args, model_args, callbacks: list | None = None) -> dict[str, Any]:
    """Train; return what happened ({"status": "completed"|"interrupted", ...}). ``callbacks`` are extra
    TrainerCallbacks, run before the signal handler's."""
    from transformers import set_seed
    from trl import SFTTrainer, get_peft_config

    from nli_cot_hub.formats import write_format
    from nli_cot_hub.train import activations, checkpoint, data, loss, model, outputs, schedule

    console_logging()
    set_seed(training_args.seed)
    # Reading world_size sets up the process group (accelerate's PartialState) the rank-aware logger needs.
    processes = training_args.world_size
    if script_args.effective_batch_size:
        training_args.gradient_accumulation_steps = schedule.accumulation_steps(
            script_args.effective_batch_size, training_args.per_device_train_batch_size, processes
        )
    started = time.time()

    schedule.apply_warmup_ratio(script_args, training_args)
    model.check_launch(training_args)
    model.check_optional_features(training_args)
    activations.check(script_args, training_args)
    train_data, eval_data = data.prepare_splits(  # first: bad data fails before any model loads
        script_args, training_args.seed, want_eval=training_args.eval_strategy != "no", report=logger.info
    )
    plan = schedule.plan_schedule(training_args, len(train_data))
    schedule.check_schedule(plan)
    logger.info(plan.line(training_args.learning_rate, training_args.lr_scheduler_type))
    tokenizer = model.load_tokenizer(
        model_args.model_name_or_path, script_args.tokenizer_name_or_path, model_args.model_revision
    )
    truncation = data.truncation_report(train_data, tokenizer, training_args.max_length)
    logger.info(f"train {len(train_data)} examples, eval {len(eval_data) if eval_data else 0}; {truncation.line()}")

    label_pattern = None
    if script_args.label_loss_weight <= 0:
        raise ValueError(f"label_loss_weight must be > 0, got {script_args.label_loss_weight}")
    if script_args.label_loss_weight != 1.0:
        pattern = label_pattern = loss.label_token_pattern(train_data, tokenizer)
        logger.info(
            f"label tokens weighted x{script_args.label_loss_weight:g} ({len(pattern.values)} value tokens, "
            f"{len(pattern.anchors)} contexts)"
        )

    activations.check_layer_count(script_args, model_args.model_name_or_path)
    base = model.load_model(model_args, training_args, script_args.random_init, training_args.seed)
    signal_callback = checkpoint.make_signal_callback()
    kept_layers = activations.callback(script_args, logger.info)
    if kept_layers is not None:
        callbacks = [*(callbacks or []), kept_layers]

    class NliSFTTrainer(loss.label_weighted(SFTTrainer)):
        def create_model_card(self, *args, **kwargs):  # our card instead of TRL's generic one
            if self.is_world_process_zero() and script_args.model_card:
                from nli_cot_hub.model_card import write_card

                write_card(self.args.output_dir)

    trainer = NliSFTTrainer(
        model=base,
        args=training_args,
        train_dataset=train_data,
        eval_dataset=eval_data,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
        callbacks=[*(callbacks or []), signal_callback],
    )
    trainer.label_pattern, trainer.label_weight = label_pattern, script_args.label_loss_weight
    # Adapter configs and cards name the public base model, never a local folder.
    base_name = model.hub_base_model(model_args.model_name_or_path)
    for peft_config in getattr(trainer.model, "peft_config", {}).values():
        peft_config.base_model_name_or_path = base_name
    parameters = outputs.trainable_parameters(trainer.model)
    # TRL drops rows that truncation leaves without a completion token, and packing changes the row count:
    # the plan is checked again on the rows the trainer really has.
    if len(trainer.train_dataset) != plan.train_examples:
        plan = schedule.plan_schedule(training_args, len(trainer.train_dataset))
        schedule.check_schedule(plan)
        logger.info(f"after tokenization: {plan.line(training_args.learning_rate, training_args.lr_scheduler_type)}")

    recipe = outputs.resolved_recipe(script_args, training_args, model_args)
    if trainer.is_world_process_zero():
        outputs.write_resolved_recipe(recipe, training_args.output_dir)
        write_format(training_args.output_dir, script_args.completion_format, script_args.label_loss_weight)

    resume = checkpoint.resolve_resume(training_args.resume_from_checkpoint, training_args.output_dir)
    if resume:
        logger.info(f"resuming from {resume}")
    with model.cudnn_attention(script_args.cudnn_attention):
        trainer.train(resume_from_checkpoint=resume)

    if signal_callback.received is not None:
        saved = checkpoint.resolve_resume("latest", training_args.output_dir)
        logger.info(
            f"stopped by signal {signal_callback.received}; checkpoint saved in {saved}; "
            "continue with --resume_from_checkpoint latest"
        )
        return {"status": "interrupted", "signal": signal_callback.received, "checkpoint": saved}

    model.use_full_state_dict_for_saving(trainer)
    # adapter (safetensors) + tokenizer; the push to the Hub, if any, is the single one at the end
    trainer.save_model(training_args.output_dir, _internal_call=True)
    result: dict[str, Any] = {"status": "completed", "output_dir": training_args.output_dir}
    if trainer.is_world_process_zero():
        summary = outputs.training_summary(
            trainer.state.log_history,
            {
                **parameters,
                "base_model": base_name,
                "train_examples": len(train_data),
                "eval_examples": len(eval_data) if eval_data else 0,
                "truncated_examples": truncation.truncated,
                "median_tokens": truncation.median_tokens,
                "max_tokens": truncation.max_tokens,
                "global_steps": trainer.state.global_step,
                "planned_steps": plan.total_steps,
                "warmup_steps": plan.warmup_steps,
                "processes": trainer.accelerator.num_processes,
                "peak_memory_gib": outputs.peak_memory_gib(),
                "wall_time_s": round(time.time() - started, 1),
                "best_checkpoint": os.path.basename(trainer.state.best_model_checkpoint or "") or None,
            },
        )
        outputs.write_metrics(trainer.state.log_history, summary, training_args.output_dir)
        outputs.plot_training_curves(trainer.state.log_history, f"{training_args.output_dir}/training_curves.png")
        if script_args.model_card:
            from nli_cot_hub.model_card import write_card

            write_card(training_args.output_dir)
        result["summary"] = summary
    if training_args.push_to_hub:
        trainer.push_to_hub(commit_message="Adapter, tokenizer, metrics and model card")
        result["hub_model_id"] = trainer.hub_model_id
    return result


def cli_main(argv: list[str] | None = None) -> None:
    """Parse the recipe and flags (``argv``, default the command line), train, and exit: 0 when done, 2 on bad
    data or recipe (one line, no traceback), 128 + N when signal N stopped the run after a checkpoint."""
    from nli_cot_hub.data import DataError

    script_args, training_args, model_args = make_parser().parse_args_and_config(argv)
    try:
        outcome = main(script_args, training_args, model_args)
    except (DataError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    # 128 + signal number, as a shell reports a process ended by that signal.
    sys.exit(128 + outcome["signal"] if outcome["status"] == "interrupted" else 0)


if __name__ == "__main__":
    cli_main()
