"""The optimizer steps and the warm-up of a run, computed as the Trainer will before any model loads, and
checked: a warm-up that takes too much of the run is refused in one line naming the numbers and the fix."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from nli_cot_hub.train.configs import RecipeError

# A warm-up longer than this share of the optimizer steps leaves too little of the run at the peak LR
# and in the decay for the schedule to do what the recipe says.
MAX_WARMUP_SHARE = 0.2
SCHEDULES_WITH_WARMUP = ("cosine", "linear", "constant_with_warmup")


def accumulation_steps(effective_batch_size: int, per_device_batch_size: int, processes: int) -> int:
    """Gradient accumulation that makes one optimizer step see exactly ``effective_batch_size`` examples."""
    per_step = per_device_batch_size * processes
    if effective_batch_size % per_step:
        raise ValueError(
            f"effective_batch_size {effective_batch_size} is not a multiple of "
            f"per_device_train_batch_size {per_device_batch_size} x {processes} processes"
        )
    return effective_batch_size // per_step


def learning_rates(peak: float, warmup_steps: int, total_steps: int, scheduler: Any = "cosine") -> list[float]:
    """The LR of every optimizer step (0-based) under transformers' own scheduler, as the Trainer builds it."""
    import torch
    from transformers import get_scheduler

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=peak)
    factor = get_scheduler(
        str(getattr(scheduler, "value", scheduler)),
        optimizer,
        num_warmup_steps=warmup_steps,
        num_training_steps=total_steps,
    ).lr_lambdas[0]
    return [peak * factor(step) for step in range(total_steps)]


@dataclass(frozen=True)
class SchedulePlan:
    """The optimizer steps a run will take, computed before any model loads."""

    train_examples: int
    batches_per_process: int
    accumulation: int
    processes: int
    total_steps: int
    warmup_steps: int
    warmup_share: float | None = None  # set when the recipe gives the warm-up as a share of the run

    def line(self, peak: float, scheduler: Any) -> str:
        scheduler = str(getattr(scheduler, "value", scheduler))  # SFTConfig holds an enum
        text = (
            f"schedule: {self.total_steps} optimizer steps ({self.train_examples} examples, "
            f"{self.batches_per_process} micro-batches per process per epoch, accumulation {self.accumulation}, "
            f"{self.processes} process{'es' if self.processes > 1 else ''}), warm-up {self.warmup_steps}"
        )
        if scheduler in SCHEDULES_WITH_WARMUP and self.total_steps > 0:
            last = learning_rates(peak, self.warmup_steps, self.total_steps, scheduler)[-1]
            text += f", then {scheduler}: LR peak {peak:g}, {last:.3g} at the last step"
        return text


def batches_per_process(examples: int, per_device_batch_size: int, processes: int, drop_last: bool) -> int:
    """Micro-batches each process sees per epoch: the DataLoader's length after accelerate shards it
    (``BatchSamplerShard`` with even batches: a short last round is padded, unless ``drop_last``)."""
    batches = examples // per_device_batch_size if drop_last else math.ceil(examples / per_device_batch_size)
    if processes == 1 or batches % processes == 0 or drop_last:
        return batches // processes
    return batches // processes + 1


def optimizer_steps(batches: int, accumulation: int, epochs: float, max_steps: int) -> int:
    """Total optimizer steps, as ``Trainer.set_initial_training_values`` counts them: a short last
    accumulation round still makes a step."""
    if max_steps > 0:
        return max_steps
    per_epoch = max(math.ceil(batches / accumulation), 1)
    return math.ceil(epochs * per_epoch)


def plan_schedule(training_args, train_examples: int) -> SchedulePlan:
    processes = max(1, training_args.world_size)
    batches = batches_per_process(
        train_examples, training_args.per_device_train_batch_size, processes, training_args.dataloader_drop_last
    )
    total = optimizer_steps(
        batches, training_args.gradient_accumulation_steps, training_args.num_train_epochs, training_args.max_steps
    )
    # get_warmup_steps reads warmup_steps as a count (>= 1) or a share of the total (< 1), as the Trainer does.
    share = training_args.warmup_steps if 0 < training_args.warmup_steps < 1 else None
    return SchedulePlan(
        train_examples,
        batches,
        training_args.gradient_accumulation_steps,
        processes,
        total,
        training_args.get_warmup_steps(total),
        share,
    )


def check_schedule(plan: SchedulePlan, max_share: float = MAX_WARMUP_SHARE) -> None:
    """Refuse a warm-up that takes more than ``max_share`` of the run: the LR would barely (or never)
    reach its peak and the decay would not happen. A warm-up given as a share is judged by that share
    (the Trainer rounds it up to a whole step, which on a run of a few steps is more)."""
    if plan.warmup_share is not None:
        if plan.warmup_share <= max_share:
            return
        asked = f"warm-up share {plan.warmup_share:g}"
    elif plan.warmup_steps <= max_share * plan.total_steps:
        return
    else:
        asked = f"warm-up of {plan.warmup_steps} optimizer steps"
    fitting = math.floor(max_share * plan.total_steps)
    raise RecipeError(
        f"{asked} is more than {max_share:.0%} of the {plan.total_steps} optimizer steps this run takes "
        f"({plan.train_examples} train examples, {plan.batches_per_process} micro-batches per process per epoch, "
        f"accumulation {plan.accumulation}, {plan.processes} process(es)), so the LR would hardly reach its peak "
        f"or decay; set --warmup_steps to at most {fitting} (a count) or to a share such as 0.1"
    )


def apply_warmup_ratio(script_args, training_args) -> None:
    """``warmup_ratio`` (transformers 4 recipes) becomes the share-valued ``warmup_steps`` transformers 5 reads."""
    ratio = script_args.warmup_ratio
    if ratio is None:
        return
    if not 0 < ratio < 1:
        raise RecipeError(f"warmup_ratio {ratio}: expected a share of the optimizer steps, between 0 and 1")
    if training_args.warmup_steps:
        raise RecipeError(
            f"warmup_ratio {ratio} and warmup_steps {training_args.warmup_steps} are both set; give one of them"
        )
    training_args.warmup_steps = ratio
