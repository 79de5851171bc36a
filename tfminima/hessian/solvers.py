"""Matrix-level solvers: everything here only needs ``matvec(v) -> H v`` on flat float64 vectors.

Lanczos (:func:`lanczos`, :func:`lanczos_tridiagonal`), PyHessian's power iteration
(:func:`power_iteration`), ARPACK (:func:`arpack`), Hutchinson and Hutch++ traces (:func:`hutchinson`,
:func:`hutch_plus_plus`), stochastic Lanczos quadrature (:func:`slq`) and the Frobenius norm
(:func:`frobenius_estimate`). Pure NumPy/SciPy -- no TensorFlow -- so they are tested on plain
matrices with known spectra and work on any symmetric operator (the Hessian, the gradient covariance).
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable

import numpy as np
import scipy.linalg
import scipy.sparse.linalg

from tfminima.hessian.results import DensityResult, EigenResult, FrobeniusResult, TraceResult

__all__ = [
    "EIGEN_SOLVERS",
    "Matvec",
    "arpack",
    "frobenius_estimate",
    "hutch_plus_plus",
    "hutchinson",
    "lanczos",
    "lanczos_tridiagonal",
    "power_iteration",
    "slq",
    "solver_context",
]

_EPS23 = np.finfo(np.float64).eps ** (2.0 / 3.0)  # ARPACK's absolute floor for the relative test

Matvec = Callable[[np.ndarray], np.ndarray]

MIN_STEPS = 10
"""Products before Lanczos may declare a Ritz pair converged (``k − 1`` more for ``k`` pairs): a warm start
near another eigenvector converges to the wrong pair after a few products; see :func:`lanczos`."""
WARM_MIX = 0.25
"""Norm of the random part added to a unit warm start."""
GUARD_VECTORS = 2
"""Ritz vectors after the wanted ones that :func:`lanczos` returns for the next warm start."""


@contextlib.contextmanager
def solver_context():
    """What every model-level solver runs inside: NumPy's BLAS on one thread.

    Between products the solvers do small vector operations in NumPy; OpenBLAS threads then spin-wait
    for more work and take the cores TensorFlow needs for the next product (measured on 2 cores: each
    product ~70 % slower). TensorFlow does the heavy work, so NumPy's BLAS gets one thread meanwhile.
    """
    with _single_threaded_blas():
        yield


@contextlib.contextmanager
def _single_threaded_blas():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # an optional nicety: without it only speed suffers
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


# --------------------------------------------------------------------------------------------------
# Lanczos
# --------------------------------------------------------------------------------------------------


class _LanczosProcess:
    """The Lanczos recurrence with full reorthogonalisation (classical Gram-Schmidt applied twice).

    Full reorthogonalisation keeps the basis orthonormal to rounding, so Ritz values never duplicate and
    the residual of a Ritz pair is exactly ``β_m |s_mi|``. On breakdown (an invariant subspace) it either
    stops or, with ``restart=True``, continues from a random vector orthogonal to the basis, so eigenvalues
    outside the first Krylov space are found too. The basis grows on demand.
    """

    def __init__(self, matvec: Matvec, v0: np.ndarray, max_steps: int, rng, restart: bool = True):
        self.matvec = matvec
        self.n = v0.size
        self.max_steps = int(max_steps)
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

    def _grow(self):
        if self.steps + 1 >= self.Q.shape[0]:
            bigger = np.empty((min(2 * self.Q.shape[0], self.max_steps + 1), self.n))
            bigger[: self.Q.shape[0]] = self.Q
            self.Q = bigger

    def step(self) -> None:
        j = self.steps
        q = self.Q[j]
        w = np.asarray(self.matvec(q), np.float64).reshape(-1)
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
        if self.steps >= min(self.n, self.max_steps):
            self.beta.append(b)
            self.done = True
            return
        self._grow()
        if b > 1e-12 * max(self.norm_estimate, np.finfo(float).tiny):
            self.beta.append(b)
            self.Q[j + 1] = w / b
            return
        # Breakdown: the Krylov space is invariant.
        if not self.restart:
            self.beta.append(b)
            self.done = True
            return
        r = self.rng.standard_normal(self.n)
        for _ in range(2):
            r -= basis.T @ (basis @ r)
        self.beta.append(0.0)
        self.Q[j + 1] = r / np.linalg.norm(r)

    def tridiagonal(self) -> tuple[np.ndarray, np.ndarray]:
        m = self.steps
        return np.asarray(self.alpha), np.asarray(self.beta[: m - 1])

    def ritz(self) -> tuple[np.ndarray, np.ndarray]:
        """Ritz values (ascending) and the eigenvectors of T."""
        d, e = self.tridiagonal()
        return scipy.linalg.eigh_tridiagonal(d, e)


def _start_vector(init, n: int, rng) -> np.ndarray:
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


def _mixed_start(init, n: int, rng, mix: float) -> np.ndarray:
    """The Lanczos start: random, or the warm start ``init`` plus a random part of relative norm ``mix``.

    A Krylov space grown from (nearly) an eigenvector never sees the others: started on the second
    eigenvector, Lanczos returns the second eigenvalue, converged, after one product. The random part
    gives every eigenvector a share of the start, as a random start does.
    """
    v = _start_vector(init, n, rng)
    if init is None or mix <= 0:
        return v
    r = rng.standard_normal(n)
    return v / np.linalg.norm(v) + mix * r / np.linalg.norm(r)


def _check_which(which: str) -> None:
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
) -> EigenResult:
    """The ``k`` largest (or smallest) eigenpairs of a symmetric operator by Lanczos.

    Stops when every wanted Ritz pair has ``‖H v − θ v‖ ≤ tol · max(|θ|, ε^(2/3)·‖T‖)`` (ARPACK's test):
    the residual bounds the eigenvalue error, so the relative error is at most ``tol`` and in practice
    far below (it shrinks like residual² / gap). One product per iteration; ``max_iter`` defaults to
    ``min(n, 300)``. Repeated eigenvalues appear once (a single-vector Krylov method cannot see more).

    ``init`` warm-starts from a vector, or rows of vectors that are summed (a previous result's
    ``eigenvectors`` and ``guard_vectors``: if the top two eigenvalues have crossed since, the new top
    direction is among them). A Krylov space grown from (nearly) one eigenvector never sees the others,
    so the warm start gets a random part of relative norm ``warm_mix`` (default ``WARM_MIX``), and no pair counts as converged
    before ``min_steps`` products (default ``MIN_STEPS + k − 1``). That is a probabilistic guard, as
    any random start is: started exactly on the second eigenvector, the warm start must first amplify
    the first eigenvector's random share (~1/√n) past it. Measured (BENCHMARKS.md): a wrong λ in 0 of
    40 starts when (λ₁−λ₂)/(λ₂−λ_min) = 0.16, in up to 4 of 40 when it is 0.04.
    """
    _check_which(which)
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and n={n}, got {k}")
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    max_iter = min(n, 300 if max_iter is None else int(max_iter))
    if max_iter < k:
        raise ValueError(f"max_iter={max_iter} is smaller than k={k}")
    min_steps = min(max_iter, MIN_STEPS + k - 1 if min_steps is None else max(int(min_steps), k))
    start_vector = _mixed_start(init, n, rng, WARM_MIX if warm_mix is None else warm_mix)
    proc = _LanczosProcess(matvec, start_vector, max_iter, rng, restart=True)
    converged = False
    while True:
        proc.step()
        if proc.steps >= min_steps or proc.done:
            theta, S = proc.ritz()
            idx = np.arange(len(theta) - k, len(theta))[::-1] if which == "largest" else np.arange(k)[::-1]
            residuals = proc.last_beta * np.abs(S[-1, idx])
            scale = max(np.max(np.abs(theta)), np.finfo(float).tiny)
            converged = bool(np.all(residuals <= tol * np.maximum(np.abs(theta[idx]), _EPS23 * scale)))
            if converged or proc.done or proc.steps >= max_iter:
                break
    if not converged:
        warnings.warn(
            f"Lanczos stopped after {proc.steps} products without reaching tol={tol}; "
            f"residuals {residuals}",
            RuntimeWarning,
            stacklevel=2,
        )
    vectors = guards = None
    if return_eigenvectors:
        order = np.arange(len(theta))[::-1] if which == "largest" else np.arange(len(theta))
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
    proc = _LanczosProcess(matvec, np.asarray(v0, np.float64), min(steps, v0.size), None, restart=False)
    while not proc.done:
        proc.step()
    return proc.tridiagonal()


# --------------------------------------------------------------------------------------------------
# Power iteration and ARPACK, for comparison
# --------------------------------------------------------------------------------------------------


def _power_core(matvec, n, k, tol, max_iter, rng, init, shift=0.0):
    """PyHessian's loop on ``H − shift·I``: stop when the Rayleigh quotient changes by < tol (relative)."""
    values, vectors, residuals, count, converged = [], [], [], 0, True
    for i in range(k):
        v = _start_vector(init if i == 0 else None, n, rng)
        value, done = None, False
        for _ in range(max_iter):
            for u in vectors:  # deflation, as PyHessian's orthnormal()
                v = v - (u @ v) * u
            v = v / np.linalg.norm(v)
            hv = np.asarray(matvec(v), np.float64).reshape(-1) - shift * v
            count += 1
            rayleigh = float(v @ hv)
            residual = float(np.linalg.norm(hv - rayleigh * v))
            previous, value = value, rayleigh
            current = v
            norm = np.linalg.norm(hv)
            if norm == 0:
                done = True
                break
            v = hv / norm
            if previous is not None and abs(previous - rayleigh) / (abs(previous) + 1e-6) < tol:
                done = True
                break
        converged &= done
        values.append(value)
        vectors.append(current)
        residuals.append(residual)
    return np.asarray(values), np.asarray(vectors), np.asarray(residuals), count, converged


def power_iteration(
    matvec: Matvec,
    n: int,
    k: int = 1,
    *,
    tol: float = 1e-3,
    max_iter: int = 100,
    seed: int = 0,
    which: str = "largest",
    init=None,
    return_eigenvectors: bool = True,
) -> EigenResult:
    """PyHessian-style power iteration (its defaults: ``maxIter=100``, ``tol=1e-3`` relative change).

    Kept for comparison: the relative-change stop fires long before the error is ``tol`` when the top
    two eigenvalues are close. Power iteration finds the eigenvalue σ of largest *magnitude*; when σ is
    at the wrong end of the spectrum (negative for ``which="largest"``, positive for ``"smallest"``) it
    iterates again on ``H − σ I`` (all products counted). ``k > 1`` uses deflation, as PyHessian.
    """
    _check_which(which)
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    values, vectors, residuals, count, converged = _power_core(matvec, n, k, tol, max_iter, rng, init)
    dominant = float(values[0])
    if (which == "smallest") == (dominant > 0):  # the dominant eigenvalue is at the other end
        values, vectors, residuals, more, ok = _power_core(matvec, n, k, tol, max_iter, rng, None, dominant)
        values, count, converged = values + dominant, count + more, ok
    order = np.argsort(values)[::-1]
    return EigenResult(
        eigenvalues=values[order],
        eigenvectors=vectors[order] if return_eigenvectors else None,
        residuals=residuals[order],
        hvp_count=count,
        seconds=time.perf_counter() - start,
        converged=bool(converged),
        method="power",
    )


def arpack(
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
) -> EigenResult:
    """``scipy.sparse.linalg.eigsh`` (implicitly restarted Lanczos) on the operator, for comparison."""
    _check_which(which)
    start = time.perf_counter()
    count = [0]

    def counted(v):
        count[0] += 1
        return np.asarray(matvec(np.ravel(v)), np.float64)

    op = scipy.sparse.linalg.LinearOperator((n, n), matvec=counted, dtype=np.float64)
    v0 = _start_vector(init, n, np.random.default_rng(seed))
    try:
        values, vectors = scipy.sparse.linalg.eigsh(
            op, k=k, which="LA" if which == "largest" else "SA", tol=tol, v0=v0, maxiter=max_iter
        )
        converged = True
    except scipy.sparse.linalg.ArpackNoConvergence as err:
        values, vectors, converged = err.eigenvalues, err.eigenvectors, False
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order].T
    products = count[0]
    residuals = np.array([np.linalg.norm(matvec(v) - lam * v) for lam, v in zip(values, vectors)])
    return EigenResult(
        eigenvalues=values,
        eigenvectors=vectors if return_eigenvectors else None,
        residuals=residuals,
        hvp_count=products,  # the residual check above is not counted: it is a verification
        seconds=time.perf_counter() - start,
        converged=converged,
        method="eigsh",
    )


# --------------------------------------------------------------------------------------------------
# Trace, density, Frobenius norm
# --------------------------------------------------------------------------------------------------


def _rademacher(rng, shape) -> np.ndarray:
    return rng.integers(0, 2, size=shape).astype(np.float64) * 2.0 - 1.0


def _mean_stderr(samples: np.ndarray) -> tuple[float, float]:
    mean = float(np.mean(samples))
    stderr = float(np.std(samples, ddof=1) / np.sqrt(len(samples))) if len(samples) > 1 else float("nan")
    return mean, stderr


def hutchinson(
    matvec: Matvec,
    n: int,
    *,
    tol: float | None = None,
    max_probes: int = 100,
    min_probes: int = 10,
    seed: int = 0,
) -> TraceResult:
    """Hutchinson's ``tr(H) ≈ mean zᵀHz`` over Rademacher probes ``z``.

    With ``tol``, stops once ``stderr ≤ tol·|mean|`` (after ``min_probes``, so the standard error itself
    is estimated from enough samples) -- a stop on the estimator's uncertainty, not on how much the running
    mean moved, which stops early whenever two probes happen to agree.
    """
    if max_probes < 1:
        raise ValueError(f"max_probes must be >= 1, got {max_probes}")
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    samples: list[float] = []
    converged = tol is None
    for _ in range(max_probes):
        z = _rademacher(rng, n)
        samples.append(float(z @ np.asarray(matvec(z), np.float64).reshape(-1)))
        if tol is not None and len(samples) >= max(min_probes, 2):
            mean, stderr = _mean_stderr(np.asarray(samples))
            if stderr <= tol * abs(mean):
                converged = True
                break
    mean, stderr = _mean_stderr(np.asarray(samples))
    return TraceResult(
        value=mean,
        stderr=stderr,
        hvp_count=len(samples),
        seconds=time.perf_counter() - start,
        converged=converged,
        method="hutchinson",
        samples=np.asarray(samples),
    )


def hutch_plus_plus(matvec: Matvec, n: int, *, max_probes: int = 100, seed: int = 0) -> TraceResult:
    """Hutch++ (Meyer, Musco, Musco, Woodruff 2021): exact trace on a sketched top subspace + Hutchinson on the rest.

    A third of the budget sketches ``H S``, a third computes ``tr(QᵀHQ)`` on its orthonormal basis, the
    last third probes the deflated remainder; ``stderr`` is that remainder's standard error. Much more
    accurate than Hutchinson when a few eigenvalues dominate, as in trained networks.
    """
    if max_probes < 3:
        raise ValueError(f"hutch++ needs max_probes >= 3, got {max_probes}")
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    s = min(max_probes // 3, n)
    mv = lambda v: np.asarray(matvec(v), np.float64).reshape(-1)
    sketch = np.stack([mv(z) for z in _rademacher(rng, (s, n))], axis=1)
    Q, _ = np.linalg.qr(sketch)
    top = float(sum(q @ mv(q) for q in Q.T))
    rest = max_probes - 2 * s
    samples = []
    for g in _rademacher(rng, (rest, n)):
        g = g - Q @ (Q.T @ g)
        samples.append(float(g @ mv(g)))
    samples = np.asarray(samples)
    mean, stderr = _mean_stderr(samples) if len(samples) else (0.0, float("nan"))
    return TraceResult(
        value=top + mean,
        stderr=stderr,
        hvp_count=2 * s + rest,
        seconds=time.perf_counter() - start,
        converged=True,
        method="hutch++",
        samples=samples,
    )


def slq(matvec: Matvec, n: int, *, runs: int = 10, steps: int = 80, seed: int = 0) -> DensityResult:
    """Stochastic Lanczos quadrature (Golub-Meurant; Ghorbani et al. 2019, PyHessian's ``density``).

    Each run starts Lanczos from a normalised Rademacher vector ``v``; the eigenvalues of ``T`` are the
    nodes and the squared first components of its eigenvectors the weights of a Gauss quadrature for
    ``vᵀ f(H) v``, exact for polynomials of degree < 2·steps. Averaging runs estimates ``tr f(H) / n``.
    """
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    steps = min(int(steps), n)
    nodes = np.zeros((runs, steps))
    weights = np.zeros((runs, steps))
    count = 0
    for r in range(runs):
        proc = _LanczosProcess(matvec, _rademacher(rng, n), steps, rng, restart=False)
        while not proc.done:
            proc.step()
        count += proc.steps
        theta, S = proc.ritz()
        nodes[r, : len(theta)] = theta
        weights[r, : len(theta)] = S[0] ** 2 / runs
    return DensityResult(nodes=nodes, weights=weights, hvp_count=count, seconds=time.perf_counter() - start)


def frobenius_estimate(matvec: Matvec, n: int, *, probes: int = 30, seed: int = 0) -> FrobeniusResult:
    """``‖H‖_F = sqrt(E‖H z‖²)`` over Rademacher probes (``E zzᵀ = I``, so ``E‖Hz‖² = tr(HᵀH)``).

    The standard error comes from the samples of ``‖Hz‖²`` through the square root (delta method).
    """
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    samples = np.array(
        [np.sum(np.asarray(matvec(z), np.float64) ** 2) for z in _rademacher(rng, (probes, n))]
    )
    mean, stderr = _mean_stderr(samples)
    value = float(np.sqrt(mean))
    return FrobeniusResult(
        value=value,
        stderr=stderr / (2 * value) if value > 0 else float("nan"),
        hvp_count=probes,
        seconds=time.perf_counter() - start,
        method="hvp",
        samples=samples,
    )


EIGEN_SOLVERS = {"lanczos": lanczos, "power": power_iteration, "eigsh": arpack}
"""The eigensolvers by the names ``top_eigenvalues(method=...)`` takes."""
