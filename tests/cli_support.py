"""``tfminima ARGS`` in the test process: for tests of what a command does, not of the process itself.

A TensorFlow start-up costs ~5 CPU-seconds a subprocess; start-up lines, signals and exits on a crash
keep real subprocesses. The command's signal handlers and exit callbacks belong to the process, so
they are put back afterwards.
"""

from __future__ import annotations

import atexit
import signal


def main_here(*args) -> int:
    """``tfminima.cli.main(args)``: its exit status, with the process's SIGINT/SIGTERM handlers restored."""
    from tfminima import cli

    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return int(cli.main([str(a) for a in args]) or 0)
    except SystemExit as exit_:  # argparse's errors
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        atexit.unregister(cli._ignore_ctrl_c_at_the_very_end)
