"""The runs as the screens show them: run directories with what the launcher knows laid over them.

The store reads run files and knows nothing of the launcher; the launcher runs children and builds
no rows. The app combines the two here: a child the app started may not have written its status
yet ("starting"), may have been killed before it could ("crashed", with its exit code and log
tail), or may still wait in the queue with no directory at all. A run whose files cannot be read
stays ``corrupt`` whatever the launcher knows. No Textual and no TensorFlow here.
"""

from __future__ import annotations

import dataclasses

from tfminima.runfiles import CORRUPT
from tui.launcher import Job, Launcher
from tui.store import RunRecord, RunRow, RunStore


def run_state(record: RunRecord, store: RunStore, launcher: Launcher) -> str:
    """The state of a run directory, corrected by what the launcher knows about its child."""
    state = store.state_of(record)
    if state == CORRUPT:  # the files say nothing readable: no child's state stands in for them
        return state
    return launcher.state_override(record.key, record.status, state)


def rows(store: RunStore, launcher: Launcher) -> list[RunRow]:
    """Every run: directories first (sorted by key), then launches that have no status yet."""
    with store.lock:
        records = [record for _, record in sorted(store.records.items())]
        shown = [_directory_row(record, store, launcher) for record in records]
    known = {row.key for row in shown}
    return shown + [launch_row(job, launcher) for job in launcher.without_status() if job.key not in known]


def _directory_row(record: RunRecord, store: RunStore, launcher: Launcher) -> RunRow:
    row = store.row(record)
    crash = "" if row.state == CORRUPT else launcher.crash_message(record.key)
    return dataclasses.replace(row, state=run_state(record, store, launcher), error=crash or row.error)


def launch_row(job: Job, launcher: Launcher) -> RunRow:
    """A launch whose run has no status file: queued, starting, dropped, or dead before writing one."""
    hp = job.hparams
    state = {"queued": "queued", "dropped": "cancelled", "started": "starting"}.get(
        job.state, "cancelled" if job.cancel_requested else "crashed")
    error = "cancelled before it started" if job.state == "dropped" else launcher.crash_message(job.key)
    return RunRow(
        key=job.key, group=job.group.relative_to(launcher.root).as_posix(), run_id=job.run_id,
        state=state, lr=hp.get("lr"), batch_size=hp.get("batch_size"), momentum=hp.get("momentum"),
        eta_over_s=hp.get("eta_over_s"), eta_over_s_momentum=hp.get("eta_over_s_momentum"),
        seed=hp.get("seed"), epochs=job.epochs, error=error,
    )
