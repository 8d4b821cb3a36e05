"""The training run behind ``python -m mgml_tf.train``: memory initialisation, Algorithm 1 steps with a
progress line, checkpoints, TensorBoard summaries, periodic and final evaluation on the targets."""

import contextlib
import json
import os
import sys
import time

import numpy as np
import tensorflow as tf

from mgml_tf import config as config_lib
from mgml_tf import layers
from mgml_tf import metrics as metrics_lib
from mgml_tf import visualize as vis
from mgml_tf.errors import RunError, UsageError
from mgml_tf.evaluation import EvaluationSettings, Predictor, evaluate_targets
from mgml_tf.files import write_json
from mgml_tf.methods import METHODS
from mgml_tf.training import checkpoints as ckpt_lib
from mgml_tf.training import data as data_lib
from mgml_tf.training import lost_worker, preemption, summaries, writer_lock
from mgml_tf.training import model_dir as md
from mgml_tf.training.writer_lock import WriterLock

_LOSS_ORDER = ("loss", "inner_loss", "outer_loss", "inner_seg", "outer_seg", "aux", "cohesion", "div_cls", "div_cos")
_SHORT = {
    "loss": "loss",
    "inner_loss": "in",
    "outer_loss": "out",
    "inner_seg": "seg_in",
    "outer_seg": "seg_out",
    "aux": "aux",
    "cohesion": "coh",
    "div_cls": "div_cls",
    "div_cos": "div_cos",
}


def _fmt_time(seconds):
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _input_pipeline(config, domains, start_step, num_replicas=1):
    """Endless training batches from ``start_step`` on (episodes, or batches aggregated over the sources for
    a method that does not meta-learn), laid out [replica, domain, image] for ``num_replicas`` replicas."""
    from mgml_tf.data import aggregated_batches
    from mgml_tf.data.episodes import episodes

    fn = episodes if METHODS[config.method.method].meta_learns else aggregated_batches
    training = config.training
    kwargs = dict(
        batch_per_domain=training.batch_per_domain,
        crop_size=training.crop,
        seed=config.method.seed,
        deterministic=training.deterministic,
    )
    if num_replicas > 1:
        kwargs["num_replicas"] = int(num_replicas)
    # Step t of the stream is a pure function of (seed, t), so the resumed stream is exactly the one an
    # uninterrupted run would have read from start_step on (tests/test_data_episodes.py::
    # test_start_step_resumes_the_stream; end to end: tests/test_reliability_faults.py).
    return fn(domains, start_step=int(start_step), **kwargs)


def enable_determinism(seed, log=print):
    """``--deterministic``: deterministic kernels (``enable_op_determinism``, which also makes every
    ``tf.data`` pipeline deterministic); Python, NumPy, Keras and TensorFlow are seeded from ``seed`` by
    ``run_training`` in every run. Ops without a deterministic kernel then raise instead of running (on GPU;
    docs/RELIABILITY.md)."""
    tf.config.experimental.enable_op_determinism()
    log(f"deterministic: op determinism on, seed {int(seed)}")


def _with_nan_images(batch):
    """The ``nan_input`` fault: the batch with its images (floating tensors) multiplied by NaN."""
    return tf.nest.map_structure(lambda x: x * float("nan") if x.dtype.is_floating else x, batch)


def _images_per_step(method, num_sources, batch):
    if num_sources == 1 and METHODS[method].meta_learns:
        return 2 * batch
    return num_sources * batch


class Trainer:
    """``strategy``: the ``tf.distribute`` strategy the model was built under (None: the default one).

    Multi-worker: every task restores from ``model_dir`` (shared), but only the chief writes there
    (checkpoints, summaries, evaluation results); the other workers save their checkpoints to a scratch
    folder (TF's multi-worker saving wants every worker to save) and write no summaries."""

    def __init__(self, config, model, sources, targets, log=print, strategy=None):
        from mgml_tf import distribution

        self.config, self.model = config, model
        self.sources, self.targets, self.log = sources, targets, log
        self.strategy = strategy or tf.distribute.get_strategy()
        self.chief = distribution.is_chief(self.strategy)
        self.model_dir = config.training.model_dir
        self.write_dir = distribution.worker_dir(self.model_dir, self.strategy)
        self.num_classes = int(model.num_classes)
        self.protocol = int(config.evaluation.num_classes_protocol)
        self.checkpoint = ckpt_lib.checkpoint_object(model)
        self.manager = ckpt_lib.manager(self.checkpoint, self.model_dir, keep=config.training.keep_checkpoints)
        self.save_manager = self.manager if self.chief else ckpt_lib.manager(self.checkpoint, self.write_dir, keep=1)

    @property
    def replicas(self):
        return int(self.strategy.num_replicas_in_sync)

    @property
    def distributed(self):
        """Any strategy but the default one: the step runs inside ``strategy.run``."""
        from mgml_tf import distribution

        return not distribution.is_default(self.strategy)

    def _step_function(self, dataset):
        """The compiled train step: ``model.train_step`` directly on one device, else inside
        ``strategy.run``; returns the logs of every local replica (they hold the same global values)."""
        model, strategy = self.model, self.strategy
        if not self.distributed:
            # Traced per meta-train/test size, as before. (Tracing once with the dataset's signature, unknown
            # batch size, gave different weights at step 3 on one device: ~1e-3 in conv1's kernel; reported.)
            step = tf.function(model.train_step, jit_compile=bool(self.config.distribution.jit_compile))
            return lambda batch: [step(batch)]

        # The signature of the distributed dataset (meta-train/test sizes vary per step: no retracing).
        @tf.function(input_signature=[dataset.element_spec])
        def distributed_step(batch):
            logs = strategy.run(model.train_step, args=(batch,))
            local = {k: strategy.experimental_local_results(v) for k, v in logs.items()}
            return [{k: values[i] for k, values in local.items()} for i in range(len(local["lr"]))]

        return distributed_step

    def _dataset(self, dataset):
        if not self.distributed:
            return dataset
        from mgml_tf import distribution

        if distribution.is_multi_worker(self.strategy):
            # Every worker builds the same global batches (a pure function of seed and step); DATA sharding
            # after the contiguous split gives each worker its replicas' parts.
            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
            dataset = dataset.with_options(options)
        return self.strategy.experimental_distribute_dataset(dataset)

    # ------------------------------------------------------------------------------------- evaluation
    def evaluate(self, step, writer, stop=None):
        """Evaluates every target at ``step``; returns the results, or None when ``stop`` (a
        ``preemption.StopRequest``) was requested during it: the evaluation ends at the next image and writes
        no results (a preempted machine has seconds, and the evaluation of a real target set takes minutes)."""
        settings = EvaluationSettings.from_flags(self.config.evaluation, self.config.method.ignore_index)
        whole_image = Predictor(self.model)  # the memory weights of the summary images
        samples = {}
        signal_here = [step in ckpt_lib.fault_injection().get("sigterm_in_evaluation", ())]

        def keep(sample):
            if signal_here[0]:  # the fault hook: one SIGTERM at the first image
                signal_here[0] = False
                preemption.signal_self()
            if stop is not None and stop.requested:
                raise preemption.Interrupted
            if sample.index < self.config.training.summary_images:
                samples.setdefault(sample.target, []).append(sample)

        def summarize(label, result):
            with writer.as_default(step=step):
                if result["mIoU"] is not None:
                    summaries.scalar(f"mIoU/{label}", result["mIoU"])
                self._image_summaries(label, samples.pop(label, []), whole_image)

        t0 = time.perf_counter()
        try:
            results = evaluate_targets(
                self.model, self.targets, settings, step=step, on_image=keep, on_target=summarize
            )
        except preemption.Interrupted:
            writer.flush()
            return None
        writer.flush()
        dt = time.perf_counter() - t0
        self.log(f"evaluation at step {step} ({dt:.1f} s, {settings.num_classes_protocol}-class mIoU, percent):")
        self.log(metrics_lib.format_table(results))
        if not self.chief:
            return results
        write_json(os.path.join(self.model_dir, md.EVAL_JSON), results)
        with open(os.path.join(self.model_dir, md.EVAL_HISTORY), "a") as f:
            f.write(json.dumps({"step": int(step), "results": results}) + "\n")
        return results

    def _image_summaries(self, label, samples, predictor):
        """Input, prediction, ground truth (and memory read) images of ``samples`` (``EvaluatedImage``s)."""
        if not samples:
            return
        inputs, preds, truths, memory = [], [], [], []
        for sample in samples:
            inputs.append(np.clip(sample.image, 0, 255).astype(np.uint8))
            preds.append(vis.colorize(sample.prediction, self.num_classes))
            truths.append(vis.colorize(sample.label, self.num_classes))
            if self.model.use_memory:
                _, w = predictor.probabilities_and_weights(sample.image[None])
                slot = np.argmax(w[0], axis=-1)
                strength = np.max(w[0], axis=-1, keepdims=True)
                memory.append((vis.colorize(slot, self.num_classes) * strength).astype(np.uint8))
        summaries.image(f"{label}/input", np.stack(inputs))
        summaries.image(f"{label}/prediction", np.stack(preds))
        summaries.image(f"{label}/ground_truth", np.stack(truths))
        if memory:
            summaries.image(
                f"{label}/memory_weights",
                np.stack(memory),
                description="memory slot read by each pixel (class colour) scaled by its weight",
            )

    # --------------------------------------------------------------------------------------- training
    def initialize_memory(self, step=0):
        """Writes the memory as class means of the encoder's features (Sec. 3.2); at ``step`` > 0 a rewrite
        of --memory_rewrite_every, from the same batches."""
        from mgml_tf.data import aggregated_batches
        from mgml_tf.data.augment import GEOMETRY_ONLY

        training, model = self.config.training, self.model
        if not model.use_memory or training.memory_init_batches == 0:
            return
        t0 = time.perf_counter()
        batches = aggregated_batches(
            self.sources,
            training.batch_per_domain,
            training.crop,
            seed=self.config.method.seed,
            deterministic=True,
            augment_config=GEOMETRY_ONLY,
        )
        model.initialize_memory(batches, max_batches=training.memory_init_batches)
        counts = np.linalg.norm(model.memory.numpy(), axis=1) > 0
        self.log(
            f"memory {'rewritten at step ' + str(step) if step else 'initialised'} from "
            f"{training.memory_init_batches} source batches in "
            f"{time.perf_counter() - t0:.1f} s ({int(counts.sum())}/{self.num_classes} classes seen)"
        )

    def _evaluated(self, step):
        """Whether ``eval_history.jsonl`` records an evaluation at ``step`` (one a signal interrupted does not)."""
        path = os.path.join(self.model_dir, md.EVAL_HISTORY)
        if not os.path.exists(path):
            return False
        with open(path) as f:
            for line in f:
                try:
                    if json.loads(line).get("step") == step:
                        return True
                except (ValueError, AttributeError):
                    continue
        return False

    def _evaluation_due(self, step):
        """Whether the periodic evaluation runs after ``step`` (the same answer on every worker)."""
        every = self.config.training.eval_every
        return bool(every and step % every == 0 and self.targets)

    def run(self, start_step):
        """Trains from ``start_step`` to --train_steps and evaluates; a SIGTERM/SIGINT stops it after the step in
        progress with a checkpoint, or ends an evaluation at its next image (``preemption``)."""
        with preemption.StopRequest() as stop:
            self._run(start_step, stop)

    def _run(self, start_step, stop):
        from mgml_tf import distribution

        training, model = self.config.training, self.model
        total = int(self.config.optimizer.train_steps)
        if self.chief:
            train_writer = tf.summary.create_file_writer(os.path.join(self.model_dir, "train"))
            eval_writer = tf.summary.create_file_writer(os.path.join(self.model_dir, "eval"))
        else:
            train_writer = eval_writer = tf.summary.create_noop_writer()
        if start_step >= total:
            self.log(f"step {start_step} >= --train_steps={total}: nothing to train")
            if self.chief and self.targets and not self._evaluated(start_step):
                self._final_evaluation(start_step, eval_writer, stop)
            return
        method = self.config.method.method
        dataset = _input_pipeline(self.config, self.sources, start_step, num_replicas=self.replicas)
        dataset = self._dataset(dataset)
        iterator = iter(dataset)
        step_fn = self._step_function(dataset)
        per_step = _images_per_step(method, len(self.sources), training.batch_per_domain)
        where = f", {self.replicas} replicas ({type(self.strategy).__name__})" if self.distributed else ""
        self.log(
            f"training steps {start_step + 1}..{total} ({method}, {per_step} images/step, "
            f"crop {training.crop[0]}x{training.crop[1]}{where}); first step traces the graph"
        )
        for tracker in model.metrics:
            tracker.reset_state()
        if start_step and self.chief and self._evaluation_due(start_step) and not self._evaluated(start_step):
            # A signal ended this step's evaluation before the run stopped: it is done now, as it would have been.
            self.log(f"the evaluation of step {start_step} was interrupted; evaluating it first")
            if self.evaluate(start_step, eval_writer, stop) is None:
                self.log(f"{stop.name}: stopped at step {start_step} before training; run the same command to resume")
                return
        try:
            stopped = self._train_steps(start_step, total, iterator, step_fn, per_step, train_writer, eval_writer, stop)
        except lost_worker.PEER_ERRORS as e:
            if not distribution.is_multi_worker(self.strategy):
                raise
            raise lost_worker.lost_worker_error(e, self.strategy, self.model_dir, self._completed_step()) from None
        if self.targets and self.chief and not stopped:
            self._final_evaluation(total, eval_writer, stop)
        train_writer.close()
        eval_writer.close()

    def _completed_step(self):
        try:
            return int(self.model.optimizer.iterations.numpy())
        except tf.errors.OpError:  # the runtime is failing: the step is not known
            return "?"

    def _final_evaluation(self, step, eval_writer, stop):
        if self.evaluate(step, eval_writer, stop) is None:
            self.log(
                f"{stop.name}: training ended at step {step} with its checkpoint; the final evaluation was "
                "interrupted: run the same command to evaluate"
            )

    def _train_steps(self, start_step, total, iterator, step_fn, per_step, train_writer, eval_writer, stop):
        """Steps ``start_step + 1 .. total``; returns True when a signal stopped them early (after a checkpoint)."""
        from mgml_tf import distribution

        training, model = self.config.training, self.model
        agreed_stop = preemption.StopAgreement(self.strategy, distribution.is_multi_worker(self.strategy))
        step = start_step
        nan_steps = ckpt_lib.fault_injection().get("nan_input", set())
        if nan_steps and self.distributed:
            raise RunError("the nan_input fault injection works on one device only")
        policy, max_skips = training.nonfinite, training.max_nonfinite_steps
        skipped, window_steps, window_skips = 0, 0, 0
        window_time, n_window = 0.0, 0  # seconds inside train steps since the last progress line
        timed_time, steps_timed = 0.0, 0  # the same since the first (tracing) step, for the ETA
        while step < total:
            t0 = time.perf_counter()
            batch = next(iterator)
            if step + 1 in nan_steps:
                batch = _with_nan_images(batch)
            replica_logs = step_fn(batch)
            logs = replica_logs[0]
            attempted = step + 1
            step = int(model.optimizer.iterations.numpy())
            window_steps += 1
            if max(float(other.pop("step_fault", 0.0)) for other in replica_logs):
                window_skips += 1
                # The step changed nothing (train_step skips it): weights, optimiser slots, BatchNorm
                # statistics and memory are those of the step before.
                newest = self.save_manager.latest_checkpoint if self.chief else None
                if policy == "stop":
                    raise RunError(
                        f"non-finite loss or gradients at step {attempted}: stopped without applying it "
                        f"(newest checkpoint: {newest or 'none'}); lower --learning_rate, check the input "
                        "data, or pass --nonfinite=skip"
                    )
                skipped += 1
                self.log(
                    f"step {attempted}: non-finite loss or gradients, step skipped ({skipped} skipped "
                    f"in this run, at most --max_nonfinite_steps={max_skips})"
                )
                if skipped > max_skips:
                    raise RunError(
                        f"{skipped} steps with non-finite loss or gradients in this run (the last at step "
                        f"{attempted}), more than --max_nonfinite_steps={max_skips}: stopped (newest "
                        f"checkpoint: {newest or 'none'}); lower --learning_rate or check the input data"
                    )
            dt = time.perf_counter() - t0
            if step > start_step + 1:  # the first step traces the graph: excluded from rates and ETA
                window_time, n_window = window_time + dt, n_window + 1
                timed_time, steps_timed = timed_time + dt, steps_timed + 1
            if step % training.log_every == 0 or step == total or step == start_step + 1:
                values = {k: float(v) for k, v in logs.items()}
                for other in replica_logs[1:]:  # all-reduced inside the step: every replica holds the same
                    for k, v in other.items():
                        if not np.isclose(float(v), values[k], rtol=1e-5, atol=1e-7, equal_nan=True):
                            raise RunError(f"replicas disagree on {k} at step {step}: {float(v)} vs {values[k]}")
                rate = n_window * per_step / window_time if n_window else None
                eta = _fmt_time(timed_time / steps_timed * (total - step)) if steps_timed else "?"
                parts = [f"{_SHORT[k]} {values[k]:.3f}" for k in _LOSS_ORDER if k in values]
                if window_skips == window_steps:  # no finite step to average since the last line
                    parts = ["(every step since the last line skipped: non-finite)"]
                    values = {k: v for k, v in values.items() if k not in _SHORT}
                speed = f"{rate:.1f} img/s  " if rate else ""
                self.log(
                    f"step {step}/{total}  " + "  ".join(parts) + f"  lr {values['lr']:.2e}  " + speed + f"ETA {eta}"
                )
                if not all(np.isfinite(values[k]) for k in values):  # a skipped step is never averaged in
                    raise RunError(f"non-finite loss at step {step}: {values}; lower --learning_rate")
                with train_writer.as_default(step=step):
                    for k, v in values.items():
                        summaries.scalar(f"learning_rate/{k}" if k in ("lr", "inner_lr") else f"loss/{k}", v)
                    if rate:
                        summaries.scalar("images_per_second", rate)
                train_writer.flush()
                for tracker in model.metrics:
                    tracker.reset_state()
                window_time, n_window = 0.0, 0
                window_steps, window_skips = 0, 0
            rewrite = training.memory_rewrite_every
            if rewrite and step % rewrite == 0 and step < total:  # before the checkpoint: resume never redoes it
                self.initialize_memory(step)
            if step % training.checkpoint_every == 0 or step == total:
                path = ckpt_lib.save(self.save_manager, step, list(model.variables) + list(model.optimizer.variables))
                if self.chief:
                    self.log(f"checkpoint {path}")
            interrupted = False
            if step < total and self._evaluation_due(step) and self.chief:
                # A signal during the evaluation ends it (no results written); the rerun evaluates this step first.
                interrupted = self.evaluate(step, eval_writer, stop) is None
            if step < total and agreed_stop(stop.requested):
                saved = ckpt_lib.checkpoint_step(self.save_manager.latest_checkpoint or "ckpt-0") == step
                if not saved:
                    path = ckpt_lib.save(
                        self.save_manager, step, list(model.variables) + list(model.optimizer.variables)
                    )
                during = " (its evaluation interrupted)" if interrupted else ""
                self.log(
                    f"{stop.name or 'stop on another worker'}: stopped after step {step}/{total}{during} with its "
                    f"checkpoint {self.manager.latest_checkpoint if self.chief else ''}; run the same command to resume"
                )
                return True
        return False


def create_strategy(config, log=print):
    """The strategy of the configuration (checked against the batch split and --jit_compile); logs what it is."""
    from mgml_tf import distribution

    devices, batch = config.distribution, config.training.batch_per_domain
    try:
        strategy = distribution.create_strategy(devices.distribution_strategy, devices.num_devices)
    except ValueError as e:
        raise UsageError(str(e)) from None
    replicas = int(strategy.num_replicas_in_sync)
    if batch % replicas:
        raise UsageError(
            f"--batch_per_domain={batch} does not divide over {replicas} replicas; set it to a multiple of {replicas}"
        )
    if not distribution.is_default(strategy):
        if devices.jit_compile:
            raise UsageError(
                "--jit_compile works on one device only; drop it or use --distribution_strategy=one_device"
            )
        kind, index = distribution.task_identity(strategy)
        task = f", task {kind}:{index}" if kind is not None else ""
        log(
            f"distribution: {type(strategy).__name__}, {replicas} replicas{task}"
            f"{' (chief)' if distribution.is_chief(strategy) else ''}"
        )
    return strategy


def dump_variables(model, strategy, prefix, tag):
    """Writes ``{variable path: value}`` of the first local replica to ``prefix.<tag>.npz``, plus
    ``__replicas_max_abs_diff__`` (largest difference between local replicas) and ``__step__``."""
    arrays, diff = {}, 0.0
    for v in model.variables:
        local = [np.asarray(x) for x in strategy.experimental_local_results(v.value)]
        arrays[v.path] = local[0]
        for x in local[1:]:
            diff = max(diff, float(np.max(np.abs(x.astype(np.float64) - local[0]))) if x.size else 0.0)
    arrays["__replicas_max_abs_diff__"] = np.asarray(diff)
    arrays["__step__"] = np.asarray(int(model.optimizer.iterations.numpy()))
    folder = os.path.dirname(os.path.abspath(prefix))
    os.makedirs(folder, exist_ok=True)
    np.savez(f"{prefix}.{tag}.npz", **arrays)


def run_training(config, log=print, strategy=None, given=(), preset=None):
    """Everything after the configuration is checked: strategy, domains, model, model_dir, resume, memory
    init, training. ``config`` is the run's ``RunConfig``; ``given`` names the options set explicitly (on the
    command line or in a flagfile), which a resumed run never replaces by the values of its time. ``preset``
    (a ``mgml_tf.training.preset.Preset`` of the configuration's architecture): a fresh run starts from its
    weights and memory instead of initialising them; a run with a checkpoint resumes from that."""
    import keras

    import mgml_tf
    from mgml_tf import distribution

    strategy = strategy or create_strategy(config, log)
    replicas = int(strategy.num_replicas_in_sync)
    chief = distribution.is_chief(strategy)
    if not chief:
        kind, index = distribution.task_identity(strategy)

        def log(message, _log=log):  # non-chief workers: progress prefixed, no files
            _log(f"[{kind}:{index}] {message}")

    precision = config.distribution.mixed_precision
    distribution.set_mixed_precision(precision)
    if replicas > 1 or distribution.is_multi_worker(strategy):
        config = config.replace(synchronized_bn=True)  # two-pass global moments across replicas
    model_dir = config.training.model_dir
    if chief:
        writer_lock.refuse_if_held(model_dir)  # before any work; the lock itself is taken before the first write
    saved = md.check_compatible(model_dir, config.model_options()) if os.path.isdir(model_dir) else None
    legacy = {}
    if saved is not None and "config" not in saved:
        # Resuming a run saved before an option existed: it goes on with that time's behaviour unless the
        # option is given on this command line (LEGACY_OPTIONS, docs/REFERENCE.md).
        legacy = {
            k: v for k, v in config_lib.LEGACY_OPTIONS.items() if k not in saved.get("options", {}) and k not in given
        }
        if legacy:
            config = config.replace(**legacy)
            log(
                "options this run predates keep their old values: " + ", ".join(f"{k}={v!r}" for k, v in legacy.items())
            )
    options = config.model_options()
    source_specs = data_lib.expand(config.training.sources, "source", config.synthetic, log=log)
    target_specs = data_lib.expand(config.evaluation.targets, "target", config.synthetic, log=log)
    sources = data_lib.load(source_specs, "train", "sources")
    targets = data_lib.load(target_specs, "val", "targets")
    log("sources: " + ", ".join(f"{d.name}:{d.root} ({len(d)} images)" for d in sources))
    if targets:
        log("targets: " + ", ".join(f"{d.name}:{d.root} ({len(d)} images)" for d in targets))
    keras.utils.set_random_seed(int(config.method.seed))
    if config.training.deterministic:
        enable_determinism(config.method.seed, log)
    # A resumed run rebuilds a keras-hub backbone from the directory (its checkpoint holds the weights).
    architecture = md.saved_backbone_architecture(model_dir) if saved is not None else None
    if architecture is None and preset is not None:
        architecture = preset.backbone_architecture
    with strategy.scope():
        model = mgml_tf.build_model(**options, backbone_architecture=architecture)
        trainer = Trainer(config, model, sources, targets, log=log, strategy=strategy)
    if precision != "none":
        log(
            f"mixed precision {precision}: compute {model.compute_dtype}, variables "
            f"{model.variable_dtype}, memory {model.memory.dtype if model.use_memory else '-'}"
            f"{', loss-scaled' if 'LossScale' in type(model.optimizer).__name__ else ''}"
        )
    synchronized = config.model.synchronized_bn and replicas > 1
    log(
        f"kernels ({model.compute_dtype}): dilated convolutions "
        f"{layers.dilated_convolution_path(model.compute_dtype)}, BatchNorm moments "
        f"{layers.batch_norm_path(model.compute_dtype, synchronized)}"
    )
    restored = ckpt_lib.restore_latest(model, trainer.checkpoint, trainer.manager, log=log)
    if preset is not None and not restored:
        preset.load_weights(model)  # the weights and the memory, before anything is written to model_dir
    # Only now (configuration compatible, checkpoint readable) is anything written to model_dir.
    with WriterLock(model_dir, log) if chief else contextlib.nullcontext():
        _train_and_finish(
            config, model, trainer, saved, options, restored, source_specs, target_specs, given, log, preset
        )
    return model


def _train_and_finish(
    config, model, trainer, saved, options, restored, source_specs, target_specs, given, log, preset=None
):
    """Under the writer lock: the configuration files, memory initialisation (or the preset's weights) or
    resume, training, the dumps."""
    from mgml_tf import distribution

    model_dir, strategy, chief = config.training.model_dir, trainer.strategy, trainer.chief
    changes = md.changed_options(saved, options)
    if changes and restored:
        log("resuming with changed options: " + ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changes.items()))
    if chief:
        md.write_config(model_dir, config, source_specs, target_specs, given)
        md.write_backbone_architecture(model_dir, model)
    if restored:
        start = int(model.optimizer.iterations.numpy())
        log(f"resumed from {restored} (step {start})" + (", not from the preset" if preset is not None else ""))
    elif preset is not None:
        start = 0  # the memory is the preset's: not initialised again
        log(f"fine-tuning from the preset {preset.path} (trained {preset.step} steps): weights and memory loaded")
    else:
        start = 0
        trainer.initialize_memory()
    trainer.run(start)
    prefix = config.distribution.debug_dump_variables
    if prefix:
        kind, index = distribution.task_identity(strategy)
        dump_variables(model, strategy, prefix, "single" if kind is None else f"{kind}_{index}")
    distribution.remove_worker_dir(model_dir, strategy)
    sys.stdout.flush()
