"""Start, queue and cancel runs on a pool of ``python -m tfminima.worker`` processes.

A worker imports TensorFlow once and trains the runs it is given one after another
(:mod:`tfminima.worker`), so a sweep pays the 7–8 s start-up once a worker instead of once a run.
:meth:`Launcher.launch` makes the group folder and every run directory at once (config and a
``pending`` status, no TensorFlow), so a run cancelled while it waits in the queue is recorded
``cancelled``, stays resumable and survives a restart of the app. At most ``max_parallel``
workers live at once, each in its own process group (quitting the app leaves them running), and
each holds one job at a time: the queue stays here, where cancel can take a run out of it.
A run's output goes to ``GROUP/RUN_ID.log``. Cancelling a started run asks its worker to stop it
at the next step (checkpoint, ``cancelled``), and the worker goes on with the next job; a second
cancel SIGTERMs the worker. A worker that dies takes only its current run with it (``crashed``,
with its exit code and log tail) and the next queued run gets a new worker.

What the app uses: queue work (:meth:`~Launcher.launch`, :meth:`~Launcher.resume`,
:meth:`~Launcher.rerun`), drive it (:meth:`~Launcher.tick` from the app's poll loop), stop it
(:meth:`~Launcher.cancel`, :meth:`~Launcher.cancel_all`, :meth:`~Launcher.drop_queued`) and ask
what it knows that the run files do not say yet (:meth:`~Launcher.state_override`,
:meth:`~Launcher.crash_message`, :meth:`~Launcher.without_status`). It never reads the app's
store nor builds its rows. No Textual and no TensorFlow here.
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

from tfminima import config as config_lib
from tfminima import rundir, safe_io
from tfminima import sweep as sweep_lib
from tfminima.worker import cancel_unstarted

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


def device_key(spec: config_lib.ExperimentSpec | None, unique: str) -> tuple:
    """Runs that may share a worker: TensorFlow fixes the logical CPUs once, at its start."""
    if spec is None:
        return ("cpu", 1)
    dist = spec.distribution
    if dist.strategy == "multi_worker":
        return ("multi_worker", unique)  # a cluster of its own: never shared
    return ("cpu", dist.cpu_replicas)


@dataclasses.dataclass
class Job:
    """One run the app asked for: queued here until a worker takes it."""

    key: str  # group/run_id, relative to the runs root: the run directory it writes
    run_id: str
    group: Path
    op: str  # run | resume
    log_path: Path
    device: tuple = ("cpu", 1)
    hparams: dict = dataclasses.field(default_factory=dict)
    epochs: int | None = None
    state: str = "queued"  # queued | started | exited | dropped
    worker_pid: int | None = None
    outcome: str | None = None  # the final state its worker reported
    error: str = ""
    returncode: int | None = None  # of a worker that died during this job
    crashed: bool = False  # its worker died and the run has no final status
    cancel_requested: bool = False
    status_stamp: float | None = None  # status.json's "updated" when a worker took it

    @property
    def alive(self) -> bool:
        return self.state == "started"


class WorkerProcess:
    """One ``python -m tfminima.worker`` child, its reply reader, and the job it holds."""

    def __init__(self, argv: list[str], device: tuple, log_path: Path, env: dict, cwd: str):
        try:  # its start-up output goes to its first run's log: a regular file, never a FIFO to wait on
            log = safe_io.open_for_writing(log_path, append=True)
        except OSError:
            log = subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, start_new_session=True,
                env=env, cwd=cwd, text=True, bufsize=1,
            )
        finally:
            if log != subprocess.DEVNULL:
                os.close(log)
        self.device = device
        self.job: Job | None = None
        self.closing = False
        self.replies: queue.Queue = queue.Queue()
        self.reader = threading.Thread(target=self._read, name=f"worker-{self.pid}-replies", daemon=True)
        self.reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                self.replies.put(json.loads(line))
            except ValueError:
                continue

    def send(self, message: dict) -> bool:
        try:
            self.proc.stdin.write(json.dumps(message) + "\n")
            self.proc.stdin.flush()
            return True
        except (OSError, ValueError):  # it died (BrokenPipe) or was closed
            return False

    def close(self) -> None:
        """No more jobs: it exits once its current one is done."""
        self.closing = True
        try:
            self.proc.stdin.close()
        except OSError:
            pass

    def terminate(self) -> None:
        """SIGTERM: it stops its current run at the next step (``cancelled``) and exits."""
        _terminate(self.pid, group=True)


class Launcher:
    """The app's runs: a queue, a pool of at most ``max_parallel`` workers, cancel, exit bookkeeping."""

    def __init__(self, root: str | Path, max_parallel: int = 2, python: str = sys.executable,
                 env: dict[str, str] | None = None):
        self.root = Path(root)
        self.max_parallel = max(1, int(max_parallel))
        self.python = python
        self.env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **(env or {}))
        self.jobs: dict[str, Job] = {}
        self.workers: list[WorkerProcess] = []
        self.sweep_hparams: dict[Path, list[dict]] = {}  # group -> HParams of its sweep, not yet written
        self.lock = threading.RLock()

    # building jobs ---------------------------------------------------------------------
    def launch(self, spec: config_lib.ExperimentSpec, group_name: str | None = None,
               only: list[str] | None = None) -> list[Job]:
        """Queue every run of ``spec`` (or those in ``only``) in a new group folder, whose run
        directories are made now (``pending``)."""
        all_plans = sweep_lib.expand(spec)
        plans = [p for p in all_plans if p.run_id in set(only)] if only else all_plans
        group = new_group_dir(self.root, group_name or spec.name)
        rundir.atomic_write_text(group / "experiment.yaml", config_lib.to_yaml(spec))
        jobs = []
        for plan in plans:
            rundir.create(self.root, group.relative_to(self.root).as_posix(), plan.run_id,
                          config_lib.to_yaml(plan.spec), plan.hparams())
            jobs.append(self._queue(group, plan.run_id, "run", device_key(plan.spec, plan.run_id),
                                    plan.hparams(), plan.spec.epochs))
        with self.lock:
            self.sweep_hparams[group] = [p.hparams() for p in all_plans]
        return jobs

    def resume(self, run_dir: rundir.RunDir) -> Job:
        """Queue a resume of ``run_dir``: from its last checkpoint, or from scratch if it has none."""
        status = run_dir.status()
        try:
            spec = config_lib.load(run_dir.config_path)
        except (OSError, config_lib.ConfigError):
            spec = None  # the worker reports why, in the run's log and status
        return self._queue(run_dir.path.parent, run_dir.run_id, "resume", device_key(spec, run_dir.run_id),
                           status.get("hparams") or {}, status.get("epochs"))

    def rerun(self, run_dir: rundir.RunDir) -> list[Job]:
        """Run the stored config of ``run_dir`` again, from scratch, in a new group folder."""
        spec = config_lib.load(run_dir.config_path)
        return self.launch(spec, group_name=f"{run_dir.path.parent.name}-rerun")

    def _queue(self, group: Path, run_id: str, op: str, device: tuple, hparams: dict, epochs: int | None) -> Job:
        key = (group / run_id).relative_to(self.root).as_posix()
        job = Job(key, run_id, group, op, group / f"{run_id}.log", device, dict(hparams), epochs)
        with self.lock:
            old = self.jobs.get(key)
            if old is not None and old.state in ("queued", "started"):
                raise RuntimeError(f"{key} is already {old.state}")
            self.jobs[key] = job
        return job

    # running ---------------------------------------------------------------------------
    def tick(self) -> bool:
        """Read the workers' replies, reap dead workers, hand queued runs to free workers."""
        with self.lock:
            changed = self._read_replies()
            changed |= self._reap()
            changed |= self._dispatch()
            self._close_idle()
        return changed

    def _read_replies(self) -> bool:
        changed = False
        for worker in self.workers:
            while True:
                try:
                    reply = worker.replies.get_nowait()
                except queue.Empty:
                    break
                job = worker.job
                if job is None or reply.get("run_dir") != str(self.root / job.key):
                    continue
                if reply.get("event") == "ended":
                    job.state, job.outcome, job.error = "exited", reply.get("state"), reply.get("error") or ""
                    worker.job = None
                changed = True
        return changed

    def _reap(self) -> bool:
        changed = False
        for worker in [w for w in self.workers if w.proc.poll() is not None]:
            worker.reader.join(timeout=1.0)  # its last replies (an "ended" before a clean exit)
            self._read_replies()
            job = worker.job
            if job is not None:
                state = rundir.RunDir(self.root / job.key).status().get("state")
                job.state, job.returncode = "exited", worker.proc.returncode
                job.crashed = state not in rundir.FINAL_STATES
            self.workers.remove(worker)
            changed = True
        return changed

    def _dispatch(self) -> bool:
        changed = False
        for job in [j for j in self.jobs.values() if j.state == "queued"]:
            if sum(1 for w in self.workers if w.job is not None) >= self.max_parallel:
                break
            worker = next((w for w in self.workers if w.job is None and not w.closing and w.device == job.device),
                          None)
            if worker is None:
                if len(self.workers) >= self.max_parallel:
                    for idle in [w for w in self.workers if w.job is None and not w.closing]:
                        idle.close()  # made for other runs' devices: make room
                    continue
                worker = self._spawn(job)
            changed |= self._give(worker, job)
        return changed

    def _spawn(self, job: Job) -> WorkerProcess:
        job.group.mkdir(parents=True, exist_ok=True)
        worker = WorkerProcess([self.python, "-m", "tfminima.worker"], job.device, job.log_path, self.env,
                               os.getcwd())
        self.workers.append(worker)
        return worker

    def _give(self, worker: WorkerProcess, job: Job) -> bool:
        path = self.root / job.key
        message = {"op": job.op, "run_dir": str(path), "log": str(job.log_path)}
        hparams = self.sweep_hparams.get(job.group) if job.op == "run" else None
        if hparams:
            message["sweep_hparams"] = hparams
        job.status_stamp = rundir.RunDir(path).status().get("updated")
        if not worker.send(message):
            return False  # it died: reaped at the next tick, the job stays queued
        if hparams:
            del self.sweep_hparams[job.group]  # one worker writes the group's HParams config
        job.state, job.worker_pid, worker.job = "started", worker.pid, job
        return True

    def _close_idle(self) -> None:
        """Workers with nothing to do exit (a new worker costs one TensorFlow start-up later)."""
        wanted = {j.device for j in self.jobs.values() if j.state == "queued"}
        busy = sum(1 for w in self.workers if w.job is not None)
        for worker in self.workers:
            if worker.job is None and not worker.closing and (worker.device not in wanted or busy >= self.max_parallel):
                worker.close()

    def cancel(self, key: str, status: dict | None = None) -> str:
        """Cancel a run: take it out of the queue (recorded ``cancelled``), or ask its worker to
        stop it at the next step (a second cancel SIGTERMs the worker). Returns what happened."""
        with self.lock:
            job = self.jobs.get(key)
            if job is not None and job.state == "queued":
                self._drop(job)
                return "removed from the queue (recorded cancelled, resumable)"
            if job is not None and job.alive:
                worker = next((w for w in self.workers if w.job is job), None)
                if worker is not None:
                    if job.cancel_requested:
                        worker.terminate()
                        return f"SIGTERM sent to worker {worker.pid}"
                    job.cancel_requested = True
                    worker.send({"op": "cancel", "run_dir": str(self.root / key)})
                    return f"worker {worker.pid} stops it at the next step"
        pid = (status or {}).get("pid")
        if (status or {}).get("state") == "running" and rundir.pid_alive(pid):
            # A run this app did not start (the CLI, or a worker of an earlier session of the app).
            _terminate(int(pid), group=_is_group_leader(int(pid)))
            return f"SIGTERM sent to process {pid}"
        return "not running"

    def _drop(self, job: Job) -> None:
        job.state = "dropped"
        try:
            cancel_unstarted(rundir.RunDir(self.root / job.key))
        except OSError:
            pass  # shown as cancelled by the launcher's override anyway

    def drop_queued(self) -> int:
        """Record every queued run ``cancelled`` (quitting: they will not start); returns how many."""
        with self.lock:
            queued = [j for j in self.jobs.values() if j.state == "queued"]
            for job in queued:
                self._drop(job)
            return len(queued)

    def cancel_all(self) -> int:
        """Empty the queue and SIGTERM every worker (quitting with "cancel runs"); returns the
        number of runs that were training."""
        with self.lock:
            self.drop_queued()
            n = 0
            for worker in self.workers:
                if worker.job is not None:
                    worker.job.cancel_requested = True
                    n += 1
                worker.terminate()
        return n

    def set_max_parallel(self, n: int) -> int:
        with self.lock:
            self.max_parallel = max(1, int(n))
            return self.max_parallel

    # views -----------------------------------------------------------------------------
    def counts(self) -> tuple[int, int]:
        """(runs training, runs queued)."""
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
            return "starting"  # its worker has not begun it yet (still importing TensorFlow)
        if job.state == "exited" and job.crashed:
            return "cancelled" if job.cancel_requested and state == "pending" else "crashed"
        return state

    def crash_message(self, key: str) -> str:
        job = self.job(key)
        if job is None or not job.crashed:
            return ""
        code = job.returncode
        how = f"killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
        tail = log_tail(job.log_path)
        return (f"worker process {job.worker_pid} {how} during this run, which left no final status "
                f"(log: {job.log_path.name})" + (f"\n{tail}" if tail else ""))

    def without_status(self) -> list[Job]:
        """Copies of the jobs whose run has no status file (the store cannot see them)."""
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
