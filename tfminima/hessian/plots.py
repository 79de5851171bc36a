"""Plots of the spectral density: the Gaussian-broadened SLQ curve (NumPy) and its figure (matplotlib,
imported only when a figure is drawn)."""

from __future__ import annotations

import numpy as np

from tfminima.hessian.results import DensityResult

__all__ = ["density_curve", "plot_density"]


def density_curve(result: DensityResult, *, sigma: float | None = None, num: int = 1000):
    """Gaussian-broadened density on a grid: ``φ(t) = Σ w_j N(t; θ_j, σ²)``, integrating to 1.

    ``sigma`` defaults to 1 % of the node range (PyHessian scales its width with the range too).
    """
    mask = result.weights > 0
    nodes, weights = result.nodes[mask], result.weights[mask]
    lo, hi = float(nodes.min()), float(nodes.max())
    span = max(hi - lo, 1e-12 * max(abs(lo), abs(hi), 1.0))
    sigma = 0.01 * span if sigma is None else float(sigma)
    grid = np.linspace(lo - 5 * sigma - 0.01 * span, hi + 5 * sigma + 0.01 * span, num)
    z = (grid[:, None] - nodes[None, :]) / sigma
    values = (np.exp(-0.5 * z**2) @ weights) / (sigma * np.sqrt(2 * np.pi))
    return grid, values


def plot_density(result: DensityResult, ax=None, *, sigma: float | None = None, num: int = 1000):
    """Plot the broadened density on a log y axis (as Ghorbani et al. and PyHessian); returns the axes.

    Without ``ax`` a new figure is made with matplotlib's constrained layout, so its axis labels (and any
    the caller sets later) stay inside the image however it is saved; a given ``ax`` is the caller's layout.
    """
    import matplotlib.pyplot as plt

    grid, values = density_curve(result, sigma=sigma, num=num)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5), layout="constrained")
    floor = max(values.max() * 1e-12, np.finfo(float).tiny)
    ax.semilogy(grid, np.maximum(values, floor))
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density (log)")
    return ax
