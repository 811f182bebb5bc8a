"""Which decoder layers keep their activations under gradient checkpointing, and which recompute them.

A recomputed layer runs its forward twice a step; a kept one holds its activations from the forward to the
backward pass. ``kept_layers`` fixes how many are kept. ``kept_layer_tokens`` sets a budget instead: a micro-batch
of T padded tokens keeps ``budget // T`` layers (all of them at most), so the short micro-batches that length-grouped
batches mostly bring recompute little, and the widest one, which sets the peak, stays within the budget.
"""

from __future__ import annotations

from nli_cot_hub.train.configs import RecipeError


def decoder_layers(model) -> list:
    """The repeated blocks that transformers' gradient checkpointing switches one by one."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    return [module for module in model.modules() if isinstance(module, GradientCheckpointingLayer)]


def spread(kept: int, layers: int) -> list[int]:
    """``kept`` layer indices out of ``layers``, evenly spaced, the last layer among them: the backward pass starts
    there, and recomputing the last layer would hold about what keeping it does on top of every kept layer below,
    so the peak would be that of one more kept layer."""
    return sorted({round((i + 1) * layers / kept) - 1 for i in range(kept)}) if kept else []


def set_kept(layers: list, kept: int) -> list[int]:
    """Let ``kept`` of ``layers`` keep their activations and the others recompute them; return the kept indices."""
    chosen = spread(kept, len(layers))
    for index, layer in enumerate(layers):
        layer.gradient_checkpointing = index not in chosen
    return chosen


def keep_activations(model, kept: int) -> list[int]:
    """Let ``kept`` decoder layers of ``model`` keep their activations; return their indices."""
    layers = decoder_layers(model)
    if not 0 <= kept <= len(layers):
        raise RecipeError(f"kept_layers={kept}: the model has {len(layers)} decoder layers")
    return set_kept(layers, kept)


def kept_for_tokens(budget: int, tokens: int, layers: int) -> int:
    """How many of ``layers`` keep their activations for a micro-batch of ``tokens`` padded tokens."""
    return min(layers, budget // max(tokens, 1))


def keep_within_budget(model, budget: int, record=None):
    """Before each training forward of ``model``, let as many decoder layers keep their activations as
    ``budget`` layer-tokens allow for that micro-batch; ``record(tokens, kept)`` sees each choice. Returns the
    hook's handle."""
    layers = decoder_layers(model)

    def before_forward(module, args, kwargs):
        ids = kwargs.get("input_ids")
        if ids is None:
            ids = args[0] if args else kwargs.get("inputs_embeds")
        if not module.training or ids is None:
            return
        tokens = ids.shape[0] * ids.shape[1]
        kept = kept_for_tokens(budget, tokens, len(layers))
        set_kept(layers, kept)
        if record is not None:
            record(tokens, kept)

    return model.register_forward_pre_hook(before_forward, with_kwargs=True)


def check(script_args, training_args) -> None:
    """Before the model loads: both keys pick the layers that skip gradient checkpointing, so each needs it on,
    and only one of them can decide."""
    for key in ("kept_layers", "kept_layer_tokens"):
        value = getattr(script_args, key)
        if value is None:
            continue
        if not training_args.gradient_checkpointing:
            raise RecipeError(f"{key} needs gradient_checkpointing: true (it picks the layers that skip it)")
        if value < 0:
            raise RecipeError(f"{key} must be 0 or more, got {value}")
    if script_args.kept_layers is not None and script_args.kept_layer_tokens is not None:
        raise RecipeError("kept_layers and kept_layer_tokens both pick the kept layers: give one of them")


def check_layer_count(script_args, model_name: str) -> None:
    """Before the weights load: kept_layers no larger than the model's number of decoder layers (from its config)."""
    if script_args.kept_layers is None:
        return
    from nli_cot_hub.train.model import model_config

    layers = getattr(model_config(model_name), "num_hidden_layers", None)
    if layers is not None and script_args.kept_layers > layers:
        raise RecipeError(f"kept_layers={script_args.kept_layers}: the model has {layers} decoder layers")


def callback(script_args, report):
    """A TrainerCallback that applies the recipe's choice once the Trainer has turned checkpointing on (in
    ``train``, before the first step), or None when the recipe leaves it to ``every_n_layers``."""
    from transformers import TrainerCallback

    if script_args.kept_layers is None and script_args.kept_layer_tokens is None:
        return None

    class KeptLayers(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            if script_args.kept_layers is not None:
                chosen = keep_activations(model, script_args.kept_layers)
                report(f"{len(chosen)} decoder layers keep their activations ({chosen}); the others recompute them")
                return
            budget, layers = script_args.kept_layer_tokens, len(decoder_layers(model))
            keep_within_budget(model, budget)
            max_length = getattr(args, "max_length", None)
            widest = args.per_device_train_batch_size * max_length if max_length else None
            example = (
                f"; a full micro-batch of {widest} tokens keeps {kept_for_tokens(budget, widest, layers)}"
                if widest
                else ""
            )
            report(f"each micro-batch of T tokens keeps min({layers}, {budget} // T) decoder layers{example}")

    return KeptLayers()
