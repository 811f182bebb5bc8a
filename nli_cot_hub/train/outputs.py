"""What a run leaves besides the adapter: recipe_resolved.yaml (secrets removed, no local paths),
training_metrics.json (summary + log history) and training_curves.png."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

SECRET_FIELDS = {"hub_token", "push_to_hub_token", "token"}


def shareable_path(value: Any) -> Any:
    """Absolute paths (which name this machine's folders) become relative to the working directory when
    inside it, else ``.../<last part>``; the recipe is pushed to the Hub with the adapter."""
    if not isinstance(value, str) or not os.path.isabs(value):
        return value
    relative = os.path.relpath(value)
    return relative if not relative.startswith("..") else f".../{Path(value).name}"


def resolved_recipe(script_args, training_args, model_args) -> dict[str, Any]:
    """The three argument groups as plain data, secrets removed, for recipe_resolved.yaml."""

    def plain(args) -> dict[str, Any]:
        values = args.to_dict() if hasattr(args, "to_dict") else asdict(args)
        return {key: shareable_path(value) for key, value in values.items() if key not in SECRET_FIELDS}

    return {"script": plain(script_args), "training": plain(training_args), "model": plain(model_args)}


def write_resolved_recipe(recipe: dict[str, Any], output_dir: str) -> Path:
    import yaml

    path = Path(output_dir) / "recipe_resolved.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(json.loads(json.dumps(recipe, default=str)), sort_keys=False))
    return path


def training_summary(log_history: list[dict[str, Any]], extra: dict[str, Any]) -> dict[str, Any]:
    train_losses = [entry["loss"] for entry in log_history if "loss" in entry]
    eval_losses = [entry["eval_loss"] for entry in log_history if "eval_loss" in entry]
    final = next((entry for entry in reversed(log_history) if "train_runtime" in entry), {})
    # TRL's num_tokens: non-pad tokens seen so far, all processes together.
    tokens = next((entry["num_tokens"] for entry in reversed(log_history) if "num_tokens" in entry), None)
    runtime = final.get("train_runtime")
    return {
        "train_tokens": tokens,
        "train_tokens_per_second": round(tokens / runtime, 1) if tokens and runtime else None,
        "first_train_loss": train_losses[0] if train_losses else None,
        "last_train_loss": train_losses[-1] if train_losses else None,
        "best_eval_loss": min(eval_losses) if eval_losses else None,
        "train_runtime_s": final.get("train_runtime"),
        "train_samples_per_second": final.get("train_samples_per_second"),
        "train_steps_per_second": final.get("train_steps_per_second"),
        **extra,
    }


def write_metrics(log_history: list[dict[str, Any]], summary: dict[str, Any], output_dir: str) -> Path:
    path = Path(output_dir) / "training_metrics.json"
    path.write_text(json.dumps({"summary": summary, "log_history": log_history}, indent=2, default=str))
    return path


def plot_training_curves(log_history: list[dict[str, Any]], output_path: str | Path) -> Path:
    """Train/eval loss and learning rate against the optimizer step, one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def series(key: str) -> tuple[list[int], list[float]]:
        points = [(entry["step"], entry[key]) for entry in log_history if key in entry and "step" in entry]
        return [step for step, _ in points], [value for _, value in points]

    figure, (loss_axis, lr_axis) = plt.subplots(
        2, 1, figsize=(8, 6), sharex=True, gridspec_kw={"height_ratios": [2, 1]}
    )
    for key, label, style in (("loss", "train loss", "-"), ("eval_loss", "eval loss", "o-")):
        steps, values = series(key)
        if steps:
            loss_axis.plot(steps, values, style, label=label)
    loss_axis.set_ylabel("loss (completion tokens)")
    loss_axis.legend()
    loss_axis.grid(alpha=0.3)
    steps, values = series("learning_rate")
    lr_axis.plot(steps, values, color="tab:green")
    lr_axis.set_ylabel("learning rate")
    lr_axis.set_xlabel("optimizer step")
    lr_axis.grid(alpha=0.3)
    figure.tight_layout()
    output_path = Path(output_path)
    figure.savefig(output_path, dpi=120)
    plt.close(figure)
    return output_path


def peak_memory_gib() -> float | None:
    import torch

    if torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return None


def trainable_parameters(model) -> dict[str, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable_parameters": trainable, "total_parameters": total}
