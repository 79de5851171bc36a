"""A quiet TensorFlow start for the command-line entry points (no TensorFlow imported here).

Why: TensorFlow 2.21 prints its start-up lines ("WARNING: All log messages before
absl::InitializeLog() is called are written to STDERR", "Could not find cuda drivers", oneDNN,
``cuInit``) from native code while it is imported, before absl logging reads
``TF_CPP_MIN_LOG_LEVEL``, so that variable cannot silence them. :func:`start_tensorflow` imports
TensorFlow and Keras with file descriptor 2 led through a pipe: a known start-up line is dropped,
every other line (a real error) is written on to the real stderr.

Who uses it: ``tfminima run/analyze/data/tb`` and ``python -m tfminima.worker`` (the TUI's
workers). The Python API never does: a library must not swallow its user's stderr.

A user who sets TensorFlow's own log variables to ask for its output (``TF_CPP_MIN_LOG_LEVEL`` below
3, or ``TF_CPP_MAX_VLOG_LEVEL``) gets everything, unfiltered.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from collections.abc import Iterator, Mapping

# The lines TensorFlow (and its CUDA stubs) print while starting on a machine without a GPU.
STARTUP_LINES = tuple(re.compile(p) for p in (
    r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$",
    r"^[IWE]\d{4} [\d:.]+\s+\d+ \S+\] (oneDNN custom operations are on"
    r"|Could not find cuda drivers on your machine"
    r"|failed call to cuInit"
    r"|Unable to register cu(DNN|FFT|BLAS) factory"
    r"|TF-TRT Warning: Could not find TensorRT"
    r"|This TensorFlow binary is optimized to use available CPU instructions"
    r"|To enable the following instructions)",
    r"^To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\.$",
    r"^Unable to register cu(DNN|FFT|BLAS) factory",
))


def user_asked_for_logs(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the user set TensorFlow's own log variables to see its output."""
    env = os.environ if environ is None else environ
    level = env.get("TF_CPP_MIN_LOG_LEVEL", "").strip()
    vlog = env.get("TF_CPP_MAX_VLOG_LEVEL", "").strip()
    return (level != "" and level not in ("3", "4")) or (vlog not in ("", "0"))


def is_startup_line(line: str) -> bool:
    return any(p.search(line) for p in STARTUP_LINES)


def start_tensorflow() -> None:
    """Import TensorFlow and Keras quietly (see the module docstring); later log lines stay quiet
    through ``TF_CPP_MIN_LOG_LEVEL=3`` unless the user set it."""
    if "tensorflow" in sys.modules:  # already started (e.g. a test calling the CLI in-process)
        import keras  # noqa: F401
        return
    if user_asked_for_logs():
        import tensorflow  # noqa: F401
        import keras  # noqa: F401
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    with filtered_stderr():
        import tensorflow  # noqa: F401
        import keras  # noqa: F401


@contextlib.contextmanager
def filtered_stderr() -> Iterator[None]:
    """File descriptor 2 through a filter for the block: start-up lines dropped, the rest passed on."""
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    real = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    pump = threading.Thread(target=_pass_on, args=(read_end, real), name="quiet-stderr", daemon=True)
    pump.start()
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        os.dup2(real, 2)  # the pipe's last write end closes: the pump reads to its end and stops
        pump.join()
        os.close(real)


def _pass_on(read_end: int, real: int) -> None:
    pending = b""
    try:
        while True:
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                _write_unless_startup(real, line + b"\n")
        if pending:
            _write_unless_startup(real, pending)
    finally:
        os.close(read_end)


def _write_unless_startup(fd: int, line: bytes) -> None:
    if is_startup_line(line.decode("utf-8", "replace").rstrip("\r\n")):
        return
    with contextlib.suppress(OSError):
        os.write(fd, line)
