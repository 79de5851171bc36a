"""tfminima-tui: configure, launch, watch and compare η/S experiments.

The app orchestrates: it owns the :class:`~tui.store.RunStore` (what is on disk), the
:class:`~tui.launcher.Launcher` (the queue and its ``tfminima.worker`` processes) and the selection. Its poll loop,
a named thread worker, lets the launcher reap and start children, then the store read the disk;
the screens see the two combined (:func:`tui.runview.rows`). It redraws the visible screen at most
``redraw_hz`` times a second when either changed. It never imports TensorFlow: runs are trained by
worker processes and everything passes through their run directories.
"""

from __future__ import annotations

import argparse
import gc
import sys
import traceback
from functools import partial
from pathlib import Path
from typing import ClassVar

from textual.app import App, ScreenStackError, SystemCommand
from textual.binding import Binding, BindingType
from textual.css.query import NoMatches
from textual.worker import Worker, WorkerState

from tfminima import config as config_lib
from tfminima import paths
from tui import runview
from tui.colours import ColourBook
from tui.launcher import Launcher
from tui.messages import LaunchRequested, RunAction, SelectionChanged
from tui.screens.base import AppScreen
from tui.screens.compare import CompareScreen
from tui.screens.configure import ConfigureScreen, load_model
from tui.screens.help import HelpScreen
from tui.screens.modals import ErrorModal, QuitModal
from tui.screens.monitor import MonitorScreen
from tui.screens.runs import RunsScreen
from tui.store import RunRow, RunStore

ACTIVE = ("running", "starting", "queued")


class MinimaApp(App):
    """Four screens (modes) over one run store and one launcher."""

    CSS_PATH = "app.tcss"
    TITLE = "tfminima-tui"
    MODES: ClassVar[dict[str, type]] = {"configure": ConfigureScreen, "runs": RunsScreen, "monitor": MonitorScreen, "compare": CompareScreen}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("1", "switch_mode('configure')", "Config", show=False),
        Binding("2", "switch_mode('runs')", "Runs", show=False),
        Binding("3", "switch_mode('monitor')", "Monitor", show=False),
        Binding("4", "switch_mode('compare')", "Compare", show=False),
        Binding("question_mark,f1", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, runs_dir: str | Path = "runs", *, config_path: str | Path | None = None,
                 overrides: list[str] = (), profile: str | None = None, max_parallel: int = 2, poll_interval: float = 0.5,
                 redraw_hz: float = 4.0, start: str | None = None, python: str = sys.executable):
        super().__init__()
        self.runs_dir = Path(runs_dir)
        self.runs_dir_label = str(runs_dir)
        self.config_path = Path(config_path) if config_path else None
        self.initial_model = load_model(config_path, list(overrides), profile) if config_path else None
        self.launcher = Launcher(self.runs_dir, max_parallel=max_parallel, python=python)
        self.store = RunStore(self.runs_dir)
        self.colours = ColourBook()
        self.selected: set[str] = set()
        self.selected_by_user = False  # a launch selects its runs for the Monitor; c / r / R then act on one run
        self.poll_interval, self.redraw_hz = poll_interval, redraw_hz
        self.start_mode = start or ("configure" if config_path or not any(self.runs_dir.glob("*/*/status.json"))
                                    else "runs")
        self._poller: Worker | None = None
        self._poll_paused = False
        self._launcher_changes = 0  # ticks in which the launcher started or reaped a child
        self._loaded = False  # the first poll (every run file read) is done
        self._drawn_version = -1

    # lifecycle -------------------------------------------------------------------------
    def on_mount(self) -> None:
        # Python's full garbage collections traverse every object; at this point those are the
        # imported modules (Textual, numpy, pydantic, plotext), alive for good. Frozen, they are
        # left out of every later collection; so are the loaded runs after the first poll
        # (_freeze_loaded). A full collection otherwise stopped the UI for 0.3–1.6 s in the middle
        # of the Monitor's first display with 50 runs (benchmarks/bench_tui.py).
        gc.freeze()
        self.switch_mode(self.start_mode)
        self.set_interval(self.poll_interval, self.poll_now)
        self.set_interval(1.0 / self.redraw_hz, self._redraw_tick)
        self.poll_now()

    def poll_now(self) -> Worker | None:
        """Start one pass of the poll loop unless one is still running (or an error is shown)."""
        if self._poll_paused or (self._poller is not None and not self._poller.is_finished):
            return None
        self._poller = self.run_worker(self._poll, name="poll-runs", group="poll", thread=True,
                                       exit_on_error=False)
        return self._poller

    def _poll(self) -> None:
        """One pass (in the worker thread): the launcher reaps and starts children, then the store
        reads the disk, looking for new run directories at once when a worker started or ended a run."""
        launcher_changed = self.launcher.tick()
        self.store.poll(force_scan=launcher_changed)
        if launcher_changed:
            self._launcher_changes += 1
        if not self._loaded:
            self._loaded = True
            self.call_from_thread(self.call_after_refresh, self._freeze_loaded)

    def _freeze_loaded(self) -> None:
        """Once the runs are loaded and the first screen drawn: collect the garbage of that load,
        then leave what survives (the runs, the screen) out of later full collections too."""
        gc.collect()
        gc.freeze()

    def _view_version(self) -> int:
        # Both counters only grow, so their sum moves whenever either does.
        return self.store.version + self._launcher_changes

    def rows(self) -> list[RunRow]:
        """Every run the screens show: run directories, then launches with no status yet."""
        return runview.rows(self.store, self.launcher)

    def _redraw_tick(self) -> None:
        if self._view_version() != self._drawn_version:
            self.redraw()

    def redraw(self) -> None:
        """Redraw the visible main screen from the store (hidden screens redraw when shown)."""
        self._drawn_version = self._view_version()
        try:
            screen = self.screen
        except ScreenStackError:  # the app is shutting down: its screens are gone, a timer is not yet
            return
        if isinstance(screen, AppScreen) and screen.ready:
            try:
                screen.refresh_data()
            except NoMatches:  # being switched in or out, its widgets not (or no longer) mounted:
                self._drawn_version = -1  # it redraws when shown (on_screen_resume), or at the next tick

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if event.state != WorkerState.ERROR:
            return
        err = worker.error
        detail = "".join(traceback.format_exception(type(err), err, err.__traceback__))
        if worker.group == "poll":
            self._poll_paused = True  # one modal, not one every half second
        self.push_screen(ErrorModal(f"{worker.name} failed", f"{type(err).__name__}: {err}", detail),
                         self._error_closed)

    def _error_closed(self, _=None) -> None:
        self._poll_paused = False

    # messages from screens -------------------------------------------------------------
    def on_launch_requested(self, message: LaunchRequested) -> None:
        self.run_worker(partial(self._launch, message.spec), name="launch-sweep", group="actions",
                        thread=True, exit_on_error=False)

    def _launch(self, spec: config_lib.ExperimentSpec) -> None:
        jobs = self.launcher.launch(spec)
        self.call_from_thread(self._launched, jobs)

    def _launched(self, jobs) -> None:
        self.selected, self.selected_by_user = {j.key for j in jobs}, False
        group = jobs[0].group.name if jobs else "?"
        self.notify(f"{len(jobs)} run{'s' if len(jobs) != 1 else ''} queued in {group}; "
                    f"{self.launcher.max_parallel} at once")
        self.switch_mode("runs")
        self.poll_now()

    def on_run_action(self, message: RunAction) -> None:
        if message.keys:
            self.run_worker(partial(self._run_action, message.action, message.keys), name=f"{message.action}-runs",
                            group="actions", thread=True, exit_on_error=False)

    def _run_action(self, action: str, keys: list[str]) -> None:
        done, skipped, new = [], [], []
        for key in keys:
            record = self.store.get(key)
            state = runview.run_state(record, self.store, self.launcher) if record else "queued"
            if action == "cancel":
                outcome = self.launcher.cancel(key, record.status if record else None)
                (done if outcome != "not running" else skipped).append(key)
            elif record is None or (action == "resume" and state in ACTIVE + ("completed",)):
                skipped.append(key)
            elif action == "resume":
                self.launcher.resume(record.dir)
                done.append(key)
            elif action == "rerun":
                new += [j.key for j in self.launcher.rerun(record.dir)]
                done.append(key)
        self.call_from_thread(self._action_done, action, done, skipped, new)

    def _action_done(self, action: str, done: list[str], skipped: list[str], new: list[str]) -> None:
        verb = {"cancel": "cancelling", "resume": "resuming", "rerun": "rerunning"}[action]
        if done:
            self.notify(f"{verb} {', '.join(k.rsplit('/', 1)[-1] for k in done)}")
        if skipped:
            self.notify(f"not {verb} {len(skipped)} run{'s' if len(skipped) != 1 else ''} "
                        f"(not in a state for it)", severity="warning")
        if new:
            self.selected |= set(new)
        self.poll_now()

    def on_selection_changed(self, message: SelectionChanged) -> None:
        self.selected, self.selected_by_user = set(message.keys), True
        self.redraw()

    # actions ---------------------------------------------------------------------------
    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.runs_dir_label))

    async def action_quit(self) -> None:
        running, queued = self.launcher.counts()
        if running or queued:
            self.push_screen(QuitModal(running, queued), self._quit_answer)
        else:
            self.exit()

    def _quit_answer(self, answer: str | None) -> None:
        if answer == "cancel":
            self.launcher.cancel_all()
        elif answer == "leave":
            self.launcher.drop_queued()  # recorded cancelled: resumable after a restart
        if answer in ("cancel", "leave"):
            self.exit()

    def _on_screen(self, mode: str, action: str) -> None:
        """Switch to a main screen and run one of its actions (palette commands)."""
        self.switch_mode(mode)
        self.call_after_refresh(lambda: getattr(self.screen, f"action_{action}")())

    def get_system_commands(self, screen):
        yield from super().get_system_commands(screen)
        for mode, what in (("configure", "edit, preview and launch an experiment"),
                           ("runs", "every run, cancel / resume / rerun"),
                           ("monitor", "live curves of the selected runs"),
                           ("compare", "final metrics against η/S, η × S heatmap")):
            yield SystemCommand(f"Go to {mode.capitalize()}", what, partial(self.switch_mode, mode))
        yield SystemCommand("Open experiment YAML", "load a config into the form",
                            partial(self._on_screen, "configure", "open"))
        yield SystemCommand("Save experiment YAML", "write the form as YAML", partial(self._on_screen, "configure", "save"))
        yield SystemCommand("Launch sweep", "start every run of the configured sweep",
                            partial(self._on_screen, "configure", "launch"))
        yield SystemCommand("Cancel runs", "stop the selected (or highlighted) runs at the next step",
                            partial(self._on_screen, "runs", "cancel"))
        yield SystemCommand("Resume runs", "continue the selected runs from their checkpoints",
                            partial(self._on_screen, "runs", "resume"))
        yield SystemCommand("Rerun runs", "run the selected runs' configs again",
                            partial(self._on_screen, "runs", "rerun"))
        yield SystemCommand("Export comparison CSV", "final metrics and η/S of every run",
                            partial(self._on_screen, "compare", "export"))
        yield SystemCommand("TensorBoard command", f"tensorboard --logdir {self.runs_dir_label}",
                            partial(self.notify, f"tensorboard --logdir {self.runs_dir_label}", timeout=15))
        yield SystemCommand("Key bindings", "the help screen", self.action_help)


def create_app(runs_dir: str | Path = "runs", **kwargs) -> MinimaApp:
    """The app factory the console script and the tests share."""
    return MinimaApp(runs_dir, **kwargs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tfminima-tui", description=__doc__.splitlines()[0])
    parser.add_argument("runs_dir", nargs="?", default="runs", help="runs directory (default: runs)")
    parser.add_argument("--config", help="experiment YAML to open in Configure")
    parser.add_argument("--profile", help="apply one of the config's profiles (e.g. cpu), like tfminima run")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a key of --config, e.g. --set epochs=2 (repeatable)")
    parser.add_argument("-j", "--max-parallel", type=int, default=2, help="worker processes, each training queued runs one after another (default 2)")
    args = parser.parse_args(argv)
    if (args.set or args.profile) and not args.config:
        parser.error("--set and --profile need --config")
    try:
        paths.existing_directory(args.runs_dir, "RUNS_DIR", must_exist=False)  # a file there: say so, start nothing
    except paths.PathError as err:
        print(f"tfminima-tui: {err}", file=sys.stderr)
        return err.exit_code
    try:
        app = create_app(args.runs_dir, config_path=args.config, overrides=args.set, profile=args.profile,
                         max_parallel=args.max_parallel)
    except config_lib.ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    app.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
