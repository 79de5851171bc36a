"""The sharpness monitor: top-k Hessian eigenvalues, Hutchinson trace and optionally the SLQ density.

Measures on a fixed training subset (:mod:`tfminima.monitors.subset`). YAML (options and defaults:
:class:`tfminima.monitor_specs.SharpnessMonitorSpec`)::

    monitors:
      - sharpness: {every: 5, k: 1, trace: true, samples: 2048, tol: 1.0e-3, trace_probes: 100}

Logs ``lambda_max``, ``eigenvalues`` (top k, descending), ``residuals``, ``converged``, ``eigen_hvps``,
``stability`` = λ_max over the edge of stability at the epoch's scheduled η (2(1+β)/η for heavy ball; see
:mod:`tfminima.stability` for Nesterov and SVAG), with ``trace`` ``trace ± trace_stderr`` (``trace_hvps``),
with ``frobenius`` ``frobenius_norm ± frobenius_stderr`` (``frobenius_hvps``), with ``batch_sharpness``
``batch_sharpness ± batch_sharpness_stderr``, ``batch_stability`` (over the same edge),
``batch_sharpness_size`` and ``batch_sharpness_hvps``, with ``density`` the SLQ
``density_nodes``/``density_weights``; ``hvps`` and ``seconds`` for the whole measurement. Lanczos is
warm-started from the previous measurement's eigenvectors and next Ritz vectors (mixed with a random
part, and never trusted before ``MIN_STEPS`` products, so a crossing of the top eigenvalues between
epochs is measured right: see :func:`tfminima.hessian.solvers.lanczos`). Products are retained
(:mod:`tfminima.hessian.retained`) when the run makes enough of them to pay for it (:data:`RETAIN_FROM`).

The batch sharpness (:func:`tfminima.hessian.batch_sharpness`) is measured on ``batches`` batches of the
epoch's scheduled batch size S drawn from the subset with the monitor's seed (the same batches each epoch
while S stays); S is capped at ``samples``, and ``batch_sharpness_size`` says which S was used.
"""

from __future__ import annotations

import time

import numpy as np

from tfminima import hessian
from tfminima.hessian.krylov import MIN_STEPS
from tfminima.monitor_specs import SharpnessMonitorSpec
from tfminima.stability import edge_of_stability
from tfminima.monitors.subset import SubsetMonitor

RETAIN_FROM = 100_000
"""Products × examples a run from which the monitor retains its products (BENCHMARKS.md, monitors).

Retained products cost a fraction of a recomputed one (a second backward pass alone, two at once), but
their traced function (a loop over a second backward pass) took ~2.5× the recomputed product's time to
instantiate, which every run paid again while runs were seeded with ``tf.random.set_seed``. Measured
then inside quickstart runs (1,024 examples, load ~8): 32 products a run cost 0.60 s recomputed against
1.03 s retained, 112 products 1.25 against 1.08 s, 212 products 2.0 against 1.3 s. Runs now keep their
functions instantiated (:mod:`tfminima.seeding`), and at 30 products a run both ways cost the same
(BENCHMARKS.md), so the threshold only keeps small runs on the simpler path."""


class SharpnessMonitor(SubsetMonitor):
    """Top-k Hessian eigenvalues (Lanczos, warm-started) and their stability ratio, Hutchinson trace and
    optionally ‖H‖_F, the batch sharpness and the SLQ density."""

    spec_type = SharpnessMonitorSpec

    def __init__(self, spec: SharpnessMonitorSpec | None = None, **options):
        super().__init__(spec, **options)
        self._batches = None
        self._init = None

    def _operator(self) -> hessian.HessianOperator:
        ctx = self._require_setup()
        if self._batches is None:  # place the subset once for the whole run
            self._batches = hessian.PlacedBatches(self.data, ctx.eval_batch_size, ctx.strategy)
        return hessian.HessianOperator(self.model, self._batches, loss=ctx.loss_fn, strategy=ctx.strategy,
                                       mode=self.mode, architecture=ctx.architecture, hvp_mode=self._hvp_mode())

    def _hvp_mode(self) -> str:
        """``"auto"`` (retained where it fits) when this run's measurements make enough products to pay
        for instantiating the retained products once a run, else ``"recomputed"`` (see :data:`RETAIN_FROM`)."""
        measurements = sum(1 for epoch in range(self.context.epochs) if self.should_measure(epoch))
        products = MIN_STEPS + self.k + 1 + (self.trace_probes if self.trace else 0)
        products += self.density_runs * self.density_steps if self.density else 0
        products += self.frobenius_probes if self.frobenius else 0
        return "auto" if measurements * products * len(self.indices) >= RETAIN_FROM else "recomputed"

    def measure(self, epoch: int) -> dict:
        start = time.perf_counter()
        op = self._operator()
        eig = hessian.top_eigenvalues(
            op, None, self.k, method=self.method, tol=self.tol, max_hvps=self.max_hvps,
            seed=self.seed + epoch, init=self._init,
        )
        # The next warm start: these eigenvectors and the next Ritz vectors, so that a crossing of the
        # top eigenvalues between measurements starts on the new top direction (lanczos() mixes in a
        # random part and takes MIN_STEPS products before it trusts a pair: see its docstring).
        self._init = eig.eigenvectors if eig.guard_vectors is None else np.vstack([eig.eigenvectors, eig.guard_vectors])
        out = {
            "lambda_max": float(eig.eigenvalues[0]),
            "eigenvalues": eig.eigenvalues.tolist(),
            "residuals": eig.residuals.tolist(),
            "converged": float(eig.converged),
            "eigen_hvps": eig.hvp_count,
        }
        if self.trace:
            # The same probes every epoch: epoch-to-epoch changes are not probe noise.
            tr = hessian.trace(op, None, tol=self.trace_tol, max_hvps=self.trace_probes, seed=self.seed)
            out.update(trace=tr.value, trace_stderr=tr.stderr, trace_hvps=tr.hvp_count)
        if self.density:
            dens = hessian.density(op, None, runs=self.density_runs, steps=self.density_steps, seed=self.seed)
            keep = dens.weights > 0
            out.update(density_nodes=dens.nodes[keep].tolist(), density_weights=dens.weights[keep].tolist())
        out.update(self._beside_lambda_max(epoch, op, out["lambda_max"]))
        out.update(hvps=op.hvp_count + out.get("batch_sharpness_hvps", 0), samples=len(self.indices),
                   seconds=time.perf_counter() - start)
        return out

    def _beside_lambda_max(self, epoch: int, op: hessian.HessianOperator, lambda_max: float) -> dict:
        """The stability ratio, and the optional ‖H‖_F and batch sharpness (products on ``op`` counted there)."""
        ctx = self.context
        edge = edge_of_stability(float(ctx.lr_at(epoch)), float(ctx.momentum), nesterov=ctx.nesterov, svag=ctx.svag)
        out = {"stability": lambda_max / edge}
        if self.frobenius:
            fro = hessian.frobenius_norm(op, None, probes=self.frobenius_probes, seed=self.seed)
            out.update(frobenius_norm=fro.value, frobenius_stderr=fro.stderr, frobenius_hvps=fro.hvp_count)
        if self.batch_sharpness:
            size = min(int(ctx.batch_size_at(epoch)), len(self.indices))
            options = hessian.ProductOptions(loss=ctx.loss_fn, mode=self.mode, strategy=ctx.strategy,
                                             batch_size=ctx.eval_batch_size, architecture=ctx.architecture)
            res = hessian.batch_sharpness(self.model, self.data, size, batches=self.batches, seed=self.seed,
                                          options=options)
            out.update(batch_sharpness=res.value, batch_sharpness_stderr=res.stderr,
                       batch_stability=res.value / edge, batch_sharpness_size=size, batch_sharpness_hvps=res.hvp_count)
        return out
