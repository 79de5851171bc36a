"""SIGKILL ``tfminima run`` at random moments, resume with ``--resume``, and check nothing is lost.

    python scripts/kill_test.py                      # 4 runs × 6 kills = 24 kills (a few minutes)
    python scripts/kill_test.py --runs 1 --kills 2   # the quick version the default tests run

Each victim run trains the same small experiment (``deterministic: true``) in its own process; the
script kills it with SIGKILL at a moment picked by one of these modes, cycling through them:

- ``checkpoint``: as soon as the checkpoints folder shows a ``.tmp-*`` folder (a checkpoint being
  written); counted as a hit if the folder is still there after the kill,
- ``write``: as soon as a ``.<file>.<pid>.tmp`` shows up in the run directory (an atomic rewrite
  of status.json, summary.json or metrics.jsonl in progress),
- ``epoch``: after the process logged a new epoch, at a random time within the next epoch,
- ``startup``: at a random time after launch (imports, data, model building, first status writes).

After every kill the run directory must be readable: status.json valid JSON (if written yet),
every complete line of metrics.jsonl valid JSON, the latest checkpoint loadable (state.json and
every array of variables.npz). Then ``tfminima run --resume`` continues it (or the command starts
over when the kill came before the run directory held a config). At the end every run must be
completed with final weights bitwise equal to an uninterrupted run and each epoch logged once.
Exit status 0 when all of that holds; a JSON summary goes to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tfminima import checkpoint as ckpt  # noqa: E402
from tfminima.rundir import RunDir  # noqa: E402

CONFIG = """\
name: kt
epochs: {epochs}
dataset: {{name: mnist1d, train_size: 1024, val_size: 128, test_size: 128}}
model: {{name: mlp, hidden: [512, 512], dropout: 0.1}}
optimizer: {{lr: 0.05, batch_size: 64, momentum: 0.9}}
deterministic: true
"""
RUN_ID = "lr0.05-bs64-s0"
MODES = ("checkpoint", "epoch", "write", "checkpoint", "epoch", "startup")


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "tfminima.cli", *args, "--quiet"]


def launch(argv: list[str], log) -> subprocess.Popen:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.Popen(argv, stdout=log, stderr=log, env=env, cwd=ROOT, start_new_session=True)


def _train_events(run: RunDir) -> int:
    try:
        return run.metrics_path.read_bytes().count(b'"kind": "train"')
    except OSError:
        return 0


def _seen(folder: Path, prefix: str, suffix: str = "") -> bool:
    try:
        return any(e.name.startswith(prefix) and e.name.endswith(suffix) for e in os.scandir(folder))
    except OSError:
        return False


def wait_and_kill(proc: subprocess.Popen, run: RunDir, mode: str, rng: random.Random, epoch_seconds: float,
                  timeout: float = 600, checkpoint_tries: int = 2) -> dict:
    """Kill ``proc`` at a moment chosen by ``mode``; returns what happened (``killed`` False if it finished first).

    ``checkpoint`` mode watches the checkpoint writes of up to ``checkpoint_tries`` + 1 epochs for one
    in progress before it gives up and kills anyway (a miss, reported as not a hit)."""
    start = time.time()
    trigger = None
    if mode == "startup":
        trigger = start + rng.uniform(0.5, 12.0)
    before, logged, counted_at = _train_events(run), 0, start
    while proc.poll() is None and time.time() - start < timeout:
        now = time.time()
        if mode == "checkpoint" and _seen(run.checkpoints_dir, ".tmp-"):
            break
        if mode == "write" and _seen(run.path, ".", ".tmp"):
            break
        # A write's window lasts milliseconds: between checks of the folder only a scandir, and the
        # metrics file (which grows) is read every 20 ms, not at every check.
        if mode not in ("checkpoint", "write") or now - counted_at > 0.02:
            logged, counted_at = _train_events(run) - before, now
        if mode == "epoch" and trigger is None and logged > 0:
            trigger = now + rng.uniform(0.0, epoch_seconds)
        if (mode == "checkpoint" and logged > checkpoint_tries) or (mode == "write" and logged > 0):
            break  # every window was missed: kill now (reported as not a hit)
        if trigger is not None and now >= trigger:
            break
        time.sleep(0.0001 if mode in ("checkpoint", "write") else 0.01)
    if proc.poll() is not None:
        return {"mode": mode, "killed": False, "returncode": proc.returncode}
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    hit = None
    if mode == "checkpoint":
        hit = _seen(run.checkpoints_dir, ".tmp-")
    elif mode == "write":
        hit = _seen(run.path, ".", ".tmp")
    return {"mode": mode, "killed": True, "hit": hit, "after_s": round(time.time() - start, 3),
            "epochs_logged": _train_events(run)}


def check_readable(run: RunDir) -> list[str]:
    """Problems a reader would hit in ``run`` right now (an empty list: all readable)."""
    problems = []
    if run.status_path.exists():
        try:
            json.loads(run.status_path.read_text())
        except ValueError as err:
            problems.append(f"status.json: {err}")
    if run.metrics_path.exists():
        lines = run.metrics_path.read_bytes().split(b"\n")[:-1]  # the part after the last newline may be torn
        for i, line in enumerate(lines):
            try:
                json.loads(line)
            except ValueError as err:
                problems.append(f"metrics.jsonl line {i + 1}: {err}")
    if run.summary_path.exists():
        try:
            json.loads(run.summary_path.read_text())
        except ValueError as err:
            problems.append(f"summary.json: {err}")
    path = ckpt.latest(run.checkpoints_dir) if run.checkpoints_dir.exists() else None
    if path is not None:
        try:
            ckpt.read_state(path)
            with np.load(path / "variables.npz") as z:
                for k in z.files:
                    z[k].sum()
        except Exception as err:  # noqa: BLE001 (any failure is a finding)
            problems.append(f"checkpoint {path.name}: {err.__class__.__name__}: {err}")
    return problems


def final_arrays(run: RunDir) -> dict[str, np.ndarray]:
    with np.load(ckpt.latest(run.checkpoints_dir) / "variables.npz") as z:
        return {k: z[k] for k in z.files}


def victim(index: int, kills: int, cfg: Path, work: Path, reference: dict, rng: random.Random,
           epoch_seconds: float, log, epochs: int) -> dict:
    """One run: launch, kill ``kills`` times (resuming after each), let it finish, compare."""
    out = work / f"victim-{index}"
    run = RunDir(out / "kt" / RUN_ID)
    events, unreadable, launches = [], [], 0
    modes = [MODES[(index + k) % len(MODES)] for k in range(kills)]
    while True:
        if (run.path / "config.yaml").exists():
            argv = cli("run", "--resume", str(run.path))
        else:  # killed before the run directory held its config: nothing to resume, start over
            shutil.rmtree(out, ignore_errors=True)
            argv = cli("run", str(cfg), "--out", str(out))
        proc = launch(argv, log)
        launches += 1
        done = sum(e["killed"] for e in events)
        if done >= kills:
            code = proc.wait(timeout=900)
            break
        mode = modes[done]
        # a checkpoint kill may watch the writes of the epochs that the later kills do not need (~3 each)
        tries = max(2, epochs - _train_events(run) - 3 - 3 * (kills - 1 - done))
        event = wait_and_kill(proc, run, mode, rng, epoch_seconds, checkpoint_tries=tries)
        events.append(event)
        if not event["killed"]:
            code = event["returncode"]
            break
        problems = check_readable(run)
        event["problems"] = problems
        unreadable += problems
    status = run.status()
    result = {"run": str(run.path), "launches": launches, "kills": sum(e["killed"] for e in events),
              "events": events, "unreadable": unreadable, "final_state": status.get("state"), "exit": code}
    epochs = [e["epoch"] for e in run.events() if e["kind"] == "train"]
    result["epochs_logged_once"] = epochs == sorted(set(epochs)) and len(epochs) == len(set(epochs))
    got = final_arrays(run) if status.get("state") == "completed" else {}
    result["bitwise_equal"] = bool(got) and sorted(got) == sorted(reference) and all(
        np.array_equal(got[k], reference[k]) for k in reference)
    return result


def reference_in_process(cfg: Path, out: Path) -> RunDir:
    """The uninterrupted run, trained in this process (saves a TensorFlow start in tests)."""
    from tfminima import config, runner

    (outcome,) = runner.run_sweep(config.load(cfg), out)
    return outcome.run_dir


def reference_by_cli(cfg: Path, out: Path, log) -> RunDir:
    subprocess.run(cli("run", str(cfg), "--out", str(out)), check=True, stdout=log, stderr=log,
                   env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), cwd=ROOT)
    return RunDir(out / "kt" / RUN_ID)


def run_campaign(runs: int = 4, kills: int = 6, epochs: int = 30, seed: int = 0, work: Path | None = None,
                 log_path: Path | None = None, in_process_reference: bool = False) -> dict:
    """The whole test; returns the summary (``ok`` True when every check passed)."""
    work = Path(work or tempfile.mkdtemp(prefix="tfminima-kill-"))
    work.mkdir(parents=True, exist_ok=True)
    cfg = work / "kt.yaml"
    cfg.write_text(CONFIG.format(epochs=epochs))
    rng = random.Random(seed)
    t0 = time.time()
    with open(log_path or work / "processes.log", "ab") as log:
        ref_out = work / "reference"
        ref_run = reference_in_process(cfg, ref_out) if in_process_reference else reference_by_cli(cfg, ref_out, log)
        reference = final_arrays(ref_run)
        train = [e for e in ref_run.events() if e["kind"] == "train"]
        epoch_seconds = float(np.median([e["seconds"] for e in train])) + 0.05
        results = [victim(i, kills, cfg, work, reference, rng, epoch_seconds, log, epochs) for i in range(runs)]
    killed = [e for r in results for e in r["events"] if e["killed"]]
    summary = {
        "runs": runs,
        "kills": len(killed),
        "kills_by_mode": {m: sum(e["mode"] == m for e in killed) for m in sorted(set(MODES))},
        "checkpoint_writes_hit": sum(bool(e.get("hit")) for e in killed if e["mode"] == "checkpoint"),
        "file_writes_hit": sum(bool(e.get("hit")) for e in killed if e["mode"] == "write"),
        "unreadable": [p for r in results for p in r["unreadable"]],
        "all_completed": all(r["final_state"] == "completed" and r["exit"] == 0 for r in results),
        "all_bitwise_equal": all(r["bitwise_equal"] for r in results),
        "epochs_logged_once": all(r["epochs_logged_once"] for r in results),
        "epoch_seconds": round(epoch_seconds, 3),
        "seconds": round(time.time() - t0, 1),
        "results": results,
        "work": str(work),
    }
    summary["ok"] = (summary["all_completed"] and summary["all_bitwise_equal"] and summary["epochs_logged_once"]
                     and not summary["unreadable"] and summary["kills"] >= runs * kills)
    return summary


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=4)
    p.add_argument("--kills", type=int, default=6, help="kills per run")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", help="working folder (default: a new temporary folder)")
    args = p.parse_args()
    summary = run_campaign(args.runs, args.kills, args.epochs, args.seed, Path(args.work) if args.work else None)
    (Path(summary["work"]) / "summary.json").write_text(json.dumps(summary, indent=1))  # every kill, in detail
    brief = {k: v for k, v in summary.items() if k != "results"}
    print(json.dumps(brief, indent=1))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
