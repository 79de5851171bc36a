"""A run folder made the way the runner makes it, for tests that train it with ``runner.train_run``."""

from __future__ import annotations

from tfminima import config
from tfminima.rundir import RunDir


def new_run(tmp_path, text: str, name: str):
    """The spec of the YAML ``text`` and an empty run folder ``tmp_path/name/run`` holding its config.yaml."""
    spec = config.load_text(text, "r.yaml")
    run_dir = RunDir(tmp_path / name / "run")
    run_dir.path.mkdir(parents=True)
    run_dir.config_path.write_text(config.to_yaml(spec))
    return spec, run_dir
