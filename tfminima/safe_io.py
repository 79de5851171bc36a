"""Reading a file nobody vouches for: bounded bytes, strict UTF-8, JSON without surprises. Standard library only.

Every reader of run directories and config files starts here. A path may be missing, a directory,
a FIFO that would block ``open`` forever, a symbolic-link loop, a 50 GB file, bytes that are not
UTF-8, or JSON that Python accepts but no writer of ours produces (``NaN``, ``1e999`` read as
infinity, a 10,000-digit integer, a list nested 100,000 deep). Each of these becomes a
:class:`FileProblem` with a one-line reason, never an exception of another type, and nothing is
read past the limit.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import stat
from pathlib import Path
from typing import Any, Callable

from tfminima.limits import JSON_DEPTH

NUL_IN_PATH = "has a NUL byte in its name, which no file can have"
MAX_INT_DIGITS = 20  # a JSON integer longer than this is no count, epoch or seed of ours


class FileProblem(ValueError):
    """A file that cannot be read as what it should be; ``str()`` is the reason, ``missing`` if absent."""

    def __init__(self, reason: str, *, missing: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.missing = missing


def read_bytes(path: str | Path, limit: int) -> bytes:
    """At most ``limit`` bytes of the regular file ``path``; FileProblem when it is anything else.

    Opened without blocking (a FIFO would wait for a writer forever) and checked with ``fstat``
    on the open descriptor, so the answer is about the file actually read; never reads more
    than ``limit + 1`` bytes, whatever the file claims its size is.
    """
    fd = _open(path)
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise FileProblem("is a directory, not a file")
        if not stat.S_ISREG(info.st_mode):
            raise FileProblem("is not a regular file (a device, FIFO or socket)")
        if info.st_size > limit:
            raise FileProblem(f"is {info.st_size} bytes, over the limit of {limit} bytes")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise FileProblem(f"is over the limit of {limit} bytes")
        return b"".join(chunks)
    except OSError as err:
        raise FileProblem(_os_reason(err)) from None
    finally:
        os.close(fd)


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` (a user's choice: a symbolic link is followed, not replaced) without ever
    waiting: a FIFO with no reader is refused at once by a non-blocking open, and anything that is not a
    regular file (a FIFO, a device) is refused before a byte is written. OSError says why."""
    fd = open_for_writing(path, truncate=True)
    try:
        data = memoryview(text.encode("utf-8"))
        while data:
            data = data[os.write(fd, data):]
    finally:
        os.close(fd)


def open_for_writing(path: str | Path, *, truncate: bool = False, append: bool = False) -> int:
    """A blocking write descriptor of the regular file ``path``, created if missing: a FIFO or a device
    there is an OSError at once (a blocking open of a FIFO waits for a reader forever), and only a
    regular file is truncated. For the files users name and the logs a worker appends to."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | (os.O_APPEND if append else 0)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as err:
        if err.errno == errno.ENXIO:  # a FIFO nothing reads
            raise OSError(errno.ENXIO, "is a FIFO, not a file", str(path)) from None
        raise
    except ValueError:  # a NUL byte (typed or pasted into a path field)
        raise OSError(errno.EINVAL, NUL_IN_PATH, str(path)) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "is not a regular file (a FIFO or a device)", str(path))
        os.set_blocking(fd, True)
        if truncate:
            os.ftruncate(fd, 0)
        return fd
    except BaseException:
        os.close(fd)
        raise


def write_beside(path: str | Path, tmp: str | Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)``, then rename ``tmp`` onto ``path``: readers never see half a file, and a FIFO where
    the file goes is replaced, never waited on. An error names ``path`` (the file meant, not the
    temporary one) and leaves no temporary file behind, also when interrupted."""
    path, tmp = Path(path), Path(tmp)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise OSError(err.errno, err.strerror, str(path)) from None
        raise


def _open(path: str | Path) -> int:
    """A read-only descriptor of ``path``, opened without blocking (a FIFO would wait for a writer
    forever); FileProblem when it cannot be opened."""
    try:
        return os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise FileProblem("missing", missing=True) from None
    except OSError as err:
        raise FileProblem(_os_reason(err)) from None
    except ValueError:  # a NUL byte, which no path can hold
        raise FileProblem(NUL_IN_PATH) from None


def _os_reason(err: OSError) -> str:
    if err.errno == errno.ELOOP:
        return "is a symbolic-link loop"
    if err.errno in (errno.EACCES, errno.EPERM):
        return "cannot be read (permission denied)"
    return f"cannot be read ({err.strerror or err})"


def read_tail(path: str | Path, size: int) -> bytes:
    """The last ``size`` bytes (at most) of the regular file ``path``; FileProblem when it is anything else."""
    fd = _open(path)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileProblem("is not a regular file")
        os.lseek(fd, max(info.st_size - size, 0), os.SEEK_SET)
        return os.read(fd, size)
    except OSError as err:
        raise FileProblem(_os_reason(err)) from None
    finally:
        os.close(fd)


def decode(data: bytes) -> str:
    """Strict UTF-8 (a BOM is dropped); FileProblem names the first bad byte's offset."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise FileProblem(f"is not UTF-8 text (byte {err.start}: {data[err.start:err.start + 1]!r})") from None
    return text[1:] if text.startswith("\ufeff") else text


def read_text(path: str | Path, limit: int) -> str:
    """:func:`read_bytes` then :func:`decode`."""
    return decode(read_bytes(path, limit))


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:30]} is out of range")
    return value


def _bounded_int(text: str) -> int:
    if len(text) > MAX_INT_DIGITS + 1:  # + 1: a minus sign
        raise ValueError(f"an integer of {len(text.lstrip('-'))} digits")
    return int(text)


# one decoder for every call (building one per line costs more than the line); the hooks refuse what
# Python's json accepts and no writer of ours produces: NaN, infinities (1e999), endless integers
_DECODER = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite_float, parse_int=_bounded_int)


def parse_json(text: str | bytes, depth: int = JSON_DEPTH) -> Any:
    """JSON as our writers produce it: finite numbers only, bounded integers, at most ``depth`` levels.

    FileProblem says what is wrong and where (line and column for syntax errors).
    """
    if isinstance(text, bytes):
        text = decode(text)
    try:
        value = _DECODER.decode(text)
    except json.JSONDecodeError as err:
        raise FileProblem(f"is not JSON (line {err.lineno} column {err.colno}: {err.msg})") from None
    except RecursionError:
        raise FileProblem("is nested too deeply") from None
    except ValueError as err:  # from the hooks above
        raise FileProblem(f"is not JSON as written by tfminima ({err})") from None
    if text.count("[") + text.count("{") > depth and nesting(value, depth) > depth:  # fewer brackets: cannot be deeper
        raise FileProblem(f"is nested more than {depth} levels deep")
    return value


def nesting(value: Any, stop: int) -> int:
    """Levels of lists and objects in ``value`` (1 for a flat list), counting no further than ``stop + 1``."""
    if not isinstance(value, (dict, list)):
        return 0
    deepest, stack = 1, [(value, 1)]
    while stack:
        node, level = stack.pop()
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, (dict, list)):
                if level + 1 > stop:
                    return level + 1
                deepest = max(deepest, level + 1)
                stack.append((child, level + 1))
    return deepest


def read_json(path: str | Path, limit: int, depth: int = JSON_DEPTH) -> Any:
    """:func:`read_bytes` then :func:`parse_json`."""
    return parse_json(read_bytes(path, limit), depth)
