"""Rich progress for the CLI: a bar for the sweep, one for the current epoch, and a final table."""

from __future__ import annotations

import math

import keras
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from tfminima.formats import eta_over_s

console = Console(stderr=True)


class _EpochBar(keras.callbacks.Callback):
    """Advances the epoch bar by steps and shows the latest epoch's numbers."""

    async_safe = True

    def __init__(self, owner: "RunProgress"):
        super().__init__()
        self.owner = owner

    def on_epoch_begin(self, epoch, logs=None):
        self.owner.epoch_begin(epoch, self.params.get("epochs"), self.params.get("steps"))

    def on_train_batch_end(self, batch, logs=None):
        self.owner.advance()

    def on_epoch_end(self, epoch, logs=None):
        self.owner.epoch_end(epoch, logs or {})


class RunProgress:
    """Two bars (sweep, epoch); a no-op when disabled (``--quiet``)."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=console,
            disable=not enabled,
        )
        self.sweep_task = None
        self.epoch_task = None
        self.run_label = ""

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def callback(self) -> keras.callbacks.Callback:
        return _EpochBar(self)

    def start_run(self, index: int, total: int, run_dir, spec) -> None:
        if self.sweep_task is None:
            self.sweep_task = self.progress.add_task("sweep", total=total, info="")
        self.progress.update(self.sweep_task, completed=index, total=total,
                             info=f"{run_dir.run_id}  η/S={eta_over_s(spec.noise_scale)}")
        self.run_label = run_dir.run_id

    def finish(self, total: int) -> None:
        if self.sweep_task is not None:
            self.progress.update(self.sweep_task, completed=total, info="done")

    def epoch_begin(self, epoch: int, epochs, steps) -> None:
        desc = f"epoch {epoch + 1}/{epochs}"
        if self.epoch_task is None:
            self.epoch_task = self.progress.add_task(desc, total=steps, info="")
        self.progress.reset(self.epoch_task, total=steps, description=desc)

    def advance(self) -> None:
        if self.epoch_task is not None:
            self.progress.advance(self.epoch_task)

    def epoch_end(self, epoch: int, logs: dict) -> None:
        info = "  ".join(
            f"{label}={logs[k]:.4g}" for k, label in
            (("loss", "loss"), ("accuracy", "acc"), ("val_accuracy", "val_acc"), ("sharpness/lambda_max", "λmax"))
            if k in logs
        )
        if self.epoch_task is not None:
            self.progress.update(self.epoch_task, info=info)


def _fmt(value, spec: str = ".4g") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return format(value, spec)


def _steps_to_target(final: dict) -> str:
    """The target column: steps (1-based epochs, examples) to the target, or that it was not reached."""
    if final.get("target_reached"):
        return f"{final['steps_to_target']} ({final['epochs_to_target']:.3g} ep, {final['examples_to_target']:,} ex)"
    return "not reached" if "target_reached" in final else "–"


def print_table(outcomes, console: Console | None = None) -> None:
    """The end-of-sweep table: one row per run, sorted by η/S (on stdout unless ``console`` is given)."""
    if not outcomes:
        return
    has = lambda key: any(key in o.final for o in outcomes)  # noqa: E731
    table = Table(title="runs (sorted by η/S)", show_lines=False)
    table.add_column("run", no_wrap=True)
    for col in ("η", "S", "η/S", "train acc", "val acc", "test acc"):
        table.add_column(col, justify="right")
    extra = [(k, label) for k, label in (("sharpness/lambda_max", "λ_max"), ("sharpness/trace", "Tr(H)"),
                                          ("memorization/noisy_accuracy", "noisy acc")) if has(k)]
    for _, label in extra:
        table.add_column(label, justify="right")
    target = has("target_reached")
    if target:
        table.add_column("steps→target", justify="right")
    table.add_column("status", no_wrap=True)
    colors = {"completed": "green", "diverged": "yellow", "failed": "red", "cancelled": "magenta"}
    for o in sorted(outcomes, key=lambda o: (o.hparams.get("eta_over_s", 0), o.hparams.get("lr", 0))):
        h, f = o.hparams, o.final
        row = [
            o.run_dir.run_id, _fmt(h.get("lr"), "g"), _fmt(h.get("batch_size"), "d"),
            eta_over_s(h.get("eta_over_s")), _fmt(f.get("accuracy"), ".4f"),
            _fmt(f.get("val_accuracy"), ".4f"), _fmt(f.get("test_accuracy"), ".4f"),
        ]
        row += [_fmt(f.get(k), ".4g") for k, _ in extra]
        if target:
            row.append(_steps_to_target(f))
        row.append(f"[{colors.get(o.state, 'white')}]{o.state}[/]")
        table.add_row(*row)
    (console or Console(width=max(Console().width, 140))).print(table)
