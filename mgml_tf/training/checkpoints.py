"""Checkpoints of a run: model variables (weights, BatchNorm statistics, the memory), optimiser slots and
the step (``optimizer.iterations``, which also drives the learning-rate schedule).

Atomicity (checked in TF 2.21's sources, and by tests/test_training_checkpoints.py): ``Checkpoint.write``
saves shards into ``<prefix>_temp/`` and merges them into ``<prefix>.index`` / ``.data-*`` (renames);
only then does ``CheckpointManager.save`` point the ``checkpoint`` state file at the new prefix, and that
file is replaced atomically (``atomic_write_string_to_file``: temporary file + rename). A run killed while
writing therefore leaves the state file naming the previous, complete checkpoint; the partial files of the
interrupted one are overwritten by the next save of that step. Old checkpoints are deleted after the state
file has been updated. ``restore_latest`` additionally falls back to an older checkpoint if the newest cannot
be read (e.g. truncated by a full disk), and says so.
"""
import os

import tensorflow as tf

from mgml_tf.training.cli import RunError

PREFIX = "ckpt"


def checkpoint_object(model):
    """A ``tf.train.Checkpoint`` of every model and optimiser variable, keyed by Keras variable path.

    Keys are readable with ``tf.train.load_checkpoint``: e.g. ``model/memory.Smemory/.ATTRIBUTES/VARIABLE_VALUE``
    holds the memory (``/`` in a path is escaped as ``.S``).
    """
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    model_vars = {v.path: v for v in model.variables}
    opt_vars = {optimizer_key(model.optimizer, v): v for v in _optimizer_variables(model.optimizer)}
    if len(model_vars) != len(model.variables) or len(opt_vars) != len(_optimizer_variables(model.optimizer)):
        raise RuntimeError("variable paths are not unique; cannot key the checkpoint by path")
    return tf.train.Checkpoint(model=model_vars, optimizer=opt_vars)


def _inner(optimizer):
    """The optimiser a ``LossScaleOptimizer`` (mixed_float16) wraps, or None."""
    return getattr(optimizer, "inner_optimizer", None)


def _optimizer_variables(optimizer):
    """The optimiser state that is checkpointed. Under mixed_float16 (a ``LossScaleOptimizer``): the wrapped
    optimiser's variables (keyed as without loss scaling, so float32 tools such as mgml_tf.evaluate/export
    read the checkpoint) plus the loss-scale state; the wrapper's own iteration/learning_rate copies are
    not used by the step and left out."""
    inner = _inner(optimizer)
    if inner is None:
        return list(optimizer.variables)
    own = [v for v in optimizer.variables if v.path.startswith(optimizer.name + "/")
           and v.path.split("/", 1)[1] in ("step_counter", "dynamic_scale")]
    return list(inner.variables) + own


def optimizer_key(optimizer, variable):
    """An optimiser variable's path without the optimiser's own name (``sgd``, ``sgd_1``, ... in one
    process), e.g. ``iteration`` or ``conv1_conv_kernel_momentum``; the loss-scale state of a
    ``LossScaleOptimizer`` is ``loss_scale/step_counter`` and ``loss_scale/dynamic_scale``."""
    inner = _inner(optimizer)
    if inner is not None:
        prefix = inner.name + "/"
        if variable.path.startswith(prefix):
            return variable.path[len(prefix):]
        return "loss_scale/" + variable.path.split("/", 1)[-1]
    prefix = optimizer.name + "/"
    return variable.path[len(prefix):] if variable.path.startswith(prefix) else variable.path


def variable_key(kind, path):
    """The checkpoint key of the variable with Keras ``path`` (``kind``: 'model' or 'optimizer')."""
    return f"{kind}/{path.replace('/', '.S')}/.ATTRIBUTES/VARIABLE_VALUE"


def manager(checkpoint, model_dir, keep):
    return tf.train.CheckpointManager(checkpoint, os.path.join(model_dir, "checkpoints"), max_to_keep=keep,
                                      checkpoint_name=PREFIX)


def checkpoint_step(path):
    return int(path.rsplit("-", 1)[1])


def check_shapes(model, path):
    """Refuses a checkpoint whose variable shapes differ from the model's (another num_classes, ...)."""
    reader = tf.train.load_checkpoint(path)
    shapes = reader.get_variable_to_shape_map()
    for v in model.variables:
        key = variable_key("model", v.path)
        if key not in shapes:
            raise RunError(f"checkpoint {path} has no variable {v.path}: it was written by another "
                           "architecture; use a new --model_dir")
        if tuple(shapes[key]) != tuple(v.shape):
            raise RunError(f"checkpoint {path} holds {v.path} of shape {tuple(shapes[key])} but the model "
                           f"needs {tuple(v.shape)} (another num_classes or architecture); use a new --model_dir")


def restore_latest(model, checkpoint, ckpt_manager, log=print):
    """Restores the newest readable checkpoint; returns its path or None for a fresh run."""
    candidates = list(reversed(ckpt_manager.checkpoints))
    if not candidates:
        return None
    errors = []
    for path in candidates:
        try:
            check_shapes(model, path)
        except (tf.errors.OpError, RuntimeError) as e:  # missing, truncated or corrupt files
            errors.append(f"{path}: {type(e).__name__}")
            log(f"warning: checkpoint {path} is unreadable ({type(e).__name__}); trying an older one")
            continue
        status = checkpoint.read(path)
        status.assert_existing_objects_matched()
        status.expect_partial()  # `save_counter` is the manager's bookkeeping, not model state
        return path
    raise RunError(f"no readable checkpoint in {ckpt_manager.directory}: {'; '.join(errors)}")


def read_variable(path, kind, var_path):
    """One variable's value (NumPy) from a checkpoint prefix, e.g. ``read_variable(p, 'model', 'memory/memory')``."""
    return tf.train.load_checkpoint(path).get_tensor(variable_key(kind, var_path))
