"""The memorisation monitor: how much of the random labels SGD has learnt.

With label noise, a fixed subset of training indices carries uniform random labels. At each
measured epoch (inference mode) this logs

- ``noisy_accuracy``: accuracy on exactly those indices against their *noisy* labels — the
  paper's measure of memorisation (E4);
- ``noisy_true_accuracy``: accuracy on them against their true labels;
- ``clean_accuracy``: accuracy on the other training indices;
- ``train_accuracy``: accuracy on the whole training set against the labels SGD sees;
- ``noisy_fraction``: the share of corrupted indices.
"""

from __future__ import annotations

import numpy as np

from tfminima.monitor_specs import MemorizationMonitorSpec
from tfminima.monitors.base import Monitor


class MemorizationMonitor(Monitor):
    spec_type = MemorizationMonitorSpec

    def measure(self, epoch: int) -> dict[str, float]:
        c = self.context
        preds = c.predict_classes(c.train_x)
        mask = c.noise_mask
        out = {
            "train_accuracy": float(np.mean(preds == c.train_y)),
            "noisy_fraction": float(mask.mean()),
        }
        clean = ~mask
        if clean.any():
            out["clean_accuracy"] = float(np.mean(preds[clean] == c.train_y[clean]))
        if mask.any():
            out["noisy_accuracy"] = float(np.mean(preds[mask] == c.train_y[mask]))
            out["noisy_true_accuracy"] = float(np.mean(preds[mask] == c.clean_y[mask]))
        return out
