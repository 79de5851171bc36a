"""Datasets: offline generation, splits, normalisation, label noise, TFDS (mocked) and fail-fast."""

import re
import time
import warnings

import numpy as np
import pytest

from tfminima import data
from tfminima.config import DatasetSpec
from tfminima.data.noise import corrupt_labels
from tfminima.data.pipeline import epoch_permutation, host_tensors, steps_per_epoch, svag_dataset, train_dataset


def test_mnist1d_is_deterministic_and_split_disjointly():
    spec = DatasetSpec(name="mnist1d", train_size=300, val_size=100, test_size=100)
    a, b = data.load(spec), data.load(spec)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert a.x_train.shape == (300, 40) and a.x_val.shape == (100, 40) and a.x_test.shape == (100, 40)
    assert a.num_classes == 10 and a.x_train.dtype == np.float32
    rows = {r.tobytes() for r in a.x_train}
    assert not rows & {r.tobytes() for r in a.x_val} and not rows & {r.tobytes() for r in a.x_test}
    # standardised with training statistics
    assert abs(a.x_train.mean()) < 1e-5 and abs(a.x_train.std() - 1) < 1e-4
    other = data.load(DatasetSpec(name="mnist1d", train_size=300, val_size=100, test_size=100, split_seed=1))
    assert not np.array_equal(a.x_train, other.x_train)


def test_mnist1d_generation_leaves_global_rngs_alone(tmp_path, monkeypatch):
    import random

    monkeypatch.setenv("TFMINIMA_CACHE", str(tmp_path))
    np.random.seed(123)
    random.seed(123)
    expect_np, expect_py = np.random.rand(), random.random()
    np.random.seed(123)
    random.seed(123)
    data.load(DatasetSpec(name="mnist1d", train_size=50, val_size=10, test_size=10, split_seed=5))
    assert (np.random.rand(), random.random()) == (expect_np, expect_py)
    assert list(tmp_path.glob("mnist1d-*.npz"))


def _write_npz_claiming(path, shape) -> None:
    """An archive whose x.npy header claims ``shape`` (float32) over a few bytes of data: NumPy allocates
    what a header claims before it reads (a 1.6 PB array here)."""
    import io
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", header.getvalue() + b"\0" * 64)
        y = io.BytesIO()
        np.save(y, np.zeros(3, np.int64))
        archive.writestr("y.npy", y.getvalue())


def test_a_damaged_cache_entry_is_named_generated_again_and_replaced(tmp_path, monkeypatch):
    """The cache is a file anyone can write: what is not the examples as generated is never trained on,
    never waited on (a FIFO) and never a crash; a cache that cannot be written leaves the run uncached."""
    import os

    from tfminima.data import sources

    monkeypatch.setenv("TFMINIMA_CACHE", str(tmp_path))
    x, y = sources.mnist1d(120, 3)
    (path,) = tmp_path.glob("mnist1d-*.npz")
    cases = [
        (lambda: path.write_bytes(b"garbage"), "is not an .npz archive"),
        (lambda: path.write_bytes(path.read_bytes()[:-40]), "cannot be read as the cached examples"),
        (lambda: np.savez(path, x=np.zeros((5, 3)), y=np.zeros(2)), "holds x (5, 3) float64 and y (2,) float64"),
        (lambda: np.savez(path, x=x, y=y + 20), "holds values no generated example has"),
        (lambda: np.savez(path, x=np.array([None, 1], dtype=object), y=y), "Object arrays cannot be loaded"),
        (lambda: (path.unlink(), os.mkfifo(path)), "is not a regular file"),
        (lambda: _write_npz_claiming(path, (10**13, 40)), "cannot be read as the cached examples (MemoryError"),
        (lambda: (path.unlink(), path.mkdir()), "is a directory"),
    ]
    for damage, reason in cases:
        damage()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            x2, y2 = sources.mnist1d(120, 3)
        said = [str(w.message) for w in caught]
        assert any(re.match(f".*{path.name}: .*{re.escape(reason)}.*generating the examples again", m) for m in said), said
        np.testing.assert_array_equal(x2, x)
        np.testing.assert_array_equal(y2, y)
        if path.is_dir():  # the folder in the way stays; the examples are used uncached
            assert any(f"{path.name}: cannot be written" in m for m in said), said
            path.rmdir()
            sources.mnist1d(120, 3)
        assert path.is_file()  # replaced by a whole entry
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a good entry is read without a word
        np.testing.assert_array_equal(sources.mnist1d(120, 3)[0], x)


def test_digits_offline():
    s = data.load(DatasetSpec(name="digits"))
    assert s.x_train.shape == (1197, 8, 8, 1) and s.x_test.shape == (300, 8, 8, 1)
    assert set(np.unique(s.y_train)) == set(range(10))
    with pytest.raises(ValueError, match="1900 is more than the 1797 examples digits has"):
        DatasetSpec(name="digits", train_size=1700, val_size=100, test_size=100)  # refused at validation
    unchecked = DatasetSpec().model_copy(update=dict(name="digits", train_size=1700, val_size=100, test_size=100))
    with pytest.raises(ValueError, match="has 1797 examples"):  # and by the loader, for a spec never validated
        data.load(unchecked)


def test_shipped_digits_are_scikit_learns_load_digits():
    """tfminima ships the digits file instead of depending on scikit-learn: the arrays are the ones
    ``sklearn.datasets.load_digits()`` gave the committed E1 ResNet-8 runs (scikit-learn 1.9.1: float32
    images of ``d.images``, int64 ``d.target``), fingerprinted here since CI does not install scikit-learn."""
    import hashlib

    from tfminima.data.sources import digits

    x, y = digits()
    assert x.shape == (1797, 8, 8, 1) and x.dtype == np.float32 and y.dtype == np.int64
    assert x.min() == 0 and x.max() == 16 and np.bincount(y).tolist()[:3] == [178, 182, 177]
    fingerprint = hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest()
    assert fingerprint == "faf2d98f61250c1cdc0b114323133d3c58da04f5c5d28bb78e4bde3c936a75b1"


def test_no_dependency_on_scikit_learn():
    """Keras imports scikit-learn at start-up whenever it is installed (~1 CPU-second a process)."""
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())["project"]
    assert not [d for d in project["dependencies"] if d.lower().startswith(("scikit-learn", "sklearn"))]


def test_label_noise_fraction_mask_and_determinism():
    labels = np.arange(1000) % 10
    noisy, mask = corrupt_labels(labels, 0.25, 10, seed=3)
    assert mask.sum() == 250
    assert np.array_equal(noisy[~mask], labels[~mask])
    # uniform random labels may equal the true one: about 1/10 of the corrupted ones do
    same = np.mean(noisy[mask] == labels[mask])
    assert 0.04 < same < 0.18
    noisy2, mask2 = corrupt_labels(labels, 0.25, 10, seed=3)
    assert np.array_equal(noisy, noisy2) and np.array_equal(mask, mask2)
    _, mask3 = corrupt_labels(labels, 0.25, 10, seed=4)
    assert not np.array_equal(mask, mask3)
    with pytest.raises(ValueError):
        corrupt_labels(labels, 1.5, 10, seed=0)


def test_label_noise_in_loaded_splits_keeps_clean_labels():
    s = data.load(DatasetSpec(name="mnist1d", train_size=400, val_size=50, test_size=50, label_noise=0.5))
    assert s.noise_mask.sum() == 200
    assert np.array_equal(s.y_train[~s.noise_mask], s.y_train_clean[~s.noise_mask])
    assert np.mean(s.y_train[s.noise_mask] != s.y_train_clean[s.noise_mask]) > 0.8


def test_epoch_order_depends_only_on_seed_and_epoch():
    assert np.array_equal(epoch_permutation(100, 1, 3), epoch_permutation(100, 1, 3))
    assert not np.array_equal(epoch_permutation(100, 1, 3), epoch_permutation(100, 1, 4))
    assert steps_per_epoch(100, 32, False) == 4 and steps_per_epoch(100, 32, True) == 3


def test_augmentation_is_stateless_and_per_example():
    x = np.random.default_rng(0).normal(size=(16, 8, 8, 3)).astype(np.float32)
    y = np.arange(16).astype(np.int32)
    batches = lambda: [b[0].numpy() for b in train_dataset(x, y, 8, epoch=2, seed=1, augmentation="shift_flip")]  # noqa: E731
    a, b = batches(), batches()
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    plain = [b[0].numpy() for b in train_dataset(x, y, 8, epoch=2, seed=1, augmentation="none")]
    assert any(not np.array_equal(u, v) for u, v in zip(a, plain))
    other_epoch = [b[0].numpy() for b in train_dataset(x, y, 8, epoch=3, seed=1, augmentation="shift_flip")]
    assert any(not np.array_equal(u, v) for u, v in zip(a, other_epoch))


@pytest.mark.parametrize("augmentation", ["none", "shift_flip"])
def test_batches_gathered_from_host_tensors_are_the_arrays_batches(augmentation):
    # The trainer keeps the training set as tensors and gathers each epoch's order from them; the
    # batches must be the same bits as from the arrays (resumes and seeds compare them exactly).
    x = np.random.default_rng(0).normal(size=(21, 8, 8, 3)).astype(np.float32)
    y = np.arange(21).astype(np.int32)
    tx, ty = host_tensors(x, y)
    for epoch in (0, 3):
        arrays = list(train_dataset(x, y, 8, epoch=epoch, seed=1, augmentation=augmentation))
        tensors = list(train_dataset(tx, ty, 8, epoch=epoch, seed=1, augmentation=augmentation))
        assert [len(b[1]) for b in tensors] == [8, 8, 5]
        for (ax, ay), (bx, by) in zip(arrays, tensors, strict=True):
            np.testing.assert_array_equal(ax.numpy(), bx.numpy())
            np.testing.assert_array_equal(ay.numpy(), by.numpy())
    halves = zip(svag_dataset(x, y, 4, epoch=1, seed=2, l=2), svag_dataset(tx, ty, 4, epoch=1, seed=2, l=2), strict=True)
    for a, b in halves:
        for u, v in zip(a, b, strict=True):
            np.testing.assert_array_equal(u.numpy(), v.numpy())


def test_tfds_path_with_mock_data():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=60):
        s = data.load(DatasetSpec(name="cifar10", train_size=40, val_size=10, test_size=20))
    assert s.x_train.shape == (40, 32, 32, 3) and s.x_val.shape == (10, 32, 32, 3)
    assert s.x_test.shape == (20, 32, 32, 3) and s.num_classes == 10
    # per-pixel mean removed, global std 1 (training statistics)
    assert np.abs(s.x_train.mean(axis=0)).max() < 1e-4
    assert abs(float(s.x_train.std()) - 1) < 1e-3


def test_missing_tfds_dataset_fails_fast_with_prepare_hint(tmp_path):
    from tfminima import data
    from tfminima.config import DatasetSpec

    start = time.time()
    with pytest.raises(data.DataNotPrepared) as err:
        data.load(DatasetSpec(name="cifar10", data_dir=str(tmp_path)))
    assert str(tmp_path) in str(err.value)
    assert f"tfminima data prepare cifar10 --data-dir {tmp_path}" in str(err.value)
    # not TFDS's minutes of download retries (the bound is generous: this is no timing test)
    assert time.time() - start < 60


# ----------------------------------------------------------------------------- data commands (issue 12)
def _prepare_local_mnist(data_dir) -> str:
    """A real prepared ``mnist`` in ``data_dir``: TFDS' own MNIST builder with local examples, no download."""
    tfds = pytest.importorskip("tensorflow_datasets")
    from tensorflow_datasets.image_classification.mnist import MNIST

    class LocalMNIST(MNIST, skip_registration=True):
        name = "mnist"

        def _split_generators(self, dl_manager):
            return {"train": self._local(300, 0), "test": self._local(60, 1)}

        def _local(self, n, seed):
            rng = np.random.default_rng(seed)
            for i in range(n):
                yield i, {"image": rng.integers(0, 255, (28, 28, 1), dtype=np.uint8), "label": i % 10}

    builder = LocalMNIST(data_dir=str(data_dir))
    builder.download_and_prepare()
    assert tfds.builder("mnist", data_dir=str(data_dir)).is_prepared()
    return builder.data_dir



def test_data_list_says_which_tfds_datasets_are_prepared_and_where(tmp_path, cli_here, caplog):
    """In this process: what the command prints. (Its quiet start in a fresh interpreter is checked on
    test_hostile_signals' ``tfminima`` process, which lists the datasets before its run: a TensorFlow
    start fewer.)"""
    where = _prepare_local_mnist(tmp_path / "tfds")
    r = cli_here("data", "list", "--data-dir", tmp_path / "tfds")
    assert r.returncode == 0, r.stderr[-3000:]
    rows = {line.split()[0]: line for line in r.stdout.splitlines()}
    assert rows["mnist"].split()[1] == "prepared" and where in rows["mnist"]
    assert "not prepared" in rows["cifar10"] and f"tfminima data prepare cifar10 --data-dir {tmp_path / 'tfds'}" \
        in rows["cifar10"]
    assert "offline" in rows["mnist1d"]
    columns = {line.index(line.split()[1]) for line in r.stdout.splitlines()}
    assert len(columns) == 1  # the state column is aligned
    logged = [rec.getMessage() for rec in caplog.records]
    assert not any("Variant folder" in m for m in logged + [r.stderr]), logged  # TFDS' warning about folders


def test_data_prepare_without_network_fails_within_seconds(tmp_path, monkeypatch, capsys, caplog):
    """A host that refuses (a closed local port) stands in for no network: no download is tried."""
    import socket

    from tfminima import cli
    from tfminima.data import sources

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(sources, "DOWNLOAD_HOSTS", {**sources.DOWNLOAD_HOSTS, "cifar10": ("127.0.0.1", port)})

    def no_download(self, *a, **k):
        raise AssertionError("download_and_prepare must not be reached without network")

    import tensorflow_datasets as tfds

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", no_download)
    assert cli.main(["data", "prepare", "cifar10", "--data-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"cannot reach 127.0.0.1:{port}" in err and "network access" in err and "Traceback" not in err
    logged = [r.getMessage() for r in caplog.records]
    assert not any("Variant folder" in m for m in logged), logged  # TFDS' warning about a folder it never made


def test_an_unreachable_proxy_is_named(monkeypatch):
    from tfminima.data import sources

    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    with pytest.raises(sources.NoNetwork, match="through the proxy 127.0.0.1:9"):
        sources.check_download_host("cifar10", timeout=2)


def test_an_unprepared_dataset_stops_a_sweep_once_before_its_first_run(tmp_path, cli_here):
    yaml = tmp_path / "tf.yaml"
    yaml.write_text(
        "name: tf\nepochs: 1\n"
        f"dataset: {{name: mnist, train_size: 100, val_size: 20, test_size: 20, data_dir: {tmp_path / 'empty'}}}\n"
        "model: {name: mlp, hidden: [8]}\noptimizer: {lr: 0.05, batch_size: 32}\n"
        "sweep: {grid: {optimizer.lr: [0.01, 0.02, 0.03, 0.04], optimizer.batch_size: [16, 32]}}\n"
    )
    r = cli_here("run", yaml, "--out", tmp_path / "out", "--quiet")
    assert r.returncode == 2, r.stderr[-3000:]
    assert r.stderr.count("is not prepared") == 1 and "tfminima data prepare mnist --data-dir" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "out").exists()  # no run directory made


def test_a_sweep_trains_on_a_prepared_local_tfds_dataset(tmp_path, cli_here):
    _prepare_local_mnist(tmp_path / "tfds")
    yaml = tmp_path / "tf.yaml"
    yaml.write_text(
        "name: tf\nepochs: 1\n"
        f"dataset: {{name: mnist, train_size: 200, val_size: 40, test_size: 40, data_dir: {tmp_path / 'tfds'}}}\n"
        "model: {name: mlp, hidden: [8]}\noptimizer: {lr: 0.05, batch_size: 32}\n"
    )
    r = cli_here("run", yaml, "--out", tmp_path / "out", "--quiet")
    assert r.returncode == 0, r.stderr[-3000:]
