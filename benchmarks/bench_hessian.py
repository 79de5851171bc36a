"""Hessian instruments measured side by side in one process.

    python benchmarks/bench_hessian.py [--seeds 10] [--epochs 5] [--rounds 3] [--skip-monitor]

Workload: a 40-100-100-10 ReLU MLP trained a few epochs with SGD on MNIST-1D (so the Hessian is not
the one at initialisation), its Hessian taken over 2,048 training examples, float32, inference mode.

1. Cost of a Hessian-vector product against a gradient, both as traced tf.functions on the same
   batch, both HVP modes, medians over interleaved repetitions (goal: HVP / gradient ≤ 2.5).
2. λ_max: our Lanczos (tol 1e-3) against power iteration with PyHessian's defaults (maxIter 100,
   tol 1e-3 on the relative change) and SciPy's eigsh (tol 1e-3), on the same operator, for several
   random starts, alternating which goes first. Products, seconds and the true relative error against
   a very tight eigsh (tol 1e-12). Also the top 5 (the follow-up paper's k) and Hutchinson's trace.
3. Monitor overhead: tfminima's Trainer on the same problem with and without the sharpness monitor
   measuring every epoch.
"""

from __future__ import annotations

import argparse
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


def median_ms(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def bench_hvp_cost(model, data, rounds: int) -> None:
    print(f"\n[1] HVP vs gradient, one batch of {SUBSET}, traced tf.functions, medians of {rounds}×20 calls")
    for mode, jit in (("forward", False), ("reverse", False), ("forward", True), ("reverse", True)):
        op = hessian.HessianOperator(model, data, mode=mode, batch_size=SUBSET, jit_compile=jit)
        (x, y), inv_n = op.batches.items[0], op.batches.inv_n
        vec = tf.constant(np.random.default_rng(0).standard_normal(op.n))
        state = hessian.model_state(model)
        hvp = lambda op=op, x=x, y=y, inv_n=inv_n, vec=vec: op.fns.hvp(state, x, y, inv_n, vec).numpy()
        grad = lambda op=op, x=x, y=y, inv_n=inv_n: op.fns.grad(state, x, y, inv_n)[1].numpy()
        hvp(), grad()  # trace
        t_h, t_g = [], []
        for r in range(rounds):  # interleave so load changes on this shared machine hit both alike
            for which in (("h", "g") if r % 2 == 0 else ("g", "h")):
                (t_h if which == "h" else t_g).append(median_ms(hvp if which == "h" else grad, 20))
        h, g = statistics.median(t_h), statistics.median(t_g)
        print(f"  {mode + (' + XLA' if jit else ''):14s}: HVP {h:6.2f} ms   gradient {g:6.2f} ms   ratio HVP/gradient = {h / g:.2f}")


def bench_eigen(model, data, seeds: int) -> None:
    """Every method through top_eigenvalues on one shared operator (traced once)."""
    op = hessian.HessianOperator(model, data, batch_size=SUBSET)
    op.matvec(np.ones(op.n))
    t0 = time.perf_counter()
    truth = hessian.top_eigenvalues(op, None, 5, method="eigsh", tol=1e-12)
    print(f"\n[2] λ_max over {SUBSET} examples, {op.n} parameters")
    print(f"  reference: eigsh tol 1e-12, {truth.hvp_count} HVPs, {time.perf_counter() - t0:.1f} s: "
          f"top-5 = {np.array2string(truth.eigenvalues, precision=4)}")
    lam = truth.eigenvalues[0]
    methods = {
        "lanczos (ours, tol 1e-3)": lambda s: hessian.top_eigenvalues(op, None, seed=s),
        "lanczos (ours, tol 1e-2)": lambda s: hessian.top_eigenvalues(op, None, tol=1e-2, seed=s),
        "power (PyHessian defaults)": lambda s: hessian.top_eigenvalues(op, None, method="power", seed=s),
        "eigsh (scipy, tol 1e-3)": lambda s: hessian.top_eigenvalues(op, None, method="eigsh", seed=s),
    }
    rows = {name: [] for name in methods}
    names = list(methods)
    for seed in range(seeds):
        order = names[seed % len(names):] + names[: seed % len(names)]
        for name in order:
            res = methods[name](seed)
            rows[name].append((res.hvp_count, res.seconds, abs(res.eigenvalues[0] - lam) / lam))
    print(f"  {seeds} random starts; medians (max):")
    summary = {}
    for name, r in rows.items():
        hv, sec, err = (np.array([row[i] for row in r]) for i in range(3))
        summary[name] = (np.median(hv), np.median(sec), np.median(err))
        print(f"  {name:28s} HVPs {np.median(hv):5.1f} ({hv.max():3.0f})   {1e3 * np.median(sec):7.1f} ms "
              f"({1e3 * sec.max():6.1f})   rel. error {np.median(err):.1e} ({err.max():.1e})")
    ours, power = summary[names[0]], summary[names[2]]
    print(f"  ratios ours/power: HVPs {ours[0] / power[0]:.2f}, time {ours[1] / power[1]:.2f}")

    top5 = {
        "lanczos k=5 (tol 1e-3)": lambda s: hessian.top_eigenvalues(op, None, 5, seed=s),
        "power k=5 (deflation)": lambda s: hessian.top_eigenvalues(op, None, 5, method="power", seed=s),
    }
    print("  top-5, 3 random starts; medians:")
    for name, fn in top5.items():
        r = [fn(s) for s in range(3)]
        err = [np.max(np.abs(x.eigenvalues - truth.eigenvalues) / truth.eigenvalues) for x in r]
        print(f"  {name:28s} HVPs {np.median([x.hvp_count for x in r]):5.0f}   "
              f"{1e3 * np.median([x.seconds for x in r]):7.1f} ms   max rel. error {np.median(err):.1e}")
    tr = hessian.trace(op, None, max_hvps=100)
    tol = hessian.trace(op, None, tol=0.02, max_hvps=500)
    print(f"  Hutchinson trace, 100 probes: {tr.value:.2f} ± {tr.stderr:.2f} ({tr.stderr / tr.value:.1%}), "
          f"{1e3 * tr.seconds:.0f} ms; with tol 2 %: {tol.hvp_count} probes, {tol.value:.2f} ± {tol.stderr:.2f}")


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
    swaps = [float(abs(a @ b)) for a, b in zip(tops, tops[1:])]
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
            found = _with_rule(rule, lambda: [krylov.lanczos(lambda v: A @ v, n, 1, seed=s, init=q[:, 1]).eigenvalues[0]
                                              for s in range(seeds)])
            line += f" {name} {sum(abs(f - lam1) > 1e-3 * lam1 for f in found)}/{seeds};"
        cold = [krylov.lanczos(lambda v: A @ v, n, 1, seed=s).hvp_count for s in range(10)]
        print(line + f" cold start {np.median(cold):.0f} HVPs")


def bench_monitor(epochs: int, rounds: int) -> None:
    from tfminima import config
    from tfminima.train import Trainer

    base = (
        f"epochs: {epochs}\ndeterministic: false\n"
        "dataset: {name: mnist1d, train_size: 4000, val_size: 500, test_size: 500}\n"
        "model: {name: mlp, hidden: [100, 100]}\noptimizer: {lr: 0.05, batch_size: 64}\n"
    )
    specs = {
        "no monitor": config.load_text(base, "bench"),
        "sharpness every epoch": config.load_text(
            base + f"monitors:\n  - sharpness: {{every: 1, samples: {SUBSET}}}\n", "bench"
        ),
    }
    splits = None
    seconds = {name: [] for name in specs}
    for r in range(rounds):
        for name in (list(specs) if r % 2 == 0 else list(specs)[::-1]):
            trainer = Trainer(specs[name], splits=splits)
            splits = trainer.splits
            t0 = time.perf_counter()
            trainer.fit()
            seconds[name].append(time.perf_counter() - t0)
    plain, with_monitor = (statistics.median(seconds[n]) for n in specs)
    per_epoch = (with_monitor - plain) / epochs
    print(f"\n[4] Trainer, {epochs} epochs of 4000 MNIST-1D examples (S=64), medians of {rounds} rounds")
    print(f"  no monitor {plain:.2f} s; sharpness (k=1, trace 100 probes, {SUBSET} examples) every epoch "
          f"{with_monitor:.2f} s")
    print(f"  monitor cost {1e3 * per_epoch:.0f} ms per measurement = {per_epoch / (plain / epochs):.2f}× an epoch")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--epochs", type=int, default=5, help="training epochs before measuring")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--skip-monitor", action="store_true")
    p.add_argument("--warm-epochs", type=int, default=8, help="epochs measured by the warm-start section")
    args = p.parse_args()
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPU cores")
    model = trained_mlp(args.epochs)
    loss, acc = model.evaluate(X, Y, verbose=0)
    print(f"MLP 40-100-100-10 after {args.epochs} epochs of SGD(0.05, S=64): train loss {loss:.3f}, accuracy {acc:.3f}")
    data = (X[:SUBSET], Y[:SUBSET])
    bench_hvp_cost(model, data, args.rounds)
    bench_eigen(model, data, args.seeds)
    bench_warm_starts(model, args.warm_epochs, args.seeds)
    if not args.skip_monitor:
        bench_monitor(args.epochs, args.rounds)


if __name__ == "__main__":
    main()
