"""The ``tfminima`` command: run | validate | analyze | report | data | tb.

Config problems print as ``file:line: key: message`` and exit with status 2, before TensorFlow
is even imported. A failed run exits 1 after the sweep has finished the other runs.
"""

from __future__ import annotations

import argparse
import atexit
import os
import signal
import sys
import threading
from pathlib import Path

from tfminima import cluster, interrupt, limits, paths
from tfminima import config as config_lib


MAX_PROBES = 100_000  # Hutchinson probes: a Hessian-vector product each


def _count(low: int, limit: str | None = None, high: int | None = None):
    """An argparse type: an integer >= ``low`` and within ``high`` or the limit named ``limit``, so that
    a bad value is a usage error (exit 2) before TensorFlow starts."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is less than {low}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"{value} is more than {high}")
        if limit is not None:
            try:
                limits.check(limit, value)
            except ValueError as err:
                raise argparse.ArgumentTypeError(str(err)) from None
        return value

    return parse


def _err(msg: str) -> None:
    print(msg, file=sys.stderr)


def _quiet_tensorflow() -> None:
    """TensorFlow imported without its start-up lines (:mod:`tfminima.quiet`), before any command uses it."""
    from tfminima import quiet

    quiet.start_tensorflow()


# ----------------------------------------------------------------------------- validate
def cmd_validate(args) -> int:
    from tfminima.sweep import expand

    status = 0
    for path in args.config:
        try:
            names = [args.profile] if args.profile else [None] + config_lib.profile_names(path)
        except (OSError, config_lib.ConfigError) as err:
            _err(str(err))
            status = 2
            continue
        for profile in names:
            label = f"{path} (profile {profile})" if profile else path
            try:
                spec = config_lib.load(path, args.set, profile)
            except config_lib.ConfigError as err:
                _err(f"{label}:\n{err}" if profile else str(err))
                status = 2
                continue
            runs = expand(spec)
            print(f"{label}: ok ({len(runs)} run{'s' if len(runs) != 1 else ''})")
            if args.list:
                _print_runs(runs)
    return status


def _print_runs(runs) -> None:
    """``validate --list``: one run a line, in aligned columns."""
    from tfminima.formats import eta_over_s

    rows = [("run", "η", "S", "η/S")] + [(r.run_id, f"{r.lr:g}", str(r.batch_size), eta_over_s(r.eta_over_s))
                                         for r in runs]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  " + "  ".join([row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]))


# ----------------------------------------------------------------------------- run
def cmd_run(args) -> int:
    """Train a sweep (or resume runs). Exit 0 ok, 1 a run failed or the disk refused, 2 a bad
    command (config, conflicting resume, a run another process owns), 130 cancelled.

    SIGTERM and Ctrl-C are heard from the start: while the command starts up (reading configs and
    run files, importing TensorFlow), which writes nothing, they end it at once (exit 130)."""
    stop = threading.Event()
    _install_stop_handlers(stop)
    try:
        with interrupt.abortable("starting up"):
            ready = _start_up(args)
    except interrupt.Interrupted as err:
        _err(f"tfminima run: {err}; nothing was written")
        return 130
    if isinstance(ready, int):
        return ready
    spec, shard, targets = ready
    if args.restart:  # by the chief alone; the other workers read the run after it, in step with it
        status = _start_over([t for t in targets if cluster.role(t.spec.distribution).chief])
        if status:
            return status
    return _run(args, spec, shard, targets, stop)


def _start_up(args):
    """What ``run`` needs checked before it trains: (spec, shard, resume targets), or an exit status."""
    if not args.config and not args.resume:
        _err("tfminima run: give an experiment YAML, or --resume RUN_DIR")
        return 2
    if args.restart and not args.resume:
        _err("tfminima run: --restart goes with --resume RUN_DIR (it starts that run over)")
        return 2
    shard = None
    spec = None
    targets = []
    if args.resume:
        from tfminima.resume import AlreadyComplete, ResumeRefused, targets as resume_targets

        if args.shard or args.only or args.group or args.out:
            _err("tfminima run --resume: --shard, --only, --group and --out do not apply; a resumed run "
                 "stays where it is (resume a single run directory, or a folder of runs)")
            return 2
        try:
            paths.existing_directory(args.resume, "--resume")
            targets = resume_targets(args.resume, args.config, args.set, args.profile, restart=args.restart)
        except AlreadyComplete as err:  # not an error: nothing to do, nothing touched
            print(f"tfminima run --resume: {err}")
            return err.exit_code
        except (ResumeRefused, FileNotFoundError, paths.PathError) as err:
            _err(f"tfminima run --resume: {err}")
            return getattr(err, "exit_code", 2)
        for warning in (w for t in targets for w in t.warnings):
            _err(f"warning: {warning}")
    else:
        try:
            spec = config_lib.load(args.config, args.set, args.profile)
        except config_lib.ConfigError as err:
            _err(str(err))
            return 2
        from tfminima.sweep import SweepError, expand, parse_shard

        try:
            paths.output_directory(args.out or spec.output_dir, "--out" if args.out else "output_dir")
            if args.group:
                paths.output_directory(args.group, "--group")
            if args.group and args.out:
                paths.check_inside(args.out, args.group)
        except paths.PathError as err:
            _err(f"tfminima run: {err}")
            return err.exit_code
        try:
            shard = parse_shard(args.shard) if args.shard else None
            known = {p.run_id for p in expand(spec)}
            unknown = [r for r in args.only if r not in known]
            if unknown:
                raise SweepError(f"--only {', '.join(unknown)}: no such run; runs: {', '.join(sorted(known))}")
        except SweepError as err:
            _err(f"tfminima run: {err}")
            return 2
    dist = (spec or targets[0].spec).distribution
    try:
        me = cluster.role(dist)  # TF_CONFIG / Slurm's variables, checked before TensorFlow reads them
    except cluster.ClusterError as err:
        _err(f"tfminima run: {err}")
        return 2
    if me.chief and len(targets) == 1 and (Path(args.resume) / "config.yaml").exists():
        from tfminima.locks import RunBusy, RunLock

        # Refuse before TensorFlow starts; train_run takes the lock for real, on the chief alone. The other
        # workers must not probe it: they start at the same moment, and a probe that held it while the
        # chief probed made the chief exit "busy", leaving them waiting for it in their first collective.
        try:
            RunLock(targets[0].run_dir.path).acquire().release()
        except RunBusy as err:
            _err(f"tfminima run --resume: {err}")
            return 2
    _quiet_tensorflow()
    if dist.strategy == "multi_worker" or dist.cpu_replicas > 1:
        from tfminima.distribute import DistributionError, prepare

        try:
            prepare(dist)  # before any TensorFlow operation
        except (DistributionError, ValueError) as err:
            _err(f"tfminima run: {err}")
            return 2
    if spec is not None:
        from tfminima.sweep import select_shard

        plans = [p for p in expand(spec) if not args.only or p.run_id in args.only]  # as the runner picks them
        run_specs = [p.spec for p in (select_shard(plans, *shard) if shard is not None else plans)]
    else:
        run_specs = [t.spec for t in targets]
    problems = _dataset_problems(run_specs)
    if problems:  # once for the sweep, before its first run (not once a run)
        for problem in problems:
            _err(f"tfminima run: {problem}")
        return 2
    return spec, shard, targets


def _run(args, spec, shard, targets, stop) -> int:
    """Train (or resume) and turn the outcomes into the exit status."""
    atexit.register(_ignore_ctrl_c_at_the_very_end)  # first registered: runs after every other callback
    try:
        outcomes = _train(args, spec, shard, targets, stop)
    except KeyboardInterrupt:
        _err("tfminima run: interrupted (the run directory keeps its last checkpoint; continue with --resume)")
        return 130
    finally:
        _exit_quietly_on_ctrl_c()
    if isinstance(outcomes, int):
        return outcomes
    for o in outcomes:
        if o.state == "failed":
            _err(f"{o.run_dir.run_id}: failed: {o.error}")
    if any(o.state == "cancelled" for o in outcomes):
        return 130
    return 1 if any(o.state == "failed" for o in outcomes) else 0


def _start_over(targets) -> int:
    """--restart: discard each run's record before it is trained again; an exit status on failure."""
    from tfminima.locks import RunBusy
    from tfminima.resume import start_over

    for t in targets:
        try:
            removed = start_over(t.run_dir)
        except RunBusy as err:
            _err(f"tfminima run --resume --restart: {err}")
            return 2
        except OSError as err:
            _err(f"tfminima run --resume --restart: cannot clear {err.filename or t.run_dir.path}: {err.strerror or err}")
            return 1
        if removed:
            _err(f"{t.run_dir.path}: starting over; removed {', '.join(removed)}")
    return 0


def _train(args, spec, shard, targets, stop):
    """Run the sweep or the resumes with progress bars; outcomes, or an exit status."""
    from tfminima import runner
    from tfminima.locks import RunBusy
    from tfminima.progress import RunProgress, print_table
    from tfminima.rundir import StorageError, is_storage_error

    progress = RunProgress(enabled=not args.quiet)
    try:
        with progress:
            if targets:
                outcomes = runner.resume_runs(
                    targets, single=(Path(args.resume) / "config.yaml").exists(),
                    on_run_start=progress.start_run, callbacks_for=lambda d: [progress.callback()],
                    stop_event=stop, on_notice=_err,
                )
            else:
                outcomes = runner.run_sweep(
                    spec, args.out, shard=shard, only=args.only, group=args.group,
                    on_run_start=lambda i, n, d, plan: progress.start_run(i, n, d, plan.spec),
                    callbacks_for=lambda d, plan: [progress.callback()],
                    stop_event=stop, on_notice=_err,
                )
            progress.finish(len(outcomes))
    except (RunBusy, runner.RunExists, runner.WorkerStopped, paths.PathError) as err:
        _err(f"tfminima run: {err}")
        return 2
    except OSError as err:
        if not is_storage_error(err):
            raise
        err = err if isinstance(err, StorageError) else StorageError.from_os_error(err, args.out or "")
        _err(f"tfminima run: {err}. The last good checkpoint of each run is kept; make room (or fix the "
             "permissions) and continue with  tfminima run --resume <run or folder>")
        return 1
    if not args.quiet:
        print_table(outcomes)
    if outcomes:
        print(f"runs in {outcomes[0].run_dir.path.parent}   (TensorBoard: tensorboard --logdir {outcomes[0].run_dir.path.parent})")
    return outcomes


def _install_stop_handlers(stop: threading.Event) -> None:
    """SIGTERM / SIGINT: stop at the next step boundary, checkpoint, record ``cancelled``
    (:func:`tfminima.interrupt.install`; at once in a phase with no step, e.g. tracing).

    A second Ctrl-C interrupts at once (KeyboardInterrupt): the run records ``cancelled`` and keeps
    its last complete checkpoint; every file of the run directory is replaced atomically, so it
    stays readable wherever the interrupt lands.
    """
    interrupt.install(stop)


def _exit_quietly_on_ctrl_c() -> None:
    """Once every run is recorded, a Ctrl-C can only interrupt the interpreter's exit (an atexit
    callback, with a traceback): exit at once instead, status 130.

    After the last atexit callback the interpreter puts SIGINT back to its default action, and a
    Ctrl-C landing then would kill the process by the signal (status -2 instead of 130): the last
    callback therefore ignores SIGINT for the few milliseconds left. It is registered first so that it
    runs last (atexit runs callbacks in reverse order).
    """

    def handler(signum, frame):
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(130)

    signal.signal(signal.SIGINT, handler)


def _ignore_ctrl_c_at_the_very_end() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# ----------------------------------------------------------------------------- data
def cmd_data(args) -> int:
    from tfminima.data import DATASETS, OFFLINE

    if args.action == "list":
        return _data_list(args.data_dir)
    if args.name not in DATASETS:
        _err(f"tfminima data prepare: unknown dataset {args.name!r}; known: {', '.join(DATASETS)}")
        return 2
    if args.name in OFFLINE:
        from tfminima.config import DatasetSpec
        from tfminima.data import load

        load(DatasetSpec(name=args.name))
        print(f"{args.name}: generated locally, nothing to download")
        return 0
    _quiet_tensorflow()
    _quiet_tfds()
    from tfminima.data import NoNetwork, prepare

    try:
        where = prepare(args.name, args.data_dir)
    except NoNetwork as err:
        _err(f"tfminima data prepare {args.name}: {err}")
        return 1
    except Exception as err:  # network errors come in many types
        _err(f"tfminima data prepare {args.name}: {err.__class__.__name__}: {err}")
        return 1
    print(f"{args.name}: prepared in {where}")
    return 0


def _data_list(data_dir: str | None) -> int:
    """Every dataset, and for a TFDS one whether it is prepared, where, and how to prepare it."""
    from tfminima.data import DATASETS, OFFLINE, tfds_status

    _quiet_tensorflow()
    _quiet_tfds()
    rows = []
    for name in DATASETS:
        if name in OFFLINE:
            rows.append((name, "offline", "generated locally, nothing to prepare"))
            continue
        prepared, where = tfds_status(name, data_dir)
        if prepared:
            rows.append((name, "prepared", where))
        else:
            hint = f"tfminima data prepare {name}" + (f" --data-dir {data_dir}" if data_dir else "")
            rows.append((name, "not prepared", f"{where}   (needs network: {hint})"))
    width = [max(len(r[i]) for r in rows) for i in range(2)]
    for name, state, where in rows:
        print(f"{name:{width[0]}}  {state:{width[1]}}  {where}")
    return 0


def _dataset_problems(specs) -> list[str]:
    """Every TFDS dataset the runs need and nobody prepared, each once, and a dataset cache MNIST-1D
    cannot use (before any run starts)."""
    if any(s.dataset.name == "mnist1d" for s in specs):
        from tfminima.data.sources import cache_problem

        problem = cache_problem()
        if problem:
            return [f"{problem} (set TFMINIMA_CACHE to a folder for the generated datasets)"]
    if not any(s.dataset.name not in ("mnist1d", "digits") for s in specs):
        return []
    from tfminima.data import check_prepared

    _quiet_tfds()
    return check_prepared([s.dataset for s in specs])


def _quiet_tfds() -> None:
    """TFDS warns (absl) about every dataset folder it finds incomplete, even one it has not made yet."""
    import logging

    logging.getLogger("absl").setLevel(logging.ERROR)


# ----------------------------------------------------------------------------- analyze
def cmd_analyze(args) -> int:
    target = Path(args.run)
    try:
        paths.existing_directory(target, "the run")
    except paths.PathError as err:
        _err(f"tfminima analyze: {err}")
        return err.exit_code
    _quiet_tensorflow()
    from tfminima import analysis
    from tfminima.runfiles import CorruptFile
    from tfminima.rundir import RunDir

    try:
        return _analyze(args, target, analysis, RunDir)
    except CorruptFile as err:  # a checkpoint (or its pointer) that cannot be read: the file, one line
        _err(f"tfminima analyze: {err}")
        return 1
    except (FileNotFoundError, ValueError) as err:
        _err(f"tfminima analyze: {err}")
        return 2


def _analyze(args, target: Path, analysis, RunDir) -> int:
    if args.pairs:
        runs = [d for d in sorted(target.iterdir()) if (d / "config.yaml").exists()]
        if not runs:
            _err(f"tfminima analyze --pairs: {target} holds no runs")
            return 2
        spec = config_lib.load(runs[0] / "config.yaml")
        if not spec.report.pairs:
            _err(f"tfminima analyze --pairs: the experiment in {target} names no report.pairs")
            return 2
        for res in analysis.interpolate_pairs(target, spec):
            print(f"interpolation {res['run_a']} -> {res['run_b']}: written to {target / 'analysis'}")
        return 0
    if not (target / "config.yaml").exists():
        _err(f"tfminima analyze: {target} is not a run directory (no config.yaml)")
        return 2
    if args.interpolate:
        res = analysis.interpolate_runs(target, args.interpolate, points=args.points, samples=args.samples)
        at = lambda a: min(range(len(res["alphas"])), key=lambda i: abs(res["alphas"][i] - a))
        shown = ", ".join(f"α={res['alphas'][at(a)]:.2f} {res['train_loss'][at(a)]:.4g}" for a in (0.0, 0.5, 1.0))
        print(f"interpolation {res['run_a']} -> {res['run_b']}: train loss at {shown}; "
              f"written to {target.parent / 'analysis'}")
    if args.hessian or args.density or not args.interpolate:
        res = analysis.hessian_report(target, epoch=args.checkpoint, k=args.k, samples=args.samples,
                                      trace_probes=args.trace_probes, density=args.density)
        eig = ", ".join(f"{v:.4g}" for v in res["eigenvalues"])
        print(f"{RunDir(target).run_id} after {res['epochs_done']} epochs: top-{args.k} eigenvalues [{eig}], "
              f"Tr(H) = {res['trace']:.4g} ± {res['trace_stderr']:.2g}; written to {target / 'analysis'}")
    return 0


# ----------------------------------------------------------------------------- report
def cmd_report(args) -> int:
    """Figures and markdown from run directories; no TensorFlow, so it runs anywhere the files are."""
    from tfminima.report import NoReadableRunsError, NoRunsError, build_report

    try:
        paths.existing_directory(args.runs, "RUNS_DIR")
        paths.output_directory(args.out or Path(args.runs) / "report", "--out" if args.out else "the report folder")
        rep = build_report(args.runs, args.out, formats=args.format)
    except paths.PathError as err:
        _err(f"tfminima report: {err}")
        return err.exit_code
    except NoReadableRunsError as err:
        for warning in err.warnings:
            _err(f"warning: {warning}")
        _err(f"tfminima report: {err}")
        return 1
    except (NoRunsError, ValueError) as err:
        _err(f"tfminima report: {err}")
        return 2
    except OSError as err:  # the report folder refused a write (read-only, full)
        _err(f"tfminima report: cannot write {err.filename or args.out}: {err.strerror or err}")
        return 1
    for warning in rep.warnings:
        _err(f"warning: {warning}")
    print(f"report written to {rep.path}")
    return 0


# ----------------------------------------------------------------------------- tb
def cmd_tb(args) -> int:
    try:  # a folder not made yet is fine (TensorBoard waits for it); a file there is no logdir
        paths.existing_directory(args.runs, "RUNS_DIR", must_exist=False)
    except paths.PathError as err:
        _err(f"tfminima tb: {err}")
        return err.exit_code
    print(f"tensorboard --logdir {args.runs}", flush=True)
    if args.launch:
        _quiet_tensorflow()  # TensorBoard imports TensorFlow: quietly, in this process
        from tensorboard import program

        board = program.TensorBoard()
        board.configure(argv=[None, "--logdir", str(args.runs), "--port", str(args.port)])
        return int(board.main() or 0)
    return 0


# ----------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tfminima", description="The science of SGD minima: η, S, η/S and sharpness.")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="train an experiment (a single run or a sweep)")
    r.add_argument("config", nargs="?", help="experiment YAML")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set optimizer.lr=0.05 (repeatable)")
    r.add_argument("--profile", help="apply one of the config's profiles (e.g. cpu)")
    r.add_argument("--out", help="runs directory (default: the config's output_dir)")
    r.add_argument("--resume", metavar="RUN_DIR", help="continue a killed run (or a sweep's unfinished runs)")
    r.add_argument("--restart", action="store_true",
                   help="with --resume: train the unfinished runs again from epoch 0 with their stored config, "
                        "discarding their log, checkpoints, TensorBoard events and analyses")
    r.add_argument("--shard", metavar="I/N", help="run only shard I of N of the sweep (0-based)")
    r.add_argument("--only", action="append", default=[], metavar="RUN_ID",
                   help="run only this run of the sweep (repeatable)")
    r.add_argument("--group", metavar="DIR",
                   help="put the run directories in DIR (default: a new <out>/<name>[-k])")
    r.add_argument("--quiet", action="store_true", help="no progress bars or table")
    r.set_defaults(func=cmd_run)

    v = sub.add_parser("validate", help="check experiment YAMLs; exit 0 if valid, 2 if not")
    v.add_argument("config", nargs="+")
    v.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    v.add_argument("--profile", help="validate only this profile (default: the base and every profile)")
    v.add_argument("--list", action="store_true", help="list the runs a sweep expands to")
    v.set_defaults(func=cmd_validate)

    d = sub.add_parser("data", help="datasets: list, or prepare a TFDS dataset (needs network)")
    d.add_argument("action", choices=["list", "prepare"])
    d.add_argument("name", nargs="?")
    d.add_argument("--data-dir", help="TFDS data_dir (default: TFDS_DATA_DIR, else ~/tensorflow_datasets)")
    d.set_defaults(func=cmd_data)

    a = sub.add_parser("analyze", help="Hessian spectrum of a finished run, or interpolation between two runs")
    a.add_argument("run", help="a run directory (or, with --pairs, a sweep's folder)")
    a.add_argument("--checkpoint", type=_count(0), metavar="N", help="the checkpoint after epoch N (default: the last)")
    a.add_argument("--hessian", action="store_true", help="top-k eigenvalues and trace (the default)")
    a.add_argument("--density", action="store_true", help="also the spectral density (SLQ) and its plot")
    a.add_argument("--interpolate", metavar="OTHER_RUN", help="loss/accuracy along the line to OTHER_RUN")
    a.add_argument("--pairs", action="store_true", help="interpolate the report.pairs of a sweep folder")
    a.add_argument("--k", type=_count(1), default=5, help="eigenvalues (default 5)")
    a.add_argument("--samples", type=_count(1, "examples"), default=2048, help="training examples used (default 2048)")
    a.add_argument("--trace-probes", type=_count(1, high=MAX_PROBES), default=100)
    a.add_argument("--points", type=_count(3, high=config_lib.MAX_INTERPOLATION_POINTS), default=31,
                   help="α values in [-1, 2] (default 31); α = 0 and 1 (the two minima) are always added")
    a.set_defaults(func=cmd_analyze)

    rp = sub.add_parser("report", help="figures (PNG) and markdown from a runs directory (no TensorFlow)")
    rp.add_argument("runs", metavar="RUNS_DIR", help="a runs directory (groups of runs) or one group")
    rp.add_argument("--out", metavar="DIR", help="where REPORT.md and the figures go (default: RUNS_DIR/report)")
    rp.add_argument("--format", default="png", metavar="FMT[,FMT]",
                    help="figure formats, comma-separated: png, pdf, svg (default png; REPORT.md links the first)")
    rp.set_defaults(func=cmd_report)

    t = sub.add_parser("tb", help="print (or --launch) the TensorBoard command for a runs directory")
    t.add_argument("runs", nargs="?", default="runs")
    t.add_argument("--launch", action="store_true", help="start TensorBoard here (quietly)")
    t.add_argument("--port", type=_count(0, high=65535), default=6006, help="TensorBoard's port with --launch (0: any free port)")
    t.set_defaults(func=cmd_tb)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "data" and args.action == "prepare" and not args.name:
        parser.error("data prepare needs a dataset name")
    try:
        return int(args.func(args) or 0)
    except config_lib.ConfigError as err:
        _err(str(err))
        return 2


if __name__ == "__main__":
    sys.exit(main())
