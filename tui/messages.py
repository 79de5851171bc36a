"""Messages screens send to the app, which owns the launcher and the run store."""

from __future__ import annotations

from textual.message import Message

from tfminima.config import ExperimentSpec


class LaunchRequested(Message):
    """Launch every run of this (validated) experiment."""

    def __init__(self, spec: ExperimentSpec):
        super().__init__()
        self.spec = spec


class RunAction(Message):
    """Do ``action`` (cancel | resume | rerun) to the runs with these keys (group/run_id)."""

    def __init__(self, action: str, keys: list[str]):
        super().__init__()
        self.action, self.keys = action, keys


class SelectionChanged(Message):
    """The runs chosen for the Monitor screen changed."""

    def __init__(self, keys: list[str]):
        super().__init__()
        self.keys = keys
