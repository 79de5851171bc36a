"""Start, queue, cancel and resume ``tfminima run`` subprocesses: one per run, own process group.

Each run is ``tfminima run EXP.yaml --out ROOT --group GROUP --only RUN_ID --quiet`` started with
``start_new_session=True`` (so SIGTERM to its group reaches every process it made, and quitting the
app leaves it running), stdout and stderr going to ``GROUP/RUN_ID.log``. At most ``max_parallel``
children run at once; the rest wait in a queue that :meth:`Launcher.tick` drains. A child that
exits without writing a final status is reported as ``crashed`` with its exit code and log tail.

What the app uses: queue work (:meth:`~Launcher.launch`, :meth:`~Launcher.resume`,
:meth:`~Launcher.rerun`), drive it (:meth:`~Launcher.tick` from the app's poll loop), stop it
(:meth:`~Launcher.cancel`, :meth:`~Launcher.cancel_all`) and ask what it knows that the run files
do not say yet (:meth:`~Launcher.state_override`, :meth:`~Launcher.crash_message`,
:meth:`~Launcher.without_status`). It never reads the app's store nor builds its rows.
No Textual and no TensorFlow here.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from tfminima import config as config_lib
from tfminima import rundir, safe_io
from tfminima import sweep as sweep_lib


def new_group_dir(root: Path, name: str) -> Path:
    """``root/name``, else ``root/name-2``, ... (atomic mkdir, like the CLI's own groups)."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(1, 10_000):
        path = root / (name if i == 1 else f"{name}-{i}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"no free group folder under {root} for {name!r}")


def log_tail(path: Path, lines: int = 12) -> str:
    try:  # the end of a regular file only: a FIFO or /dev/zero in its place must not hang the app
        text = safe_io.read_tail(path, 1 << 16).decode(errors="replace")
    except safe_io.FileProblem:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


@dataclasses.dataclass
class Job:
    """One subprocess the app started (or will start once a slot is free)."""

    key: str  # group/run_id, relative to the runs root: the run directory it will write
    run_id: str
    group: Path
    argv: list[str]
    log_path: Path
    hparams: dict = dataclasses.field(default_factory=dict)
    epochs: int | None = None
    proc: subprocess.Popen | None = None
    state: str = "queued"  # queued | started | exited | dropped
    returncode: int | None = None
    crashed: bool = False  # exited without a final status
    cancel_requested: bool = False
    status_stamp: float | None = None  # status.json's "updated" when the child started

    @property
    def alive(self) -> bool:
        return self.state == "started"


class Launcher:
    """The app's children: a queue, a concurrency limit, SIGTERM to cancel, exit bookkeeping."""

    def __init__(self, root: str | Path, max_parallel: int = 2, python: str = sys.executable,
                 env: dict[str, str] | None = None):
        self.root = Path(root)
        self.max_parallel = max(1, int(max_parallel))
        self.python = python
        self.env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **(env or {}))
        self.jobs: dict[str, Job] = {}
        self.lock = threading.RLock()

    # building jobs ---------------------------------------------------------------------
    def launch(self, spec: config_lib.ExperimentSpec, group_name: str | None = None,
               only: list[str] | None = None) -> list[Job]:
        """Queue every run of ``spec`` (or those in ``only``) in a new group folder."""
        plans = sweep_lib.expand(spec)
        if only:
            plans = [p for p in plans if p.run_id in set(only)]
        group = new_group_dir(self.root, group_name or spec.name)
        experiment = group / "experiment.yaml"
        rundir.atomic_write_text(experiment, config_lib.to_yaml(spec))
        jobs = []
        for plan in plans:
            argv = [self.python, "-m", "tfminima.cli", "run", str(experiment), "--out", str(self.root),
                    "--group", str(group), "--only", plan.run_id, "--quiet"]
            jobs.append(self._queue(group, plan.run_id, argv, plan.hparams(), plan.spec.epochs))
        return jobs

    def resume(self, run_dir: rundir.RunDir) -> Job:
        """Queue ``tfminima run --resume RUN_DIR``: continue from the last checkpoint."""
        argv = [self.python, "-m", "tfminima.cli", "run", "--resume", str(run_dir.path), "--quiet"]
        status = run_dir.status()
        return self._queue(run_dir.path.parent, run_dir.run_id, argv, status.get("hparams") or {},
                           status.get("epochs"))

    def rerun(self, run_dir: rundir.RunDir) -> list[Job]:
        """Run the stored config of ``run_dir`` again, from scratch, in a new group folder."""
        spec = config_lib.load(run_dir.config_path)
        return self.launch(spec, group_name=f"{run_dir.path.parent.name}-rerun")

    def _queue(self, group: Path, run_id: str, argv: list[str], hparams: dict, epochs: int | None) -> Job:
        key = (group / run_id).relative_to(self.root).as_posix()
        job = Job(key, run_id, group, argv, group / f"{run_id}.log", dict(hparams), epochs)
        with self.lock:
            old = self.jobs.get(key)
            if old is not None and old.alive:
                raise RuntimeError(f"{key} is already running")
            self.jobs[key] = job
        return job

    # running ---------------------------------------------------------------------------
    def tick(self) -> bool:
        """Reap finished children and start queued ones while slots are free."""
        changed = False
        with self.lock:
            for job in self.jobs.values():
                if job.alive and job.proc.poll() is not None:
                    job.state, job.returncode = "exited", job.proc.returncode
                    state = rundir.RunDir(self.root / job.key).status().get("state")
                    job.crashed = state not in rundir.FINAL_STATES
                    changed = True
            running = sum(1 for j in self.jobs.values() if j.alive)
            for job in self.jobs.values():
                if running >= self.max_parallel:
                    break
                if job.state == "queued":
                    self._start(job)
                    running += 1
                    changed = True
        return changed

    def _start(self, job: Job) -> None:
        job.group.mkdir(parents=True, exist_ok=True)
        job.status_stamp = rundir.RunDir(self.root / job.key).status().get("updated")
        with open(job.log_path, "ab") as log:
            log.write(("$ " + " ".join(job.argv) + "\n").encode())
            log.flush()
            job.proc = subprocess.Popen(
                job.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env=self.env, cwd=os.getcwd(),
            )
        job.state = "started"

    def cancel(self, key: str, status: dict | None = None) -> str:
        """Cancel a run: drop it from the queue, or SIGTERM its process group. Returns what happened."""
        with self.lock:
            job = self.jobs.get(key)
            if job is not None and job.state == "queued":
                job.state = "dropped"
                return "removed from the queue"
            if job is not None and job.alive:
                job.cancel_requested = True
                _terminate(job.proc.pid, group=True)
                return f"SIGTERM sent to process group {job.proc.pid}"
        pid = (status or {}).get("pid")
        if (status or {}).get("state") == "running" and rundir.pid_alive(pid):
            # A run this app did not start (the CLI, or an earlier session of the app).
            _terminate(int(pid), group=_is_group_leader(int(pid)))
            return f"SIGTERM sent to process {pid}"
        return "not running"

    def cancel_all(self) -> int:
        """SIGTERM every child and empty the queue (quitting with "cancel runs")."""
        n = 0
        with self.lock:
            for job in self.jobs.values():
                if job.state == "queued":
                    job.state = "dropped"
                elif job.alive:
                    job.cancel_requested = True
                    _terminate(job.proc.pid, group=True)
                    n += 1
        return n

    def set_max_parallel(self, n: int) -> int:
        with self.lock:
            self.max_parallel = max(1, int(n))
            return self.max_parallel

    # views -----------------------------------------------------------------------------
    def counts(self) -> tuple[int, int]:
        """(running children, queued launches)."""
        with self.lock:
            return (sum(1 for j in self.jobs.values() if j.alive),
                    sum(1 for j in self.jobs.values() if j.state == "queued"))

    def job(self, key: str) -> Job | None:
        with self.lock:
            return self.jobs.get(key)

    def state_override(self, key: str, status: dict, state: str) -> str:
        """What to show instead of the status file's state, if the launcher knows better."""
        job = self.job(key)
        if job is None:
            return state
        if job.state == "queued":
            return "queued"
        if job.alive and (state == "pending" or status.get("updated") == job.status_stamp):
            return "starting"  # the child has not written its ``running`` status yet
        if job.state == "exited" and job.crashed:
            # SIGTERM before the child installed its handler (still importing): no status written
            return "cancelled" if job.cancel_requested else "crashed"
        return state

    def crash_message(self, key: str) -> str:
        job = self.job(key)
        if job is None or not job.crashed:
            return ""
        code = job.returncode
        how = f"killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
        tail = log_tail(job.log_path)
        what = "cancelled before it could record a status" if job.cancel_requested else "left no final status"
        return f"process {job.proc.pid} {how}: {what} (log: {job.log_path.name})" + (f"\n{tail}" if tail else "")

    def without_status(self) -> list[Job]:
        """Copies of the launches whose run has written no status yet (the store cannot see them)."""
        with self.lock:
            return [dataclasses.replace(job) for job in self.jobs.values()
                    if not (self.root / job.key / "status.json").exists()]


def _is_group_leader(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except OSError:
        return False


def _terminate(pid: int, group: bool) -> None:
    try:
        if group:
            os.killpg(pid, signal.SIGTERM)
        else:
            os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
