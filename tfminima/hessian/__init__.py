"""Hessian instruments: Hessian-vector products and the spectral estimators built on them.

Everything here measures the Hessian ``H`` of the **mean loss over a fixed set of examples**::

    L(θ) = (1/N) Σ_i ℓ(f_θ(x_i), y_i)  +  R(θ)

where ``ℓ`` is the per-example loss (the model's compiled loss if it has one, else sparse categorical
cross-entropy from logits), the sum runs over all ``N`` examples however they are batched (a short last
batch weighs by its size, never as a full batch), and ``R`` is ``sum(model.losses)`` -- the weight
regularisation penalties -- added once. The model runs in inference mode by default (``training=False``:
batch-norm running statistics, no dropout), the convention of the paper's follow-up code and of PyHessian.
Variables the loss does not depend on get a zero gradient and zero Hessian rows instead of an error.

Vectors are flat ``float64`` NumPy arrays over ``model.trainable_variables`` in their order (each
variable flattened C-style); the products are computed in the model's own dtype and returned as float64.

Modules, by layer (each uses only those above it):

* ``options`` -- :class:`ProductOptions`, the options every tool shares (loss, training, mode, strategy,
  batch size, architecture, XLA); ``results`` -- the result records; no TensorFlow in either;
* ``krylov`` -- pure NumPy: the Lanczos process, its stopping rule and warm start, :func:`lanczos`;
* ``batches``, ``vectors``, ``cache``, ``memory`` -- placed data, the flat vector layout, the trace memo
  (per model or per architecture; it never keeps a model alive), what a retained product keeps;
* ``products`` -- the loss at variable values passed in (``stateless_call``) and the traced gradient
  and Hessian-vector products, recomputed one at a time or retained for a block
  (:class:`HessianProducts`, :func:`traced_functions`); ``retained`` -- a whole Lanczos run in one
  traced loop over a retained first gradient (:class:`RetainedProducts`);
* ``operator`` -- :class:`HessianOperator`: ``matvec(v) -> H v``, ``matmat(V) -> H V`` and the Lanczos
  runner over placed data, retained or recomputed as the memory budget allows (:class:`ProductPlan`);
* ``solvers`` -- pure NumPy/SciPy, only needs a ``matvec`` (and takes a ``matmat`` for blocks):
  :func:`power_iteration`, :func:`arpack`, :func:`hutchinson`, :func:`hutch_plus_plus`, :func:`slq`,
  :func:`frobenius_estimate`, and :func:`lanczos` from ``krylov``;
* ``api`` -- the model-level functions :func:`hvp`, :func:`top_eigenvalues`, :func:`trace`,
  :func:`density`, :func:`frobenius_norm`; ``batch_curvature`` -- :func:`batch_sharpness`, the curvature
  of mini-batch losses along their own gradients (one operator a batch; the module is not named after
  the function, whose package attribute it would replace when imported directly); ``plots`` --
  :func:`density_curve`, :func:`plot_density`.

The names below are imported on first use, so ``tfminima.hessian.solvers`` (and ``krylov``, ``results``,
``options``, ``memory``, ``plots``) can be used without loading TensorFlow.

Example::

    res = top_eigenvalues(model, (x, y), k=2)            # Lanczos, tol 1e-3
    res.eigenvalues, res.residuals, res.hvp_count, res.hvp_mode   # "retained": one traced loop
    tr = trace(model, (x, y), max_hvps=100)              # Hutchinson: tr.value ± tr.stderr, in blocks
    trace(model, (x, y), hvp_mode="recomputed")          # the same numbers, one product at a time
    dens = density(model, (x, y)); plot_density(dens)
    bs = batch_sharpness(model, (x, y), batch_size=128, batches=20)   # bs.value ± bs.stderr
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "api": ("density", "frobenius_norm", "hvp", "top_eigenvalues", "trace"),
    "batch_curvature": ("BatchSharpnessResult", "batch_sharpness"),
    "batches": ("PlacedBatches", "as_batches"),
    "cache": ("loss_key", "traced"),
    "krylov": ("LanczosProcess", "StopRule"),
    "operator": ("HessianOperator", "ProductPlan"),
    "options": ("DEFAULT_BATCH_SIZE", "DEFAULT_MEMORY_BUDGET", "ProductOptions"),
    "plots": ("density_curve", "plot_density"),
    "products": ("HessianProducts", "model_state", "resolve_loss", "traced_functions"),
    "results": ("DensityResult", "EigenResult", "FrobeniusResult", "TraceResult"),
    "retained": ("RetainedProducts",),
    "solvers": (
        "Matmat", "Matvec", "arpack", "frobenius_estimate", "hutch_plus_plus", "hutchinson", "lanczos",
        "lanczos_tridiagonal", "power_iteration", "slq", "solver_context",
    ),
    "vectors": ("get_flat_weights", "set_flat_weights"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [  # the names of _EXPORTS
    "BatchSharpnessResult",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_MEMORY_BUDGET",
    "DensityResult",
    "EigenResult",
    "FrobeniusResult",
    "HessianOperator",
    "HessianProducts",
    "LanczosProcess",
    "Matmat",
    "Matvec",
    "PlacedBatches",
    "ProductOptions",
    "ProductPlan",
    "RetainedProducts",
    "StopRule",
    "TraceResult",
    "arpack",
    "as_batches",
    "batch_sharpness",
    "density",
    "density_curve",
    "frobenius_estimate",
    "frobenius_norm",
    "get_flat_weights",
    "hutch_plus_plus",
    "hutchinson",
    "hvp",
    "lanczos",
    "lanczos_tridiagonal",
    "loss_key",
    "model_state",
    "plot_density",
    "power_iteration",
    "resolve_loss",
    "set_flat_weights",
    "slq",
    "solver_context",
    "top_eigenvalues",
    "trace",
    "traced",
    "traced_functions",
]


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # what type checkers and editors see; at run time __getattr__ imports on first use
    from tfminima.hessian.api import (
        density,
        frobenius_norm,
        hvp,
        top_eigenvalues,
        trace,
    )
    from tfminima.hessian.batch_curvature import BatchSharpnessResult, batch_sharpness
    from tfminima.hessian.batches import PlacedBatches, as_batches
    from tfminima.hessian.cache import loss_key, traced
    from tfminima.hessian.krylov import LanczosProcess, StopRule
    from tfminima.hessian.operator import HessianOperator, ProductPlan
    from tfminima.hessian.options import (
        DEFAULT_BATCH_SIZE,
        DEFAULT_MEMORY_BUDGET,
        ProductOptions,
    )
    from tfminima.hessian.plots import density_curve, plot_density
    from tfminima.hessian.products import (
        HessianProducts,
        model_state,
        resolve_loss,
        traced_functions,
    )
    from tfminima.hessian.results import (
        DensityResult,
        EigenResult,
        FrobeniusResult,
        TraceResult,
    )
    from tfminima.hessian.retained import RetainedProducts
    from tfminima.hessian.solvers import (
        Matmat,
        Matvec,
        arpack,
        frobenius_estimate,
        hutch_plus_plus,
        hutchinson,
        lanczos,
        lanczos_tridiagonal,
        power_iteration,
        slq,
        solver_context,
    )
    from tfminima.hessian.vectors import get_flat_weights, set_flat_weights
