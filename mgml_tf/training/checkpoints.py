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

Two more guarantees are added here (``save``, ``Manager``; tests/test_reliability_faults.py): TensorFlow's
manager deletes the files of checkpoints beyond ``max_to_keep`` *before* it drops them from the state file,
so a kill during that deletion left the state file listing a half-deleted checkpoint; ``Manager`` first
rewrites the state file without them, then deletes. And ``save`` refuses to write a checkpoint holding a
non-finite variable, so the last good checkpoint is never followed (or, with ``keep_checkpoints``, replaced)
by a bad one.

Fault injection (testing only): the environment variable ``MGML_TF_FAULT_INJECT`` holds comma-separated
``KIND:STEP`` items. ``kill_in_checkpoint_write:STEP``: while saving the checkpoint of ``STEP``, after its
files are written and before the state file names it, truncate its data file to half (what a kill in the
middle of the data write leaves) and SIGKILL the process. ``no_space_in_checkpoint_write:STEP``: at the same
point, truncate the data file and fail with ``ENOSPC`` (a disk that filled up during the write).
``sigterm_in_checkpoint_write:STEP``: at the same point, send this process SIGTERM (a preemption during the
write). ``sigterm_in_evaluation:STEP`` (read by the training loop): SIGTERM at the first image of the
evaluation of ``STEP``.
``nan_input:STEP`` (read by the training loop):
the images of step ``STEP`` are multiplied by NaN, so that its loss and gradients are not finite.
"""

import errno
import glob
import os
import re
import shutil
import signal
import sys

import numpy as np
import tensorflow as tf

from mgml_tf.errors import RunError
from mgml_tf.files import is_no_space

FAULT_ENV = "MGML_TF_FAULT_INJECT"
FAULT_KINDS = (
    "kill_in_checkpoint_write",
    "no_space_in_checkpoint_write",
    "sigterm_in_checkpoint_write",
    "sigterm_in_evaluation",
    "nan_input",
)

PREFIX = "ckpt"


def checkpoint_object(model):
    """A ``tf.train.Checkpoint`` of every model and optimiser variable, keyed by Keras variable path.

    Keys are readable with ``tf.train.load_checkpoint``: e.g. ``model/memory.Smemory/.ATTRIBUTES/VARIABLE_VALUE``
    holds the memory (``/`` in a path is escaped as ``.S``).
    """
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    model_vars = model_variable_paths(model)
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
    own = [
        v
        for v in optimizer.variables
        if v.path.startswith(optimizer.name + "/") and v.path.split("/", 1)[1] in ("step_counter", "dynamic_scale")
    ]
    return list(inner.variables) + own


def optimizer_key(optimizer, variable):
    """An optimiser variable's path without the optimiser's own name (``sgd``, ``sgd_1``, ... in one
    process), e.g. ``iteration`` or ``conv1_conv_kernel_momentum``; the loss-scale state of a
    ``LossScaleOptimizer`` is ``loss_scale/step_counter`` and ``loss_scale/dynamic_scale``."""
    inner = _inner(optimizer)
    if inner is not None:
        prefix = inner.name + "/"
        if variable.path.startswith(prefix):
            return variable.path[len(prefix) :]
        return "loss_scale/" + variable.path.split("/", 1)[-1]
    prefix = optimizer.name + "/"
    return variable.path[len(prefix) :] if variable.path.startswith(prefix) else variable.path


def model_variable_paths(model):
    """``{path: variable}`` of every model variable, with paths that do not depend on the process's history.

    Keras names seed generators (the dropout layers' random state) from a per-process counter:
    ``seed_generator_3/seed_generator_state`` in a process that built other models first, but
    ``seed_generator/...`` in a fresh one. Here the i-th seed generator of the model is always
    ``seed_generator`` (i = 0) or ``seed_generator_<i>``, the names a fresh process gives them, so a checkpoint
    reads the same in any process."""
    paths, generators = {}, 0
    for v in model.variables:
        path = v.path
        head, _, rest = path.partition("/")
        if rest == "seed_generator_state" and re.fullmatch(r"seed_generator(_\d+)?", head):
            path = ("seed_generator" if generators == 0 else f"seed_generator_{generators}") + "/" + rest
            generators += 1
        paths[path] = v
    return paths


def variable_key(kind, path):
    """The checkpoint key of the variable with Keras ``path`` (``kind``: 'model' or 'optimizer')."""
    return f"{kind}/{path.replace('/', '.S')}/.ATTRIBUTES/VARIABLE_VALUE"


class Manager(tf.train.CheckpointManager):
    """``tf.train.CheckpointManager`` whose state file never lists a checkpoint whose files are being
    deleted: the checkpoints beyond ``max_to_keep`` leave the state file first, their files go after.
    (Overrides the private ``_sweep`` of TF 2.21; ``keep_checkpoint_every_n_hours`` is not supported.)"""

    def _sweep(self):
        if not self._max_to_keep:
            return
        doomed = []
        while len(self._maybe_delete) > self._max_to_keep:
            doomed.append(self._maybe_delete.popitem(last=False)[0])
        if not doomed:
            return
        self._record_state()
        for prefix in doomed:
            for path in glob.glob(glob.escape(prefix) + ".data-?????-of-?????") + [prefix + ".index"]:
                try:
                    os.remove(path)
                except FileNotFoundError:
                    pass


def manager(checkpoint, model_dir, keep):
    return Manager(checkpoint, os.path.join(model_dir, "checkpoints"), max_to_keep=keep, checkpoint_name=PREFIX)


def fault_injection(environ=None):
    """``{kind: set of steps}`` from ``MGML_TF_FAULT_INJECT`` (testing hook; see the module docstring)."""
    text = (os.environ if environ is None else environ).get(FAULT_ENV, "").strip()
    faults = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        kind, _, step = item.partition(":")
        if kind not in FAULT_KINDS or not step.strip().isdigit():
            raise RunError(f"{FAULT_ENV}={text!r}: items must be KIND:STEP with KIND one of {', '.join(FAULT_KINDS)}")
        faults.setdefault(kind, set()).add(int(step))
    return faults


def _truncate_data_files(save_path):
    """Cuts the data files of ``save_path`` to half: what a write interrupted in the middle leaves."""
    for path in glob.glob(glob.escape(save_path) + ".data-*"):
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)


def _kill_in_write(save_path):
    """The ``kill_in_checkpoint_write`` fault: called after the files of ``save_path`` are written, before
    the state file is updated."""
    _truncate_data_files(save_path)
    print(f"fault injection: SIGKILL while writing {save_path}", flush=True)
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _no_space_in_write(save_path):
    """The ``no_space_in_checkpoint_write`` fault: the data file half written, then ENOSPC."""
    _truncate_data_files(save_path)
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), save_path)


def _sigterm_in_write(save_path):
    """The ``sigterm_in_checkpoint_write`` fault: a preemption's SIGTERM after the files of ``save_path`` are
    written, before the state file names it."""
    from mgml_tf.training import preemption

    preemption.signal_self()


def _remove_unlisted(ckpt_manager, step):
    """Deletes the files of the checkpoint of ``step`` (and its ``_temp`` folder) unless the state file lists
    it; returns how many paths went."""
    prefix = os.path.join(ckpt_manager.directory, f"{PREFIX}-{step}")
    if prefix in ckpt_manager.checkpoints:
        return 0
    paths = glob.glob(glob.escape(prefix) + ".data-*") + glob.glob(glob.escape(prefix) + ".index")
    paths += glob.glob(glob.escape(prefix) + "_temp*")
    for path in paths:
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.remove(path)
            except FileNotFoundError:
                pass
    return len(paths)


def nonfinite_variables(variables):
    """Paths of the floating-point variables holding a NaN or an infinity."""
    bad = []
    for v in variables:
        value = np.asarray(v.numpy() if hasattr(v, "numpy") else v)
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            bad.append(getattr(v, "path", getattr(v, "name", "?")))
    return bad


def save(ckpt_manager, step, variables=()):
    """Writes the checkpoint of ``step`` through ``ckpt_manager`` and returns its path; refuses (RunError,
    nothing written) when one of ``variables`` is not finite."""
    bad = nonfinite_variables(variables)
    if bad:
        raise RunError(
            f"not writing the checkpoint of step {step}: {len(bad)} variable(s) hold NaN or Inf "
            f"(first: {bad[0]}); the newest checkpoint is still {ckpt_manager.latest_checkpoint}"
        )
    options = None
    faults = fault_injection()
    if step in faults.get("kill_in_checkpoint_write", ()):
        options = tf.train.CheckpointOptions(experimental_write_callbacks=[_kill_in_write])
    elif step in faults.get("no_space_in_checkpoint_write", ()):
        options = tf.train.CheckpointOptions(experimental_write_callbacks=[_no_space_in_write])
    elif step in faults.get("sigterm_in_checkpoint_write", ()):
        options = tf.train.CheckpointOptions(experimental_write_callbacks=[_sigterm_in_write])
    try:
        return ckpt_manager.save(checkpoint_number=step, options=options)
    except (OSError, tf.errors.OpError) as e:
        if not is_no_space(e):
            raise
        _remove_unlisted(ckpt_manager, step)
        raise RunError(
            f"no space left on device while writing the checkpoint of step {step} in {ckpt_manager.directory}: "
            f"its partial files are removed and the newest checkpoint is still {ckpt_manager.latest_checkpoint}; "
            "free some space and run the same command to resume"
        ) from None


def checkpoint_step(path):
    return int(path.rsplit("-", 1)[1])


def check_shapes(model, path):
    """Refuses a checkpoint whose variable shapes differ from the model's (another num_classes, ...)."""
    reader = tf.train.load_checkpoint(path)
    shapes = reader.get_variable_to_shape_map()
    for var_path, v in model_variable_paths(model).items():
        key = variable_key("model", var_path)
        if key not in shapes:
            raise RunError(
                f"checkpoint {path} has no variable {var_path}: it was written by another "
                "architecture; use a new --model_dir"
            )
        if tuple(shapes[key]) != tuple(v.shape):
            raise RunError(
                f"checkpoint {path} holds {var_path} of shape {tuple(shapes[key])} but the model "
                f"needs {tuple(v.shape)} (another num_classes or architecture); use a new --model_dir"
            )


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
        try:
            status = checkpoint.read(path)
        except (tf.errors.OpError, IndexError, ValueError) as e:  # index fine, data file truncated or corrupt
            # Variables read before the error are overwritten by the older checkpoint's (all are matched).
            errors.append(f"{path}: {type(e).__name__}")
            log(f"warning: checkpoint {path} is unreadable ({type(e).__name__}: {e}); trying an older one")
            continue
        status.assert_existing_objects_matched()
        status.expect_partial()  # `save_counter` is the manager's bookkeeping, not model state
        return path
    raise RunError(f"no readable checkpoint in {ckpt_manager.directory}: {'; '.join(errors)}")


def read_variable(path, kind, var_path):
    """One variable's value (NumPy) from a checkpoint prefix, e.g. ``read_variable(p, 'model', 'memory/memory')``."""
    return tf.train.load_checkpoint(path).get_tensor(variable_key(kind, var_path))
