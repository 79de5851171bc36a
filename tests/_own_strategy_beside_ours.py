"""Run by tests/test_distributed.py in a fresh interpreter: a user's own MirroredStrategy, then ours.

Every MirroredStrategy numbers its collectives from the same group and instance keys, so a strategy
the user made (here: evaluating a model with it) and the one tfminima trains with must not share them:
the training step's all-reduce would meet the user's all-gather under one key. Prints the run's status and final loss as JSON.
"""

import json

import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras

from tfminima import config
from tfminima.evaluation import eval_step
from tfminima.train import Trainer

users = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with users.scope():
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])
rng = np.random.RandomState(0)
x, y = rng.randn(64, 5).astype("float32"), rng.randint(0, 3, 64)
data = users.experimental_distribute_dataset(tf.data.Dataset.from_tensor_slices((x, y)).batch(64))
state = ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables])
eval_step(model, users, "user-linear-5-3")(state, iter(data))

spec = config.load_text(
    "dataset: {name: mnist1d, train_size: 128, val_size: 32, test_size: 32}\n"
    "model: {name: mlp, hidden: [8]}\n"
    "optimizer: {lr: 0.05, batch_size: 32}\n"
    "epochs: 1\n"
    "distribution: {strategy: mirrored, cpu_replicas: 2}\n",
    "own-strategy.yaml",
)
final = Trainer(spec).fit().final
print(json.dumps({"status": final["status"], "loss": final["loss"]}))
