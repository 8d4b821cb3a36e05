"""The optimiser and learning-rate schedules of the paper's setup (docs/DESIGN.md#training-step-and-optimiser).

SGD with momentum 0.9 and learning rate 1e-2; weight decay 5e-4 is added to the gradients as an L2 term by
the training step (coupled, as PyTorch's ``SGD(weight_decay=...)`` that the reference uses; Keras's own
``weight_decay`` argument is the decoupled form). Schedules: the reference's exponential decay
``lr * exp(-9 t / 120000)`` and the common poly decay ``lr * (1 - t / T) ** 0.9``.
"""

import math

import keras
from keras import ops

from mgml_tf.config import SCHEDULES


@keras.saving.register_keras_serializable(package="mgml_tf")
class ReferenceExponentialDecay(keras.optimizers.schedules.LearningRateSchedule):
    """``initial_learning_rate * exp(-decay_rate * step / decay_steps)``; the reference uses
    ``decay_rate = 9`` over ``decay_steps = 120000`` whatever the run length."""

    def __init__(self, initial_learning_rate=1e-2, decay_rate=9.0, decay_steps=120000):
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_rate = float(decay_rate)
        self.decay_steps = float(decay_steps)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        return self.initial_learning_rate * ops.exp(-self.decay_rate * step / self.decay_steps)

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_rate": self.decay_rate,
            "decay_steps": self.decay_steps,
        }


@keras.saving.register_keras_serializable(package="mgml_tf")
class PolyDecay(keras.optimizers.schedules.LearningRateSchedule):
    """``initial_learning_rate * (1 - min(step, T) / T) ** power`` (DeepLab's poly schedule)."""

    def __init__(self, initial_learning_rate=1e-2, decay_steps=30000, power=0.9, end_learning_rate=0.0):
        if decay_steps <= 0:
            raise ValueError(f"poly decay_steps must be positive, got {decay_steps}")
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_steps = float(decay_steps)
        self.power = float(power)
        self.end_learning_rate = float(end_learning_rate)

    def __call__(self, step):
        step = ops.minimum(ops.cast(step, "float32"), self.decay_steps)
        frac = (1.0 - step / self.decay_steps) ** self.power
        return (self.initial_learning_rate - self.end_learning_rate) * frac + self.end_learning_rate

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "power": self.power,
            "end_learning_rate": self.end_learning_rate,
        }


def build_schedule(learning_rate=1e-2, schedule="exponential", train_steps=30000):
    """The learning-rate schedule named ``schedule`` (one of ``SCHEDULES``)."""
    if not (learning_rate > 0 and math.isfinite(learning_rate)):
        raise ValueError(f"learning_rate must be a positive number, got {learning_rate}")
    if schedule == "exponential":
        return ReferenceExponentialDecay(learning_rate)
    if schedule == "poly":
        return PolyDecay(learning_rate, decay_steps=train_steps)
    if schedule == "constant":
        return float(learning_rate)
    raise ValueError(f"unknown lr schedule {schedule!r}; choose one of {list(SCHEDULES)}")


def build_optimizer(learning_rate=1e-2, schedule="exponential", train_steps=30000, momentum=0.9):
    """SGD with momentum on the chosen schedule (the paper's optimiser; weight decay is the step's)."""
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    return keras.optimizers.SGD(learning_rate=build_schedule(learning_rate, schedule, train_steps), momentum=momentum)
