"""tf.distribute strategies from a config's ``distribution`` section, and the workers' agreements.

``auto`` picks MirroredStrategy over several GPUs, OneDeviceStrategy on one GPU, the CPU
otherwise (MirroredStrategy over logical CPUs when ``cpu_replicas`` > 1); ``multi_worker``
reads the cluster from TF_CONFIG (or Slurm's environment).

Multi-worker runs: every worker runs the same ``tfminima run`` command; only the chief writes.
Whatever a worker decides from the file system (which group folder, which checkpoint) the chief
decides and the others learn the answer, or the workers check they agree (both by
:func:`agree`), because a worker that takes another branch would wait forever in a collective.
"""

from __future__ import annotations

import os

import tensorflow as tf

from tfminima import cluster, interrupt


class DistributionError(RuntimeError):
    """The requested devices or strategy cannot be set up on this machine."""


def configure_cpu_replicas(n: int) -> None:
    """Split the physical CPU into ``n`` logical devices; must run before TensorFlow starts."""
    if n <= 1:
        return
    cpus = tf.config.list_physical_devices("CPU")
    try:
        existing = tf.config.get_logical_device_configuration(cpus[0])
        if existing and len(existing) >= n:
            return
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(n)]
        )
    except RuntimeError:
        have = len(tf.config.list_logical_devices("CPU"))
        if have < n:
            raise DistributionError(
                f"cpu_replicas={n} needs {n} logical CPU devices, but TensorFlow already started "
                f"with {have}; set it before any TensorFlow operation runs"
            ) from None


def prepare(spec) -> None:
    """Set up devices before any TensorFlow operation runs (the CLI calls it first).

    Logical CPUs must be configured, and a MultiWorkerMirroredStrategy created, before the
    eager context starts; a later attempt fails.
    """
    if spec.strategy == "multi_worker":
        make_strategy(spec)
    elif spec.cpu_replicas > 1:
        configure_cpu_replicas(spec.cpu_replicas)


def make_strategy(spec) -> tf.distribute.Strategy:
    """Build the strategy for a ``DistributionSpec``."""
    kind = spec.strategy
    if kind == "multi_worker":
        return _multi_worker()
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    if kind in ("mirrored", "auto") and spec.cpu_replicas > 1 and not gpus:
        configure_cpu_replicas(spec.cpu_replicas)
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")][: spec.cpu_replicas]
        return mirrored(spec.devices or cpus)
    if kind == "mirrored":
        devices = spec.devices or gpus or [d.name for d in tf.config.list_logical_devices("CPU")][:1]
        return mirrored(devices)
    if kind == "one_device":
        return one_device((spec.devices or gpus or ["/cpu:0"])[0])
    # auto
    if spec.devices:
        if len(spec.devices) > 1:
            return mirrored(spec.devices)
        return one_device(spec.devices[0])
    if len(gpus) > 1:
        return mirrored(gpus)
    if len(gpus) == 1:
        return one_device(gpus[0])
    return one_device("/cpu:0")


_MIRRORED: dict[tuple[str, ...], tf.distribute.MirroredStrategy] = {}


def mirrored(devices) -> tf.distribute.MirroredStrategy:
    """One MirroredStrategy per device set for the whole process.

    Every MirroredStrategy numbers its collectives from the same start, so the runs of a sweep
    that each made their own would reuse instance keys: the second run's first step fails with
    "Shape mismatch in the collective instance 101" as soon as its model differs.
    """
    key = tuple(devices)
    if key not in _MIRRORED:
        _MIRRORED[key] = _mirrored_with_own_group_keys(list(devices), len(_MIRRORED) + 1)
    return _MIRRORED[key]


def _mirrored_with_own_group_keys(devices: list[str], index: int) -> tf.distribute.MirroredStrategy:
    """A MirroredStrategy whose collective group keys start at ``index`` * 100,000.

    A MirroredStrategy made anywhere else in the process (a user's own, passed as ``strategy=``)
    starts its group keys at 1; ours start elsewhere, so the two never share a collective instance
    ("Collective instance 100 expected type 0 … but got type 2"). TensorFlow offers no public way to
    choose the start; ``_collective_key_base`` is the class attribute its own tests use for this.
    """
    cls = tf.distribute.MirroredStrategy
    before = cls._collective_key_base
    cls._collective_key_base = before + 100_000 * index
    try:
        return cls(devices)
    finally:
        cls._collective_key_base = before


_ONE_DEVICE: dict[str, tf.distribute.OneDeviceStrategy] = {}


def one_device(device: str) -> tf.distribute.OneDeviceStrategy:
    """One OneDeviceStrategy per device for the whole process: the runs of a sweep then share the
    monitors' traced functions, which are cached per strategy (see :func:`tfminima.hessian.traced`)."""
    if device not in _ONE_DEVICE:
        _ONE_DEVICE[device] = tf.distribute.OneDeviceStrategy(device)
    return _ONE_DEVICE[device]


_MULTI_WORKER: tf.distribute.Strategy | None = None


def _multi_worker() -> tf.distribute.Strategy:
    """The process's one MultiWorkerMirroredStrategy (a second one cannot be created)."""
    global _MULTI_WORKER
    if _MULTI_WORKER is not None:
        return _MULTI_WORKER
    if "TF_CONFIG" in os.environ:
        if os.environ["TF_CONFIG"]:
            cluster.parse_tf_config(os.environ["TF_CONFIG"])  # ClusterError naming what is wrong, before TF reads it
        resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    elif "SLURM_JOB_ID" in os.environ:
        resolver = tf.distribute.cluster_resolver.SlurmClusterResolver()
    else:
        raise DistributionError(
            "strategy multi_worker needs the cluster in TF_CONFIG (or a Slurm job); "
            "see the README section 'Several hosts'"
        )
    with interrupt.sigterm_kept():  # TensorFlow's coordination service would take SIGTERM over
        _MULTI_WORKER = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    return _MULTI_WORKER


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Only the chief writes the run directory and TensorBoard logs."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type is None:
        return True
    return task_type == "chief" or (task_type == "worker" and task_id == 0 and "chief" not in
                                    (resolver.cluster_spec().as_dict() or {}))


def is_multi_worker(strategy: tf.distribute.Strategy | None) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and \
        strategy.extended._num_workers > 1  # noqa: SLF001 (no public accessor)


def _worker_sum(strategy: tf.distribute.Strategy, values: list[float]) -> list[float]:
    """Sum ``values`` over workers (each worker counted once, whatever its replica count)."""
    local = [float(v) for v in values]
    first = {"done": False}

    def per_replica(ctx):
        if first["done"]:
            return tf.zeros(len(local), tf.float64)
        first["done"] = True
        return tf.constant(local, tf.float64)

    distributed = strategy.experimental_distribute_values_from_function(per_replica)
    return [float(v) for v in strategy.reduce(tf.distribute.ReduceOp.SUM, distributed, axis=None).numpy()]


def agree(strategy: tf.distribute.Strategy | None, values: list[int]) -> tuple[list[int], bool]:
    """(the chief's ``values``, whether every worker holds the same values); a collective.

    ``values`` are non-negative integers below 2**64. Each is split into 16-bit limbs, and the
    workers' sums of limbs and of their squares are exact in float64, so every worker computes the
    same answer (Cauchy-Schwarz: n·Σx² = (Σx)² exactly when all x are equal) and takes the same
    branch afterwards.
    """
    ints = [int(v) for v in values]
    if any(not 0 <= v < 2**64 for v in ints):
        raise ValueError(f"agree() takes integers in [0, 2**64), got {ints}")
    if not is_multi_worker(strategy):
        return ints, True
    chief = is_chief(strategy)
    limbs = [(v >> (16 * k)) & 0xFFFF for v in ints for k in range(4)]
    n = len(limbs)
    mine = [1.0] + limbs + [x * x for x in limbs] + [x if chief else 0 for x in limbs]
    sums = [int(round(s)) for s in _worker_sum(strategy, mine)]
    workers, s1, s2, from_chief = sums[0], sums[1:n + 1], sums[n + 1:2 * n + 1], sums[2 * n + 1:]
    same = all(workers * b == a * a for a, b in zip(s1, s2))
    chief_values = [sum(from_chief[4 * i + k] << (16 * k) for k in range(4)) for i in range(len(ints))]
    return chief_values, same


def describe(strategy: tf.distribute.Strategy, global_batch_size: int, scheduled: list[int] = ()) -> dict:
    """What a run directory records about its devices: strategy, replicas, batch split.

    ``global_batch_size`` is the base (optimizer.batch_size); with a batch-size schedule,
    ``scheduled`` (every epoch's global batch) adds the ranges.
    """
    replicas = strategy.num_replicas_in_sync
    multi = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    info = {
        # MultiWorkerMirroredStrategy's class is CollectiveAllReduceStrategy: use the public name
        "strategy": "MultiWorkerMirroredStrategy" if multi else type(strategy).__name__,
        "replicas": replicas,
        "workers": strategy.extended._num_workers if multi else 1,  # noqa: SLF001
        "local_devices": list(getattr(strategy.extended, "worker_devices", ()) or ()),
        "global_batch_size": global_batch_size,
        "per_replica_batch_size": global_batch_size // replicas,
    }
    if scheduled and set(scheduled) != {global_batch_size}:
        info["global_batch_size_range"] = [min(scheduled), max(scheduled)]
        info["per_replica_batch_size_range"] = [min(scheduled) // replicas, max(scheduled) // replicas]
    return info
