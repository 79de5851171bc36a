"""SGD as the paper (and PyTorch) define it, reporting the noise scale it runs at.

θ ← θ − η (g + λθ) with optional momentum β (Keras form: m ← βm − η(g + λθ); θ ← θ + m) and
Nesterov. The weight decay λ is L2 added to the gradient (coupled), not Keras' decoupled decay,
so that η, S and λ mean what they mean in the paper; it applies to every trainable variable.
"""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="tfminima")
class SGD(keras.optimizers.SGD):
    """Keras SGD with coupled L2 weight decay and the η/S noise scale.

    >>> opt = SGD(learning_rate=0.1, momentum=0.9)
    >>> round(opt.noise_scale(batch_size=128), 8)  # η / (S (1 − β))
    0.0078125
    """

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, l2=0.0, name="SGD", **kwargs):
        kwargs.pop("weight_decay", None)  # decoupled decay would change the meaning of η
        super().__init__(learning_rate=learning_rate, momentum=momentum, nesterov=nesterov, name=name, **kwargs)
        if l2 < 0:
            raise ValueError(f"l2 must be >= 0, got {l2}")
        self.l2 = float(l2)

    def update_step(self, gradient, variable, learning_rate):
        if self.l2:
            gradient = gradient + keras.ops.cast(self.l2, variable.dtype) * variable
        super().update_step(gradient, variable, learning_rate)

    def current_lr(self) -> float:
        return float(keras.ops.convert_to_numpy(self.learning_rate))

    def noise_scale(self, batch_size: int) -> float:
        """η/(S(1−β)): the SDE temperature of SGD with momentum β (η/S when β = 0)."""
        return self.current_lr() / (batch_size * (1.0 - self.momentum))

    def get_config(self):
        config = super().get_config()
        config["l2"] = self.l2
        return config


def make_optimizer(spec) -> SGD:
    """The optimizer a config's ``optimizer`` section describes."""
    return SGD(
        learning_rate=spec.lr, momentum=spec.momentum, nesterov=spec.nesterov, l2=spec.weight_decay
    )
