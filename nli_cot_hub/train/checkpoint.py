"""Exact resume and checkpoint-on-signal: ``--resume_from_checkpoint latest`` continues where a run stopped,
and SIGTERM/SIGINT make the Trainer save a checkpoint at the next optimizer step boundary and stop."""

from __future__ import annotations

import os
import signal
from typing import Any


def resolve_resume(value: str | bool | None, output_dir: str) -> str | None:
    """``latest`` (or ``true``) -> the newest checkpoint in output_dir, or None when there is none yet;
    a path is checked; None/false -> no resume."""
    from transformers.trainer_utils import get_last_checkpoint

    if value in (None, False, "", "false", "False", "none", "None"):
        return None
    if value in (True, "latest", "true", "True", "last"):
        if not os.path.isdir(output_dir):
            return None
        return get_last_checkpoint(output_dir)
    if not os.path.isdir(str(value)):
        raise FileNotFoundError(f"--resume_from_checkpoint {value}: no such checkpoint folder")
    return str(value)


def make_signal_callback():
    from transformers import TrainerCallback

    class SignalCheckpointCallback(TrainerCallback):
        """On SIGTERM/SIGINT, finish the current optimizer step, save a checkpoint and stop.

        The handler only sets a flag; the Trainer saves at the step boundary, so the checkpoint holds
        a consistent adapter, optimizer, scheduler, RNG and data position."""

        def __init__(self) -> None:
            self.received: int | None = None
            self._previous: dict[int, Any] = {}

        def _handle(self, signum, frame) -> None:
            if self.received is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt  # a second Ctrl-C means: stop now
            self.received = signum

        def on_train_begin(self, args, state, control, **kwargs):
            for signum in (signal.SIGTERM, signal.SIGINT):
                try:
                    self._previous[signum] = signal.signal(signum, self._handle)
                except ValueError:  # not the main thread: leave signals alone
                    pass

        def on_step_end(self, args, state, control, **kwargs):
            signalled = self._any_rank_signalled(args)  # every rank joins the collective, every step
            if self.received is None and not signalled:
                return control
            if self.received is None:  # another rank got it: stop at this same step with it
                self.received = signal.SIGTERM
            control.should_save = True
            control.should_training_stop = True
            return control

        def _any_rank_signalled(self, args) -> bool:
            """Ranks may see a signal at different steps; they must all stop at the same one, or the
            others would wait forever in the next collective."""
            import torch.distributed as dist

            if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
                return self.received is not None
            import torch

            flag = torch.tensor([0.0 if self.received is None else 1.0], device=args.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            return bool(flag.item())

        def on_train_end(self, args, state, control, **kwargs):
            for signum, handler in self._previous.items():
                signal.signal(signum, handler)
            self._previous.clear()

    return SignalCheckpointCallback()
