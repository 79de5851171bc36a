"""Raw datasets as numpy arrays: offline generators (MNIST-1D, sklearn digits) and TFDS.

TFDS sources return ``RawData`` (their own train and test splits; validation is carved out of the
training split later). Offline sources return one pool that ``load`` splits three ways. Images stay
uint8 here; normalisation happens in ``tfminima.data.load``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import socket
import threading
import urllib.parse
from pathlib import Path

import numpy as np


class DataNotPrepared(RuntimeError):
    """A TFDS dataset is not on disk; the message names the data_dir and the command to fix it."""


class NoNetwork(RuntimeError):
    """The download host of a dataset cannot be reached: preparing it would only retry for minutes."""


@dataclasses.dataclass
class RawData:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int


TFDS_NAMES = {"mnist": "mnist", "fashion_mnist": "fashion_mnist", "cifar10": "cifar10", "cifar100": "cifar100"}
# Where TFDS downloads each from (its builders' URLs; mnist's is also where TFDS keeps prepared copies).
DOWNLOAD_HOSTS = {
    "mnist": ("storage.googleapis.com", 443),
    "fashion_mnist": ("fashion-mnist.s3-website.eu-central-1.amazonaws.com", 80),
    "cifar10": ("www.cs.toronto.edu", 443),
    "cifar100": ("www.cs.toronto.edu", 443),
}
CONNECT_TIMEOUT = 5.0  # seconds for the name lookup and the connection together


def cache_dir() -> Path:
    """Where generated offline data is cached (TFMINIMA_CACHE, else ~/.cache/tfminima)."""
    root = os.environ.get("TFMINIMA_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "tfminima")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def mnist1d(total: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-1D (Greydanus 2020) generated locally by the ``mnist1d`` package; cached by (total, seed).

    The package reseeds Python's and NumPy's global generators and imports matplotlib, so we save
    and restore both global states around the call.
    """
    key = hashlib.sha1(f"mnist1d-v2-{total}-{seed}".encode()).hexdigest()[:12]
    path = cache_dir() / f"mnist1d-{key}.npz"
    if path.exists():
        with np.load(path) as z:
            x, y = z["x"], z["y"]
    else:
        import random

        from mnist1d.data import get_dataset_args, make_dataset

        py_state, np_state = random.getstate(), np.random.get_state()
        try:
            args = get_dataset_args()
            args.num_samples = -(-int(total) // 10) * 10  # it makes num_samples // 10 per class
            args.train_split = 1.0 - 1e-9  # we split ourselves
            args.seed = int(seed)
            data = make_dataset(args)
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
        x = np.concatenate([data["x"], data["x_test"]]).astype(np.float32)[:total]
        y = np.concatenate([data["y"], data["y_test"]]).astype(np.int64)[:total]
        tmp = path.with_name(f".{path.name}.{os.getpid()}.npz")
        np.savez(tmp, x=x, y=y)
        os.replace(tmp, path)
    return x, y


def offline_pool(name: str, total: int, seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """One pool of examples for the offline datasets (split later into train/val/test)."""
    if name == "mnist1d":
        x, y = mnist1d(total, seed)
        return x, y, 10
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        x = d.images.astype(np.float32)[..., None]  # 8x8x1 images, values 0..16
        return x, d.target.astype(np.int64), 10
    raise KeyError(name)


def tfds_data(name: str, data_dir: str | None) -> RawData:
    """Train and test splits of a prepared TFDS dataset, as uint8 images and int labels.

    Never downloads: ``builder.as_dataset`` fails at once when the data is missing, whereas
    ``tfds.load`` would retry a download for minutes on a machine with no network.
    """
    import tensorflow_datasets as tfds

    builder = tfds.builder(TFDS_NAMES[name], data_dir=data_dir)
    try:
        train = builder.as_dataset(split="train", as_supervised=True)
        test = builder.as_dataset(split="test", as_supervised=True)
    except (AssertionError, FileNotFoundError):
        raise DataNotPrepared(not_prepared_message(name, str(builder.data_dir), data_dir)) from None
    x_tr, y_tr = _to_numpy(train)
    x_te, y_te = _to_numpy(test)
    num_classes = 100 if name == "cifar100" else 10
    return RawData(x_tr, y_tr, x_te, y_te, num_classes)


def _to_numpy(ds) -> tuple[np.ndarray, np.ndarray]:
    import tensorflow_datasets as tfds

    xs, ys = [], []
    for x, y in tfds.as_numpy(ds.batch(10000)):
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys).astype(np.int64)


def not_prepared_message(name: str, where: str, data_dir: str | None) -> str:
    return (f"dataset {name!r} is not prepared in {where}. Prepare it once on a machine with network access:\n"
            f"    tfminima data prepare {name}" + (f" --data-dir {data_dir}" if data_dir else ""))


def tfds_status(name: str, data_dir: str | None = None) -> tuple[bool, str]:
    """(whether the TFDS dataset ``name`` is prepared, the folder it is or would be in). Never downloads."""
    import tensorflow_datasets as tfds

    builder = tfds.builder(TFDS_NAMES[name], data_dir=data_dir)
    return bool(builder.is_prepared()), str(builder.data_dir)


def check_prepared(datasets) -> list[str]:
    """One message for every TFDS dataset among ``datasets`` (``config.DatasetSpec``s, e.g. of every run of
    a sweep) that is not prepared, each (name, data_dir) once: a sweep can refuse before its first run."""
    problems, seen = [], set()
    for spec in datasets:
        key = (spec.name, spec.data_dir)
        if spec.name not in TFDS_NAMES or key in seen:
            continue
        seen.add(key)
        prepared, where = tfds_status(spec.name, spec.data_dir)
        if not prepared:
            problems.append(not_prepared_message(spec.name, where, spec.data_dir))
    return problems


def _proxy(port: int) -> tuple[str, int] | None:
    """The proxy a download on ``port`` would go through (the usual environment variables), if any."""
    names = ("https_proxy", "all_proxy") if port == 443 else ("http_proxy", "all_proxy")
    for var in names:
        value = os.environ.get(var) or os.environ.get(var.upper())
        if value:
            url = urllib.parse.urlsplit(value if "://" in value else f"http://{value}")
            if url.hostname:
                return url.hostname, url.port or (443 if url.scheme == "https" else 80)
    return None


def check_download_host(name: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Raise NoNetwork unless the download host of ``name`` (or the proxy in between) answers in ``timeout`` s.

    TFDS' downloader retries a failed connection about ten times, each waiting for the system's
    connect timeout, so a machine without network used to sit in ``data prepare`` for minutes. The
    name lookup is bounded too (it runs in a thread that is given up on after ``timeout``).
    """
    host, port = DOWNLOAD_HOSTS[name]
    target = _proxy(port) or (host, port)
    outcome: list[BaseException | None] = []

    def connect():
        try:
            socket.create_connection(target, timeout=timeout).close()
            outcome.append(None)
        except OSError as err:
            outcome.append(err)

    thread = threading.Thread(target=connect, name="tfminima-connectivity", daemon=True)
    thread.start()
    thread.join(timeout)
    if outcome and outcome[0] is None:
        return
    why = (outcome[0].strerror or str(outcome[0])) if outcome else f"no answer within {timeout:g} s"
    via = f" through the proxy {target[0]}:{target[1]}" if target != (host, port) else ""
    raise NoNetwork(
        f"cannot reach {host}:{port}{via} ({why}), where {name!r} is downloaded from. Prepare it on a machine "
        f"with network access (tfminima data prepare {name} --data-dir DIR), copy DIR here and set "
        "dataset.data_dir (or TFDS_DATA_DIR) to it"
    )


def prepare(name: str, data_dir: str | None = None) -> str:
    """Download and prepare a TFDS dataset (needs network); returns where it went.

    Checks first that the download host answers (:func:`check_download_host`): without network it fails
    within seconds with :class:`NoNetwork` instead of retrying for minutes.
    """
    if name not in TFDS_NAMES:
        raise KeyError(f"{name!r} is generated offline or unknown; TFDS datasets: {sorted(TFDS_NAMES)}")
    import tensorflow_datasets as tfds

    builder = tfds.builder(TFDS_NAMES[name], data_dir=data_dir)
    if builder.is_prepared():
        return builder.data_dir
    check_download_host(name)
    builder.download_and_prepare()
    return builder.data_dir
