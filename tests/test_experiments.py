"""Every experiment YAML validates (base and profiles); each CPU variant runs (slow smoke test)."""

import subprocess
import sys
from pathlib import Path

import pytest

from tfminima import config
from tfminima.sweep import expand

EXPERIMENTS = sorted((Path(__file__).parent.parent / "experiments").glob("*.yaml"))


def test_there_is_one_yaml_per_paper_experiment():
    names = {p.stem.split("_")[0] for p in EXPERIMENTS}
    assert {"quickstart", "e1", "e2", "e3", "e4", "e5", "e6", "e7"} <= names


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_experiment_validates_with_every_profile(path):
    for profile in [None] + config.profile_names(path):
        spec = config.load(path, profile=profile)
        runs = expand(spec)
        assert runs and len({r.run_id for r in runs}) == len(runs)
        for pair in spec.report.pairs:
            for name in pair:  # pairs name runs of the sweep, by id or label
                assert any(r.run_id == name or r.run_id.startswith(f"{name}-") for r in runs), (profile, name)
    if path.stem != "quickstart":
        assert "cpu" in config.profile_names(path), "every paper experiment has a CPU-scale profile"


TINY = ["--set", "epochs=1", "--set", "dataset.train_size=600", "--set", "dataset.val_size=100",
        "--set", "dataset.test_size=100"]


@pytest.mark.slow
@pytest.mark.parametrize("path", [p for p in EXPERIMENTS if p.stem != "quickstart"], ids=lambda p: p.stem)
def test_cpu_profile_runs_one_epoch(path, tmp_path):
    tiny = list(TINY)
    if path.stem == "e8_critical_batch":  # its batch sizes reach 2048: a training set that holds one batch
        tiny[tiny.index("dataset.train_size=600")] = "dataset.train_size=2048"
    r = subprocess.run(
        [sys.executable, "-m", "tfminima.cli", "run", str(path), "--profile", "cpu", "--out", str(tmp_path),
         "--quiet"] + tiny,  # (E5's grid sets its own training-set sizes)
        capture_output=True, text=True, timeout=1800,
    )
    assert r.returncode == 0, r.stderr[-4000:]
    statuses = [p.read_text() for p in tmp_path.rglob("status.json")]
    assert statuses and all('"completed"' in s or '"diverged"' in s for s in statuses)
