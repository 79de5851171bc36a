"""What one call of ``Trainer.fit`` changes, in one object: its callbacks, where it starts, what it has done.

A checkpoint keeps what :meth:`FitState.to_checkpoint` gives, and a resumed fit starts from
:meth:`FitState.from_checkpoint` of it, so the two stay in step.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras

from tfminima.callbacks import BatchSizeScheduler, LearningRateScheduler, RunLogger
from tfminima.monitors import Monitor
from tfminima.target import Target

DATA_ORDER = "permutation of (seed, epoch); augmentation stateless in (seed, epoch, index)"
FINAL_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "batch_size", "eta_over_s")


@dataclasses.dataclass
class FitCallbacks:
    """The callbacks of one fit, and those the loop reads: the schedules, the monitors, the run logger."""

    all: keras.callbacks.CallbackList
    lr: LearningRateScheduler
    batch_size: BatchSizeScheduler
    monitors: list[Monitor]
    logger: RunLogger | None
    batch_hooks: bool  # some callback has batch hooks (else the loop skips the per-step calls)

    def measure_at_end(self, epoch: int, logs: dict) -> None:
        """The run ends completed after ``epoch`` (its target reached, or stopped by a callback): every monitor
        that did not measure this epoch measures it now, logged at this epoch. The trainer calls this before
        the epoch's checkpoint, so a resume never measures it twice."""
        late = [m for m in self.monitors if m.measure_at_end(epoch, logs)]
        if late and self.logger is not None:
            self.logger.log_measurements(epoch, late)


@dataclasses.dataclass
class FitState:
    """The per-fit state of the trainer.

    ``start_epoch``, ``skip`` (batches of that epoch already done) and ``partial`` (their running
    sums) say where the fit starts; ``history`` holds one dict of numbers per finished epoch;
    ``first_loss`` is the loss of the run's first step (the divergence guard's reference);
    ``steps_done`` counts the batches of the current epoch; ``stop_sent`` is the stop request this
    worker last put into the step's reduction (multi-worker); ``target`` is the run's ``until``
    (:class:`tfminima.target.Target`), None without one.
    """

    callbacks: FitCallbacks
    start_epoch: int = 0
    history: list[dict] = dataclasses.field(default_factory=list)
    first_loss: float | None = None
    skip: int = 0
    partial: list[float] | None = None
    steps_done: int = 0
    stop_sent: float = 0.0
    target: Target | None = None

    @classmethod
    def from_checkpoint(cls, callbacks: FitCallbacks, start_epoch: int, saved: dict,
                        target: Target | None = None) -> FitState:
        """The state a fit starts from: ``saved`` is a checkpoint's state (empty: from scratch);
        ``target`` was made from ``saved["target"]``."""
        return cls(
            callbacks, start_epoch=start_epoch, history=list(saved.get("history", [])),
            first_loss=saved.get("first_loss"), skip=int(saved.get("step_in_epoch", 0)),
            partial=saved.get("partial_sums"), target=target,
        )

    @property
    def target_reached(self) -> bool:
        return self.target is not None and self.target.reached is not None

    def to_checkpoint(self, *, partial_sums: list[float] | None, seed: int, schedule: list) -> dict:
        """What a checkpoint keeps for :meth:`from_checkpoint` (and, for readers, the seed and the schedule so far)."""
        return {
            "partial_sums": partial_sums,
            "first_loss": self.first_loss,
            "history": self.history,
            "seed": seed,
            "data_order": DATA_ORDER,
            "schedule": [dataclasses.asdict(p) for p in schedule],
            "target": self.target.to_checkpoint() if self.target is not None else None,
        }

    def final(self, status: str) -> dict:
        """The run's final numbers: the last epoch's, the best validation accuracy, each monitor's latest."""
        final: dict[str, Any] = {"status": status, "epochs_done": len(self.history)}
        if self.history:
            last = self.history[-1]
            for k in FINAL_KEYS:
                if k in last:
                    final[k] = last[k]
            vals = [h["val_accuracy"] for h in self.history if "val_accuracy" in h]
            if vals:
                final["best_val_accuracy"] = max(vals)
            for k, v in last.items():
                if "/" in k:
                    final[k] = v
            # Latest value of each monitor quantity, even if not measured in the last epoch.
            for h in self.history:
                for k, v in h.items():
                    if "/" in k:
                        final[k] = v
        if self.target is not None:
            final.update(self.target.summary())
        return final
