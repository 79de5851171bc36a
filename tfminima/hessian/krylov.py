"""Krylov methods: the Lanczos process with full reorthogonalisation, its stopping rule, the extreme eigenpairs.

Pure NumPy. The process advances one product at a time through ``matvec``, a block of processes in
lockstep through a block product (stochastic Lanczos quadrature), or many steps at once through a
*runner*: a function that continues the same recurrence elsewhere -- in one traced TensorFlow loop over
a retained first gradient (:mod:`tfminima.hessian.retained`) -- with the same stopping rule
(:class:`StopRule`), and hands back the extended basis.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable

import numpy as np
import scipy.linalg

from tfminima.hessian.results import EigenResult

__all__ = [
    "GUARD_VECTORS",
    "MIN_STEPS",
    "WARM_MIX",
    "LanczosProcess",
    "Runner",
    "StopRule",
    "lanczos",
    "lanczos_tridiagonal",
]

Matvec = Callable[[np.ndarray], np.ndarray]

EPS23 = np.finfo(np.float64).eps ** (2.0 / 3.0)  # ARPACK's absolute floor for the relative test
BREAKDOWN = 1e-12  # β below this times the norm estimate: the Krylov space is invariant

MIN_STEPS = 10
"""Products before Lanczos may declare a Ritz pair converged (``k − 1`` more for ``k`` pairs): a warm start
near another eigenvector converges to the wrong pair after a few products; see :func:`lanczos`."""
WARM_MIX = 0.25
"""Norm of the random part added to a unit warm start."""
GUARD_VECTORS = 2
"""Ritz vectors after the wanted ones that :func:`lanczos` returns for the next warm start."""


@dataclasses.dataclass(frozen=True)
class StopRule:
    """When Lanczos stops: every wanted Ritz pair has ``‖H v − θ v‖ ≤ tol · max(|θ|, ε^(2/3)·max|θ|)``
    (ARPACK's test), checked from ``min_steps`` products on; ``max_steps`` products at most."""

    k: int
    tol: float
    largest: bool
    min_steps: int
    max_steps: int

    def wanted(self, count: int) -> np.ndarray:
        """Indices of the wanted Ritz values among ``count`` ascending ones, in descending order."""
        return np.arange(count - self.k, count)[::-1] if self.largest else np.arange(self.k)[::-1]

    def check(self, theta: np.ndarray, S: np.ndarray, last_beta: float) -> tuple[np.ndarray, np.ndarray, bool]:
        """``(wanted indices, their residuals β_m |s_mi|, converged)`` for Ritz values ``theta`` (ascending)."""
        idx = self.wanted(len(theta))
        residuals = last_beta * np.abs(S[-1, idx])
        scale = max(np.max(np.abs(theta)), np.finfo(float).tiny)
        converged = bool(np.all(residuals <= self.tol * np.maximum(np.abs(theta[idx]), EPS23 * scale)))
        return idx, residuals, converged


@dataclasses.dataclass
class RunnerOutcome:
    """What a runner hands back: the process's arrays after its steps and why it stopped.

    ``status``: ``"converged"`` (the rule was met; ``basis`` has the next vector too), ``"limit"`` (the
    last allowed step: ``beta`` has its β, no next vector) or ``"breakdown"`` (β vanished on the last
    step: ``beta`` is one shorter than ``alpha``; the process restarts or stops as it does itself).
    """

    basis: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    last_beta: float
    norm_estimate: float
    status: str


Runner = Callable[["LanczosProcess", StopRule], RunnerOutcome]
"""Continues a process from its ``basis()``, ``alpha``, ``beta`` and ``norm_estimate`` under a rule."""


class LanczosProcess:
    """The Lanczos recurrence with full reorthogonalisation (classical Gram-Schmidt applied twice).

    Full reorthogonalisation keeps the basis orthonormal to rounding, so Ritz values never duplicate and
    the residual of a Ritz pair is exactly ``β_m |s_mi|``. On breakdown (an invariant subspace) it either
    stops or, with ``restart=True``, continues from a random vector orthogonal to the basis, so eigenvalues
    outside the first Krylov space are found too. The basis grows on demand.
    """

    def __init__(self, matvec: Matvec | None, v0: np.ndarray, max_steps: int, rng, restart: bool = True):
        self.matvec = matvec
        self.n = v0.size
        self.max_steps = min(int(max_steps), self.n)
        self.rng = rng
        self.restart = restart
        self.Q = np.empty((min(self.max_steps + 1, 32), self.n))
        self.Q[0] = v0 / np.linalg.norm(v0)
        self.alpha: list[float] = []
        self.beta: list[float] = []  # beta[j] couples q_j and q_{j+1} in T (0 after a restart)
        self.last_beta = np.inf  # β of the newest step: the Ritz residual scale
        self.norm_estimate = 0.0
        self.done = False

    @property
    def steps(self) -> int:
        return len(self.alpha)

    @property
    def current(self) -> np.ndarray:
        """The vector the next step multiplies."""
        return self.Q[self.steps]

    def basis(self) -> np.ndarray:
        """The basis so far, the vector the next step multiplies included."""
        return self.Q[: self.steps + 1]

    def step(self) -> None:
        """One product through ``matvec``."""
        self.absorb(self.matvec(self.current))

    def absorb(self, w) -> None:
        """One step, given ``w = H q`` for the current vector ``q``."""
        j = self.steps
        q = self.Q[j]
        w = np.array(w, np.float64).reshape(-1)
        a = float(q @ w)
        w -= a * q
        if j > 0:
            w -= self.beta[j - 1] * self.Q[j - 1]
        basis = self.Q[: j + 1]
        for _ in range(2):
            w -= basis.T @ (basis @ w)
        b = float(np.linalg.norm(w))
        self.alpha.append(a)
        self.last_beta = b
        self.norm_estimate = max(self.norm_estimate, abs(a) + b)
        if self.steps >= self.max_steps:
            self.beta.append(b)
            self.done = True
            return
        if b > BREAKDOWN * max(self.norm_estimate, np.finfo(float).tiny):
            self._grow(self.steps + 1)
            self.beta.append(b)
            self.Q[j + 1] = w / b
            return
        self._breakdown(b)

    def run(self, runner: Runner, rule: StopRule) -> None:
        """Many steps through ``runner``, which stops where :meth:`absorb` and ``rule`` would."""
        out = runner(self, rule)
        self._grow(len(out.basis))
        self.Q[: len(out.basis)] = out.basis
        self.alpha, self.beta = [float(a) for a in out.alpha], [float(b) for b in out.beta]
        self.last_beta, self.norm_estimate = float(out.last_beta), float(out.norm_estimate)
        if out.status == "limit":
            self.done = True
        elif out.status == "breakdown":
            self._breakdown(self.last_beta)

    def _breakdown(self, b: float) -> None:
        if not self.restart:
            self.beta.append(b)
            self.done = True
            return
        basis = self.Q[: self.steps]
        r = self.rng.standard_normal(self.n)
        for _ in range(2):
            r -= basis.T @ (basis @ r)
        self._grow(self.steps + 1)
        self.beta.append(0.0)
        self.Q[self.steps] = r / np.linalg.norm(r)

    def _grow(self, rows: int) -> None:
        if rows > self.Q.shape[0]:
            bigger = np.empty((min(max(2 * self.Q.shape[0], rows), self.max_steps + 1), self.n))
            bigger[: self.Q.shape[0]] = self.Q
            self.Q = bigger

    def tridiagonal(self) -> tuple[np.ndarray, np.ndarray]:
        m = self.steps
        return np.asarray(self.alpha), np.asarray(self.beta[: m - 1])

    def ritz(self) -> tuple[np.ndarray, np.ndarray]:
        """Ritz values (ascending) and the eigenvectors of T."""
        d, e = self.tridiagonal()
        return scipy.linalg.eigh_tridiagonal(d, e)


def start_vector(init, n: int, rng) -> np.ndarray:
    """A random start, or the warm start ``init`` (a vector, or rows of vectors that are summed)."""
    if init is None:
        return rng.standard_normal(n)
    v = np.asarray(init, np.float64)
    v = v.sum(axis=0) if v.ndim == 2 else v.reshape(-1)
    if v.size != n:
        raise ValueError(f"init has {v.size} entries, expected {n}")
    if not np.all(np.isfinite(v)) or np.linalg.norm(v) == 0:
        return rng.standard_normal(n)
    return v


def mixed_start(init, n: int, rng, mix: float) -> np.ndarray:
    """The Lanczos start: random, or the warm start ``init`` plus a random part of relative norm ``mix``.

    A Krylov space grown from (nearly) an eigenvector never sees the others: started on the second
    eigenvector, Lanczos returns the second eigenvalue, converged, after one product. The random part
    gives every eigenvector a share of the start, as a random start does.
    """
    v = start_vector(init, n, rng)
    if init is None or mix <= 0:
        return v
    r = rng.standard_normal(n)
    return v / np.linalg.norm(v) + mix * r / np.linalg.norm(r)


def check_which(which: str) -> None:
    if which not in ("largest", "smallest"):
        raise ValueError(f"which must be 'largest' or 'smallest', got {which!r}")


def lanczos(
    matvec: Matvec,
    n: int,
    k: int = 1,
    *,
    tol: float = 1e-3,
    max_iter: int | None = None,
    seed: int = 0,
    which: str = "largest",
    init=None,
    return_eigenvectors: bool = True,
    min_steps: int | None = None,
    warm_mix: float | None = None,
    runner: Runner | None = None,
) -> EigenResult:
    """The ``k`` largest (or smallest) eigenpairs of a symmetric operator by Lanczos.

    Stops when every wanted Ritz pair has ``‖H v − θ v‖ ≤ tol · max(|θ|, ε^(2/3)·‖T‖)`` (ARPACK's test):
    the residual bounds the eigenvalue error, so the relative error is at most ``tol`` and in practice
    far below (it shrinks like residual² / gap). One product per iteration; ``max_iter`` defaults to
    ``min(n, 300)``. Repeated eigenvalues appear once (a single-vector Krylov method cannot see more).

    ``init`` warm-starts from a vector, or rows of vectors that are summed (a previous result's
    ``eigenvectors`` and ``guard_vectors``: if the top two eigenvalues have crossed since, the new top
    direction is among them). A Krylov space grown from (nearly) one eigenvector never sees the others,
    so the warm start gets a random part of relative norm ``warm_mix`` (default ``WARM_MIX``), and no
    pair counts as converged before ``min_steps`` products (default ``MIN_STEPS + k − 1``). That is a
    probabilistic guard, as any random start is: started exactly on the second eigenvector, the warm
    start must first amplify the first eigenvector's random share (~1/√n) past it. Measured
    (BENCHMARKS.md): a wrong λ in 0 of 40 starts when (λ₁−λ₂)/(λ₂−λ_min) = 0.16, in up to 4 of 40 when
    it is 0.04.

    ``runner`` (optional) advances the process many steps at a time with the same rule (see
    :mod:`tfminima.hessian.retained`); ``matvec`` is then used for nothing but the signature's sake.
    """
    check_which(which)
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and n={n}, got {k}")
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    max_iter = min(n, 300 if max_iter is None else int(max_iter))
    if max_iter < k:
        raise ValueError(f"max_iter={max_iter} is smaller than k={k}")
    least = MIN_STEPS + k - 1 if min_steps is None else max(int(min_steps), k)
    rule = StopRule(k=k, tol=float(tol), largest=which == "largest", min_steps=min(max_iter, least), max_steps=max_iter)
    v0 = mixed_start(init, n, rng, WARM_MIX if warm_mix is None else warm_mix)
    proc = LanczosProcess(matvec, v0, max_iter, rng, restart=True)
    while True:
        if runner is not None and not proc.done:
            proc.run(runner, rule)
        else:
            proc.step()
        if proc.steps >= rule.min_steps or proc.done:
            theta, S = proc.ritz()
            idx, residuals, converged = rule.check(theta, S, proc.last_beta)
            if converged or proc.done:
                break
    if not converged:
        warnings.warn(
            f"Lanczos stopped after {proc.steps} products without reaching tol={tol}; residuals {residuals}",
            RuntimeWarning,
            stacklevel=2,
        )
    vectors = guards = None
    if return_eigenvectors:
        order = np.arange(len(theta))[::-1] if rule.largest else np.arange(len(theta))
        guard_idx = order[k : k + GUARD_VECTORS]
        vectors, guards = (_unit_rows(S[:, i].T @ proc.Q[: proc.steps]) for i in (idx, guard_idx))
    return EigenResult(
        eigenvalues=theta[idx],
        eigenvectors=vectors,
        residuals=residuals,
        hvp_count=proc.steps,
        seconds=time.perf_counter() - start,
        converged=converged,
        method="lanczos",
        guard_vectors=guards,
    )


def _unit_rows(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def lanczos_tridiagonal(matvec: Matvec, v0: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Diagonal and off-diagonal of the Lanczos matrix ``T`` for start ``v0`` (stops early on breakdown)."""
    proc = LanczosProcess(matvec, np.asarray(v0, np.float64), min(steps, v0.size), None, restart=False)
    while not proc.done:
        proc.step()
    return proc.tridiagonal()
