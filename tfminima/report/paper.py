"""The paper's reference numbers, for side-by-side tables.

Jastrzębski et al., "Three Factors Influencing Minima in SGD" (arXiv 1711.04623, experiments in §4),
as set out in the repository's ``docs/paper.md`` (section 2, "E1" ... "E6"). These are the only
numbers in the report typed in by hand; everything else is computed from the run files.
Experiments are matched by the prefix of the experiment name (``e3_schedules_cpu`` → E3) and
runs by their sweep label.
"""

from __future__ import annotations

PAPER = "Jastrzębski et al. 2017, arXiv 1711.04623"


def cite(experiment: str) -> str:
    """Where a reader checks the paper's numbers for ``experiment`` ("E1" ... "E6"): the arXiv paper's
    experiment section and the repository's account of it (never a path outside the repository)."""
    return f"{PAPER} §4, experiment {experiment}; see docs/paper.md, section {experiment}"

# E1, ResNet-56 on CIFAR-10: validation accuracy (%) against η/S.
E1_RESNET = {
    "setting": "ResNet-56, CIFAR-10",
    "eta_over_s": [4.9e-5, 7.8e-5, 9.8e-5, 2e-4, 3.9e-4, 7.8e-4, 1.56e-3, 3.1e-3],
    "val_accuracy": [84.0, 86.3, 87.1, 88.4, 90.7, 91.1, 92.0, 90.8],
}

# E3, VGG-11 on CIFAR-10, 300 epochs: test accuracy (%) of each schedule pair, by sweep label.
E3_TEST_ACCURACY = {
    "setting": "VGG-11, CIFAR-10, 300 epochs",
    "const-lr": 87.25,  # S=128, η=0.001
    "const-bs": 86.92,  # S=640, η=0.005
    "cyclic-lr": 89.24,  # η 0.001↔0.005 at S=128
    "cyclic-bs": 89.39,  # S 128↔640 at η=0.005
}

# E4, MNIST MLP 2×256: peak clean validation accuracy (%) by label-noise fraction.
E4_PEAK_VAL = {"setting": "MNIST, MLP 2×256", 0.25: 75.0, 0.5: 53.0}
E4_LOW_RATIO_MEMORIZATION = "low-η/S runs stay under 20 % on the random labels"

# E5, VGG-11 on CIFAR-10, η = 0.1β, S = 50β, 200 epochs: validation accuracy (%) by training-set size.
E5_BETAS = [1, 3, 5, 7, 9, 11, 13, 15]
E5_VAL_ACCURACY = {
    "setting": "VGG-11, CIFAR-10, 200 epochs",
    45000: [90.4, 90.3, 90.3, 90.2, 90.0, 89.7, 89.1, 88.6],
    12000: [83.0, 82.7, 82.5, 82.1, 81.4, 81.0, 69.3, 77.5],
}

# E6, VGG-11 on CIFAR-10, 8 cycles, 300 epochs: (test accuracy %, Hessian norm) by sweep label.
E6_END = {
    "setting": "VGG-11, CIFAR-10, 300 epochs; the paper's Hessian norm, not λ_max",
    "cyclic-lr": (90.04, 36470.0),
    "cyclic-bs": (90.07, 13918.0),
    "triangular-lr": (90.03, 35310.0),
    "constant": (87.70, 57838.0),
}


def is_experiment(name: str, prefix: str) -> bool:
    """Whether an experiment (or its CPU profile, ``<prefix>_cpu``) is the paper's ``prefix``."""
    return name == prefix or name.startswith(f"{prefix}_")
