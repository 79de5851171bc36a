"""The noise monitor: gradient covariance trace, B_simple and the paper's theory check.

Measures on a fixed training subset (:mod:`tfminima.monitors.subset`) at the epoch's scheduled η and
S. YAML (options and defaults: :class:`tfminima.monitor_specs.NoiseMonitorSpec`)::

    monitors:
      - noise: {every: 5, samples: 512}

Logs the fields of :class:`tfminima.noise.TheoryCheck` with the training set as the population the subset
was drawn from: ``trace_c`` and ``grad_norm_sq`` (unbiased) and ``b_simple`` = Tr(C)/‖G‖² (inf, written
as null, when ``gradient_resolved`` is 0), beside ``trace_c_raw``, ``grad_norm_sq_raw`` and the biased-low
``b_simple_raw`` of the subset alone; ``predicted_loss = (η_eff/4S)·Tr(H)`` and ``predicted_loss_c =
(η_eff/4S)·Tr(C)``, ``trace_ratio``, ``top_cosine``, ``rayleigh_alignment``, ...

Two losses stand against the predictions: ``loss`` (with ``loss_ratio``, ``loss_ratio_c``) is one
evaluation of the subset at the end point of the epoch, in inference mode; ``train_loss`` (with
``train_loss_ratio``, ``train_loss_ratio_c``) is the mean training loss over the epoch's steps, the
Keras logs' ``loss``: the average over SGD's stationary fluctuations that the theory's E[L] means. The
``train_*`` fields are absent when :meth:`NoiseMonitor.measure` is called outside ``fit``.
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
            population=len(ctx.train_x),
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
        out = result.as_dict()
        train_loss = self.epoch_logs.get("loss")
        if train_loss is not None:
            out.update(train_loss=float(train_loss), train_loss_ratio=_ratio(train_loss, result.predicted_loss),
                       train_loss_ratio_c=_ratio(train_loss, result.predicted_loss_c))
        return out


def _ratio(a: float, b: float) -> float:
    return float(a) / b if b != 0 else float("nan")
