"""A stand-in for ``python -m tfminima.worker`` in the TUI's cancel / crash / queue tests.

The job loop is the real one (:class:`tfminima.worker.Worker`: the JSON protocol, cancel of the
current or a waiting run, SIGTERM, each job's output in its log); only ``train`` is replaced: it
writes the run's files epoch by epoch the way the runner does (status.json with this process's
pid, metrics.jsonl, a checkpoint per epoch, summary.json at the end) without TensorFlow. A real
worker costs a TensorFlow start-up (~8 CPU-seconds) before its first step; the app's handling of
cancel, crash and resume does not depend on what trains the run. test_tui_launch keeps real
workers where the worker itself is what is tested (a launch end to end, one worker for a queue,
the worker's own SIGTERM protocol).

Environment: ``TFMINIMA_FAKE_EPOCH_SECONDS`` (default 0.1), the time one epoch takes;
``TFMINIMA_FAKE_START_SECONDS`` (default 0), a start-up before the first job (a real worker's
TensorFlow import takes seconds, during which its runs' files do not change).
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from tfminima import checkpoint as ckpt
from tfminima import config as config_lib
from tfminima import rundir as rd
from tfminima import worker as real
from tfminima.locks import RunBusy, RunLock

EPOCH_SECONDS = float(os.environ.get("TFMINIMA_FAKE_EPOCH_SECONDS", "0.1"))
START_SECONDS = float(os.environ.get("TFMINIMA_FAKE_START_SECONDS", "0"))


class _Variable:  # what checkpoint.save reads of a variable
    def __init__(self, path: str, value: np.ndarray):
        self.path, self.value = path, value

    def numpy(self) -> np.ndarray:
        return self.value


class _Holder:
    def __init__(self, variables: list):
        self.variables = variables


def curve(epoch: int) -> dict[str, float]:
    loss = 2.3 / (1 + epoch)
    return {"loss": loss, "accuracy": 1 - loss / 2.5, "val_loss": loss + 0.1, "val_accuracy": 0.9 - loss / 2.5}


class FakeWorker(real.Worker):
    """The real job loop; epochs are written, not trained."""

    def train(self, job: dict) -> tuple[str, str]:
        run_dir = rd.RunDir(job["run_dir"])
        print(f"$ fake worker (pid {os.getpid()}): {job.get('op')} {run_dir.path}", flush=True)
        try:
            with RunLock(run_dir.path):
                return self._epochs(run_dir, resume=job.get("op") == "resume")
        except RunBusy as err:
            return "busy", str(err)

    def _epochs(self, run_dir: rd.RunDir, resume: bool) -> tuple[str, str]:
        spec = config_lib.load(run_dir.config_path)
        latest = ckpt.latest(run_dir.checkpoints_dir) if resume else None
        done = int(ckpt.read_state(latest)["epochs_done"]) if latest else 0
        if resume:
            run_dir.truncate_events_after(done - 1)
        hparams = run_dir.status().get("hparams") or {}
        run_dir.write_status("running", epochs=spec.epochs, hparams=hparams, error=None)
        steps = math.ceil(spec.dataset.train_size / spec.optimizer.batch_size)
        state = "completed"
        with rd.MetricsWriter(run_dir.metrics_path, run_dir.run_id) as metrics:
            metrics.write("status", None, None, state="running", resumed=resume)
            for epoch in range(done, spec.epochs):
                if self.stop.wait(EPOCH_SECONDS):
                    state = "cancelled"
                    break
                c = curve(epoch)
                metrics.write("train", epoch, steps * (epoch + 1), loss=c["loss"], accuracy=c["accuracy"],
                              steps=steps, seconds=EPOCH_SECONDS)
                metrics.write("eval", epoch, steps * (epoch + 1), split="val", loss=c["val_loss"],
                              accuracy=c["val_accuracy"])
                weights = _Holder([_Variable("dense/kernel", np.full(4, epoch + 1.0, np.float32))])
                ckpt.save(run_dir.checkpoints_dir, epoch + 1, weights, _Holder([]), {})
                run_dir.write_status("running", epochs_done=epoch + 1)
                done = epoch + 1
            final = dict(curve(max(done - 1, 0)), epochs_done=done)
            run_dir.write_summary(dict(final, state=state, hparams=hparams, run_id=run_dir.run_id))
            metrics.write("status", done, None, state=state, error=None)
        run_dir.write_status(state, error=None, epochs_done=done)
        return state, ""


def main() -> int:
    """:func:`tfminima.worker.main` with :class:`FakeWorker`, and its TensorFlow start replaced by a
    sleep of ``TFMINIMA_FAKE_START_SECONDS`` (importing TensorFlow cost every fake worker ~7 CPU-s)."""
    from tfminima import quiet

    quiet.start_tensorflow = lambda: time.sleep(START_SECONDS)
    real.Worker = FakeWorker
    return real.main()


def executable(folder: Path) -> str:
    """A program the launcher can start as its ``python`` (it appends ``-m tfminima.worker``)."""
    path = Path(folder) / "fake-worker-python"
    path.write_text(f"#!/bin/sh\nexec '{sys.executable}' '{Path(__file__).resolve()}'\n")
    path.chmod(0o755)
    return str(path)


if __name__ == "__main__":
    sys.exit(main())
