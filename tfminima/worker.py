"""``python -m tfminima.worker``: one process that imports TensorFlow once and trains runs one by one.

The TUI used to start one ``tfminima run`` process per run, and each spent 7–8 s importing
TensorFlow before its first step; a worker pays that once for every run it trains. It reads jobs
as JSON lines on stdin and answers with JSON lines on the stdout it was started with:

    in   {"op": "run", "run_dir": "...", "log": ".../run-id.log", "sweep_hparams": [...]?}
         {"op": "resume", "run_dir": "...", "log": "..."}
         {"op": "cancel", "run_dir": "..."}            stop that run (current or waiting)
    out  {"event": "started", "run_dir": "...", "pid": N}
         {"event": "ended", "run_dir": "...", "state": "completed" | ..., "error": "..."}

A ``run`` job trains a run directory that already exists (config.yaml and a ``pending`` status,
made by :func:`tfminima.rundir.create`); ``resume`` continues one from its last checkpoint (a run
with none starts over). Each job's stdout and stderr (file descriptors 1 and 2, so TensorFlow's
own C++ output too) go to the job's log file. ``cancel`` stops the run at the next step boundary,
which checkpoints and records ``cancelled`` (a job not started yet is recorded ``cancelled`` at
once); the worker then takes the next job. SIGTERM stops the current run the same way and ends
the worker, as does the end of stdin once the current job is done. A worker that dies leaves its
current run ``running`` with a dead pid, which every reader shows as ``crashed``; its other runs
are untouched.

All jobs of one worker share its device setup (logical CPUs are fixed once TensorFlow starts):
the launcher gives a worker only runs with the same ``distribution.cpu_replicas``.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import sys
import threading
import traceback

from tfminima import config as config_lib
from tfminima import rundir as rd
from tfminima import safe_io


class Worker:
    """The job loop: a stdin reader thread feeds a queue; the main thread trains."""

    def __init__(self, stdin, reply_fd: int):
        self.stdin = stdin
        self.reply_fd = reply_fd
        self.jobs: queue.Queue = queue.Queue()
        self.stop = threading.Event()  # the current run's stop request (the trainer polls it)
        self.exiting = threading.Event()  # SIGTERM: stop the current run, then leave
        self.lock = threading.Lock()
        self.current: str | None = None
        self.cancelled: set[str] = set()
        self.prepared: tuple | None = None

    # protocol --------------------------------------------------------------------------
    def reply(self, **message) -> None:
        line = (json.dumps(message) + "\n").encode()
        try:
            os.write(self.reply_fd, line)
        except OSError:  # the app is gone (quit, leaving its runs to finish): nobody to tell
            pass

    def read_stdin(self) -> None:
        """Reader thread: queue jobs, act on cancels at once; ``None`` marks the end of stdin."""
        for line in self.stdin:
            try:
                message = json.loads(line)
            except ValueError:
                print(f"tfminima.worker: ignored a line that is not JSON: {line!r}", file=sys.stderr, flush=True)
                continue
            if message.get("op") == "cancel":
                self.cancel(str(message.get("run_dir")))
            else:
                self.jobs.put(message)
        self.jobs.put(None)

    def cancel(self, run_dir: str) -> None:
        with self.lock:
            if run_dir == self.current:
                self.stop.set()
            else:
                self.cancelled.add(run_dir)

    def on_sigterm(self, signum, frame) -> None:
        self.exiting.set()
        self.stop.set()

    # the loop --------------------------------------------------------------------------
    def serve(self) -> int:
        threading.Thread(target=self.read_stdin, name="worker-stdin", daemon=True).start()
        while True:
            job = self.next_job()
            if job is None:
                return 0
            run_dir = str(job.get("run_dir"))
            with self.lock:
                self.stop.clear()  # first: a SIGTERM from here on stops this run, or skips it
                skip = run_dir in self.cancelled or self.exiting.is_set()
                self.cancelled.discard(run_dir)
                self.current = None if skip else run_dir
            if skip:
                self.reply(event="ended", run_dir=run_dir, **cancel_unstarted(rd.RunDir(run_dir)))
                continue
            self.reply(event="started", run_dir=run_dir, pid=os.getpid())
            with redirected(job.get("log")):
                state, error = self.train(job)
            with self.lock:
                self.current = None
            self.reply(event="ended", run_dir=run_dir, state=state, error=error)

    def next_job(self) -> dict | None:
        """The next job; ``None`` at the end of stdin, or after SIGTERM once the waiting jobs
        (if any) are recorded ``cancelled``."""
        while True:
            try:
                return self.jobs.get(timeout=0.2 if not self.exiting.is_set() else 0)
            except queue.Empty:
                if self.exiting.is_set():
                    return None

    def train(self, job: dict) -> tuple[str, str]:
        """One job, in the job's log; returns (final state, error). A failure never ends the worker."""
        from tfminima import runner
        from tfminima.locks import RunBusy

        run_dir = rd.RunDir(job["run_dir"])
        print(f"$ tfminima.worker (pid {os.getpid()}): {job.get('op')} {run_dir.path}", flush=True)
        try:
            spec = config_lib.load(run_dir.config_path)
            self.prepare(spec.distribution)
            if job.get("sweep_hparams"):
                from tfminima import tblog

                tblog.write_sweep_hparams_config(run_dir.path.parent, job["sweep_hparams"])
            if job.get("op") == "resume":
                outcome = runner.resume_run(run_dir, spec, stop_event=self.stop)
            else:
                outcome = runner.train_run(run_dir, spec, run_dir.status().get("hparams") or {},
                                           stop_event=self.stop)
        except RunBusy as err:
            print(f"{run_dir.run_id}: skipped: {err}", file=sys.stderr, flush=True)
            return "busy", str(err)
        except Exception as err:  # storage errors, a config that no longer loads: this run only
            traceback.print_exc()
            message = f"{err.__class__.__name__}: {err}"
            state = run_dir.status().get("state")
            if state not in rd.FINAL_STATES:
                with contextlib.suppress(OSError):
                    run_dir.write_status("failed", error=message, traceback=traceback.format_exc())
                state = "failed"
            return state, message
        if outcome.state == "failed":
            print(f"{run_dir.run_id}: failed: {outcome.error}", file=sys.stderr, flush=True)
        return outcome.state, outcome.error

    def prepare(self, distribution) -> None:
        """Logical CPUs (or the multi-worker strategy) before the first TensorFlow operation."""
        key = (distribution.strategy == "multi_worker", distribution.cpu_replicas)
        if self.prepared is None:
            from tfminima.distribute import prepare

            prepare(distribution)
            self.prepared = key
        elif key != self.prepared and (key[0] or key[1] > 1):
            raise ValueError(f"this worker was set up for {self.prepared}, not {key}: start another worker")


def cancel_unstarted(run_dir: rd.RunDir) -> dict:
    """Record ``cancelled`` for a run cancelled before it started (it stays resumable)."""
    error = "cancelled before it started"
    if run_dir.status().get("state") not in rd.FINAL_STATES:
        run_dir.write_status("cancelled", error=error)
    return {"state": "cancelled", "error": error}


@contextlib.contextmanager
def redirected(log: str | None):
    """File descriptors 1 and 2 (Python's and C++'s output) appended to ``log`` for the block; to
    /dev/null when ``log`` is no file that can be appended to (a FIFO there would hang the run; the
    run's metrics and status are in its run directory either way)."""
    if not log:
        yield
        return
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    try:
        fd = safe_io.open_for_writing(log, append=True)
    except OSError:
        fd = os.open(os.devnull, os.O_WRONLY)
    saved = os.dup(1), os.dup(2)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in (fd, *saved):
            os.close(f)


def main() -> int:
    from tfminima import quiet

    # Replies go to the stdout we were given; fd 1 itself then points at stderr (and, during a
    # job, at the job's log), so nothing printed by TensorFlow or a callback reaches the protocol.
    reply_fd = os.dup(1)
    os.dup2(2, 1)
    worker = Worker(sys.stdin, reply_fd)
    signal.signal(signal.SIGTERM, worker.on_sigterm)
    signal.signal(signal.SIGINT, worker.on_sigterm)
    quiet.start_tensorflow()  # once, before any job: no start-up lines in the first run's log
    return worker.serve()


if __name__ == "__main__":
    sys.exit(main())
