"""tf.distribute strategies from a config's ``distribution`` section.

``auto`` picks MirroredStrategy over several GPUs, OneDeviceStrategy on one GPU, the CPU
otherwise (MirroredStrategy over logical CPUs when ``cpu_replicas`` > 1); ``multi_worker``
reads the cluster from TF_CONFIG (or Slurm's environment).
"""

from __future__ import annotations

import os

import tensorflow as tf


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


def make_strategy(spec) -> tf.distribute.Strategy:
    """Build the strategy for a ``DistributionSpec``."""
    kind = spec.strategy
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    if kind == "multi_worker":
        return _multi_worker()
    if kind in ("mirrored", "auto") and spec.cpu_replicas > 1 and not gpus:
        configure_cpu_replicas(spec.cpu_replicas)
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")][: spec.cpu_replicas]
        return tf.distribute.MirroredStrategy(spec.devices or cpus)
    if kind == "mirrored":
        devices = spec.devices or gpus or [d.name for d in tf.config.list_logical_devices("CPU")][:1]
        return tf.distribute.MirroredStrategy(devices)
    if kind == "one_device":
        return tf.distribute.OneDeviceStrategy((spec.devices or gpus or ["/cpu:0"])[0])
    # auto
    if spec.devices:
        if len(spec.devices) > 1:
            return tf.distribute.MirroredStrategy(spec.devices)
        return tf.distribute.OneDeviceStrategy(spec.devices[0])
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy(gpus)
    if len(gpus) == 1:
        return tf.distribute.OneDeviceStrategy(gpus[0])
    return tf.distribute.OneDeviceStrategy("/cpu:0")


def _multi_worker() -> tf.distribute.Strategy:
    if "TF_CONFIG" in os.environ:
        resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    elif "SLURM_JOB_ID" in os.environ:
        resolver = tf.distribute.cluster_resolver.SlurmClusterResolver()
    else:
        raise DistributionError(
            "strategy multi_worker needs the cluster in TF_CONFIG (or a Slurm job); "
            "see the README section 'Several hosts'"
        )
    return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)


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
