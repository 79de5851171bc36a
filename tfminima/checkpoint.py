"""Per-epoch checkpoints: every model and optimizer variable, bit for bit, plus trainer state.

A checkpoint is a folder ``checkpoints/epoch-<N>/`` (N = epochs completed) or, when a run is
stopped inside an epoch, ``checkpoints/epoch-<N>-step-<K>/`` (K steps of epoch N done), holding
``variables.npz`` (model variables, seed-generator state included, and optimizer variables,
iteration counter and momenta included) and ``state.json``. It is written to a temporary folder
and renamed, and ``checkpoints/latest`` is replaced atomically afterwards, so a kill at any
moment leaves the previous checkpoint readable; a write that fails (disk full, directory gone
read-only) removes its temporary folder and leaves the previous checkpoints and ``latest`` as they
were. ``latest()`` returns the newest complete checkpoint even if the pointer lags behind (a kill
between the rename and the pointer update).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np

from tfminima.rundir import atomic_write_text


def _name(epochs_done: int, step: int) -> str:
    return f"epoch-{epochs_done}" + (f"-step-{step}" if step else "")


def save(directory: Path, epochs_done: int, model, optimizer, state: dict, keep: int = 2, step: int = 0) -> Path:
    """Write checkpoint ``epoch-<epochs_done>[-step-<step>]``; prune all but the newest ``keep``."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():  # mkdir would say "exists": name the real problem
        raise NotADirectoryError(errno.ENOTDIR, "Not a directory", str(directory))
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / _name(epochs_done, step)
    tmp = directory / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    arrays = {f"m{i}": np.asarray(v.numpy()) for i, v in enumerate(model.variables)}
    arrays.update({f"o{i}": np.asarray(v.numpy()) for i, v in enumerate(optimizer.variables)})
    state = dict(state, epochs_done=epochs_done, step_in_epoch=step,
                 model_paths=[v.path for v in model.variables],
                 optimizer_paths=[v.path for v in optimizer.variables])
    try:
        tmp.mkdir()
        with open(tmp / "variables.npz", "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        atomic_write_text(tmp / "state.json", json.dumps(state, indent=1))
        if final.exists():  # the same position saved again (stopped twice at one step): swap it out
            old = directory / f".tmp-old-{final.name}-{os.getpid()}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write_text(directory / "latest", f"{final.name}\n")
    _prune(directory, keep)
    return final


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable (a power cut after it must not bring the old name back)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _prune(directory: Path, keep: int) -> None:
    """Drop all but the newest ``keep`` checkpoints.

    Each folder is first renamed to ``.tmp-del-*`` (atomic), then deleted: a kill during the delete
    leaves a hidden stale folder that the next prune removes, never a half-deleted ``epoch-*``.
    """
    directory = Path(directory)
    for n, k in sorted(_found(directory))[:-keep] if keep > 0 else []:
        gone = directory / f".tmp-del-{_name(n, k)}-{os.getpid()}"
        try:
            os.replace(directory / _name(n, k), gone)
        except OSError:
            continue
        shutil.rmtree(gone, ignore_errors=True)
    for stale in directory.glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)


def _found(directory: Path) -> list[tuple[int, int]]:
    """(epochs done, step in epoch) of every complete checkpoint folder."""
    out = []
    for p in Path(directory).glob("epoch-*"):
        try:
            pos = position(p)
        except (ValueError, IndexError):
            continue
        if (p / "state.json").exists() and (p / "variables.npz").exists():
            out.append(pos)
    return out


def latest(directory: Path) -> Path | None:
    """The newest complete checkpoint folder, or None.

    Normally the one ``latest`` names; a complete folder newer than the pointer (a kill between
    the rename and the pointer update) wins.
    """
    directory = Path(directory)
    found = _found(directory)
    return directory / _name(*max(found)) if found else None


def position(path: Path) -> tuple[int, int]:
    """(epochs done, steps into the next epoch) of a checkpoint folder, from its name."""
    parts = Path(path).name.split("-")
    return int(parts[1]), int(parts[3]) if len(parts) == 4 else 0


def describe_position(values) -> str:
    """Text for [found, epochs, step] (as workers compare them)."""
    found, epochs, step = (list(values) + [0, 0, 0])[:3]
    if not found:
        return "no checkpoint"
    return _name(int(epochs), int(step))


def read_state(path: Path) -> dict:
    return json.loads((Path(path) / "state.json").read_text())


def restore(path: Path, model, optimizer) -> dict:
    """Assign the saved variables into ``model`` and ``optimizer`` (already built); return state."""
    path = Path(path)
    state = read_state(path)
    with np.load(path / "variables.npz") as z:
        mvars, ovars = list(model.variables), list(optimizer.variables)
        if len(mvars) != len(state["model_paths"]) or len(ovars) != len(state["optimizer_paths"]):
            raise ValueError(
                f"checkpoint {path} does not match the model: {len(state['model_paths'])} model and "
                f"{len(state['optimizer_paths'])} optimizer variables saved, "
                f"{len(mvars)} and {len(ovars)} now"
            )
        for i, v in enumerate(mvars):
            v.assign(z[f"m{i}"])
        for i, v in enumerate(ovars):
            v.assign(z[f"o{i}"])
    return state
