"""The edge of stability 2(1+β)/η of each run, as the Monitor's λ_max panel draws it. No Textual.

Heavy-ball SGD with step η and momentum β cannot stay where λ_max > 2(1+β)/η (Cohen et al. 2021); the
formula is :func:`tfminima.stability.edge_of_stability`'s, the one the sharpness monitor logs
``stability`` with and the report draws (Nesterov and SVAG included). η is the epoch's scheduled
learning rate (the ``schedule/lr`` series), so under a schedule the edge is a step function over the
epochs, one value per logged epoch.

What is drawn: only the parts of a run's edge at most :data:`EDGE_REACH` times the largest λ_max on the
panel. A small η puts the edge far above the curves (η = 0.01 → 200 against a λ_max of 20), and a
line drawn there, or clipped to the top, would squash the λ_max curves into the bottom rows (or show
an edge that is not there); within a factor of 3 the curves keep at least a third of the panel's
height, and a run whose λ_max is under a third of its edge is nowhere near it. Epochs whose edge is
out of reach leave a gap rather than a line joining the parts on either side.
"""

from __future__ import annotations

import numpy as np

from tfminima.stability import edge_of_stability

EDGE_REACH = 3.0  # draw an edge only up to this many times the panel's largest λ_max
Points = tuple[np.ndarray, np.ndarray]


def edge_label(nesterov: bool = False) -> str:
    """The edge's formula as the legend names it (β = 0 included: the name readers know)."""
    return "2(1+β)/((1+2β)η)" if nesterov else "2(1+β)/η"


def edge_series(series: dict[str, Points], lr: float | None, momentum: float = 0.0, *,
                nesterov: bool = False, svag: int = 1) -> Points:
    """The run's edge at each logged epoch: η from ``schedule/lr`` where the run logged it (and SVAG's
    l from ``schedule/svag``), else the constant ``lr`` at the epochs of its train events (or of its
    λ_max when it has none). Empty when no η is known."""
    if "schedule/lr" in series and len(series["schedule/lr"][0]):
        epochs, lrs = series["schedule/lr"]
    else:
        source = next((series[ch] for ch in ("train/loss", "sharpness/lambda_max") if ch in series), None)
        if source is None or lr is None:
            return np.zeros(0), np.zeros(0)
        epochs, lrs = source[0], np.full(len(source[0]), float(lr))
    levels = np.full(len(epochs), float(svag))
    if "schedule/svag" in series:
        sx, sy = series["schedule/svag"]
        at = {float(x): float(y) for x, y in zip(sx, sy)}
        levels = np.array([at.get(float(x), float(svag)) for x in epochs])
    lrs = np.asarray(lrs, dtype=float)
    ok = np.isfinite(lrs) & (lrs > 0) & (levels >= 1)
    edges = np.full(len(epochs), np.nan)
    # the formula is plain arithmetic: one call for every epoch (fifty runs of 1,000 epochs, four times a second)
    edges[ok] = edge_of_stability(lrs[ok], momentum, nesterov=nesterov, svag=levels[ok])
    return np.asarray(epochs, dtype=float), edges


def steps(x: np.ndarray, y: np.ndarray) -> Points:
    """Step-function points: the value logged at epoch N holds over (N−1, N] (η during epoch N), so the
    line jumps at N−1 (one extra point per change of value)."""
    if len(x) < 2:
        return x, y
    change = np.nonzero(np.diff(y) != 0)[0]  # y[i + 1] differs from y[i]: jump at x[i]
    xs = np.insert(x, change + 1, x[change])
    ys = np.insert(y, change + 1, y[change + 1])
    return xs, ys


def drawn_parts(x: np.ndarray, y: np.ndarray, top: float, reach: float = EDGE_REACH) -> list[Points]:
    """The stretches of the step line at most ``reach × top`` (``top``: the panel's largest λ_max), each
    drawn on its own so a gap stays a gap. None when ``top`` is not positive."""
    if not np.isfinite(top) or top <= 0 or not len(x):
        return []
    sx, sy = steps(np.asarray(x, dtype=float), np.asarray(y, dtype=float))
    inside = np.concatenate(([False], np.isfinite(sy) & (sy <= reach * top), [False])).astype(np.int8)
    edges = np.diff(inside)  # +1 where a stretch starts, -1 one past where it ends
    starts, ends = np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]
    return [(sx[a:b], sy[a:b]) for a, b in zip(starts, ends)]
