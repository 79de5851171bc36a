"""Per-epoch checkpoints: every model and optimizer variable, bit for bit, plus trainer state.

A checkpoint is a folder ``checkpoints/epoch-<N>/`` (N = epochs completed) or, when a run is
stopped inside an epoch, ``checkpoints/epoch-<N>-step-<K>/`` (K steps of epoch N done), holding
``variables.npz`` (model variables, seed-generator state included, and optimizer variables,
iteration counter and momenta included) and ``state.json``. It is written to a temporary folder
and renamed, and ``checkpoints/latest`` is replaced atomically afterwards, so a kill at any
moment leaves the previous checkpoint readable; a write that fails (disk full, directory gone
read-only) removes its temporary folder and leaves the previous checkpoints and ``latest`` as they
were.

The run's checkpoint is the one ``latest`` names, never the largest folder name: a folder copied or
made by hand (``epoch-999``) is not the run's, and is neither chosen nor pruned. A pointer that
cannot be read, or names no complete checkpoint, is an error naming ``checkpoints/latest``
(:class:`tfminima.runfiles.CorruptFile`): guessing another folder could silently continue from the
wrong place.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import zipfile
from pathlib import Path

import numpy as np

from tfminima import interrupt, runfiles
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
    _prune(directory, keep, (epochs_done, step))
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


def _prune(directory: Path, keep: int, current: tuple[int, int]) -> None:
    """Drop all but the newest ``keep`` checkpoints up to ``current`` (the one just written).

    Folders past ``current`` are left alone: the run never wrote them (a copy, or a folder made by
    hand), and the one ``latest`` names must never be the one deleted. Each folder is first renamed
    to ``.tmp-del-*`` (atomic), then deleted: a kill during the delete leaves a hidden stale folder
    that the next prune removes, never a half-deleted ``epoch-*``.
    """
    directory = Path(directory)
    older = sorted(p for p in _found(directory) if p <= current)
    for n, k in older[:-keep] if keep > 0 else []:
        gone = directory / f".tmp-del-{_name(n, k)}-{os.getpid()}"
        with interrupt.ctrl_c_held():  # a second Ctrl-C between the rename and the delete waits for both
            try:
                os.replace(directory / _name(n, k), gone)
            except OSError:
                continue
            shutil.rmtree(gone, ignore_errors=True)
    with interrupt.ctrl_c_held():
        for stale in directory.glob(".tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)


def _found(directory: Path) -> list[tuple[int, int]]:
    """(epochs done, step in epoch) of every complete checkpoint folder."""
    out = []
    for p in Path(directory).glob("epoch-*"):
        if runfiles.CHECKPOINT_NAME.match(p.name) and p.name == _name(*position(p)) and _complete(p):
            out.append(position(p))
    return out


def complete_folders(directory: Path) -> list[str]:
    """Names of the complete checkpoint folders in ``directory``, oldest first (a pointer's candidates)."""
    return [_name(*p) for p in sorted(_found(directory))]


def _complete(folder: Path) -> bool:
    return (folder / "state.json").is_file() and (folder / "variables.npz").is_file()


def latest(directory: Path) -> Path | None:
    """The run's checkpoint: the folder ``checkpoints/latest`` names; None when the run has none.

    The pointer moves only after its folder is in place, and older folders are pruned only after
    it moved, so it always names a complete folder (after a kill between the rename and the
    pointer update, the previous one: the resume redoes that last stretch). Without a pointer
    (a kill between the first checkpoint's rename and its pointer) the only complete checkpoint
    folder is the run's, if its state.json agrees with its name. Raises
    :class:`tfminima.runfiles.CorruptFile` for a pointer that cannot be read or names no complete
    checkpoint, and for checkpoint folders without a pointer that cannot be told apart.
    """
    directory = Path(directory)
    name = runfiles.read_checkpoint_pointer(directory)
    pointer = directory / "latest"
    if name is not None:
        folder = directory / name
        if not folder.is_dir():
            raise runfiles.CorruptFile("checkpoints/latest", f"names {name}, and there is no such folder", pointer)
        for file in ("state.json", "variables.npz"):
            if not (folder / file).exists():
                raise runfiles.CorruptFile("checkpoints/latest", f"names {name}, which has no {file}", pointer)
            if not (folder / file).is_file():
                raise runfiles.CorruptFile(f"checkpoints/{name}/{file}", "is not a regular file", folder / file)
        return folder
    found = sorted(_found(directory))
    if not found:
        return None
    names = [_name(*p) for p in found]
    if len(found) > 1:
        raise runfiles.CorruptFile(
            "checkpoints/latest", f"missing, and the folder holds {len(found)} checkpoints ({', '.join(names[:5])}"
            f"{' ...' if len(found) > 5 else ''}): which is the run's cannot be told; write its name into "
            f"{pointer} to choose", pointer)
    folder = directory / names[0]
    try:
        state = runfiles.read_checkpoint_state(folder)
    except runfiles.CorruptFile:
        return None  # not a checkpoint of ours: ignored
    if (state["epochs_done"], state.get("step_in_epoch", 0)) != found[0]:
        return None  # not written under this name by a run: ignored
    return folder


def verify(folder: Path) -> dict:
    """The state of checkpoint ``folder`` once its files are checked: state.json valid and agreeing
    with the folder's name, variables.npz a whole zip archive (every member's CRC checked) holding
    every array state.json lists, stored as save writes them (not compressed). CorruptFile otherwise."""
    folder = Path(folder)
    state = runfiles.read_checkpoint_state(folder)
    if (state["epochs_done"], state.get("step_in_epoch", 0)) != position(folder):
        raise runfiles.CorruptFile(
            f"checkpoints/{folder.name}/state.json",
            f"says epochs_done {state['epochs_done']}, step_in_epoch {state.get('step_in_epoch', 0)}: "
            "not the checkpoint its folder's name says", folder / "state.json")
    variables = folder / "variables.npz"
    name = f"checkpoints/{folder.name}/variables.npz"
    try:
        if not stat.S_ISREG(os.stat(variables).st_mode):  # a FIFO would block the zip reader
            raise runfiles.CorruptFile(name, "is not a regular file", variables)
        wanted = {f"m{i}.npy" for i in range(len(state["model_paths"]))}
        wanted |= {f"o{i}.npy" for i in range(len(state["optimizer_paths"]))}
        with zipfile.ZipFile(variables) as archive:  # its index is at the end: a truncated file has none
            members = set(archive.namelist())
            packed = next((i.filename for i in archive.infolist() if i.compress_type != zipfile.ZIP_STORED), None)
            if packed is not None:  # save writes stored arrays: a compressed one could expand without bound
                raise runfiles.CorruptFile(name, f"{packed} is compressed, which tfminima never writes (a small file "
                                                 "could expand to any size when loaded)", variables)
            damaged = archive.testzip()  # every member read against its CRC
            if damaged is not None:
                raise runfiles.CorruptFile(name, f"{damaged} is damaged (its CRC does not match)", variables)
            if not wanted <= members:
                missing = sorted(wanted - members)
                raise runfiles.CorruptFile(
                    name, f"lacks {len(missing)} of the {len(wanted)} arrays state.json lists "
                    f"({', '.join(m[:-4] for m in missing[:3])}{' ...' if len(missing) > 3 else ''})", variables)
            for member in sorted(wanted):
                problem = _array_problem(archive, member)
                if problem:
                    raise runfiles.CorruptFile(name, f"{member} {problem}", variables)
    except (OSError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError) as err:
        raise runfiles.CorruptFile(name, f"cannot be read ({getattr(err, 'strerror', None) or err})", variables) from None
    return state


def _array_problem(archive: zipfile.ZipFile, member: str) -> str | None:
    """What keeps ``member`` from being an array of numbers as :func:`save` writes one (None: nothing).

    A CRC only says the bytes are the ones written into the archive: a member that is no .npy, holds
    pickled objects or less data than its header promises would otherwise fail deep inside a restore.
    """
    with archive.open(member) as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                return f"is a .npy of version {version[0]}.{version[1]}, which tfminima does not write"
        except (ValueError, EOFError, SyntaxError, TypeError) as err:
            return f"is not a NumPy array ({'not a .npy header' if 'magic' in str(err) else err})"
        if dtype.hasobject or dtype.kind not in "biuf":
            return f"holds {dtype}, not numbers"
        header = f.tell()
    size = archive.getinfo(member).file_size - header
    expected = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if size != expected:
        return f"holds {size} bytes of data, its header says {expected}"
    return None


def checked_array(archive, key: str, variable, folder: Path) -> np.ndarray:
    """``archive[key]`` for ``variable``; CorruptFile naming variables.npz if its shape does not fit
    (a checkpoint of another model: assigning it would fail with the whole tensor in the message)."""
    value = archive[key]
    if tuple(value.shape) != tuple(variable.shape):
        raise runfiles.CorruptFile(f"checkpoints/{folder.name}/variables.npz",
                                   f"{key}.npy has shape {tuple(value.shape)}, the model's {variable.path} "
                                   f"{tuple(variable.shape)}", folder / "variables.npz")
    return value


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
    """A checkpoint's state.json, checked (:func:`tfminima.runfiles.read_checkpoint_state`)."""
    return runfiles.read_checkpoint_state(path)


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
            v.assign(checked_array(z, f"m{i}", v, path))
        for i, v in enumerate(ovars):
            v.assign(checked_array(z, f"o{i}", v, path))
    return state
