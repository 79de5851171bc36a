"""TF_CONFIG and Slurm's variables: malformed values are errors that name the variable, before TensorFlow starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tfminima import cluster, config

MULTI = config.load_text("distribution: {strategy: multi_worker}\n").distribution
HOSTS = ["a:1", "b:2"]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("TF_CONFIG", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_STEP_NUM_TASKS"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("value, message", [
    ("[]", "TF_CONFIG must be a JSON object with 'cluster' and 'task', not a list"),
    ("{bad", "TF_CONFIG is not valid JSON"),
    ('"text"', "TF_CONFIG must be a JSON object with 'cluster' and 'task', not a str"),
    ("[" * 100_000, "TF_CONFIG is not valid JSON"),
    (json.dumps({"task": {"type": "worker", "index": 0}}), "TF_CONFIG: 'cluster' must be an object"),
    (json.dumps({"cluster": {"worker": "a:1"}, "task": {"index": 0}}), "cluster.worker must be a non-empty list"),
    (json.dumps({"cluster": {"worker": HOSTS}}), "TF_CONFIG: 'task' must be an object with 'type' and 'index'"),
    (json.dumps({"cluster": {"worker": HOSTS}, "task": {"type": "worker", "index": "one"}}),
     "TF_CONFIG: task.index 'one' is not a whole number"),
    (json.dumps({"cluster": {"worker": HOSTS}, "task": {"type": "worker", "index": 1.5}}),
     "TF_CONFIG: task.index 1.5 is not a whole number"),
    (json.dumps({"cluster": {"worker": HOSTS}, "task": {"type": "worker", "index": True}}),
     "TF_CONFIG: task.index True is not a whole number"),
    (json.dumps({"cluster": {"worker": HOSTS}, "task": {"type": "worker", "index": 2}}),
     "TF_CONFIG: task.index 2 is out of range: cluster.worker has 2 addresses"),
    (json.dumps({"cluster": {"worker": HOSTS}, "task": {"type": "worker", "index": -1}}),
     "TF_CONFIG: task.index -1 is out of range"),
    (json.dumps({"cluster": {"worker": HOSTS}, "task": {"type": "chief", "index": 0}}),
     "TF_CONFIG: task.type 'chief' is not in the cluster (it has worker)"),
    (json.dumps({"cluster": {"worker": HOSTS, "ps": ["c:3"]}, "task": {"type": "ps", "index": 0}}),
     "TF_CONFIG: task.type 'ps' cannot train with multi_worker"),
    (json.dumps({"cluster": {"worker": HOSTS}, "task": {"type": 7, "index": 0}}), "TF_CONFIG: task.type 7 is not text"),
])
def test_malformed_tf_config_names_the_variable(monkeypatch, value, message):
    monkeypatch.setenv("TF_CONFIG", value)
    with pytest.raises(cluster.ClusterError) as err:
        cluster.role(MULTI)
    assert message in str(err.value) and str(err.value).startswith("TF_CONFIG")


def test_a_valid_tf_config_gives_the_role_and_an_index_as_text_is_accepted(monkeypatch):
    for index in (1, "1"):
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": HOSTS}, "task": {"type": "worker", "index": index}}))
        assert cluster.role(MULTI) == cluster.Role(False, 1, 2)
    assert cluster.role(config.load_text("").distribution) == cluster.Role()  # not multi-worker: TF_CONFIG unread


@pytest.mark.parametrize("env, message", [
    ({"SLURM_PROCID": "x", "SLURM_NTASKS": "2"}, "SLURM_PROCID='x' is not a whole number"),
    ({"SLURM_PROCID": "-1", "SLURM_NTASKS": "2"}, "SLURM_PROCID='-1' is not a whole number"),
    ({"SLURM_PROCID": "2", "SLURM_NTASKS": "2"}, "SLURM_PROCID=2 is out of range: SLURM_NTASKS=2 tasks"),
    ({"SLURM_PROCID": "0", "SLURM_NTASKS": "many"}, "SLURM_NTASKS='many' is not a whole number"),
    ({"SLURM_PROCID": "0", "SLURM_STEP_NUM_TASKS": "0"}, "SLURM_STEP_NUM_TASKS=0: a job has at least one task"),
    ({"SLURM_PROCID": "99999999999", "SLURM_NTASKS": "2"}, "SLURM_PROCID='99999999999' is not a whole number"),
    ({"SLURM_PROCID": "", "SLURM_NTASKS": "2"}, "SLURM_PROCID is set but empty: it must be this task's rank"),
])
def test_malformed_slurm_variables_name_the_variable(monkeypatch, env, message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(cluster.ClusterError, match="SLURM_"):
        cluster.role(MULTI)
    with pytest.raises(cluster.ClusterError) as err:
        cluster.role(MULTI)
    assert message in str(err.value)


def test_cli_refuses_a_malformed_tf_config_before_tensorflow(tmp_path):
    cfg = tmp_path / "mw.yaml"
    cfg.write_text("name: mw\nepochs: 1\ndataset: {name: mnist1d, train_size: 64, val_size: 16, test_size: 16}\n"
                   "model: {name: mlp, hidden: [4]}\noptimizer: {lr: 0.1, batch_size: 16}\n"
                   "distribution: {strategy: multi_worker}\n")
    code = ("import sys; from tfminima.cli import main; status = main(sys.argv[1:]); "
            "print('tensorflow' in sys.modules); sys.exit(status)")
    for value in ("[]", "{bad", '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": "x"}}'):
        r = subprocess.run([sys.executable, "-c", code, "run", str(cfg), "--out", str(tmp_path / "out")],
                           capture_output=True, text=True, timeout=600, env={**_env(), "TF_CONFIG": value})
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.startswith("tfminima run: TF_CONFIG") and r.stdout.strip() == "False"
    assert not (tmp_path / "out").exists()


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}


@pytest.mark.parametrize("where, message", [
    ("a_file", "TFMINIMA_CACHE={cache}: is a file, not a folder"),
    ("a_file/below", "TFMINIMA_CACHE={cache}: cannot be made or written: {root}/a_file is a file, not a directory"),
])
def test_a_dataset_cache_that_is_no_folder_is_named_before_any_run(tmp_path, monkeypatch, tiny_yaml, cli_here,
                                                                    where, message):
    (tmp_path / "a_file").write_text("not a folder")
    cache = tmp_path / where
    monkeypatch.setenv("TFMINIMA_CACHE", str(cache))
    done = cli_here("run", tiny_yaml(), "--quiet")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert message.format(cache=cache, root=tmp_path) in done.stderr, done.stderr
    assert not (tmp_path / "runs").exists()  # refused before any run directory
    # The library, used directly, trains on the examples all the same, uncached, and says why.
    from tfminima.data import sources

    with pytest.warns(UserWarning, match="the examples are not cached"):
        x, _ = sources.mnist1d(30, 0)
    assert x.shape == (30, sources.MNIST1D_LENGTH)
