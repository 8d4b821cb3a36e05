"""The training step of every method as the ``train_step`` of a Keras model (the step wrapper).

The objectives themselves, Algorithm 1 of Sec. 3.3 for ``mgml``/``mldg`` and the one-tape objective of
``baseline``/``memory_agg``, are ``mgml_tf.models.algorithm``; which one runs is the method's row in
``mgml_tf.methods``. Around them, the same for every method:

- ``compute_meta_gradients``: the objective's ``(J, dJ/dtheta)`` on the current variable values, changing
  no variable (fast weights are tensors mapped onto the variables by a ``keras.StatelessScope``), with the
  mixed-precision loss scale, the Gumbel seeds of the step, the BatchNorm statistics to keep and the logged
  terms summed over replicas;
- ``train_step``: ``theta <- SGD(theta, dJ/dtheta + weight_decay * theta)`` (a learned memory score scale
  ``log_s`` has no weight decay: ``weight_decay_exempt_variables``), steps with non-finite values skipped
  without a trace, the non-trainable state assigned, then ``M <- update(M, X_tr; theta_new)`` without
  gradient in inference mode (eq. 12; the aggregated batch for ``memory_agg``), and the running logs.

BatchNorm moving statistics (the paper is silent): every pass runs BatchNorm in training mode, on batch
moments. With ``bn_statistics_from="meta_train"`` (the default, as the reference code) the model keeps the
moving statistics of the meta-train pass only: the reference runs the ``M'`` and meta-test passes on separate
fast-weight copies of the network whose own statistics are thrown away. ``"every_pass"`` (mgml_tf before the
option) chains the moving averages through the three passes, so the meta-test batch moves them too. The
aggregate methods have one pass, on the aggregated batch, under either value. Other non-trainable state
(dropout seeds) always advances through every pass.
"""

import keras
import tensorflow as tf

from mgml_tf import optim
from mgml_tf.methods import get_method
from mgml_tf.models import algorithm
from mgml_tf.ops import all_reduce_sum, sync_replica_context

LOG_NAMES = ("loss", "inner_loss", "outer_loss", "inner_seg", "outer_seg", "aux", "cohesion", "div_cls", "div_cos")


def _is_loss_scaled(optimizer):
    """True for a ``LossScaleOptimizer`` (mixed_float16), which skips steps with non-finite gradients."""
    return hasattr(optimizer, "inner_optimizer") and hasattr(optimizer, "dynamic_scale")


class MetaLearningTrainer:
    """Mixin that gives ``MemorySegmenter`` Algorithm 1 as its ``train_step``.

    Needs from the model: ``training_options``, ``use_memory``, ``memory_bank``, ``forward``, ``encode``,
    ``updated_memory``, ``memory_classifier``, ``encoder_variables()``, ``update_variables()``.
    """

    def _init_trainer(self):
        self.train_step_traces = 0  # incremented each time train_step is traced (tests count retracing)
        self._log_trackers = {name: keras.metrics.Mean(name=name) for name in LOG_NAMES}
        self._skipped_steps = keras.metrics.Sum(name="nonfinite_steps")  # reset with the metrics

    def set_training_options(self, **changes):
        """Changes Algorithm 1's options (validated); the next ``fit`` retraces its step."""
        names = self.training_options.names()
        unknown = sorted(set(changes) - set(names))
        if unknown:
            raise ValueError(f"unknown training option(s) {unknown}; known: {sorted(names)}")
        options = self.training_options.replace(**changes)  # checks the values
        uses_memory = get_method(options["method"]).uses_memory
        if not uses_memory and self.use_memory:
            raise ValueError(f"method {options['method']!r} has no memory; build a new model for it")
        if uses_memory and not self.use_memory:
            raise ValueError(f"method {options['method']!r} needs the memory; build a new model for it")
        self.training_options = options
        self.train_function = None

    def weight_decay_exempt_variables(self):
        """Trainable variables the weight decay leaves alone (the model overrides this)."""
        return []

    # ------------------------------------------------------------------------------------------ compile
    def compile(self, optimizer=None, **kwargs):
        """``compile()`` with the paper's optimiser (SGD 0.9, lr 1e-2, exponential decay) by default."""
        if optimizer is None:
            optimizer = optim.build_optimizer()
        kwargs.setdefault("jit_compile", False)
        super().compile(optimizer=optimizer, **kwargs)
        # Slots now, not inside the first traced step (tf.function would have to lift their creation).
        if self.built and not self.optimizer.built:
            self.optimizer.build(self.trainable_variables)

    def compile_from_config(self, config):
        """Restores the optimiser of a saved, compiled model (``compile`` is overridden, so Keras's own
        restore would skip it with a warning)."""
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if hasattr(self, "optimizer") and self.built:
            self.optimizer.build(self.trainable_variables)

    @property
    def metrics(self):
        return list(self._log_trackers.values()) + [self._skipped_steps]

    def _batch_norm_statistics(self):
        """Ids of every BatchNorm moving mean and variance among ``non_trainable_variables``."""
        ids = set()
        for layer in self._flatten_layers(include_self=False, recursive=True):
            if isinstance(layer, keras.layers.BatchNormalization):
                ids.update(id(v) for v in (layer.moving_mean, layer.moving_variance))
        return ids

    def _merged_statistics(self, states):
        """The state after the last pass, with the BatchNorm moving statistics of the meta-train pass
        (``states[1]``) where ``bn_statistics_from="meta_train"`` (module docstring)."""
        if self.training_options["bn_statistics_from"] != "meta_train":
            return states[-1]
        statistics = self._batch_norm_statistics()
        return [
            kept if id(v) in statistics else value
            for v, value, kept in zip(self.non_trainable_variables, states[-1], states[1])
        ]

    # ------------------------------------------------------------------------------------ the meta step
    def check_batch(self, images, labels, role):
        """Static checks of one ``(images, labels)`` batch, and a run-time check of the label values."""
        images, labels = tf.convert_to_tensor(images), tf.convert_to_tensor(labels)
        if images.shape.rank != 4 or images.shape[-1] not in (None, 3):
            raise ValueError(f"{role} images must be [batch, height, width, 3], got shape {images.shape}")
        if labels.shape.rank != 3:
            raise ValueError(f"{role} labels must be [batch, height, width], got shape {labels.shape}")
        if not images.shape[:3].is_compatible_with(labels.shape):
            raise ValueError(
                f"{role} images {images.shape} and labels {labels.shape} disagree in batch, "
                "height or width; give one label per image pixel"
            )
        ignore = self.training_options["ignore_index"]
        labels = tf.cast(labels, tf.int32)
        valid = tf.logical_or(tf.equal(labels, ignore), tf.logical_and(labels >= 0, labels < self.num_classes))
        tf.debugging.assert_equal(
            tf.reduce_all(valid),
            True,
            message=f"{role} labels must be train ids in [0, {self.num_classes}) or {ignore} (ignore); "
            "map the dataset's label ids to train ids first",
        )
        return labels

    def current_learning_rate(self):
        if getattr(self, "optimizer", None) is None:
            return tf.constant(1e-2)
        return tf.convert_to_tensor(self.optimizer.learning_rate)

    def compute_meta_gradients(self, meta_train, meta_test=None, learning_rate=None, step_seed=None, loss_scale=None):
        """One step of Algorithm 1 up to the gradients; changes no variable.

        Args:
          meta_train: ``(images, labels)`` from the meta-train domains (for ``baseline``/``memory_agg``:
            the aggregated batch, or meta-train half of an episode).
          meta_test: ``(images, labels)`` from the meta-test domains (concatenated to ``meta_train`` by the
            aggregate methods; may be None for them).
          learning_rate: the outer rate ``beta`` (the inner one is ``inner_lr_ratio * beta``); defaults to
            the optimiser's current rate.
          step_seed: ``[2]`` int seed for the Gumbel noise (only with ``memory_read="gumbel"``).
          loss_scale: mixed-precision loss scale ``s``: the returned gradients are those of ``s * J``, and the
            inner gradient is taken of ``s * L_in`` and divided by ``s`` (so float16 gradients do not
            underflow in the inner step either). Default 1.

        Returns:
          ``(objective, gradients, updates)``: ``gradients`` align with ``self.trainable_variables``
          (weight decay not included); ``updates`` is a dict with ``non_trainable`` (new values aligned
          with ``self.non_trainable_variables``, e.g. BatchNorm statistics; the memory is unchanged here,
          the final write of eq. 12 needs the new weights: ``write_memory``), ``terms`` (loss terms) and
          ``memory_prime`` (``M'`` or None).
        """
        opts = self.training_options
        method = get_method(opts["method"])
        meta_train = (meta_train[0], self.check_batch(*meta_train, "meta-train"))
        if meta_test is not None:
            meta_test = (meta_test[0], self.check_batch(*meta_test, "meta-test"))
        elif method.meta_learns:
            raise ValueError(
                f"method {method.name!r} needs a meta-test batch: feed episodes "
                "((images, labels), (images, labels)) from mgml_tf.data.episodes"
            )
        lr_dtype = tf.float64 if self.compute_dtype == "float64" else tf.float32
        lr = self.current_learning_rate() if learning_rate is None else learning_rate
        lr = tf.cast(lr, lr_dtype) if tf.is_tensor(lr) else tf.constant(lr, lr_dtype)
        theta = [tf.convert_to_tensor(v.value) for v in self.trainable_variables]
        state = [tf.convert_to_tensor(v.value) for v in self.non_trainable_variables]
        memory = tf.convert_to_tensor(self.memory_bank.memory.value) if self.use_memory else None
        seeds = (None, None)
        if step_seed is not None and opts["memory_read"] == "gumbel":
            step_seed = tf.cast(step_seed, tf.int32)
            seeds = (step_seed, step_seed + tf.constant([0, 1], tf.int32))
        scale = tf.constant(1.0, lr_dtype) if loss_scale is None else tf.cast(loss_scale, lr_dtype)
        net = algorithm.FunctionalNetwork(self, state, opts, seeds)
        if method.meta_learns:
            inner_lr = tf.cast(opts["inner_lr_ratio"], lr_dtype) * lr
            objective, gradients, terms, memory_prime = algorithm.meta_objective(
                net, theta, memory, meta_train, meta_test, inner_lr, scale
            )
        else:
            objective, gradients, terms, memory_prime = algorithm.aggregate_objective(
                net, theta, memory, self._aggregate(meta_train, meta_test), scale
            )
        if sync_replica_context() is not None:  # each replica holds its share of every logged value
            names = list(terms)
            terms = dict(zip(names, all_reduce_sum([terms[k] for k in names])))
        updates = {"non_trainable": self._merged_statistics(net.states), "terms": terms, "memory_prime": memory_prime}
        return objective, gradients, updates

    def write_memory(self, images, labels, enabled=True):
        """Eq. 12: ``M <- update(M, X; theta)`` with the current weights, in inference mode, no gradient.

        Returns the new memory after assigning it (the old one, unchanged, where ``enabled`` is False)."""
        if not self.use_memory:
            return None
        memory = self.memory_bank.memory
        features, _, _ = self.encode(tf.cast(images, self.compute_dtype), training=False)
        new_memory = tf.stop_gradient(
            self.updated_memory(tf.convert_to_tensor(memory.value), features, tf.cast(labels, tf.int32), training=False)
        )
        if enabled is not True:
            new_memory = tf.where(enabled, new_memory, memory.value)
        memory.assign(new_memory)
        return new_memory

    def initialize_memory(self, batches, max_batches=None):
        """Sets ``M`` to the class means of the L2-normalised encoder features (inference mode) over
        ``(images, labels)`` batches, at most ``max_batches`` of them (Sec. 3.2); returns the memory."""
        from mgml_tf import memory as memory_ops  # local: keeps the module's import surface small

        if not self.use_memory:
            return None

        def feature_batches():
            for i, (images, labels) in enumerate(batches):
                if max_batches is not None and i >= max_batches:
                    return
                features, _, _ = self.encode(tf.cast(images, self.compute_dtype), training=False)
                yield features, tf.cast(labels, tf.int32)

        try:
            value = memory_ops.initial_memory(
                feature_batches(), self.num_classes, self.training_options["ignore_index"], dtype=self.memory.dtype
            )
        except ValueError as error:
            if "no batches" not in str(error):
                raise
            raise ValueError(
                "initialize_memory got no batches: give it (images, labels) batches of the source domains"
            ) from None
        self.memory.assign(value)
        return value

    # ------------------------------------------------------------------------------------- train step
    @staticmethod
    def _aggregate(first, second=None):
        """``(images, labels)`` of both halves of an episode as one batch (the aggregate methods)."""
        images, labels = first[0], tf.cast(first[1], tf.int32)
        if second is None:
            return images, labels
        return (
            tf.concat([images, tf.cast(second[0], images.dtype)], axis=0),
            tf.concat([labels, tf.cast(second[1], tf.int32)], axis=0),
        )

    def _split_episode(self, data):
        if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], (tuple, list)):
            return tuple(data[0]), tuple(data[1])
        if isinstance(data, (tuple, list)) and len(data) == 2:
            if get_method(self.training_options["method"]).meta_learns:
                raise ValueError(
                    f"method {self.training_options['method']!r} trains on episodes: feed "
                    "((images, labels), (images, labels)) batches from mgml_tf.data.episodes, "
                    "not (images, labels)"
                )
            return tuple(data), None
        raise ValueError("train data must be ((images, labels), (images, labels)) episodes or (images, labels) batches")

    def _apply_if_finite(self, gradients, finite):
        """``optimizer.apply`` when ``finite``; otherwise only the step counter advances (weights and
        optimiser slots keep their values: the step leaves no trace, and the input stream, the schedule and
        the Gumbel seeds stay aligned with the step number).

        Under a strategy the condition is taken in the cross-replica context (as Keras's
        ``LossScaleOptimizer`` does): ``apply`` calls ``merge_call``, which a ``cond`` branch in a replica
        context may not do. ``finite`` is the same on every replica."""
        optimizer, variables = self.optimizer, self.trainable_variables

        def apply():
            optimizer.apply(gradients, variables)

        def skip():
            optimizer.iterations.assign_add(1)

        if (
            not tf.distribute.has_strategy()
            or tf.distribute.in_cross_replica_context()
            or tf.__internal__.distribute.strategy_supports_no_merge_call()
        ):
            tf.cond(finite, apply, skip)
            return

        def cross_replica(strategy, finite_per_replica, grads):
            agreed = strategy.experimental_local_results(finite_per_replica)[0]

            def apply_all():
                strategy.extended.call_for_each_replica(lambda g: optimizer.apply(g, variables), args=(grads,))

            tf.cond(agreed, apply_all, skip)

        tf.distribute.get_replica_context().merge_call(cross_replica, args=(finite, gradients))

    def train_step(self, data):
        """One training step of any method: the objective's gradients (``compute_meta_gradients``), weight
        decay, the optimiser step, the non-trainable state, the memory write of eq. 12, the logs."""
        self.train_step_traces += 1
        meta_train, meta_test = self._split_episode(data)
        step = tf.cast(self.optimizer.iterations, tf.int32)
        step_seed = tf.stack([tf.constant(int(self.training_options["seed"]), tf.int32), step])
        lr = self.current_learning_rate()
        # 1 unless the optimiser scales losses (mixed_float16 wraps it in a LossScaleOptimizer, whose
        # apply() unscales the gradients and skips steps whose gradients are not finite).
        loss_scale = tf.cast(self.optimizer.scale_loss(tf.constant(1.0)), tf.float32)
        objective, gradients, updates = self.compute_meta_gradients(
            meta_train, meta_test, learning_rate=lr, step_seed=step_seed, loss_scale=loss_scale
        )
        gradients = self._with_weight_decay(gradients, loss_scale)
        # A step whose gradients are not finite (an overflowing float16 loss scale, a diverging run) must
        # not leak into the state either: the BatchNorm statistics of its passes and the memory written
        # with its weights are then discarded.
        finite, fault = self._finite_step(objective, gradients)
        if _is_loss_scaled(self.optimizer):
            self.optimizer.apply(gradients, self.trainable_variables)  # skips non-finite steps itself
        else:
            self._apply_if_finite(gradients, finite)
        self._assign_state(updates["non_trainable"], finite)
        if self.use_memory:
            aggregate = get_method(self.training_options["method"]).aggregates
            images, labels = self._aggregate(meta_train, meta_test if aggregate else None)
            self.write_memory(images, labels, enabled=finite)
        logs = self._tracked_logs(updates["terms"], finite)
        logs["step_fault"] = tf.cast(fault, tf.float32)
        logs["lr"] = lr
        logs["inner_lr"] = tf.cast(self.training_options["inner_lr_ratio"], lr.dtype) * lr
        return logs

    def _with_weight_decay(self, gradients, loss_scale):
        """``dJ/dtheta + weight_decay * theta`` (times the loss scale), except ``weight_decay_exempt_variables``."""
        replica = sync_replica_context()
        replicas = replica.num_replicas_in_sync if replica is not None else 1
        decay = float(self.training_options["weight_decay"]) / replicas  # the optimiser sums replicas
        if not decay:
            return gradients
        exempt = {id(v) for v in self.weight_decay_exempt_variables()}
        return [
            g if id(v) in exempt else g + tf.cast(decay, g.dtype) * tf.cast(loss_scale, g.dtype) * v.value
            for g, v in zip(gradients, self.trainable_variables)
        ]

    def _finite_step(self, objective, gradients):
        """``(finite, fault)``, the same on every replica. ``finite``: the loss and every gradient are finite.
        ``fault``: not finite; under loss scaling only a non-finite loss, since scaled gradients that overflow
        with a finite loss are the loss scale's normal adjustment (skipped by the optimiser)."""
        objective_finite = tf.math.is_finite(tf.cast(objective, tf.float32))
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in gradients] + [objective_finite])
        replica = sync_replica_context()
        if replica is not None:
            bad = replica.all_reduce(
                tf.distribute.ReduceOp.SUM,
                tf.stack([1.0 - tf.cast(finite, tf.float32), 1.0 - tf.cast(objective_finite, tf.float32)]),
            )
            finite, objective_finite = bad[0] < 0.5, bad[1] < 0.5
        fault = tf.logical_not(objective_finite) if _is_loss_scaled(self.optimizer) else tf.logical_not(finite)
        return finite, fault

    def _assign_state(self, values, finite):
        """Assigns the step's non-trainable values (BatchNorm statistics, seeds; the memory is written by
        ``write_memory``) where the step is finite."""
        replica = sync_replica_context()
        memory = self.memory if self.use_memory else None
        for variable, value in zip(self.non_trainable_variables, values):
            if variable is memory:
                continue
            value = tf.where(finite, value, variable.value)
            if replica is not None and value.dtype.is_floating:
                # Non-trainable variables are not synchronised by TF (aggregation NONE): replicas would
                # drift apart silently. With synchronised BatchNorm the values already agree; the mean
                # makes agreement a guarantee.
                value = replica.all_reduce(tf.distribute.ReduceOp.MEAN, value)
            variable.assign(value)

    def _tracked_logs(self, terms, finite):
        """Running means of the loss terms over finite steps only (one skipped step would otherwise turn them
        NaN for the rest of the epoch), and the count of skipped steps."""
        weight = tf.cast(finite, tf.float32)
        for name, value in terms.items():
            value = tf.where(finite, tf.cast(value, tf.float32), 0.0)
            self._log_trackers[name].update_state(value, sample_weight=weight)
        self._skipped_steps.update_state(1.0 - weight)
        logs = {name: tracker.result() for name, tracker in self._log_trackers.items() if name in terms}
        logs["nonfinite_steps"] = self._skipped_steps.result()
        return logs
