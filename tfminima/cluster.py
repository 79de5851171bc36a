"""This process's place in a multi-worker cluster, read from the environment. No TensorFlow.

The runner must know whether it is the chief (the only writer of run directories) before it
builds anything, and the CLI must know it before TensorFlow starts; TF_CONFIG and Slurm's
variables say so without a TensorFlow call. They are checked here, before TensorFlow reads them
(its own errors name neither the variable nor what is wrong with it): TF_CONFIG must be a JSON
object whose ``cluster`` maps task types to lists of ``host:port`` addresses and whose ``task``
names one of them (``type`` in the cluster, ``index`` a whole number in its range); Slurm's
``SLURM_PROCID`` and task counts must be whole numbers, the rank below the count. Every error
is a :class:`ClusterError` naming the variable.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

TASK_TYPES = ("chief", "worker")  # MultiWorkerMirroredStrategy trains on these; others are not ours


class ClusterError(ValueError):
    """TF_CONFIG or a Slurm variable that does not describe this process's place in a cluster."""


@dataclasses.dataclass(frozen=True)
class Role:
    """``chief``: writes the run directory; ``index`` among ``workers`` (the chief is 0)."""

    chief: bool = True
    index: int = 0
    workers: int = 1


def role(distribution) -> Role:
    """The role for a ``DistributionSpec``: every run that is not multi-worker is its own chief.

    Raises :class:`ClusterError` when TF_CONFIG or Slurm's variables are malformed.
    """
    if distribution.strategy != "multi_worker":
        return Role()
    if os.environ.get("TF_CONFIG"):
        return _tf_config_role(os.environ["TF_CONFIG"])
    if "SLURM_PROCID" in os.environ:
        return _slurm_role()
    return Role()


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _whole(value: Any, where: str) -> int:
    """A whole number given as a JSON integer or its decimal text (TensorFlow accepts both)."""
    if isinstance(value, bool):
        raise ClusterError(f"{where} {_short(value)} is not a whole number")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit() and len(value.strip()) <= 18:
        return int(value)
    raise ClusterError(f"{where} {_short(value)} is not a whole number")


def parse_tf_config(text: str) -> tuple[dict[str, list[str]], str, int]:
    """(cluster, task type, task index) from TF_CONFIG's text, or ClusterError saying what is wrong."""
    try:
        conf = json.loads(text, parse_constant=lambda c: c)
    except (ValueError, RecursionError) as err:
        raise ClusterError(f"TF_CONFIG is not valid JSON: {err}") from None
    if not isinstance(conf, dict):
        raise ClusterError(f"TF_CONFIG must be a JSON object with 'cluster' and 'task', not a {type(conf).__name__}")
    cluster, task = conf.get("cluster"), conf.get("task")
    if not isinstance(cluster, dict) or not cluster:
        raise ClusterError(f"TF_CONFIG: 'cluster' must be an object of task types to address lists, "
                           f"got {_short(cluster)}")
    for kind, addresses in cluster.items():
        if not isinstance(addresses, list) or not addresses or not all(isinstance(a, str) and a for a in addresses):
            raise ClusterError(f"TF_CONFIG: cluster.{kind} must be a non-empty list of 'host:port' addresses, "
                               f"got {_short(addresses)}")
    if not isinstance(task, dict):
        raise ClusterError(f"TF_CONFIG: 'task' must be an object with 'type' and 'index', got {_short(task)}")
    kind = task.get("type", "worker")
    if not isinstance(kind, str):
        raise ClusterError(f"TF_CONFIG: task.type {_short(kind)} is not text")
    if kind not in cluster:
        raise ClusterError(f"TF_CONFIG: task.type {kind!r} is not in the cluster (it has {', '.join(map(str, cluster))})")
    if kind not in TASK_TYPES:
        raise ClusterError(f"TF_CONFIG: task.type {kind!r} cannot train with multi_worker (use chief or worker)")
    index = _whole(task.get("index", 0), "TF_CONFIG: task.index")
    if not 0 <= index < len(cluster[kind]):
        raise ClusterError(f"TF_CONFIG: task.index {index} is out of range: cluster.{kind} has "
                           f"{len(cluster[kind])} address{'es' if len(cluster[kind]) != 1 else ''}")
    return cluster, kind, index


def _tf_config_role(text: str) -> Role:
    cluster, kind, index = parse_tf_config(text)
    chiefs = len(cluster.get("chief") or [])
    workers = chiefs + len(cluster.get("worker") or [])
    chief = kind == "chief" or (kind == "worker" and index == 0 and not chiefs)
    rank = index + (chiefs if kind == "worker" else 0)
    return Role(chief, rank, max(workers, 1))


def _slurm_int(name: str) -> int | None:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return None
    value = raw.strip()
    if not value.isdigit() or len(value) > 9:
        raise ClusterError(f"{name}={_short(raw)} is not a whole number >= 0")
    return int(value)


def _slurm_role() -> Role:
    index = _slurm_int("SLURM_PROCID")
    if index is None:  # present (role() came here) but empty
        raise ClusterError("SLURM_PROCID is set but empty: it must be this task's rank (0, 1, ...)")
    counted = next(((name, n) for name in ("SLURM_STEP_NUM_TASKS", "SLURM_NTASKS")
                    if (n := _slurm_int(name)) is not None), None)
    name, count = counted if counted else ("SLURM_NTASKS", 1)
    if count < 1:
        raise ClusterError(f"{name}={count}: a job has at least one task")
    if index >= count:
        raise ClusterError(f"SLURM_PROCID={index} is out of range: {name}={count} tasks")
    return Role(index == 0, index, count)
