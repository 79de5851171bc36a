"""Stop requests (SIGTERM, Ctrl-C) that reach the long phases with no step to stop at. No TensorFlow.

Training stops at a step boundary: the first SIGTERM or Ctrl-C sets a stop event, the trainer
checkpoints after the current step and records ``cancelled``. The phases before the first step
have no step boundary and can take minutes: generating a large dataset, planning a long schedule,
importing TensorFlow, tracing the train step. They hear the same request in two ways:

- **they check it**: code that loops (data generation in chunks, schedule planning) calls
  :func:`check`, which raises :class:`Interrupted` once the stop event of the current run is set.
  :func:`watching` names that event for a block; the runner does so for every run it trains, so
  the TUI's worker, which sets the event on SIGTERM, is heard as well as the CLI;
- **they are interrupted**: the CLI's handlers (:func:`install`) raise :class:`Interrupted` at once
  in the main thread when the signal lands inside an :func:`abortable` block: code that cannot check
  (TensorFlow tracing a function, an import) and writes nothing, so stopping it anywhere loses nothing.

:class:`Interrupted` is a ``KeyboardInterrupt``: the ``except Exception`` of a library under it
(TensorFlow's tracing has some) cannot swallow it. The runner records the run ``cancelled`` (it stays
resumable) and the CLI exits 130, as for a stop at a step.
"""

from __future__ import annotations

import contextlib
import contextvars
import signal
import threading
from typing import Iterator

_stop: contextvars.ContextVar = contextvars.ContextVar("tfminima_stop", default=None)
_lockstep: contextvars.ContextVar = contextvars.ContextVar("tfminima_lockstep", default=False)
_phases: list[str] = []  # the abortable blocks the main thread is in, innermost last


class Interrupted(KeyboardInterrupt):
    """A stop request heard in a phase with no step boundary; ``str()`` says which phase."""


@contextlib.contextmanager
def watching(stop_event, *, lockstep: bool = False) -> Iterator[None]:
    """:func:`check` inside the block raises once ``stop_event`` (a threading.Event, or None) is set.

    ``lockstep`` (multi-worker training): nothing in the block stops early, neither by :func:`check`
    nor by a signal in an :func:`abortable` block. A worker leaving alone would leave the others
    waiting in a collective; they stop together at a step, where the request is shared.
    """
    tokens = _stop.set(None if lockstep else stop_event), _lockstep.set(lockstep)
    try:
        yield
    finally:
        _stop.reset(tokens[0])
        _lockstep.reset(tokens[1])


def requested() -> bool:
    """Whether the stop event of the current block is set."""
    event = _stop.get()
    return bool(event is not None and event.is_set())


def check(what: str) -> None:
    """Raise :class:`Interrupted` (``stopped while <what>``) if a stop was requested."""
    if requested():
        raise Interrupted(f"stopped while {what}")


@contextlib.contextmanager
def abortable(what: str) -> Iterator[None]:
    """A block that writes nothing and may be interrupted anywhere (``what`` names it in the message).

    Only the main thread's blocks count (signals are handled there); a stop requested before the
    block starts is heard on entry.
    """
    if threading.current_thread() is not threading.main_thread() or _lockstep.get():
        yield
        return
    check(what)
    _phases.append(what)
    try:
        yield
    finally:
        _phases.pop()


def current_phase() -> str | None:
    """The innermost abortable block the main thread is in (None outside them)."""
    return _phases[-1] if _phases else None


def install(stop: threading.Event) -> None:
    """SIGTERM and SIGINT set ``stop`` (the trainer stops at the next step); inside an
    :func:`abortable` block they also raise :class:`Interrupted` at once. A second Ctrl-C raises
    ``KeyboardInterrupt`` wherever it lands."""

    def handler(signum, frame):
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()
        phase = current_phase()
        if phase is not None:
            raise Interrupted(f"{signal.Signals(signum).name} while {phase}")

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


@contextlib.contextmanager
def ctrl_c_held() -> Iterator[None]:
    """Hold SIGINT for the duration of the block (a few file operations that must not be cut in two),
    then deliver it to the handler it was meant for. Only the main thread receives signals; elsewhere
    the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        for frame in held if callable(previous) else ():
            previous(signal.SIGINT, frame)


@contextlib.contextmanager
def sigterm_kept() -> Iterator[None]:
    """Keep the process's SIGTERM handler (the CLI's, the TUI worker's) through code that replaces it.

    TensorFlow's coordination service, which a MultiWorkerMirroredStrategy starts, installs a SIGTERM
    handler of its own in C++ (its preemption notifier): a worker sent SIGTERM trained on to the end.
    Python's table still holds ours, and setting it again re-arms it.
    """
    ours = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        if callable(ours) and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, ours)
