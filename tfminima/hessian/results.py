"""Result records of the spectral estimators: what was estimated, how well, and what it cost.

Plain dataclasses shared by the matrix-level solvers (:mod:`tfminima.hessian.solvers`) and the
model-level functions (:mod:`tfminima.hessian.api`); no TensorFlow. ``hvp_mode`` says how a model-level
result got its Hessian products: ``"retained"`` (one forward pass and first gradient shared by a block,
or by a whole Lanczos run) or ``"recomputed"`` (both redone for every product); None from the
matrix-level solvers.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["DensityResult", "EigenResult", "FrobeniusResult", "TraceResult"]


@dataclasses.dataclass
class EigenResult:
    """Extreme eigenpairs of a symmetric operator.

    ``eigenvalues`` descending (largest algebraic first, also for ``which="smallest"``), ``eigenvectors``
    one unit vector a row in the same order (or None), ``residuals`` ``‖H v − λ v‖`` a pair, ``hvp_count``
    operator products used, ``converged`` whether the stopping rule was met before the budget ran out.
    ``guard_vectors`` (Lanczos): the next Ritz vectors after the wanted ones, not converged, which with
    ``eigenvectors`` warm-start a later measurement (see :func:`~tfminima.hessian.solvers.lanczos`).
    """

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray | None
    residuals: np.ndarray
    hvp_count: int
    seconds: float
    converged: bool
    method: str
    guard_vectors: np.ndarray | None = None
    hvp_mode: str | None = None

    @property
    def lambda_max(self) -> float:
        return float(self.eigenvalues[0])


@dataclasses.dataclass
class TraceResult:
    """A stochastic trace estimate: ``value ± stderr`` from ``hvp_count`` products (``samples`` per probe)."""

    value: float
    stderr: float
    hvp_count: int
    seconds: float
    converged: bool
    method: str
    samples: np.ndarray
    hvp_mode: str | None = None


@dataclasses.dataclass
class DensityResult:
    """Stochastic Lanczos quadrature: the spectral density ≈ Σ weights · δ(t − nodes).

    ``nodes``/``weights`` are ``(runs, steps)`` arrays (runs that stopped early are padded with weight 0);
    the weights sum to 1, so :meth:`moment` ``(p)`` estimates ``tr(H^p)/n``.
    """

    nodes: np.ndarray
    weights: np.ndarray
    hvp_count: int
    seconds: float
    hvp_mode: str | None = None

    def moment(self, p: int) -> float:
        return float(np.sum(self.weights * self.nodes**p))


@dataclasses.dataclass
class FrobeniusResult:
    """``‖H‖_F`` estimate ``value ± stderr`` from ``E‖H z‖² = tr(H²)`` over ``hvp_count`` probes."""

    value: float
    stderr: float
    hvp_count: int
    seconds: float
    method: str
    samples: np.ndarray
    hvp_mode: str | None = None
