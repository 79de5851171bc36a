"""The memorisation monitor against a hand-computed case, and inside a real noisy-label run."""

import numpy as np

from tfminima import config
from tfminima.monitors import MemorizationMonitor, MonitorContext
from tfminima.train import Trainer


def test_hand_computed_case():
    # 10 training examples, indices 0-3 corrupted.
    clean = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    noisy = np.array([5, 1, 7, 8, 4, 5, 6, 7, 8, 9])  # index 1 got its own label back by chance
    mask = np.array([True] * 4 + [False] * 6)
    preds = np.array([5, 1, 2, 0, 4, 5, 6, 0, 0, 9])
    # noisy subset vs noisy labels: idx0 5==5 ✓, idx1 1==1 ✓, idx2 2!=7, idx3 0!=8 -> 2/4
    # noisy subset vs true labels: idx0 ✗, idx1 ✓, idx2 ✓, idx3 ✗ -> 2/4
    # clean subset: idx4 ✓ 5 ✓ 6 ✓ 7 ✗ 8 ✗ 9 ✓ -> 4/6; all vs trained labels: 6/10
    ctx = MonitorContext(
        train_x=np.zeros((10, 1)), train_y=noisy, clean_y=clean, noise_mask=mask,
        val_x=np.zeros((0, 1)), val_y=np.zeros(0), num_classes=10, strategy=None, loss_fn=None,
        seed=0, epochs=1, lr_at=lambda e: 0.1, batch_size_at=lambda e: 10,
        predict_classes=lambda x: preds,
    )
    m = MemorizationMonitor()
    m.setup(ctx)
    got = m.measure(0)
    assert got == {
        "noisy_accuracy": 0.5, "noisy_true_accuracy": 0.5, "clean_accuracy": 4 / 6,
        "train_accuracy": 0.6, "noisy_fraction": 0.4,
    }


def test_noisy_run_logs_memorization_every_epoch():
    spec = config.load_text(
        "epochs: 3\ndataset: {name: mnist1d, train_size: 256, val_size: 64, test_size: 64, label_noise: 0.5}\n"
        "model: {name: mlp, hidden: [32]}\noptimizer: {lr: 0.1, batch_size: 32}\n", "m.yaml")
    trainer = Trainer(spec)
    history = trainer.fit().history
    assert all("memorization/noisy_accuracy" in h for h in history)
    assert all(h["memorization/noisy_fraction"] == 0.5 for h in history)
    # the monitor's training accuracy is an inference-mode evaluation on exactly the trained labels
    preds = trainer.predict_classes(trainer.splits.x_train)
    assert history[-1]["memorization/train_accuracy"] == np.mean(preds == trainer.splits.y_train)
