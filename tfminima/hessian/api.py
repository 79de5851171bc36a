"""Model-level Hessian instruments: a solver of :mod:`tfminima.hessian.solvers` on a :class:`HessianOperator`.

Each function takes ``(model, data)`` -- or a prebuilt operator as ``model`` (``data`` and the product
options are then ignored) -- its solver's own arguments, and the product options as keywords (``loss``,
``training``, ``mode``, ``strategy``, ``batch_size``, ``architecture``, ``jit_compile``, ``hvp_mode``,
``memory_budget``; see :class:`~tfminima.hessian.options.ProductOptions`) or gathered in ``options=``.
Results carry their cost (``hvp_count``, ``seconds``, the operator's set-up included) and how the
products were computed (``hvp_mode``: ``"retained"`` or ``"recomputed"``).

Where it fits in the memory budget (``hvp_mode="auto"``, the default), each takes the fast path: the
trace's probes, the Frobenius probes and the SLQ runs (in lockstep) go in blocks of products that share
one forward pass and first gradient, and Lanczos runs in one traced loop over a retained first
gradient. Power iteration and eigsh, kept for comparison, always recompute.
"""

from __future__ import annotations

import time
from typing import Unpack

import numpy as np

from tfminima.hessian.operator import HessianOperator, measuring
from tfminima.hessian.options import ProductKeywords, ProductOptions
from tfminima.hessian.results import (
    DensityResult,
    EigenResult,
    FrobeniusResult,
    TraceResult,
)
from tfminima.hessian.solvers import (
    EIGEN_SOLVERS,
    frobenius_estimate,
    hutch_plus_plus,
    hutchinson,
    slq,
)
from tfminima.hessian.vectors import flatten_vector

__all__ = ["density", "frobenius_norm", "hvp", "top_eigenvalues", "trace"]


def _operator(model, data, options: ProductOptions | None, changes: dict) -> HessianOperator:
    if isinstance(model, HessianOperator):
        return model
    return HessianOperator(model, data, options=options, **changes)


def _blocks(op: HessianOperator) -> dict:
    """The block-product arguments of a solver: the operator's ``matmat`` when its blocks are retained."""
    return {"matmat": op.matmat, "block_size": op.block_size} if op.plan.blocks else {}


def hvp(
    model, data, vector, *, options: ProductOptions | None = None, **changes: Unpack[ProductKeywords]
) -> np.ndarray:
    """Hessian-vector product ``H v`` of the mean loss over ``data``.

    ``vector`` is a flat vector over ``model.trainable_variables`` (any array-like) or a list of arrays
    shaped like them. Returns a flat float64 NumPy array in the same layout (see
    :func:`~tfminima.hessian.vectors.get_flat_weights`).
    """
    op = HessianOperator(model, data, options=options, **changes)
    return op.matvec(flatten_vector(vector, op.variables))


def top_eigenvalues(
    model,
    data,
    k: int = 1,
    *,
    method: str = "lanczos",
    tol: float = 1e-3,
    max_hvps: int | None = None,
    seed: int = 0,
    which: str = "largest",
    init=None,
    return_eigenvectors: bool = True,
    options: ProductOptions | None = None,
    **changes: Unpack[ProductKeywords],
) -> EigenResult:
    """The ``k`` largest (``which="smallest"``: smallest) Hessian eigenvalues of the mean loss over ``data``.

    ``method="lanczos"`` (default; see :func:`~tfminima.hessian.solvers.lanczos` for the stopping rule),
    ``"power"`` (PyHessian's power iteration: ``max_hvps`` is then its ``maxIter`` per eigenvalue,
    default 100, and ``tol`` its relative-change threshold) or ``"eigsh"`` (SciPy/ARPACK). ``init``
    warm-starts from a previous eigenvector (or rows of them). ``hvp_count`` counts every product the
    method used.
    """
    if method not in EIGEN_SOLVERS:
        raise ValueError(f"method must be one of {sorted(EIGEN_SOLVERS)}, got {method!r}")
    start = time.perf_counter()
    op = _operator(model, data, options, changes)
    kwargs = {} if max_hvps is None else {"max_iter": max_hvps}
    runner = op.lanczos_runner() if method == "lanczos" else None
    if runner is not None:
        kwargs["runner"] = runner
    with measuring():
        result = EIGEN_SOLVERS[method](
            op.matvec,
            op.n,
            k,
            tol=tol,
            seed=seed,
            which=which,
            init=init,
            return_eigenvectors=return_eigenvectors,
            **kwargs,
        )
    result.hvp_mode = "retained" if runner is not None else "recomputed"
    result.seconds = time.perf_counter() - start
    return result


def trace(
    model,
    data,
    *,
    tol: float | None = None,
    max_hvps: int = 100,
    seed: int = 0,
    method: str = "hutchinson",
    min_probes: int = 10,
    options: ProductOptions | None = None,
    **changes: Unpack[ProductKeywords],
) -> TraceResult:
    """``tr(H)`` by Hutchinson (Rademacher probes; with ``tol`` stops when ``stderr/|mean| < tol``)
    or ``method="hutch++"`` (uses the whole ``max_hvps`` budget)."""
    start = time.perf_counter()
    op = _operator(model, data, options, changes)
    blocks = _blocks(op)
    with measuring():
        if method == "hutchinson":
            result = hutchinson(op.matvec, op.n, tol=tol, max_probes=max_hvps, min_probes=min_probes, seed=seed, **blocks)
        elif method == "hutch++":
            result = hutch_plus_plus(op.matvec, op.n, max_probes=max_hvps, seed=seed, **blocks)
        else:
            raise ValueError(f"method must be 'hutchinson' or 'hutch++', got {method!r}")
    result.hvp_mode = op.hvp_mode
    result.seconds = time.perf_counter() - start
    return result


def density(
    model,
    data,
    *,
    runs: int = 10,
    steps: int = 80,
    seed: int = 0,
    options: ProductOptions | None = None,
    **changes: Unpack[ProductKeywords],
) -> DensityResult:
    """Hessian spectral density by stochastic Lanczos quadrature (``runs × steps`` products); see
    :func:`~tfminima.hessian.solvers.slq`."""
    start = time.perf_counter()
    op = _operator(model, data, options, changes)
    with measuring():
        result = slq(op.matvec, op.n, runs=runs, steps=steps, seed=seed, **_blocks(op))
    result.hvp_mode = op.hvp_mode
    result.seconds = time.perf_counter() - start
    return result


def frobenius_norm(
    model,
    data,
    *,
    probes: int = 30,
    seed: int = 0,
    method: str = "hvp",
    epsilon: float = 1e-3,
    options: ProductOptions | None = None,
    **changes: Unpack[ProductKeywords],
) -> FrobeniusResult:
    """``‖H‖_F`` estimated as ``sqrt(mean ‖H z‖²)`` over Rademacher probes ``z``.

    ``method="hvp"`` uses exact products; ``method="finite_difference"`` the paper's v1 variant,
    ``H z ≈ ‖z‖ (∇L(θ+εu) − ∇L(θ−εu)) / 2ε`` with ``u = z/‖z‖`` (two gradients a probe; the truncation
    error is O(ε²), the rounding error O(machine-ε·‖∇L‖/ε)).
    """
    start = time.perf_counter()
    op = _operator(model, data, options, changes)
    if method == "hvp":
        matvec, blocks, mode = op.matvec, _blocks(op), op.hvp_mode
    elif method == "finite_difference":
        matvec, blocks, mode = (lambda v: op.finite_difference_matvec(v, epsilon)), {}, "recomputed"
    else:
        raise ValueError(f"method must be 'hvp' or 'finite_difference', got {method!r}")
    with measuring():
        result = frobenius_estimate(matvec, op.n, probes=probes, seed=seed, **blocks)
    result.method, result.hvp_mode = method, mode
    result.seconds = time.perf_counter() - start
    return result
