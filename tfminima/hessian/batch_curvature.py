"""Batch sharpness: the curvature of a mini-batch's loss along that mini-batch's own gradient.

Andreyev and Beneventano ("Edge of Stochastic Stability", arXiv 2412.20553) show that under mini-batch
SGD it is not λ_max of the full loss that settles at the edge of stability 2/η but

    batch sharpness = E_B[ g_Bᵀ H_B g_B / ‖g_B‖² ],

``g_B`` and ``H_B`` the gradient and Hessian of the mean loss over a batch ``B`` of the training batch
size: the step SGD takes is along ``g_B``, and ``H_B`` is the curvature it meets there. λ_max of the full
loss stays below it, the more so the smaller the batch.

Each sampled batch costs one gradient and one Hessian-vector product, through the public operator
(:class:`~tfminima.hessian.operator.HessianOperator` on that batch), so the products, their options and
their distribution over replicas are the other instruments' (a batch split over replicas gives the
one-device numbers). Where the batch is retained (``hvp_mode``), both come from one forward pass: the
second backward pass takes the retained gradient itself
(:meth:`~tfminima.hessian.operator.HessianOperator.curvature_along_gradient`).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Unpack

import numpy as np

from tfminima.hessian.batches import as_batches
from tfminima.hessian.operator import HessianOperator, measuring
from tfminima.hessian.options import ProductKeywords, ProductOptions

__all__ = ["BatchSharpnessResult", "batch_sharpness"]


@dataclasses.dataclass
class BatchSharpnessResult:
    """``value ± stderr``: the mean of ``values``, one ``g_Bᵀ H_B g_B / ‖g_B‖²`` a sampled batch.

    ``indices`` (batches × batch_size) are the examples of each batch, rows of ``data``. A batch whose
    gradient is exactly zero has no direction: its value is NaN and it is left out of the mean.
    ``stderr`` is the standard error of that mean over the batches (NaN with fewer than two).
    ``hvp_count`` and ``gradient_count`` the products used (one of each a batch), ``seconds`` the time,
    ``hvp_mode`` ``"retained"`` when each batch's gradient and product shared one forward pass.
    """

    value: float
    stderr: float
    values: np.ndarray
    indices: np.ndarray
    batch_size: int
    hvp_count: int
    gradient_count: int
    seconds: float
    hvp_mode: str | None = None

    @property
    def batches(self) -> int:
        return len(self.values)


def _arrays(data) -> tuple[np.ndarray, np.ndarray]:
    """``data`` as two arrays of examples (a ``tf.data.Dataset`` of ``(x, y)`` batches is read once)."""
    parts = as_batches(data, batch_size=np.iinfo(np.int64).max)  # arrays: one part; a dataset: its batches
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def batch_sharpness(
    model,
    data,
    batch_size: int,
    *,
    batches: int = 20,
    seed: int = 0,
    options: ProductOptions | None = None,
    **changes: Unpack[ProductKeywords],
) -> BatchSharpnessResult:
    """Batch sharpness ``E_B[g_Bᵀ H_B g_B / ‖g_B‖²]`` over ``batches`` batches of ``batch_size`` examples.

    Each batch is drawn from ``data`` (``(x, y)`` arrays, or a ``tf.data.Dataset`` of ``(x, y)``
    batches) without replacement, independently of the others, with ``seed`` (the same seed draws the
    same batches). ``batch_size`` is SGD's batch size S. Product options as the other ``hessian``
    functions: ``loss``, ``training``, ``mode``, ``strategy``, ``architecture``, ``jit_compile`` as
    keywords; the products' own ``batch_size`` (examples a pass, default 1024: a batch larger than that
    is summed in parts) only through ``options=ProductOptions(batch_size=...)``.
    """
    start = time.perf_counter()
    x, y = _arrays(data)
    n = len(x)
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must be between 1 and the {n} examples of data, got {batch_size}")
    if batches < 1:
        raise ValueError(f"batches must be >= 1, got {batches}")
    opts = ProductOptions.of(options, **changes)
    rng = np.random.default_rng(seed)
    indices = np.stack([np.sort(rng.choice(n, size=batch_size, replace=False)) for _ in range(batches)])
    values = np.empty(batches)
    with measuring():
        for i, idx in enumerate(indices):
            op = HessianOperator(model, (x[idx], y[idx]), options=opts)
            curvature, norm_sq = op.curvature_along_gradient()
            values[i] = curvature / norm_sq if norm_sq > 0 else np.nan
    finite = values[np.isfinite(values)]
    value = float(finite.mean()) if len(finite) else float("nan")
    stderr = float(finite.std(ddof=1) / np.sqrt(len(finite))) if len(finite) > 1 else float("nan")
    return BatchSharpnessResult(
        value=value, stderr=stderr, values=values, indices=indices, batch_size=int(batch_size),
        hvp_count=batches, gradient_count=batches, seconds=time.perf_counter() - start,
        hvp_mode=op.along_gradient_mode,  # the same for every batch: they are all of one size
    )
