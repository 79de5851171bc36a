"""Expected time of the full-scale experiments E1-E6 on 1 and 8 GPUs, on paper, from measured costs.

    python benchmarks/scaling_table.py [--gpu-tflops 2.0] [--launch-us 15]

What is measured here, on this machine: each model's forward FLOPs per example (TensorFlow's
graph profiler on the traced forward pass), its train-step time at S = 128 on this CPU (median
of 5 steps after tracing), and the trainer's per-step dispatch cost (a 1-unit MLP at S = 2).

What is counted per run, from the experiment YAML (sweep expanded, schedules applied): training
= Σ over epochs of steps × (3 × forward FLOPs × S) (a backward pass ≈ 2 forwards); evaluation =
val_size forwards a epoch and test_size once; sharpness = (Lanczos HVPs + Hutchinson probes) ×
samples × 6 forwards (an HVP ≈ 2 gradients, measured 1.8-2.1 in bench_hessian) each time it
measures; memorisation = train_size forwards a measurement. (E2's interpolation, 4 pairs × 31
points × 2,048 examples, is below 0.01 % and left out.)

Assumptions (stated in the output, change them with the flags):
- one GPU sustains R = --gpu-tflops (default 2 TFLOP/s) on these CIFAR-size models: about what a
  V100 reaches in FP32 on ResNet-20/56 at S = 128 (~10 s an epoch for ResNet-20), far below its
  peak because small convolutions are bound by kernel launches; an A100 with TF32/bf16 and XLA
  does ~2-3× better, which divides every GPU column by that factor;
- a step never takes less than L = measured dispatch + --launch-us × (Keras layers) (about three
  kernels a layer — forward, backward, update — at ~5 µs each); this is what makes tiny batches
  slow on a GPU;
- 8 GPUs run a sweep as 8 shards, one whole run per GPU (no communication; `--shard i/8`), the
  runs placed longest first (LPT); a data-parallel split of one run is not used for these models.
- A run trained to a target (``until:``, E8) is counted to its ``epochs`` cap (an upper bound), or to
  ``--until-fraction`` of it (the fraction the CPU profile's runs needed, measured in REPRODUCTION.md).
The CPU column scales the measured S = 128 step time by the example count (2 cores, this machine).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfminima import config, schedules  # noqa: E402
from tfminima.models import build_model  # noqa: E402
from tfminima.sweep import expand  # noqa: E402

EXPERIMENTS = ["e1_ratio_sharpness", "e1_resnet_cifar10", "e2_interpolation", "e3_scaling_rules",
               "e3_schedules", "e4_memorization", "e5_breaking_point", "e6_cyclic_sharpness", "e8_critical_batch"]
SHAPES = {"cifar10": ((32, 32, 3), 10), "cifar100": ((32, 32, 3), 100), "mnist": ((28, 28, 1), 10),
          "fashion_mnist": ((28, 28, 1), 10), "mnist1d": ((40,), 10), "digits": ((8, 8, 1), 10)}
LANCZOS_HVPS = {1: 12, 5: 16}  # medians measured in bench_hessian (k=1: 11.5, k=5: 16)


def forward_flops(model, shape) -> float:
    from tensorflow.python.profiler import model_analyzer, option_builder

    fn = tf.function(lambda x: model(x, training=False))
    graph = fn.get_concrete_function(tf.TensorSpec((1, *shape), tf.float32)).graph
    opts = option_builder.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    return float(model_analyzer.profile(graph, options=opts).total_float_ops)


def step_seconds(model, shape, classes, batch: int, steps: int = 5) -> float:
    """Median train-step time (SGD, summed loss / S) after tracing."""
    from tfminima.optim import make_optimizer

    opt = make_optimizer(config.OptimizerSpec(lr=0.01, batch_size=batch))
    opt.build(model.trainable_variables)
    x = tf.constant(np.random.default_rng(0).normal(size=(batch, *shape)).astype(np.float32))
    y = tf.constant(np.random.default_rng(1).integers(0, classes, batch).astype(np.int32))

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(y, model(x, training=True),
                                                                                  from_logits=True))
        opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))

    step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(spec, cache: dict) -> dict:
    key = (config.to_yaml(spec).split("model:")[1].split("optimizer:")[0], spec.dataset.name)
    if key not in cache:
        shape, classes = SHAPES[spec.dataset.name]
        model = build_model(spec.model, shape, classes)
        cache[key] = {
            "flops": forward_flops(model, shape),
            "cpu_step_128": step_seconds(model, shape, classes, 128),
            "layers": len(model.layers),
            "name": f"{spec.model.name}{getattr(spec.model, 'depth', '')}",
        }
    return cache[key]


def run_work(spec, m: dict, rate: float, floor: float, until_fraction: float = 1.0) -> dict:
    """FLOPs and GPU seconds of one run (R, L as in the module docstring); a run trained to a target
    (``until:``) counts ``until_fraction`` of its epochs cap."""
    f, d = m["flops"], spec.dataset
    gpu = flops = 0.0
    for setting in schedules.plan(spec, 1):
        steps = math.ceil(d.train_size / setting.batch_size)
        per_step = 3 * f * setting.batch_size
        gpu += steps * max(per_step / rate, floor)
        flops += 3 * f * d.train_size
    extra = (d.val_size * spec.epochs + d.test_size) * f
    for mon in spec.monitors:
        times = len([e for e in range(spec.epochs) if (e + 1) % mon.every == 0 or e == spec.epochs - 1])
        if mon.name == "sharpness":
            hvps = LANCZOS_HVPS.get(mon.k, 4 * mon.k) + (mon.trace_probes if mon.trace else 0)
            extra += times * hvps * mon.samples * 6 * f
        elif mon.name == "memorization":
            extra += times * d.train_size * f
        elif mon.name == "noise":
            extra += times * mon.samples * 3 * f * (1 + mon.trace_probes / 10)
    flops += extra
    gpu += extra / rate
    f = until_fraction if spec.until is not None else 1.0
    return {"flops": f * flops, "gpu": f * gpu, "cpu_examples": f * spec.epochs * d.train_size, "extra_flops": f * extra}


def lpt_makespan(durations: list[float], machines: int) -> float:
    loads = [0.0] * machines
    for t in sorted(durations, reverse=True):
        loads[loads.index(min(loads))] += t
    return max(loads)


def fmt_hours(seconds: float) -> str:
    h = seconds / 3600
    return f"{h:,.1f} h" if h >= 1 else f"{seconds / 60:,.0f} min"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--gpu-tflops", type=float, default=2.0)
    p.add_argument("--launch-us", type=float, default=15.0, help="per Keras layer and step")
    p.add_argument("--only", nargs="*", default=None, help="these experiments only (e.g. e8_critical_batch)")
    p.add_argument("--until-fraction", type=float, default=1.0,
                   help="runs trained to a target (until:) stop after this fraction of their epochs cap")
    args = p.parse_args()
    rate = args.gpu_tflops * 1e12
    tiny = build_model(config.MLPSpec(name="mlp", hidden=[1]), (4,), 2)
    dispatch = step_seconds(tiny, (4,), 2, 2, steps=50)
    print(f"measured: trainer step dispatch (1-unit MLP, S=2) {dispatch * 1e3:.2f} ms on this CPU")
    print(f"assumed: 1 GPU sustains {args.gpu_tflops:g} TFLOP/s; step floor = dispatch + {args.launch_us:g} µs × layers; "
          "8 GPUs = 8 shards (one run per GPU, LPT)\n")
    cache: dict = {}
    rows = []
    for name in args.only or EXPERIMENTS:
        spec = config.load(Path(__file__).resolve().parents[1] / "experiments" / f"{name}.yaml")
        plans = expand(spec)
        works, cpu = [], 0.0
        models = set()
        for plan in plans:
            m = measure(plan.spec, cache)
            models.add(f"{m['name']} {m['flops'] / 1e6:.0f} MFLOP, CPU {m['cpu_step_128'] * 1e3:.0f} ms/step@128")
            floor = dispatch + args.launch_us * 1e-6 * m["layers"]
            w = run_work(plan.spec, m, rate, floor, args.until_fraction)
            works.append(w)
            cpu += w["flops"] / (3 * m["flops"] * 128 / m["cpu_step_128"])
        gpu1 = sum(w["gpu"] for w in works)
        gpu8 = lpt_makespan([w["gpu"] for w in works], 8)
        pflop = sum(w["flops"] for w in works) / 1e15
        share = sum(w["extra_flops"] for w in works) / sum(w["flops"] for w in works)
        to = "to the cap" if args.until_fraction == 1 else f"{args.until_fraction:g} of the cap"
        rows.append((name + (f" (until: {to})" if spec.until is not None else ""), len(plans), pflop, share, cpu,
                     gpu1, gpu8, "; ".join(sorted(models))))
    print(f"| experiment | runs | PFLOP | eval+monitors | CPU (2 cores, measured step) | 1 GPU | 8 GPUs | models |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for name, runs, pflop, share, cpu, g1, g8, models in rows:
        print(f"| {name} | {runs} | {pflop:,.1f} | {100 * share:.0f} % | {fmt_hours(cpu)} | {fmt_hours(g1)} | "
              f"{fmt_hours(g8)} ({g1 / g8:.1f}×) | {models} |")


if __name__ == "__main__":
    main()
