"""Train to a target (``until:``): when to check, what to measure, and what reaching it cost.

The trainer's loop asks a :class:`Target` two things: whether a check is due after a step (every
``every_steps`` optimizer steps of the run, counted from its first step) and, at a check or an epoch
end, whether the metric has reached its value. Both kinds of check measure the same thing, so a
run's stopping point does not depend on where the check fell:

- ``train_loss`` / ``train_accuracy``: one inference-mode evaluation of a fixed training subset
  (``train_examples`` drawn with ``subset_seed``; default the whole training set). Not the running
  mean of the epoch's steps: that mixes weights of a whole epoch, and at S = N/2 it would be two
  points, so steps-to-target would measure the averaging window instead of the training.
- ``val_loss`` / ``val_accuracy``: the validation split (at an epoch end, the evaluation the
  trainer makes anyway).

The counts kept across epochs (steps and examples of the finished epochs, the result once reached)
go into every checkpoint (:meth:`to_checkpoint`), so a run killed and resumed stops at the same
step as an uninterrupted one. Examples count the real batches (a batch-size schedule's sizes, a
short last batch, SVAG's two halves).
"""

from __future__ import annotations

import dataclasses

from tfminima.monitors.subset import fixed_subset

__all__ = ["Target", "TargetReached"]


@dataclasses.dataclass(frozen=True)
class TargetReached:
    """Where the target was reached: 1-based fractional epochs (completed epochs + steps/steps_per_epoch)."""

    steps: int
    epochs: float
    examples: int
    measured: float


class Target:
    """The ``until`` section of a run (:class:`tfminima.config_schema.UntilSpec`) during its fit.

    ``evaluate(x, y)`` returns (loss, accuracy) in inference mode; ``splits`` are the run's arrays;
    ``saved`` is what a checkpoint kept (:meth:`to_checkpoint`), empty for a fresh run.
    """

    def __init__(self, until, evaluate, splits, saved: dict | None = None):
        self.until = until
        self.metric = until.metric
        self.value = float(until.value)
        self.every = until.every_steps
        self._evaluate = evaluate
        self.higher_is_better = self.metric.endswith("_accuracy")
        if self.metric.startswith("val_"):
            self.data = (splits.x_val, splits.y_val)
        elif until.train_examples is None or until.train_examples >= len(splits.x_train):
            self.data = (splits.x_train, splits.y_train)
        else:
            idx = fixed_subset(len(splits.x_train), until.train_examples, until.subset_seed)
            self.data = (splits.x_train[idx], splits.y_train[idx])
        saved = saved or {}
        self.steps_before = int(saved.get("steps_before", 0))  # steps of the finished epochs
        self.examples_before = int(saved.get("examples_before", 0))
        self.last_measured: float | None = saved.get("last_measured")
        reached = saved.get("reached")
        self.reached: TargetReached | None = TargetReached(**reached) if reached else None

    # ------------------------------------------------------------------------------ checks
    def due(self, steps_in_epoch: int) -> bool:
        """A check inside the epoch after ``steps_in_epoch`` of its steps (the run's step count % every_steps)."""
        return self.every is not None and (self.steps_before + steps_in_epoch) % self.every == 0

    def measure(self) -> float:
        """The metric now: one evaluation of the training subset or the validation split."""
        loss, accuracy = self._evaluate(*self.data)
        return accuracy if self.higher_is_better else loss

    def met(self, measured: float) -> bool:
        return measured >= self.value if self.higher_is_better else measured <= self.value

    def check(self, measured: float, *, epoch: int, steps_in_epoch: int, steps_per_epoch: int,
              examples_in_epoch: float) -> bool:
        """Record ``measured`` after ``steps_in_epoch`` steps of epoch ``epoch`` (0-based); True once reached."""
        self.last_measured = float(measured)
        if self.reached is None and self.met(measured):
            self.reached = TargetReached(
                steps=self.steps_before + steps_in_epoch,
                epochs=epoch + steps_in_epoch / max(steps_per_epoch, 1),
                examples=self.examples_before + int(round(examples_in_epoch)),
                measured=float(measured),
            )
        return self.reached is not None

    def end_epoch(self, steps: int, examples: float) -> None:
        """Count a finished epoch (its steps and examples, all of it, resumed part included)."""
        self.steps_before += int(steps)
        self.examples_before += int(round(examples))

    # ------------------------------------------------------------------------------ records
    def to_checkpoint(self) -> dict:
        return {
            "steps_before": self.steps_before,
            "examples_before": self.examples_before,
            "last_measured": self.last_measured,
            "reached": dataclasses.asdict(self.reached) if self.reached else None,
        }

    def event(self) -> dict:
        """The ``target`` event of metrics.jsonl: the target, whether and where it was reached."""
        out = {"metric": self.metric, "value": self.value, "reached": self.reached is not None,
               "measured": self.reached.measured if self.reached else self.last_measured}
        if self.reached:
            out.update(steps_to_target=self.reached.steps, epochs_to_target=self.reached.epochs,
                       examples_to_target=self.reached.examples)
        return out

    def summary(self) -> dict:
        """The fields summary.json gets: ``target_reached`` and, when reached, the steps, epochs, examples."""
        r = self.reached
        return {
            "target_metric": self.metric, "target_value": self.value, "target_reached": r is not None,
            "target_measured": r.measured if r else self.last_measured,
            "steps_to_target": r.steps if r else None,
            "epochs_to_target": r.epochs if r else None,
            "examples_to_target": r.examples if r else None,
        }

