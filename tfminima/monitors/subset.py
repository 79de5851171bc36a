"""What the sharpness and noise monitors share: a fixed random subset of the training examples.

Drawn once in :meth:`SubsetMonitor.setup` with the monitor's own ``seed``, so every epoch (and every
run of a sweep over the same data) is measured on the same examples, with the labels SGD trains on.
The measurements use the run's per-example loss, in inference mode and under the run's
``tf.distribute`` strategy (see :mod:`tfminima.hessian` for the conventions); their products are
traced once per model architecture (``MonitorContext.architecture``), not once per run.
"""

from __future__ import annotations

import numpy as np

from tfminima.monitors.base import Monitor, MonitorContext


def fixed_subset(num_examples: int, samples: int, seed: int) -> np.ndarray:
    """Sorted indices of ``min(samples, num_examples)`` examples drawn without replacement with ``seed``."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(num_examples, size=min(int(samples), num_examples), replace=False))


class SubsetMonitor(Monitor):
    """A monitor measuring on ``samples`` training examples drawn with ``seed`` (options of its spec)."""

    samples: int
    seed: int

    def __init__(self, spec=None, **options):
        super().__init__(spec, **options)
        self.indices: np.ndarray | None = None
        self.data: tuple[np.ndarray, np.ndarray] | None = None

    def setup(self, context: MonitorContext) -> None:
        super().setup(context)
        self.indices = fixed_subset(len(context.train_x), self.samples, self.seed)
        self.data = (context.train_x[self.indices], context.train_y[self.indices])

    def _require_setup(self) -> MonitorContext:
        if self.context is None or self.data is None:
            raise RuntimeError(f"{type(self).__name__}.setup(context) must be called before measuring")
        if self.model is None:
            raise RuntimeError(f"{type(self).__name__} has no model: call set_model or use it in fit()")
        return self.context
