"""The noise monitor: gradient covariance trace, B_simple and the paper's theory check.

Measures on a fixed training subset (:mod:`tfminima.monitors.subset`) at the epoch's scheduled η and
S. YAML (options and defaults: :class:`tfminima.monitor_specs.NoiseMonitorSpec`)::

    monitors:
      - noise: {every: 5, samples: 512}

Logs the fields of :class:`tfminima.noise.TheoryCheck`: ``trace_c``, ``b_simple``, ``loss`` against
``predicted_loss = (η/4S)·Tr(H)``, ``trace_ratio``, ``top_cosine``, ``rayleigh_alignment``, ...
"""

from __future__ import annotations

from tfminima import noise
from tfminima.monitor_specs import NoiseMonitorSpec
from tfminima.monitors.subset import SubsetMonitor


class NoiseMonitor(SubsetMonitor):
    """Gradient covariance trace, B_simple and the paper's theory check at the epoch's η and S."""

    spec_type = NoiseMonitorSpec

    def __init__(self, spec: NoiseMonitorSpec | None = None, **options):
        super().__init__(spec, **options)
        self._init_h = None
        self._init_c = None

    def measure(self, epoch: int) -> dict:
        ctx = self._require_setup()
        result = noise.theory_check(
            self.model,
            self.data,
            lr=float(ctx.lr_at(epoch)),
            batch_size=int(ctx.batch_size_at(epoch)),
            momentum=float(ctx.momentum),
            loss=ctx.loss_fn,
            trace_probes=self.trace_probes,
            tol=self.tol,
            seed=self.seed,
            init_h=self._init_h,
            init_c=self._init_c,
            chunk_size=self.chunk_size,
            strategy=ctx.strategy,
            eval_batch_size=ctx.eval_batch_size,
            mode="reverse",  # as the sharpness monitor: cheaper to trace, and shared with it
            architecture=ctx.architecture,
        )
        self._init_h, self._init_c = result.top_vector_h, result.top_vector_c
        return result.as_dict()
