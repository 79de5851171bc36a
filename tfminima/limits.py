"""The limits every input is checked against before any work starts. Standard library only.

A config file, a ``--set`` or a run directory can ask for more than a machine can give (a 10⁶-run
grid, 10¹² epochs, a 50 MB YAML file): each such request is refused at validation, with the key,
the value and the limit, instead of growing memory or time without end. The defaults sit far above
anything the paper's experiments need; a user who really needs more raises a limit with its
environment variable (an environment variable, not a config key: a file must not lift the limits
that protect its reader). README "Faults" lists them.
"""

from __future__ import annotations

import dataclasses
import os

FLOAT32_TINY = 1.1754943508222875e-38  # the smallest normal float32: a learning rate below it does not move


@dataclasses.dataclass(frozen=True)
class Limit:
    """One limit: its default, the variable that overrides it, and what it bounds."""

    name: str
    default: float
    variable: str
    what: str
    integer: bool = True


LIMITS: dict[str, Limit] = {limit.name: limit for limit in (
    Limit("runs", 10_000, "TFMINIMA_MAX_RUNS", "runs one sweep expands to (the product of its axes' lengths)"),
    Limit("epochs", 100_000, "TFMINIMA_MAX_EPOCHS", "epochs of a run"),
    Limit("examples", 1_000_000, "TFMINIMA_MAX_EXAMPLES",
          "examples of one split (train_size, val_size, test_size) and samples a measurement uses"),
    Limit("batch_size", 1_000_000, "TFMINIMA_MAX_BATCH_SIZE",
          "batch size at any epoch of its schedule (and eval_batch_size)"),
    Limit("lr", 1e6, "TFMINIMA_MAX_LR", "learning rate at any epoch of its schedule", integer=False),
    Limit("parameters", 1_000_000_000, "TFMINIMA_MAX_PARAMETERS",
          "parameters of the model (Keras' count_params), counted from its section and the dataset's input"),
    Limit("config_bytes", 1 << 20, "TFMINIMA_MAX_CONFIG_BYTES",
          "size of a config YAML file (and of a run's config.yaml), checked before parsing"),
    Limit("run_file_bytes", 16 << 20, "TFMINIMA_MAX_RUN_FILE_BYTES",
          "size of a run's status.json, summary.json, analysis and checkpoint state files"),
    Limit("metrics_bytes", 1 << 30, "TFMINIMA_MAX_METRICS_BYTES",
          "bytes of metrics.jsonl a reader takes (later lines are skipped with a warning)"),
    Limit("line_bytes", 1 << 20, "TFMINIMA_MAX_LINE_BYTES", "length of one metrics.jsonl line"),
)}

NAME_CHARS = 100  # a name, label or run id: one path component (file systems allow 255 bytes)
JSON_DEPTH = 64  # nesting of a run file's JSON (runner-written files need 4 levels)


class LimitError(ValueError):
    """A limit's environment variable holds something other than a positive number."""


def value(name: str) -> float:
    """The limit in force: its environment variable when set (validated), else the default."""
    limit = LIMITS[name]
    raw = os.environ.get(limit.variable, "").strip()
    if not raw:
        return limit.default
    try:
        number = float(raw.replace("_", ""))
    except ValueError:
        number = float("nan")
    if not (number > 0 and number != float("inf")) or (limit.integer and number != int(number)):
        kind = "a positive integer" if limit.integer else "a positive number"
        raise LimitError(f"{limit.variable}: {raw!r} is not {kind} (it sets the limit on {limit.what})")
    return int(number) if limit.integer else number


def check(name: str, amount: float, what: str | None = None) -> None:
    """Raise ValueError when ``amount`` is over the limit ``name``; the message names value, limit and variable."""
    limit = value(name)
    if amount > limit:
        raise ValueError(over(name, amount, what))


def over(name: str, amount: float, what: str | None = None) -> str:
    """``what`` (default: the value) is over the limit, and how to raise it."""
    return f"{what or _fmt(amount)} is {beyond(name)}"


def beyond(name: str) -> str:
    """``over the limit of N (set VARIABLE to raise it)``."""
    return f"over the limit of {_fmt(value(name))} (set {LIMITS[name].variable} to raise it)"


def _fmt(x: float) -> str:
    if isinstance(x, int) or (isinstance(x, float) and x.is_integer() and abs(x) < 1e16):
        return str(int(x))
    return f"{x:.4g}"
