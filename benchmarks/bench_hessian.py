"""Hessian instruments measured side by side in one process.

    python benchmarks/bench_hessian.py [--seeds 10] [--epochs 5] [--rounds 5] [--skip-monitor] [--skip-cnn]
    python benchmarks/bench_hessian.py --only instantiation
    python benchmarks/bench_hessian.py --only arithmetic
    python benchmarks/bench_hessian.py --only vectorized
    pip install -e '.[bench]'     # torch + pyhessian, for the PyHessian rows (skipped without them)

Workloads, float32, inference mode, the Hessian of the mean loss over the first 2,048 training examples:
an MLP 40-100-100-10 (ReLU) trained a few epochs with SGD on MNIST-1D, and ``tfminima.models.cnn`` with
batch norm (conv 32, conv 64, dense 128; its retained graph is larger) trained likewise.

1. Products against a gradient on the same examples, as the instruments call them: the gradient, one
   recomputed HVP (forward-over-backward and double backward), retained blocks of 20 and 100 vectors
   (amortised, one forward pass and first gradient a block; goal ≤ 1.2 gradients a product) and a
   retained Lanczos run (a step's marginal cost). Interleaved rounds; medians of wall time, and the
   same ratios in process CPU time, which the load of a shared machine disturbs less.
2. λ_max: our Lanczos (tol 1e-3; retained and recomputed) against real PyHessian
   (``hessian(model, criterion, data=(x, y)).eigenvalues()``, its defaults) on a torch port of the same
   weights and data (same loss checked), our own power iteration with PyHessian's rule, and SciPy's eigsh;
   seconds include each side's set-up (goal: ours ≤ 0.5× PyHessian's time). Also top-5 and the trace.
3. The sharpness monitor's warm starts (issue 10): products and errors with the rule before and now.
4. Monitor overhead: tfminima's Trainer with and without the sharpness monitor every epoch, with the
   products retained (default) and recomputed (as before issue 15).
5. The batch-norm CNN: [1] and [2] again.
6. Instantiation after a run's seeding (``--only instantiation``): TensorFlow instantiates a traced
   function again after every ``tf.random.set_seed``, which every training run did; the first call
   after a seeding less a steady call, for each function a measurement uses, with Grappler's rewrites
   (as before), without them, and after ``tfminima.seeding.seed_run`` (what a run does now: the kernel
   caches are kept), and the steady products' CPU time each way, on the MLP and the CNN over 1,024 examples.
7. The arithmetic (``--only arithmetic``): floating-point operations of the traced graphs, counted by
   TensorFlow's profiler (matrix products, convolutions and the element-wise ops it knows): a gradient, a
   recomputed HVP, a retained first gradient and each second backward pass over it, against a gradient.
   What a product must cost whatever its speed; and the quickstart's once-a-run measurement against the
   arithmetic of the run's training.
8. Vectorised blocks (``--only vectorized``): a retained block's second backward passes through
   ``tf.vectorized_map`` (TensorFlow's pfor: one batched pass for the whole block, as
   ``GradientTape.jacobian`` does) against the block as the instruments run it (``tf.map_fn``, two
   passes at once); same numbers checked, a product's time in gradients, on the MLP and the CNN.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def mnist1d(num: int = 4000):
    """MNIST-1D, generated before anything is seeded (make_dataset reseeds NumPy and random)."""
    from mnist1d.data import get_dataset_args, make_dataset

    d = make_dataset(get_dataset_args())
    x, y = d["x"][:num].astype("float32"), d["y"][:num].astype("int64")
    return (x - x.mean()) / x.std(), y


X, Y = mnist1d()

import keras
import numpy as np
import tensorflow as tf

from tfminima import hessian

SUBSET = 2048


def trained_mlp(epochs: int):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((40,)),
            keras.layers.Dense(100, activation="relu"),
            keras.layers.Dense(100, activation="relu"),
            keras.layers.Dense(10),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.SGD(0.05),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(X, Y, batch_size=64, epochs=epochs, verbose=0)
    return model


def interleaved(tasks: dict, rounds: int, reps: int = 5) -> tuple[dict, dict]:
    """Median wall and CPU seconds of each task (name -> (fn, products)) a product, over interleaved rounds
    (each round's order rotated, so load changes on this shared machine hit every task alike)."""
    wall = {name: [] for name in tasks}
    cpu = {name: [] for name in tasks}
    names = list(tasks)
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            fn, count = tasks[name]
            for _ in range(reps):
                t0, c0 = time.perf_counter(), time.process_time()
                fn()
                wall[name].append((time.perf_counter() - t0) / count)
                cpu[name].append((time.process_time() - c0) / count)
    return ({k: statistics.median(v) for k, v in wall.items()}, {k: statistics.median(v) for k, v in cpu.items()})


def bench_products(model, data, rounds: int, label: str) -> None:
    """[1]: a product's cost against a gradient's, every way the instruments compute products."""
    from tfminima.hessian import krylov

    ops = {mode: hessian.HessianOperator(model, data, batch_size=SUBSET, mode=mode, hvp_mode="recomputed")
           for mode in ("forward", "reverse")}
    default = hessian.HessianOperator(model, data, batch_size=SUBSET)
    retained = hessian.HessianOperator(model, data, batch_size=SUBSET, hvp_mode="retained")
    rng = np.random.default_rng(0)
    v = rng.standard_normal(retained.n)
    blocks = {size: rng.standard_normal((size, retained.n)) for size in (20, 100)}
    runner = retained.lanczos_runner()

    def lanczos(steps):
        process = krylov.LanczosProcess(None, rng.standard_normal(retained.n), steps, rng)
        process.run(runner, krylov.StopRule(1, 1e-3, True, 10**6, steps))

    tasks = {
        "gradient": (retained.loss_and_gradient, 1),
        "HVP recomputed, forward-over-backward": (lambda: ops["forward"].matvec(v), 1),
        "HVP recomputed, double backward": (lambda: ops["reverse"].matvec(v), 1),
        "retained block of 20": (lambda: retained.matmat(blocks[20]), 20),
        "retained block of 100": (lambda: retained.matmat(blocks[100]), 100),
        "retained Lanczos, 1 step": (lambda: lanczos(1), 1),
        "retained Lanczos, 21 steps": (lambda: lanczos(21), 1),
    }
    for fn, _ in tasks.values():
        fn()  # trace
    wall, cpu = interleaved(tasks, rounds)
    step = {
        kind: (times["retained Lanczos, 21 steps"] - times["retained Lanczos, 1 step"]) / 20
        for kind, times in (("wall", wall), ("cpu", cpu))
    }
    print(f"\n[1{label}] Products against a gradient, {SUBSET} examples, {retained.n} parameters; medians of "
          f"{rounds} interleaved rounds. Retaining all examples keeps ~{default.plan.kept_bytes / 2**20:.0f} MiB "
          f"(estimate): by default (1 GiB budget) {default.hvp_mode}, Lanczos {default.lanczos_mode}, "
          f"blocks of {default.block_size}")
    g_wall, g_cpu = wall["gradient"], cpu["gradient"]
    for name in tasks:
        if name.startswith("retained Lanczos"):
            continue
        print(f"  {name:40s} {1e3 * wall[name]:7.2f} ms a product = {wall[name] / g_wall:4.2f} gradients "
              f"(CPU time: {cpu[name] / g_cpu:4.2f})")
    print(f"  {'retained Lanczos, a step (21 − 1 steps)':40s} {1e3 * step['wall']:7.2f} ms a product = "
          f"{step['wall'] / g_wall:4.2f} gradients (CPU time: {step['cpu'] / g_cpu:4.2f})")


def bench_eigen(model, data, seeds: int, label: str) -> None:
    """[2]: λ_max by every method, ours against real PyHessian on the same weights and data."""
    import torch_port

    op = hessian.HessianOperator(model, data, batch_size=SUBSET)
    truth = hessian.top_eigenvalues(op, None, 5, method="eigsh", tol=1e-12, hvp_mode="recomputed")
    lam = truth.eigenvalues[0]
    loss, _ = op.loss_and_gradient()
    print(f"\n[2{label}] λ_max over {SUBSET} examples, {op.n} parameters; reference eigsh tol 1e-12: "
          f"top-5 = {np.array2string(truth.eigenvalues, precision=4)}")
    methods = {
        "lanczos (ours, retained)": lambda s: hessian.top_eigenvalues(
            model, data, seed=s, batch_size=SUBSET, hvp_mode="retained"),
        "lanczos (ours, recomputed)": lambda s: hessian.top_eigenvalues(
            model, data, seed=s, batch_size=SUBSET, hvp_mode="recomputed"),
        "power (ours, PyHessian's rule)": lambda s: hessian.top_eigenvalues(
            model, data, method="power", seed=s, batch_size=SUBSET),
        "eigsh (scipy, tol 1e-3)": lambda s: hessian.top_eigenvalues(
            model, data, method="eigsh", seed=s, batch_size=SUBSET),
    }
    rows = {name: [] for name in methods}
    if torch_port.available():
        module = torch_port.port(model)
        torch_loss = torch_port.loss(module, *data)
        print(f"  PyHessian on a torch port: loss {torch_loss:.6f} (ours {loss:.6f}, rel. diff "
              f"{abs(torch_loss - loss) / loss:.1e})")
        methods["PyHessian (real, defaults)"] = lambda s: torch_port.pyhessian_lambda_max(module, *data, seed=s)
        rows["PyHessian (real, defaults)"] = []
    else:
        print(f"  PyHessian rows skipped: torch/pyhessian not installed ({torch_port.INSTALL_HINT})")
    for fn in methods.values():
        fn(0)  # trace / warm up
    names = list(methods)
    for seed in range(seeds):
        for name in names[seed % len(names):] + names[: seed % len(names)]:
            t0 = time.perf_counter()
            out = methods[name](seed)
            seconds = time.perf_counter() - t0
            if isinstance(out, tuple):  # PyHessian: (seconds, λ)
                seconds, value, count = out[0], out[1], float("nan")
            else:
                value, count = out.eigenvalues[0], out.hvp_count
            rows[name].append((count, seconds, abs(value - lam) / lam))
    print(f"  {seeds} random starts, interleaved; medians (max):")
    summary = {}
    for name, r in rows.items():
        hv, sec, err = (np.array([row[i] for row in r]) for i in range(3))
        summary[name] = np.median(sec)
        products = "  n/a" if np.isnan(hv).all() else f"{np.median(hv):5.1f} ({hv.max():3.0f})"
        print(f"  {name:32s} HVPs {products}   {1e3 * np.median(sec):7.1f} ms ({1e3 * sec.max():6.1f})   "
              f"rel. error {np.median(err):.1e} ({err.max():.1e})")
    ours = summary["lanczos (ours, retained)"]
    if "PyHessian (real, defaults)" in summary:
        print(f"  time ours (retained) / PyHessian: {ours / summary['PyHessian (real, defaults)']:.2f}; "
              f"ours (recomputed) / PyHessian: "
              f"{summary['lanczos (ours, recomputed)'] / summary['PyHessian (real, defaults)']:.2f}")
    power = summary["power (ours, PyHessian's rule)"]
    print(f"  time ours / our power iteration (PyHessian's rule, our products): {ours / power:.2f}")
    top5 = {
        "lanczos k=5 (tol 1e-3)": lambda s: hessian.top_eigenvalues(op, None, 5, seed=s),
        "power k=5 (deflation)": lambda s: hessian.top_eigenvalues(op, None, 5, method="power", seed=s),
    }
    for name, fn in top5.items():
        r = [fn(s) for s in range(3)]
        err = [np.max(np.abs(x.eigenvalues - truth.eigenvalues) / truth.eigenvalues) for x in r]
        print(f"  {name:32s} HVPs {np.median([x.hvp_count for x in r]):5.0f}   "
              f"{1e3 * np.median([x.seconds for x in r]):7.1f} ms   max rel. error {np.median(err):.1e}")
    for mode in ("retained", "recomputed"):
        tr = hessian.trace(model, data, max_hvps=100, batch_size=SUBSET, hvp_mode=mode)
        print(f"  Hutchinson trace, 100 probes, {mode:10s}: {tr.value:.3f} ± {tr.stderr:.3f} "
              f"({tr.stderr / tr.value:.1%}), {1e3 * tr.seconds:.0f} ms")


RULES = {  # (MIN_STEPS, WARM_MIX, GUARD_VECTORS) of tfminima.hessian.solvers
    "before (issue 10)": (1, 0.0, 0),
    "now": None,  # the library's defaults
}


def _with_rule(rule, fn):
    from tfminima.hessian import krylov

    saved = (krylov.MIN_STEPS, krylov.WARM_MIX, krylov.GUARD_VECTORS)
    if rule is not None:
        krylov.MIN_STEPS, krylov.WARM_MIX, krylov.GUARD_VECTORS = rule
    try:
        return fn()
    finally:
        krylov.MIN_STEPS, krylov.WARM_MIX, krylov.GUARD_VECTORS = saved


def bench_warm_starts(model, epochs: int, seeds: int) -> None:
    """The sharpness monitor's warm starts, with the rule before issue 10 and now, on the same weights."""
    from tfminima.monitors import MonitorContext, SharpnessMonitor, fixed_subset
    from tfminima.train import per_example_loss

    subset = fixed_subset(len(X), SUBSET, 0)  # the monitor's examples (seed 0)
    data = (X[subset], Y[subset])

    snapshots = []
    for _ in range(epochs):  # the weights after each of `epochs` more epochs of training
        model.fit(X, Y, batch_size=64, epochs=1, verbose=0)
        snapshots.append(model.get_weights())
    ctx = MonitorContext(
        train_x=X, train_y=Y, clean_y=Y, noise_mask=np.zeros(len(Y), bool), val_x=X[:10], val_y=Y[:10],
        num_classes=10, strategy=tf.distribute.get_strategy(), loss_fn=per_example_loss, seed=0,
        epochs=epochs, lr_at=lambda e: 0.05, batch_size_at=lambda e: 64, eval_batch_size=SUBSET,
    )
    truth, tops = [], []
    for weights in snapshots:
        model.set_weights(weights)
        op = hessian.HessianOperator(model, data, loss=per_example_loss, batch_size=SUBSET)
        ref = hessian.top_eigenvalues(op, None, 2, method="eigsh", tol=1e-12)
        truth.append(ref.eigenvalues)
        tops.append(ref.eigenvectors[0])
    swaps = [float(abs(a @ b)) for a, b in itertools.pairwise(tops)]
    print(f"\n[3] Sharpness monitor warm starts: {epochs} more epochs, measured after each ({SUBSET} examples, "
          f"k=1, trace 100 probes)")
    print("  λ₁, λ₂ each epoch: " + ", ".join(f"{a:.3f}/{b:.3f}" for a, b in truth))
    print("  |cos| between consecutive top eigenvectors: " + ", ".join(f"{c:.2f}" for c in swaps))
    for name, rule in RULES.items():
        def run():
            monitor = SharpnessMonitor(every=1, samples=SUBSET, seed=0)
            monitor.set_model(model)
            monitor.setup(ctx)
            out = []
            for epoch, weights in enumerate(snapshots):
                model.set_weights(weights)
                out.append(monitor.measure(epoch))
            return out

        out = _with_rule(rule, run)
        eig = [o["eigen_hvps"] for o in out]
        err = [abs(o["lambda_max"] - t[0]) / t[0] for o, t in zip(out, truth)]
        print(f"  {name:18s} eigen HVPs {' '.join(f'{e:3d}' for e in eig)} (warm mean {np.mean(eig[1:]):4.1f}); "
              f"all HVPs a measurement {np.mean([o['hvps'] for o in out]):5.1f}; max rel. error {max(err):.1e}")

    model.set_weights(snapshots[-1])
    op = hessian.HessianOperator(model, data, loss=per_example_loss, batch_size=SUBSET)
    ref = hessian.top_eigenvalues(op, None, 2, method="eigsh", tol=1e-12)
    print(f"  warm start exactly on v₂ (λ₁ {ref.eigenvalues[0]:.4f}, λ₂ {ref.eigenvalues[1]:.4f}), {seeds} seeds:")
    for name, rule in RULES.items():
        res = _with_rule(rule, lambda: [hessian.top_eigenvalues(op, None, seed=s, init=ref.eigenvectors[1])
                                        for s in range(seeds)])
        wrong = sum(abs(r.lambda_max - ref.eigenvalues[0]) > 1e-3 * ref.eigenvalues[0] for r in res)
        print(f"  {name:18s} wrong λ_max {wrong}/{seeds} (converged={all(r.converged for r in res)}), "
              f"HVPs {np.median([r.hvp_count for r in res]):.0f}")
    _warm_start_failure_rates(seeds=40)


def _warm_start_failure_rates(seeds: int, n: int = 600) -> None:
    """How often a warm start exactly on v₂ returns λ₂, on matrices with a known spectrum and gap."""
    from tfminima.hessian import krylov

    q, _ = np.linalg.qr(np.random.default_rng(12).standard_normal((n, n)))
    print(f"  matrices n={n}, spectrum λ₁, 2.0 and 598 values in [-0.5, 1.5], warm start exactly on v₂, {seeds} seeds:")
    for lam1 in (2.1, 2.2, 2.4):
        A = (q * np.concatenate([[lam1, 2.0], np.linspace(-0.5, 1.5, n - 2)])) @ q.T
        line = f"    γ = (λ₁−λ₂)/(λ₂−λ_min) = {(lam1 - 2.0) / 2.5:.2f}: wrong"
        for name, rule in RULES.items():
            found = _with_rule(rule, lambda A=A: [krylov.lanczos(A.dot, n, 1, seed=s, init=q[:, 1]).eigenvalues[0]
                                              for s in range(seeds)])
            line += f" {name} {sum(abs(f - lam1) > 1e-3 * lam1 for f in found)}/{seeds};"
        cold = [krylov.lanczos(A.dot, n, 1, seed=s).hvp_count for s in range(10)]
        print(line + f" cold start {np.median(cold):.0f} HVPs")


def bench_monitor(epochs: int, rounds: int) -> None:
    """[4]: the Trainer with and without the sharpness monitor every epoch (each run seeds anew, so the
    monitor's traced functions are instantiated again in every run, as in a sweep)."""
    from bench_monitors import products_recomputed

    from tfminima import config
    from tfminima.train import Trainer

    base = (
        f"epochs: {epochs}\ndeterministic: false\n"
        "dataset: {name: mnist1d, train_size: 4000, val_size: 500, test_size: 500}\n"
        "model: {name: mlp, hidden: [100, 100]}\noptimizer: {lr: 0.05, batch_size: 64}\n"
    )
    monitor = base + f"monitors:\n  - sharpness: {{every: 1, samples: {SUBSET}}}\n"
    variants = {
        "no monitor": (config.load_text(base, "bench"), contextlib.nullcontext),
        "sharpness every epoch, retained": (config.load_text(monitor, "bench"), contextlib.nullcontext),
        "sharpness every epoch, recomputed": (config.load_text(monitor, "bench"), products_recomputed),
    }
    splits = None
    seconds = {name: [] for name in variants}
    names = list(variants)
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            spec, context = variants[name]
            with context():
                trainer = Trainer(spec, splits=splits)
                splits = trainer.splits
                t0 = time.perf_counter()
                trainer.fit()
                seconds[name].append(time.perf_counter() - t0)
    median = {name: statistics.median(v) for name, v in seconds.items()}
    plain = median["no monitor"]
    print(f"\n[4] Trainer, {epochs} epochs of 4000 MNIST-1D examples (S=64), medians of {rounds} rounds; "
          f"no monitor {plain:.2f} s")
    for name in names[1:]:
        per_epoch = (median[name] - plain) / epochs
        print(f"  {name:36s} {median[name]:6.2f} s: {1e3 * per_epoch:5.0f} ms a measurement "
              f"(k=1, trace 100 probes, {SUBSET} examples) = {per_epoch / (plain / epochs):.2f}× an epoch")


def bench_memory(model, data) -> None:
    """Peak resident memory after a recomputed product, a retained block and a retained Lanczos run,
    against the plan's estimate (process-wide high-water marks, so run on the largest model first)."""
    import resource

    def peak() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    recomputed = hessian.HessianOperator(model, data, batch_size=SUBSET, hvp_mode="recomputed")
    recomputed.loss_and_gradient()
    recomputed.matvec(np.ones(recomputed.n))
    base = peak()
    retained = hessian.HessianOperator(model, data, batch_size=SUBSET, hvp_mode="retained")
    retained.matmat(np.ones((20, retained.n)))
    block = peak()
    hessian.top_eigenvalues(retained, None)
    forward = retained.fns.forward_bytes(hessian.model_state(model), *retained.plan.batches.items[0]) / 2**20
    print(f"  memory: peak {base:.0f} MiB after a gradient and a recomputed HVP, {block:.0f} MiB after a retained "
          f"block of 20 (+{block - base:.0f}), {peak():.0f} MiB after a retained Lanczos run; the forward pass's "
          f"tensors {forward:.0f} MiB, the plan's estimate of a retained call {retained.plan.kept_bytes / 2**20:.0f} MiB")


def bench_instantiation(model, label: str, rounds: int) -> None:
    """[6]: what a run pays again after its seeding, with and without Grappler; and steady products."""
    from tfminima.hessian.products import without_grappler

    data = (X[:1024], Y[:1024])
    recomputed = hessian.HessianOperator(model, data, mode="reverse", hvp_mode="recomputed")
    retained = hessian.HessianOperator(model, data, hvp_mode="retained")
    rng = np.random.default_rng(0)
    v, block = rng.standard_normal(retained.n), rng.standard_normal((20, retained.n))
    tasks = {
        "gradient": (retained.loss_and_gradient, 1),
        "HVP recomputed, double backward": (lambda: recomputed.matvec(v), 1),
        "retained function, block of 20": (lambda: retained.matmat(block), 20),
        "batch's gradient and product (along_gradient)": (retained.curvature_along_gradient, 1),
    }
    from tfminima.seeding import seed_run

    # (Grappler's rewrites, the run's seeding): tf.random.set_seed clears the kernel caches (as before);
    # seed_run, what a run does now, keeps them
    ways = {"with Grappler": (contextlib.nullcontext, tf.random.set_seed),
            "without": (without_grappler, tf.random.set_seed),
            "seed_run": (without_grappler, seed_run)}
    for fn, _ in tasks.values():
        for context_, _ in ways.values():
            with context_():
                fn()  # traced, and instantiated every way
    first = {(name, way): [] for name in tasks for way in ways}
    steady = {(name, way): [] for name in tasks for way in ways}
    for r in range(rounds):
        for name, (fn, count) in tasks.items():
            for way in list(ways)[r % 3 :] + list(ways)[: r % 3]:
                context_, seed = ways[way]
                seed(r)  # what a run's seeding does
                with context_():
                    t0 = time.perf_counter()
                    fn()
                    t1, c1 = time.perf_counter(), time.process_time()
                    for _ in range(3):
                        fn()
                    t2, c2 = time.perf_counter(), time.process_time()
                steady[name, way].append((c2 - c1) / 3)  # CPU time: what the load of others disturbs least
                first[name, way].append(t1 - t0 - (t2 - t1) / 3)
    print(f"\n[6{label}] Instantiation after a run's seeding, 1024 examples, {retained.n} parameters; medians of "
          f"{rounds} interleaved rounds (first call after the seeding less a steady call; a product's CPU time)")
    for name, (_, count) in tasks.items():
        inst = {way: 1e3 * statistics.median(first[name, way]) for way in ways}
        prod = {way: 1e3 * statistics.median(steady[name, way]) / count for way in ways}
        print(f"  {name:46s} instantiation {inst['with Grappler']:7.1f} ms with Grappler, {inst['without']:7.1f} ms "
              f"without, {inst['seed_run']:7.1f} ms after seed_run; a product's CPU time "
              f"{prod['with Grappler']:6.2f} / {prod['without']:6.2f} / {prod['seed_run']:6.2f} ms")


def graph_flops(graph) -> int:
    """Floating-point operations of a traced graph, as TensorFlow's profiler counts them (static shapes)."""
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return tf.compat.v1.profiler.profile(graph, options=options).total_float_ops


def bench_arithmetic(model, label: str, quickstart: bool = False) -> None:
    """[7]: FLOPs of a product against a gradient's, from the traced graphs (no timing: load-free)."""
    from tfminima.hessian.products import model_state

    data = (X[:SUBSET], Y[:SUBSET])
    op = hessian.HessianOperator(model, data, batch_size=SUBSET, mode="reverse", hvp_mode="recomputed")
    fns, state = op.fns, model_state(model)
    (x, y), inv_n = op.batches.items[0], op.batches.inv_n

    def retained(products: int):
        def run(s, a, b, vectors):
            values = list(s[0])
            tape, grads = fns.retained_gradient(values, s[1], a, b, inv_n)
            return [fns.second_backward(tape, grads, values, vectors[i]) for i in range(products)]

        return tf.function(run, autograph=False).get_concrete_function(state, x, y, tf.zeros([2, op.n], tf.float64))

    forward = tf.function(lambda s, a, b: fns.replica_loss(s, a, b, inv_n)[0], autograph=False)
    flops = {
        "forward pass": graph_flops(forward.get_concrete_function(state, x, y).graph),
        "gradient": graph_flops(fns.grad.get_concrete_function(state, x, y, inv_n).graph),
        "HVP recomputed, double backward": graph_flops(
            fns.hvp.get_concrete_function(state, x, y, inv_n, tf.zeros([op.n], tf.float64)).graph),
    }
    one, two = (graph_flops(retained(k).graph) for k in (1, 2))
    flops["retained: a second backward pass"] = two - one
    flops["retained: the first gradient kept"] = one - (two - one)
    gradient = flops["gradient"]
    print(f"\n[7{label}] Arithmetic of the traced graphs over {SUBSET} examples, {op.n} parameters "
          f"(TensorFlow's profiler; FLOPs)")
    for name, value in flops.items():
        print(f"  {name:40s} {value / 1e6:9.0f} MFLOP = {value / gradient:4.2f} gradients")
    if quickstart:
        a = tf.random.normal([2048, 2048])
        times = []
        for _ in range(7):
            t0 = time.perf_counter()
            tf.linalg.matmul(a, a).numpy()
            times.append(time.perf_counter() - t0)
        print(f"  what these cores give a large product: 2048 × 2048 float32 matmul at "
              f"{2 * 2048**3 / statistics.median(times) / 1e9:.0f} GFLOP/s (median of 7)")
        # The quickstart's once-a-run measurement (bench_monitors' "sharpness once a run": λ_max by Lanczos,
        # MIN_STEPS products, and Tr(H) with 20 probes over 1,024 examples), against its run's training:
        # epochs × train_size example-gradients.
        from tfminima import config
        from tfminima.hessian.krylov import MIN_STEPS

        spec = config.load(os.path.join(os.path.dirname(__file__), "..", "experiments", "quickstart.yaml"), [])
        trained = spec.epochs * spec.dataset.train_size / 1024  # gradients over 1,024 examples
        trace_probes = 20
        products = MIN_STEPS + trace_probes
        second = flops["retained: a second backward pass"] / gradient
        recomputed = flops["HVP recomputed, double backward"] / gradient
        print(f"  the quickstart's run trains {spec.epochs} × {spec.dataset.train_size} examples = {trained:.0f} "
              f"gradients over 1,024 examples; a measurement of {products} products over 1,024 examples "
              f"costs {products * recomputed:.0f} of them recomputed ({100 * products * recomputed / trained:.0f} % "
              f"of the training's arithmetic), {1 + products * second:.0f} retained "
              f"({100 * (1 + products * second) / trained:.0f} %)")


def bench_vectorized(model, label: str, rounds: int, sizes=(10, 20)) -> None:
    """[8]: a retained block's second backward passes vectorised by pfor against the instruments' map_fn."""
    from tfminima.hessian.products import model_state

    op = hessian.HessianOperator(model, (X[:SUBSET], Y[:SUBSET]), batch_size=SUBSET, hvp_mode="retained")
    fns, state = op.fns, model_state(model)
    (x, y), inv_n = op.batches.items[0], op.batches.inv_n

    @tf.function(autograph=False, reduce_retracing=True)
    def vectorized_block(state, vectors):
        values = list(state[0])
        tape, grads = fns.retained_gradient(values, state[1], x, y, inv_n)
        return tf.vectorized_map(lambda v: fns.second_backward(tape, grads, values, v), vectors,
                                 fallback_to_while_loop=False)

    print(f"\n[8{label}] A retained block: second backward passes vectorised by pfor (tf.vectorized_map) "
          f"against tf.map_fn (the instruments'), {SUBSET} examples; medians of {rounds} interleaved rounds")
    rng = np.random.default_rng(0)
    for size in sizes:
        block = rng.standard_normal((size, op.n))
        reference = op.matmat(block)
        tf_logger = tf.get_logger()
        level = tf_logger.level
        tf_logger.setLevel("CRITICAL")  # pfor logs the op it cannot convert as an ERROR before raising
        try:
            out = vectorized_block(state, tf.constant(block)).numpy()
        except ValueError as err:  # pfor has no batched rule for an op: it would fall back to a loop
            print(f"  block of {size}: pfor cannot vectorise it ({str(err).splitlines()[0]})")
            return
        finally:
            tf_logger.setLevel(level)
        error = np.abs(out - reference).max() / np.abs(reference).max()
        tasks = {
            "gradient": (op.loss_and_gradient, 1),
            "map_fn": (lambda: op.matmat(block), size),
            "vectorized_map": (lambda: vectorized_block(state, tf.constant(block)).numpy(), size),
        }
        wall, cpu = interleaved(tasks, rounds)
        g_wall, g_cpu = wall["gradient"], cpu["gradient"]
        print(f"  block of {size:3d}: map_fn {wall['map_fn'] / g_wall:4.2f} gradients a product (CPU "
              f"{cpu['map_fn'] / g_cpu:4.2f}), vectorized_map {wall['vectorized_map'] / g_wall:4.2f} (CPU "
              f"{cpu['vectorized_map'] / g_cpu:4.2f}); largest difference {error:.1e} of the largest entry")


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def trained_cnn(epochs: int):
    from tfminima.models import cnn

    keras.utils.set_random_seed(0)
    model = cnn((40,), 10, batch_norm=True)
    model.compile(optimizer=keras.optimizers.SGD(0.05),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(X, Y, batch_size=64, epochs=epochs, verbose=0)
    return model


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--epochs", type=int, default=5, help="training epochs before measuring")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--skip-monitor", action="store_true")
    p.add_argument("--skip-cnn", action="store_true")
    p.add_argument("--warm-epochs", type=int, default=8, help="epochs measured by the warm-start section")
    p.add_argument("--only", choices=["instantiation", "arithmetic", "vectorized"],
                   help="section [6], [7] or [8] alone, on the MLP and the CNN")
    args = p.parse_args()
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPU cores, "
          f"load average {load_average()}")
    if args.only == "instantiation":
        bench_instantiation(trained_mlp(args.epochs), "", args.rounds)
        bench_instantiation(trained_cnn(args.epochs), " CNN", args.rounds)
        print(f"\nload average at the end {load_average()}")
        return
    if args.only == "arithmetic":
        bench_arithmetic(trained_mlp(args.epochs), "", quickstart=True)
        bench_arithmetic(trained_cnn(args.epochs), " CNN")
        return
    if args.only == "vectorized":
        bench_vectorized(trained_mlp(args.epochs), "", args.rounds)
        bench_vectorized(trained_cnn(args.epochs), " CNN", args.rounds)
        print(f"\nload average at the end {load_average()}")
        return
    model = trained_mlp(args.epochs)
    loss, acc = model.evaluate(X, Y, verbose=0)
    print(f"MLP 40-100-100-10 after {args.epochs} epochs of SGD(0.05, S=64): train loss {loss:.3f}, accuracy {acc:.3f}")
    data = (X[:SUBSET], Y[:SUBSET])
    bench_products(model, data, args.rounds, "")
    bench_eigen(model, data, args.seeds, "")
    bench_warm_starts(model, args.warm_epochs, args.seeds)
    if not args.skip_monitor:
        bench_monitor(args.epochs, args.rounds)
    if not args.skip_cnn:
        cnn = trained_cnn(args.epochs)
        loss, acc = cnn.evaluate(X, Y, verbose=0)
        print(f"\n[5] tfminima.models.cnn with batch norm after {args.epochs} epochs: train loss {loss:.3f}, "
              f"accuracy {acc:.3f}")
        bench_memory(cnn, data)
        bench_products(cnn, data, args.rounds, " CNN")
        bench_eigen(cnn, data, args.seeds, " CNN")
    bench_instantiation(model, "", args.rounds)
    if not args.skip_cnn:
        bench_instantiation(cnn, " CNN", args.rounds)
    bench_arithmetic(model, "", quickstart=True)
    if not args.skip_cnn:
        bench_arithmetic(cnn, " CNN")
    bench_vectorized(model, "", args.rounds)
    if not args.skip_cnn:
        bench_vectorized(cnn, " CNN", args.rounds)
    print(f"\nload average at the end {load_average()}")


if __name__ == "__main__":
    main()
