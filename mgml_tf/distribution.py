"""Distribution strategies for training (``tf.distribute``), the CLI's ``--distribution_strategy``.

    configure_devices(num_devices)      split the CPU into N logical devices (machines without GPUs); must run
                                        before TensorFlow initialises its devices
    create_strategy(name, num_devices)  auto | one_device | mirrored | multi_worker
    validate_tf_config(environ)         TF_CONFIG checked before any work (one-line ValueError)
    is_chief(strategy)                  the task that writes checkpoints, summaries and evaluation results
    worker_dir(model_dir, strategy)     where this task writes: model_dir for the chief, a scratch folder
                                        model_dir/workers/<type>_<index> for the other workers

``MemorySegmenter.train_step`` is exact under a multi-replica strategy when it runs inside ``strategy.run``
with each replica holding its share of every domain (``mgml_tf.data.episodes(..., num_replicas=R)``); see
docs/DISTRIBUTED.md. Errors are one-line ``ValueError``s that name the valid values.
"""

import json
import os
import shutil

from mgml_tf.config import PRECISIONS, STRATEGIES

#: Task types of TF_CONFIG that train (an ``evaluator`` or ``ps`` task has no role in synchronous training).
TRAINING_TASKS = ("chief", "worker")


def _tf():
    import tensorflow as tf

    return tf


def configure_devices(num_devices):
    """On a machine without GPUs, splits the first CPU into ``num_devices`` logical devices (N > 1) so
    that a mirrored strategy has N replicas. With GPUs (or N <= 1) nothing changes. Returns the number of
    logical devices of the training device type. Must be called before TensorFlow initialises its devices
    (before the first op runs): the CLI calls it right after parsing its flags."""
    tf = _tf()
    if num_devices is not None and int(num_devices) < 1:
        raise ValueError(f"num_devices must be a positive integer, got {num_devices}")
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        if num_devices is not None and int(num_devices) > len(gpus):
            raise ValueError(
                f"num_devices={num_devices} but this machine has {len(gpus)} GPU(s); "
                f"set --num_devices to at most {len(gpus)}"
            )
        return len(gpus) if num_devices is None else int(num_devices)
    n = 1 if num_devices is None else int(num_devices)
    if n == 1:
        return 1
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) == n:
        return n
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
    except RuntimeError:
        raise ValueError(
            f"configure_devices({n}) was called after TensorFlow initialised its devices; call it "
            "before the first TensorFlow op (first thing in main, or in a fresh process)"
        ) from None
    return n


def validate_tf_config(environ=None):
    """The parsed ``TF_CONFIG`` (None when unset). A malformed value raises a one-line ValueError saying
    what to set: JSON ``{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": i}}``
    (an optional ``"chief": ["host:port"]`` job), ``index`` within its job's list."""
    environ = os.environ if environ is None else environ
    raw = environ.get("TF_CONFIG", "")
    if not raw.strip():
        return None
    example = (
        'set TF_CONFIG to JSON like {"cluster": {"worker": ["host1:port", "host2:port"]}, '
        '"task": {"type": "worker", "index": 0}}'
    )
    try:
        config = json.loads(raw)
    except ValueError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON ({e}); {example}") from None
    if not isinstance(config, dict):
        raise ValueError(f"TF_CONFIG must be a JSON object, got {type(config).__name__}; {example}")
    cluster, task = config.get("cluster"), config.get("task")
    if not isinstance(cluster, dict) or not cluster:
        raise ValueError(f'TF_CONFIG has no "cluster" (a job -> address list object); {example}')
    for job, addresses in cluster.items():
        if (
            not isinstance(addresses, list)
            or not addresses
            or not all(isinstance(a, str) and ":" in a for a in addresses)
        ):
            raise ValueError(
                f'TF_CONFIG cluster job {job!r} must be a non-empty list of "host:port" '
                f"strings, got {addresses!r}; {example}"
            )
    jobs = [j for j in cluster if j in TRAINING_TASKS]
    if not jobs:
        raise ValueError(f"TF_CONFIG cluster has no worker or chief job (jobs: {', '.join(cluster)}); {example}")
    if len(cluster.get("chief", [])) > 1:
        raise ValueError(f"TF_CONFIG cluster may list one chief, got {len(cluster['chief'])}; {example}")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise ValueError(f'TF_CONFIG has no "task" with "type" and "index"; {example}')
    kind, index = task["type"], task["index"]
    if kind not in TRAINING_TASKS:
        raise ValueError(f"TF_CONFIG task type {kind!r} cannot train; valid: {', '.join(TRAINING_TASKS)}")
    if kind not in cluster:
        raise ValueError(f"TF_CONFIG task type {kind!r} is not a job of the cluster ({', '.join(cluster)})")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(cluster[kind]):
        raise ValueError(
            f"TF_CONFIG task index {index!r} is out of range: job {kind!r} has "
            f"{len(cluster[kind])} address(es), so set index to 0..{len(cluster[kind]) - 1}"
        )
    return config


def cluster_size(tf_config):
    """Number of training tasks in a parsed TF_CONFIG (1 when None)."""
    if not tf_config:
        return 1
    return sum(len(tf_config["cluster"].get(j, [])) for j in TRAINING_TASKS)


def check_strategy_name(name):
    if name not in STRATEGIES:
        raise ValueError(f"unknown distribution strategy {name!r}; valid: {', '.join(STRATEGIES)}")


def expected_replicas(name, num_devices=None, environ=None):
    """The replica count ``create_strategy(name, num_devices)`` will have, without creating it (for
    validating flags before TensorFlow starts its runtime). GPUs are counted by ``list_physical_devices``,
    which does not initialise devices."""
    check_strategy_name(name)
    if name == "one_device":
        return 1
    if name == "multi_worker":
        return cluster_size(validate_tf_config(environ))  # one replica per worker (see create_strategy)
    gpus = len(_tf().config.list_physical_devices("GPU"))
    if name == "auto":
        if not gpus and num_devices is not None and int(num_devices) > 1:
            raise ValueError(
                f"num_devices={num_devices} on a machine without GPUs splits the CPU only with "
                "distribution_strategy=mirrored; add it (auto runs on one device here)"
            )
        if gpus and num_devices is not None and int(num_devices) > gpus:
            raise ValueError(f"num_devices={num_devices} but this machine has {gpus} GPU(s); set at most {gpus}")
        return (num_devices or gpus) if gpus > 1 or (num_devices or 1) > 1 else 1
    if gpus and num_devices is not None and int(num_devices) > gpus:
        raise ValueError(f"num_devices={num_devices} but this machine has {gpus} GPU(s); set at most {gpus}")
    if num_devices is not None:
        return int(num_devices)
    return gpus if gpus else 1


def create_strategy(name, num_devices=None):
    """A ``tf.distribute.Strategy``:

    - ``auto``: mirrored over the GPUs when there are several, else the default (one device) strategy;
    - ``one_device``: the default strategy (``tf.distribute.get_strategy()``): no replica context, the same
      code path as training without any strategy (and the only one that allows ``jit_compile``);
    - ``mirrored``: ``MirroredStrategy`` over ``num_devices`` GPUs, or logical CPUs (``configure_devices``);
    - ``multi_worker``: ``MultiWorkerMirroredStrategy`` configured by ``TF_CONFIG`` (validated first).
      One replica per worker on CPU machines.
    """
    check_strategy_name(name)
    tf = _tf()
    if name == "multi_worker":
        config = validate_tf_config()
        gpus = tf.config.list_physical_devices("GPU")
        if num_devices is not None and int(num_devices) > 1 and not gpus:
            raise ValueError(
                "multi_worker on CPU machines runs one replica per worker; drop --num_devices "
                "(or set it to 1) and start more workers"
            )
        del config
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "one_device":
        return tf.distribute.get_strategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        if len(gpus) > 1 and num_devices is None:
            return tf.distribute.MirroredStrategy()
        if gpus and num_devices and num_devices > 1:
            return tf.distribute.MirroredStrategy([d.name for d in gpus[:num_devices]])
        return tf.distribute.get_strategy()
    devices = gpus if gpus else tf.config.list_logical_devices("CPU")
    n = len(devices) if num_devices is None else int(num_devices)
    if n > len(devices):
        kind = "GPU" if gpus else "CPU"
        raise ValueError(
            f"mirrored over {n} devices but only {len(devices)} logical {kind} device(s) exist; "
            "call configure_devices(num_devices) before TensorFlow starts (the CLI does this "
            "for --num_devices)"
        )
    return tf.distribute.MirroredStrategy([d.name for d in devices[:n]])


def is_default(strategy):
    """True for TensorFlow's default (no-op, one device) strategy."""
    tf = _tf()
    return strategy is None or (not tf.distribute.has_strategy() and strategy is tf.distribute.get_strategy())


def is_multi_worker(strategy):
    """True when ``strategy`` spans more than one training task (a multi-worker cluster)."""
    try:
        resolver = strategy.cluster_resolver
    except (AttributeError, NotImplementedError):
        return False
    if resolver is None:
        return False
    spec = resolver.cluster_spec().as_dict()
    return sum(len(v) for k, v in spec.items() if k in TRAINING_TASKS) > 1


def task_identity(strategy):
    """``(task_type, task_id)`` of this process (``(None, None)`` outside a multi-worker cluster)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return None, None
    return resolver.task_type, resolver.task_id


def is_chief(strategy):
    """True for the task that writes checkpoints, summaries and evaluation results: the ``chief`` task,
    or worker 0 when the cluster has no chief job, or the only process of a single-machine run."""
    if not is_multi_worker(strategy):
        return True
    kind, index = task_identity(strategy)
    if kind is None or kind == "chief":
        return True
    has_chief = "chief" in strategy.cluster_resolver.cluster_spec().as_dict()
    return kind == "worker" and index == 0 and not has_chief


def worker_dir(model_dir, strategy):
    """Where this task writes: ``model_dir`` for the chief, ``model_dir/workers/<type>_<index>`` (scratch,
    removed by ``remove_worker_dir`` at the end) for the other workers."""
    if is_chief(strategy):
        return model_dir
    kind, index = task_identity(strategy)
    return os.path.join(model_dir, "workers", f"{kind}_{index}")


def remove_worker_dir(model_dir, strategy):
    """Deletes this task's scratch folder (non-chief workers) and ``model_dir/workers`` once empty."""
    path = worker_dir(model_dir, strategy)
    if os.path.abspath(path) == os.path.abspath(model_dir):
        return
    shutil.rmtree(path, ignore_errors=True)
    try:
        os.rmdir(os.path.join(model_dir, "workers"))
    except OSError:
        pass  # another worker's folder is still there


def first_replica(strategy, value):
    """The value of the first local replica of a per-replica result of ``strategy.run`` (the value itself
    on one device). Logs of ``train_step`` are global already (all-reduced), so every replica holds it."""
    return strategy.experimental_local_results(value)[0]


def set_mixed_precision(name):
    """``none`` | ``mixed_float16`` | ``mixed_bfloat16``: the global Keras dtype policy, set before building."""
    if name not in PRECISIONS:
        raise ValueError(f"unknown mixed precision {name!r}; valid: {', '.join(PRECISIONS)}")
    import keras

    keras.config.set_dtype_policy("float32" if name == "none" else name)
