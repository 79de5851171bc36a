"""Matrix-level solvers: everything here only needs ``matvec(v) -> H v`` on flat float64 vectors.

The estimators whose vectors are known a block at a time (Hutchinson and Hutch++ probes, the SLQ runs
in lockstep, the Frobenius probes) also take ``matmat(V) -> H V`` and a ``block_size``: the operator
then shares work between the products of a block (:meth:`tfminima.hessian.HessianOperator.matmat`).

Lanczos (:func:`lanczos`, :func:`lanczos_tridiagonal`), PyHessian's power iteration
(:func:`power_iteration`), ARPACK (:func:`arpack`), Hutchinson and Hutch++ traces (:func:`hutchinson`,
:func:`hutch_plus_plus`), stochastic Lanczos quadrature (:func:`slq`) and the Frobenius norm
(:func:`frobenius_estimate`). Pure NumPy/SciPy -- no TensorFlow -- so they are tested on plain
matrices with known spectra and work on any symmetric operator (the Hessian, the gradient covariance).
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable

import numpy as np
import scipy.sparse.linalg

from tfminima.hessian.krylov import (
    LanczosProcess,
    check_which,
    lanczos,
    lanczos_tridiagonal,
    start_vector,
)
from tfminima.hessian.results import (
    DensityResult,
    EigenResult,
    FrobeniusResult,
    TraceResult,
)

__all__ = [
    "EIGEN_SOLVERS",
    "Matmat",
    "Matvec",
    "apply_block",
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

Matvec = Callable[[np.ndarray], np.ndarray]
Matmat = Callable[[np.ndarray], np.ndarray]
"""``H V`` for the rows of ``V`` (a block of vectors, ``(b, n) -> (b, n)``)."""


@contextlib.contextmanager
def solver_context():
    """What every model-level solver runs inside: NumPy's BLAS on one thread.

    Between products the solvers do small vector operations in NumPy; OpenBLAS threads then spin-wait
    for more work and take the cores TensorFlow needs for the next product (measured on 2 cores: each
    product ~70 % slower). TensorFlow does the heavy work, so NumPy's BLAS gets one thread meanwhile.
    """
    with _single_threaded_blas():
        yield


@functools.cache
def _blas_controller():
    """The process's one threadpoolctl controller: building one scans the loaded libraries (~5 ms,
    twice a measurement), while limiting through a kept one takes ~0.1 ms. Libraries loaded after the
    first measurement are not limited (NumPy's and SciPy's BLAS are loaded by then)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@contextlib.contextmanager
def _single_threaded_blas():
    try:
        controller = _blas_controller()
    except ImportError:  # an optional nicety: without it only speed suffers
        yield
        return
    with controller.limit(limits=1, user_api="blas"):
        yield


# --------------------------------------------------------------------------------------------------
# Power iteration and ARPACK, for comparison
# --------------------------------------------------------------------------------------------------


def _power_core(matvec, n, k, tol, max_iter, rng, init, shift=0.0):
    """PyHessian's loop on ``H − shift·I``: stop when the Rayleigh quotient changes by < tol (relative)."""
    values, vectors, residuals, count, converged = [], [], [], 0, True
    for i in range(k):
        v = start_vector(init if i == 0 else None, n, rng)
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
    check_which(which)
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
    check_which(which)
    start = time.perf_counter()
    count = [0]

    def counted(v):
        count[0] += 1
        return np.asarray(matvec(np.ravel(v)), np.float64)

    op = scipy.sparse.linalg.LinearOperator((n, n), matvec=counted, dtype=np.float64)
    v0 = start_vector(init, n, np.random.default_rng(seed))
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


def _block_sizes(total: int, block_size: int) -> list[int]:
    """``total`` products in nearly equal blocks of at most ``block_size``."""
    if total <= 0:
        return []
    count = -(-total // max(int(block_size), 1))
    return [total // count + (1 if i < total % count else 0) for i in range(count)]


def apply_block(matvec: Matvec, matmat: Matmat | None, vectors: np.ndarray, block_size: int = 1) -> np.ndarray:
    """``H V`` for the rows of ``vectors``: through ``matmat`` in blocks of ``block_size``, else one
    ``matvec`` a row. The same numbers either way; a block only shares work between its products."""
    vectors = np.asarray(vectors, np.float64)
    if len(vectors) == 0:
        return np.zeros_like(vectors)
    if matmat is None:
        return np.stack([np.asarray(matvec(v), np.float64).reshape(-1) for v in vectors])
    out, start = [], 0
    for size in _block_sizes(len(vectors), block_size):
        out.append(np.asarray(matmat(vectors[start : start + size]), np.float64).reshape(size, -1))
        start += size
    return np.concatenate(out)


def hutchinson(
    matvec: Matvec,
    n: int,
    *,
    tol: float | None = None,
    max_probes: int = 100,
    min_probes: int = 10,
    seed: int = 0,
    matmat: Matmat | None = None,
    block_size: int = 1,
) -> TraceResult:
    """Hutchinson's ``tr(H) ≈ mean zᵀHz`` over Rademacher probes ``z``.

    With ``tol``, stops once ``stderr ≤ tol·|mean|`` (after ``min_probes``, so the standard error itself
    is estimated from enough samples) -- a stop on the estimator's uncertainty, not on how much the running
    mean moved, which stops early whenever two probes happen to agree.

    With ``matmat``, the probes go in blocks of ``block_size``: the same probes, samples and stop as one at
    a time; ``hvp_count`` then also counts the products of the last block after the stop.
    """
    if max_probes < 1:
        raise ValueError(f"max_probes must be >= 1, got {max_probes}")
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    samples: list[float] = []
    converged = tol is None
    computed = 0
    step = 1 if matmat is None else max(int(block_size), 1)
    while computed < max_probes and not (converged and tol is not None):
        size = min(step, max_probes - computed)
        probes = np.stack([_rademacher(rng, n) for _ in range(size)])  # drawn as one probe at a time
        products = apply_block(matvec, matmat, probes, size)
        computed += size
        for z, hz in zip(probes, products):
            samples.append(float(z @ hz))
            if tol is not None and len(samples) >= max(min_probes, 2):
                mean, stderr = _mean_stderr(np.asarray(samples))
                if stderr <= tol * abs(mean):
                    converged = True
                    break
    mean, stderr = _mean_stderr(np.asarray(samples))
    return TraceResult(
        value=mean,
        stderr=stderr,
        hvp_count=computed,
        seconds=time.perf_counter() - start,
        converged=converged,
        method="hutchinson",
        samples=np.asarray(samples),
    )


def hutch_plus_plus(
    matvec: Matvec,
    n: int,
    *,
    max_probes: int = 100,
    seed: int = 0,
    matmat: Matmat | None = None,
    block_size: int = 1,
) -> TraceResult:
    """Hutch++ (Meyer, Musco, Musco, Woodruff 2021): exact trace on a sketched top subspace + Hutchinson on the rest.

    A third of the budget sketches ``H S``, a third computes ``tr(QᵀHQ)`` on its orthonormal basis, the
    last third probes the deflated remainder; ``stderr`` is that remainder's standard error. Much more
    accurate than Hutchinson when a few eigenvalues dominate, as in trained networks. Each third is one
    block of products through ``matmat`` (in blocks of ``block_size``) when given.
    """
    if max_probes < 3:
        raise ValueError(f"hutch++ needs max_probes >= 3, got {max_probes}")
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    s = min(max_probes // 3, n)
    apply = lambda vectors: apply_block(matvec, matmat, vectors, block_size)
    sketch = apply(_rademacher(rng, (s, n))).T
    Q, _ = np.linalg.qr(sketch)
    top = float(np.sum(Q.T * apply(Q.T)))
    rest = max_probes - 2 * s
    probes = _rademacher(rng, (rest, n))
    probes = probes - (probes @ Q) @ Q.T
    samples = np.sum(probes * apply(probes), axis=1)
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


def slq(
    matvec: Matvec,
    n: int,
    *,
    runs: int = 10,
    steps: int = 80,
    seed: int = 0,
    matmat: Matmat | None = None,
    block_size: int = 1,
) -> DensityResult:
    """Stochastic Lanczos quadrature (Golub-Meurant; Ghorbani et al. 2019, PyHessian's ``density``).

    Each run starts Lanczos from a normalised Rademacher vector ``v``; the eigenvalues of ``T`` are the
    nodes and the squared first components of its eigenvectors the weights of a Gauss quadrature for
    ``vᵀ f(H) v``, exact for polynomials of degree < 2·steps. Averaging runs estimates ``tr f(H) / n``.
    The runs advance in lockstep, so with ``matmat`` each step is one block of products (one a run).
    """
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    steps = min(int(steps), n)
    processes = [LanczosProcess(matvec, _rademacher(rng, n), steps, rng, restart=False) for _ in range(runs)]
    while active := [p for p in processes if not p.done]:
        products = apply_block(matvec, matmat, np.stack([p.current for p in active]), block_size)
        for process, w in zip(active, products):
            process.absorb(w)
    nodes = np.zeros((runs, steps))
    weights = np.zeros((runs, steps))
    for r, process in enumerate(processes):
        theta, S = process.ritz()
        nodes[r, : len(theta)] = theta
        weights[r, : len(theta)] = S[0] ** 2 / runs
    count = sum(p.steps for p in processes)
    return DensityResult(nodes=nodes, weights=weights, hvp_count=count, seconds=time.perf_counter() - start)


def frobenius_estimate(
    matvec: Matvec,
    n: int,
    *,
    probes: int = 30,
    seed: int = 0,
    matmat: Matmat | None = None,
    block_size: int = 1,
) -> FrobeniusResult:
    """``‖H‖_F = sqrt(E‖H z‖²)`` over Rademacher probes (``E zzᵀ = I``, so ``E‖Hz‖² = tr(HᵀH)``).

    The standard error comes from the samples of ``‖Hz‖²`` through the square root (delta method). The
    probes go through ``matmat`` in blocks of ``block_size`` when given.
    """
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    samples = np.sum(apply_block(matvec, matmat, _rademacher(rng, (probes, n)), block_size) ** 2, axis=1)
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
