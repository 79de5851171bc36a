"""Final metrics against η/S across runs: the numbers behind the Compare screen. No Textual.

:func:`heat_grid` lays the runs on the η × S grid (rows S, columns η, both on log spacing when
the values allow it) and gives every cell its η/S class, so cells on one iso-ratio diagonal
share a mark: the paper's claim (equal η/S → similar results) is then a visual pattern.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math

import numpy as np

from tui.store import RunRow

METRICS: dict[str, str] = {
    "val_accuracy": "val accuracy",
    "test_accuracy": "test accuracy",
    "best_val_accuracy": "best val accuracy",
    "lambda_max": "λ_max",
    "trace": "Tr(H)",
    "steps_to_target": "steps to target",
}

CSV_COLUMNS = ["group", "run_id", "state", "lr", "batch_size", "momentum", "eta_over_s", "eta_over_s_momentum",
               "eta_over_s_finite", "seed", "epochs_done", "epochs", "train_accuracy", "val_accuracy", "test_accuracy",
               "best_val_accuracy", "lambda_max", "stability", "trace", "target_reached", "steps_to_target"]


def comparable(rows: list[RunRow]) -> list[RunRow]:
    """Runs with known η and S (queued launches and broken folders are left out)."""
    return [r for r in rows if r.lr and r.batch_size and r.eta_over_s]


def available_metrics(rows: list[RunRow]) -> list[str]:
    """Metrics at least one run has a value for (λ_max and Tr(H) only with sharpness)."""
    return [m for m in METRICS if any(getattr(r, m) is not None for r in rows)
            or (m == "steps_to_target" and any(r.target_reached is not None for r in rows))]


def to_csv(rows: list[RunRow]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in sorted(rows, key=lambda r: (r.eta_over_s or 0, r.batch_size or 0, r.key)):
        w.writerow(["" if getattr(r, c) is None else getattr(r, c) for c in CSV_COLUMNS])
    return out.getvalue()


def ratio_key(value: float) -> float:
    """η/S values equal up to float noise (0.04/128 vs 0.01/32) share a key."""
    return float(f"{value:.6g}")


def log_positions(values: list[float], max_gaps: int = 3) -> list[int]:
    """Column (or row) index of each sorted value: log-spaced when the gaps are few, else ordinal."""
    if len(values) < 2:
        return list(range(len(values)))
    logs = np.log10(np.asarray(values, dtype=float))
    steps = np.diff(logs)
    unit = steps.min()
    if unit <= 0:
        return list(range(len(values)))
    pos = np.round((logs - logs[0]) / unit).astype(int)
    if pos[-1] - (len(values) - 1) > max_gaps or np.any(np.abs((logs - logs[0]) / unit - pos) > 0.25):
        return list(range(len(values)))
    return [int(p) for p in pos]


@dataclasses.dataclass
class HeatGrid:
    """Cells of the η × S grid: value (mean over seeds), run count and η/S class per cell."""

    etas: list[float]  # column values, ascending
    sizes: list[int]  # row values, ascending
    eta_pos: list[int]  # column position of each η (log spacing, with gaps)
    size_pos: list[int]
    values: dict[tuple[int, int], float]  # (row, col) -> mean metric
    counts: dict[tuple[int, int], int]
    ratio_of: dict[tuple[int, int], int]  # (row, col) -> index into ratios
    ratios: list[float]  # distinct η/S, ascending

    @property
    def vmin(self) -> float | None:
        return min(self.values.values()) if self.values else None

    @property
    def vmax(self) -> float | None:
        return max(self.values.values()) if self.values else None


def heat_grid(rows: list[RunRow], metric: str) -> HeatGrid:
    rows = comparable(rows)
    etas = sorted({float(f"{r.lr:.10g}") for r in rows})
    sizes = sorted({int(r.batch_size) for r in rows})
    ratios = sorted({ratio_key(r.lr / r.batch_size) for r in rows})
    sums: dict[tuple[int, int], list[float]] = {}
    ratio_of = {}
    for r in rows:
        cell = (sizes.index(int(r.batch_size)), etas.index(float(f"{r.lr:.10g}")))
        ratio_of[cell] = ratios.index(ratio_key(r.lr / r.batch_size))
        value = getattr(r, metric)
        if value is not None and math.isfinite(value):
            sums.setdefault(cell, []).append(float(value))
    values = {c: float(np.mean(v)) for c, v in sums.items()}
    counts = {c: len(v) for c, v in sums.items()}
    return HeatGrid(etas, sizes, log_positions(etas), log_positions(sizes), values, counts, ratio_of, ratios)


def scatter_series(rows: list[RunRow], metric: str) -> dict[int, tuple[list[float], list[float]]]:
    """Points (η/S, metric) grouped by batch size: equal η/S from different S should line up."""
    out: dict[int, tuple[list[float], list[float]]] = {}
    for r in comparable(rows):
        value = getattr(r, metric)
        if value is None or not math.isfinite(value):
            continue
        xs, ys = out.setdefault(int(r.batch_size), ([], []))
        xs.append(float(r.eta_over_s))
        ys.append(float(value))
    return dict(sorted(out.items()))


@dataclasses.dataclass
class TargetPoint:
    """One batch size of a sweep trained to a target: its best η and the mean steps over that η's seeds."""

    batch_size: int
    best_lr: float | None  # None: no η reached the target with any seed
    steps: float | None
    reached: int  # seeds of the best η that reached it
    seeds: int
    others: list[float]  # steps of every seed of the other η that reached it


def steps_to_target(rows: list[RunRow]) -> list[TargetPoint]:
    """Steps to the target against S, the best η per S chosen as the report chooses it
    (:mod:`tfminima.report.critical`): most seeds reaching the target, then the fewest steps on average
    (geometric mean over the seeds), then the smaller η. Runs still going are left out."""
    by_cell: dict[tuple[int, float], list[RunRow]] = {}
    for r in comparable(rows):
        if r.target_reached is not None or r.state == "diverged":
            by_cell.setdefault((int(r.batch_size), float(f"{r.lr:.10g}")), []).append(r)
    points = []
    for s in sorted({s for s, _ in by_cell}):
        scored = []
        for (size, lr), runs in by_cell.items():
            if size != s:
                continue
            got = [r.steps_to_target for r in runs if r.target_reached and r.steps_to_target]
            key = (-len(got) / len(runs), float(np.mean(np.log(got))) if got else math.inf, lr)
            scored.append((key, lr, runs, got))
        scored.sort(key=lambda t: t[0])
        _, lr, runs, got = scored[0]
        others = [v for _, _, _, g in scored[1:] for v in g]
        if got:
            points.append(TargetPoint(s, lr, float(np.mean(got)), len(got), len(runs), others))
        else:
            points.append(TargetPoint(s, None, None, 0, sum(len(t[2]) for t in scored), others))
    return points
