"""Label noise: a fixed fraction of training labels replaced by uniform random labels.

As in the paper (and Zhang et al. 2017), the random label may equal the true one. The mask of
corrupted indices is kept, so memorisation (training accuracy on exactly those indices, against
their noisy labels) can be measured.
"""

from __future__ import annotations

import numpy as np


def corrupt_labels(
    labels: np.ndarray, fraction: float, num_classes: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return (noisy labels, mask of corrupted indices); ``round(fraction * n)`` indices corrupted."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"label-noise fraction must be in [0, 1], got {fraction}")
    labels = np.asarray(labels)
    n = len(labels)
    rng = np.random.default_rng([int(seed), 0x5EED])
    count = int(round(fraction * n))
    chosen = rng.choice(n, size=count, replace=False)
    mask = np.zeros(n, dtype=bool)
    mask[chosen] = True
    noisy = labels.copy()
    noisy[chosen] = rng.integers(0, num_classes, size=count)
    return noisy, mask
