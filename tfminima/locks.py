"""One trainer per run directory: an exclusive lock held while a process trains a run. No TensorFlow.

Two ``tfminima run`` processes may share a group folder (``--group``, ``--shard``, ``--only``) or
resume the same run; the lock (``flock`` on ``<run>/.lock``) makes the second one back off with a
message naming the holder instead of interleaving writes. The kernel drops the lock when its
process dies, even by SIGKILL, so a crashed run never stays locked. On NFS, Linux maps ``flock`` to
POSIX byte-range locks, which NFSv4 servers honour across hosts.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import stat
import time
from pathlib import Path

LOCK_NAME = ".lock"


class RunBusy(RuntimeError):
    """The run cannot be taken: another process trains it, or its lock file is no file that can be locked."""


class RunLock:
    """Exclusive, non-blocking lock of one run directory.

    >>> with RunLock("runs/quickstart/lr0.01-bs32-s0"):      # doctest: +SKIP
    ...     train()
    """

    def __init__(self, run_path: str | Path):
        self.run_path = Path(run_path)
        self.path = self.run_path / LOCK_NAME
        self._f = None

    def acquire(self) -> "RunLock":
        f = _open_lock_file(self.path)
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(f)
            f.close()
            raise RunBusy(f"{self.run_path} is being trained by {holder}; not touching it") from None
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}) + "\n")
        f.flush()
        self._f = f
        return self

    def release(self) -> None:
        if self._f is not None and not self._f.closed:
            self._f.close()  # closing the file drops the flock
        self._f = None

    @property
    def held(self) -> bool:
        return self._f is not None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _open_lock_file(path: Path):
    """``path`` opened to read and write, created if missing; RunBusy, naming the file, when it is no
    regular file (a FIFO, device or folder someone left there can be neither locked nor rewritten)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as err:
        if err.errno not in (errno.EISDIR, errno.ELOOP):
            raise  # a read-only or full disk: the caller's storage error, not this file's fault
        raise RunBusy(f"cannot lock {path.parent}: its {path.name} cannot be opened "
                      f"({err.strerror or err}); remove it to train this run") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise RunBusy(f"cannot lock {path.parent}: its {path.name} is not a regular file (a FIFO or a "
                      "device); remove it to train this run")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "r+")


def _holder(f) -> str:
    try:
        f.seek(0)
        info = json.loads(f.read() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another process"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("since", 0)))
    return f"process {info.get('pid')} on {info.get('host')} (since {since})"
