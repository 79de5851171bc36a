"""A run's record in its run directory: status.json, metrics.jsonl and TensorBoard, checkpoints, summary.json.

The runner makes one :class:`RunRecorder` per run and hands it to the trainer. The runner records
the run's start and end with it; the trainer restores from it (every worker reads the checkpoint)
and, on the chief, logs epochs, checkpoints and reports progress through it. Only the chief writes:
a worker's recorder is never begun, so it has no metrics writer.
"""

from __future__ import annotations

from collections.abc import Sequence

from tfminima import checkpoint as ckpt
from tfminima import rundir as rd
from tfminima import runfiles
from tfminima.callbacks import RunLogger
from tfminima.distribute import DistributionError, agree, is_multi_worker


class RunRecorder:
    """Record one run into ``run_dir``; ``resume`` continues from its latest checkpoint."""

    def __init__(self, run_dir: rd.RunDir, hparams: dict | None = None, *, resume: bool = False):
        self.run_dir = run_dir
        self.hparams = hparams or {}
        self.resume = resume
        self.metrics: rd.MetricsWriter | None = None

    # ------------------------------------------------------------------------------ the run's start
    def begin(self, epochs: int) -> None:
        """Mark the run running and open metrics.jsonl; a resume first drops the events logged after
        its checkpoint, so the log matches the checkpoint (no epoch twice), and rewrites a log of the
        old epoch numbering in epochs completed. The first event says how epochs are counted
        (:class:`tfminima.runfiles.EpochNumbering`)."""
        if self.resume:
            self.run_dir.truncate_events_after(self.checkpoint_epoch())
        self.run_dir.write_status("running", epochs=epochs, hparams=self.hparams, error=None)
        self.metrics = rd.MetricsWriter(self.run_dir.metrics_path, self.run_dir.run_id)
        self.metrics.write("status", None, None, state="running", resumed=bool(self.resume),
                           **runfiles.epoch_marker())

    def started(self, distribution: dict) -> None:
        """The trainer is built: its distribution into status.json, the hparams into TensorBoard."""
        from tfminima import tblog

        self.run_dir.write_status("running", distribution=distribution)
        tblog.write_run_hparams(self.run_dir.tb_dir, self.hparams)

    def checkpoint_epoch(self) -> int:
        """Epochs done by the latest checkpoint (0 if none)."""
        path = ckpt.latest(self.run_dir.checkpoints_dir)
        return int(ckpt.read_state(path)["epochs_done"]) if path else 0

    # ------------------------------------------------------------------------------ during training
    def logger(self, monitors: Sequence) -> RunLogger | None:
        """The callback that logs every epoch to metrics.jsonl and TensorBoard (None unless begun)."""
        if self.metrics is None:
            return None
        return RunLogger(self.metrics, self.run_dir.tb_dir, monitors)

    def restore(self, model, optimizer, strategy) -> tuple[int, dict]:
        """Load the latest checkpoint into ``model`` and ``optimizer`` when resuming: (epochs done, state).

        Multi-worker: every worker reads the checkpoint the chief reads, or none starts.
        """
        if not self.resume:
            return 0, {}
        path = ckpt.latest(self.run_dir.checkpoints_dir)
        if is_multi_worker(strategy):
            mine = [0, 0, 0] if path is None else [1, *ckpt.position(path)]
            chief, same = agree(strategy, mine)
            if not same:
                raise DistributionError(
                    f"workers disagree on the checkpoint to resume: the chief has {ckpt.describe_position(chief)}, "
                    f"this worker {ckpt.describe_position(mine)} in {self.run_dir.checkpoints_dir}; put the runs "
                    "directory on a file system every worker mounts at the same path"
                )
        if path is None:
            return 0, {}
        with strategy.scope():
            state = ckpt.restore(path, model, optimizer)
        return int(state["epochs_done"]), state

    def save(self, epochs_done: int, model, optimizer, state: dict, step: int = 0) -> None:
        """Checkpoint after ``epochs_done`` epochs (and ``step`` steps into the next one)."""
        ckpt.save(self.run_dir.checkpoints_dir, epochs_done, model, optimizer, state, step=step)

    def progress(self, epochs_done: int) -> None:
        """Epochs done so far, for readers of status.json while the run goes on."""
        self.run_dir.write_status("running", epochs_done=epochs_done)

    # ------------------------------------------------------------------------------ the run's end
    def finish(self, state: str, final: dict, error: str = "", trace: str | None = None) -> list[str]:
        """Record the run's end: summary.json, the last status event, status.json.

        Best effort when the disk refuses: every step is tried; returns what could not be recorded.
        """
        run_dir, metrics = self.run_dir, self.metrics
        summary = dict(final, state=state, hparams=self.hparams, run_id=run_dir.run_id)
        if error:
            summary["error"] = error
        fields = {"error": error or None, "epochs_done": final.get("epochs_done", run_dir.status().get("epochs_done"))}
        if trace:
            fields["traceback"] = trace
        steps = [
            lambda: run_dir.write_summary(summary),
            lambda: metrics is not None and metrics.write("status", final.get("epochs_done"), None, state=state,
                                                          error=error or None),
            lambda: metrics is not None and metrics.close(),
            lambda: run_dir.write_status(state, **fields),
        ]
        problems = []
        for step in steps:
            try:
                step()
            except OSError as err:
                problems.append(f"{run_dir.path}: could not record the final state {state!r}: {err}")
        return problems
