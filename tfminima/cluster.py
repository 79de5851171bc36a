"""This process's place in a multi-worker cluster, read from the environment. No TensorFlow.

The runner must know whether it is the chief (the only writer of run directories) before it
builds anything, and the CLI must know it before TensorFlow starts; TF_CONFIG and Slurm's
variables say so without a TensorFlow call.
"""

from __future__ import annotations

import dataclasses
import json
import os


@dataclasses.dataclass(frozen=True)
class Role:
    """``chief``: writes the run directory; ``index`` among ``workers`` (the chief is 0)."""

    chief: bool = True
    index: int = 0
    workers: int = 1


def role(distribution) -> Role:
    """The role for a ``DistributionSpec``: every run that is not multi-worker is its own chief."""
    if distribution.strategy != "multi_worker":
        return Role()
    if os.environ.get("TF_CONFIG"):
        try:
            conf = json.loads(os.environ["TF_CONFIG"])
        except ValueError as err:
            raise ValueError(f"TF_CONFIG is not valid JSON: {err}") from None
        cluster, task = conf.get("cluster") or {}, conf.get("task") or {}
        kind, index = task.get("type", "worker"), int(task.get("index", 0))
        chiefs = len(cluster.get("chief") or [])
        workers = chiefs + len(cluster.get("worker") or [])
        chief = kind == "chief" or (kind == "worker" and index == 0 and not chiefs)
        rank = index + (chiefs if kind == "worker" else 0)
        return Role(chief, rank, max(workers, 1))
    if "SLURM_PROCID" in os.environ:
        n = int(os.environ.get("SLURM_STEP_NUM_TASKS") or os.environ.get("SLURM_NTASKS") or 1)
        index = int(os.environ["SLURM_PROCID"])
        return Role(index == 0, index, n)
    return Role()
