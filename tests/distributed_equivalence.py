"""Run as a script (its own process: logical devices must be set before TensorFlow starts).

Trains the same small model for a few steps of second-order MGML on one device and under a
MirroredStrategy over 2 logical CPU devices, with the same global batches, and prints a JSON line with the
largest differences of weights, BatchNorm statistics, memory and optimiser slots.

    python tests/distributed_equivalence.py META_ORDER [float64|float32] [PRESET_DIR [TUNING]]

With a keras-hub preset directory the backbone is that ViT (``TUNING``: full, frozen, lora or adapter).
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

# After the logical devices are configured (the docstring says why), hence E402.
import keras  # noqa: E402
import numpy as np  # noqa: E402

from tests.helpers import SMALL, episode  # noqa: E402


def build(float64):
    import mgml_tf

    keras.utils.set_random_seed(0)
    vit = {}
    if len(sys.argv) > 3:
        tuning = sys.argv[4] if len(sys.argv) > 4 else "full"
        vit = dict(backbone=sys.argv[3], backbone_tuning=tuning, lora_rank=2, adapter_tokens=4, adapter_rank=2)
    return mgml_tf.build_model(
        **{**SMALL, **vit},
        synchronized_bn=True,
        meta_order=int(sys.argv[1]),
        learning_rate=0.05,
        lr_schedule="constant",
    )


def main():
    float64 = len(sys.argv) > 2 and sys.argv[2] == "float64"
    if float64:
        keras.config.set_floatx("float64")
        keras.config.set_dtype_policy("float64")
    rng = np.random.default_rng(0)
    dtype = np.float64 if float64 else np.float32
    episodes = [episode(rng, batch=4, train_domain=i % 2, test_domain=(i + 1) % 2, dtype=dtype) for i in range(3)]

    single = build(float64)
    memory0 = np.random.default_rng(1).normal(size=single.memory.shape)
    memory0 /= np.linalg.norm(memory0, axis=1, keepdims=True)
    single.memory.assign(memory0.astype(single.memory.dtype))
    initial = [v.numpy() for v in single.variables]
    step = tf.function(single.train_step)
    for ep in episodes:
        step(ep)

    strategy = tf.distribute.MirroredStrategy(["CPU:0", "CPU:1"])
    with strategy.scope():
        mirrored = build(float64)
    for v, value in zip(mirrored.variables, initial):
        v.assign(value)

    @tf.function
    def distributed_step(data):
        return strategy.run(mirrored.train_step, args=(data,))

    for ep in episodes:
        dataset = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(ep))
        distributed_step(next(iter(dataset)))

    def rel(a, b):
        return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))

    result = {
        "trainable": 0.0,
        "non_trainable": 0.0,
        "memory": 0.0,
        "optimizer": 0.0,
        "replicas_agree": 0.0,
        "moved": 0.0,
    }
    for v_single, v_mirror in zip(single.variables, mirrored.variables):
        local = [x.numpy() for x in strategy.experimental_local_results(v_mirror.value)]
        key = "memory" if v_single is single.memory else "trainable" if v_single.trainable else "non_trainable"
        for x in local:
            result[key] = max(result[key], rel(x, v_single.numpy()))
            result["replicas_agree"] = max(result["replicas_agree"], rel(x, local[0]))
    for a, b in zip(single.variables, initial):  # training did change things: the check is not vacuous
        result["moved"] = max(result["moved"], float(np.max(np.abs(a.numpy() - b))))
    for v_single, v_mirror in zip(single.optimizer.variables, mirrored.optimizer.variables):
        for x in strategy.experimental_local_results(v_mirror.value):
            result["optimizer"] = max(result["optimizer"], rel(np.asarray(x), v_single.numpy()))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
