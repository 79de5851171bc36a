"""Per-run metric series kept in growable numpy arrays, and downsampling for plots.

A run of 1,000 epochs logs a few thousand events; fifty of them must stay cheap to keep and to
plot, so values live in float arrays (amortised doubling) rather than lists of dicts, and a plot
never draws more points than it has columns.
"""

from __future__ import annotations

import numpy as np

# Event fields that are bookkeeping, not measurements.
_META = {"run_id", "epoch", "step", "time", "kind", "split", "state", "error", "resumed", "epoch_base"}


class Series:
    """An (x, y) series that grows by appending; ``x`` counts epochs completed (1 = after the first epoch)."""

    __slots__ = ("_x", "_y", "n")

    def __init__(self, capacity: int = 64):
        self._x = np.empty(capacity, dtype=np.float64)
        self._y = np.empty(capacity, dtype=np.float64)
        self.n = 0

    def append(self, x: float, y: float) -> None:
        if self.n == len(self._x):
            self._x = np.resize(self._x, 2 * self.n)
            self._y = np.resize(self._y, 2 * self.n)
        self._x[self.n] = x
        self._y[self.n] = y
        self.n += 1

    @property
    def x(self) -> np.ndarray:
        return self._x[: self.n]

    @property
    def y(self) -> np.ndarray:
        return self._y[: self.n]

    def last(self) -> float | None:
        return float(self._y[self.n - 1]) if self.n else None

    def __len__(self) -> int:
        return self.n


def channels_of(event: dict) -> list[tuple[str, float]]:
    """The (channel, value) pairs an event contributes, e.g. ``("val/accuracy", 0.91)``.

    Every numeric field of every kind becomes ``<kind>/<field>`` (eval events use their split
    as the kind), so monitors added later show up without changes here. Lists are skipped.
    """
    kind = event.get("kind")
    if kind in (None, "status"):
        return []
    if kind == "eval":
        kind = event.get("split") or "val"
    out = []
    for key, value in event.items():
        if key in _META or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        out.append((f"{kind}/{key}", float(value)))
    return out


def downsample(x: np.ndarray, y: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` points, keeping the first and the last and NaNs out."""
    keep = np.isfinite(y)
    if not keep.all():
        x, y = x[keep], y[keep]
    n = len(x)
    if n <= max_points or max_points < 2:
        return x, y
    idx = np.unique(np.linspace(0, n - 1, max_points).round().astype(int))
    return x[idx], y[idx]
