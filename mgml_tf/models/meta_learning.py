"""Algorithm 1 (Sec. 3.3): memory-guided meta-learning as the ``train_step`` of a Keras model.

One step, given a meta-train batch ``X_tr`` (from some source domains) and a meta-test batch ``X_te``
(from the others):

1. Inner (eq. 9): ``L_in = L_read(M, X_tr; theta) + L_update(M_hat, X_tr; theta)`` with
   ``L_read = L_seg + 0.4 L_aux + l1 L_coh`` and ``L_update = L_div`` on ``M_hat = update(M, X_tr; theta)``;
   ``theta' = theta - alpha dL_in/dtheta``, ``alpha = inner_lr_ratio * lr`` (annealed with ``lr``).
2. ``M' = update(M, X_tr; copy(theta'_E), theta'_U)`` (eq. 10): the encoder part of ``theta'`` is frozen.
3. Outer: ``L_out = L_read(M', X_te; theta')``; objective ``J = L_in(theta) + L_out(theta'(theta))`` (the
   MLDG form of the reference) or ``J = L_out`` (eq. 11 literally, ``outer_objective="meta_test_only"``).
4. ``theta <- SGD(theta, dJ/dtheta + weight_decay * theta)``. ``meta_order=2`` keeps the inner gradient on
   the outer tape (``dtheta'/dtheta = I - alpha H``: the paper); ``meta_order=1`` stops it (what the reference
   code does); ``meta_order=0`` has no inner step (``theta' = theta``: Table 7's episodic row).
5. ``M <- update(M, X_tr; theta_new)`` without gradient, in inference mode (eq. 12).

BatchNorm moving statistics (the paper is silent): every pass above runs BatchNorm in training mode, on batch
moments. With ``bn_statistics_from="meta_train"`` (the default, as the reference code) the model keeps the
moving statistics of pass 1 only: the reference runs passes 2 and 3 on separate fast-weight copies of the
network whose own statistics are thrown away. ``"every_pass"`` (mgml_tf before the option) chains the moving
averages through passes 1, 2 and 3, so the meta-test batch moves them too. The aggregate methods have one
pass, on the aggregated batch, under either value. Other non-trainable state (dropout seeds) always advances
through every pass.

Everything up to 4 is ``compute_meta_gradients``: a function of the current variable values that changes no
variable. The network runs functionally: fast weights are tensors mapped onto the variables by a
``keras.StatelessScope``, never assigned, so nested ``tf.GradientTape``s see them as ordinary tensors.
``theta`` is every trainable variable, so a learned memory score scale ``log_s`` (``memory_score_scale=
"learned"``) takes the inner step and the second-order path with the rest; it is the one variable without
weight decay (``weight_decay_exempt_variables``).

Methods (Tables 1-7 comparison rows): ``mgml`` (the above), ``baseline`` (aggregate all sources; CE + aux;
no memory), ``mldg`` (steps 1, 3, 4 without memory), ``memory_agg`` (memory read, written and regularised on
the aggregated batch; no meta-learning).
"""

from collections.abc import Mapping

import keras
import tensorflow as tf

from mgml_tf import losses as losses_lib
from mgml_tf import optim
from mgml_tf.ops import all_reduce_sum, sync_replica_context

METHODS = ("mgml", "baseline", "mldg", "memory_agg")
META_ORDERS = (0, 1, 2)
OUTER_OBJECTIVES = ("mldg", "meta_test_only")
MEMORY_READS = ("softmax", "gumbel")
MEMORY_PRIME_FREEZES = ("encoder", "none", "encoder_and_update")
# Memory read in the meta-test step (Table 6): M' re-written with the fast weights (eq. 10, the paper), or the
# M_hat the meta-train step wrote with theta (Table 6's first row: no re-update).
META_TEST_MEMORIES = ("m_prime", "m_hat")
# Passes whose batches update the BatchNorm moving statistics (module docstring).
BN_STATISTICS_SOURCES = ("meta_train", "every_pass")

TRAINING_DEFAULTS = dict(
    method="mgml",
    meta_order=2,
    outer_objective="mldg",
    inner_lr_ratio=0.25,
    memory_read="softmax",
    memory_prime_freeze="encoder",
    meta_test_memory="m_prime",
    bn_statistics_from="meta_train",
    use_cohesion=True,
    use_divergence=True,
    seg_weight=losses_lib.SEG_WEIGHT,
    aux_weight=losses_lib.AUX_WEIGHT,
    cohesion_weight=losses_lib.COHESION_WEIGHT,
    divergence_classification_weight=losses_lib.DIVERGENCE_CLASSIFICATION_WEIGHT,
    divergence_cosine_weight=losses_lib.DIVERGENCE_COSINE_WEIGHT,
    weight_decay=5e-4,
    ignore_index=255,
    seed=0,
)

LOG_NAMES = ("loss", "inner_loss", "outer_loss", "inner_seg", "outer_seg", "aux", "cohesion", "div_cls", "div_cos")


def _is_loss_scaled(optimizer):
    """True for a ``LossScaleOptimizer`` (mixed_float16), which skips steps with non-finite gradients."""
    return hasattr(optimizer, "inner_optimizer") and hasattr(optimizer, "dynamic_scale")


class Options(Mapping):
    """A read-only mapping of option values (a plain ``dict`` attribute would be wrapped by Keras's
    tracking); change options with ``MemorySegmenter.set_training_options``."""

    def __init__(self, values):
        self._values = dict(values)

    def __getitem__(self, key):
        return self._values[key]

    def __iter__(self):
        return iter(self._values)

    def __len__(self):
        return len(self._values)

    def __repr__(self):
        return f"Options({self._values!r})"


def validate_training_options(options):
    """Raises a one-line ``ValueError`` for an unknown or out-of-range training option value."""
    choices = {
        "method": METHODS,
        "meta_order": META_ORDERS,
        "outer_objective": OUTER_OBJECTIVES,
        "memory_read": MEMORY_READS,
        "memory_prime_freeze": MEMORY_PRIME_FREEZES,
        "meta_test_memory": META_TEST_MEMORIES,
        "bn_statistics_from": BN_STATISTICS_SOURCES,
    }
    for key, allowed in choices.items():
        if options[key] not in allowed:
            raise ValueError(f"unknown {key} {options[key]!r}; choose one of {list(allowed)}")
    for key in (
        "inner_lr_ratio",
        "seg_weight",
        "aux_weight",
        "cohesion_weight",
        "divergence_classification_weight",
        "divergence_cosine_weight",
        "weight_decay",
    ):
        if not float(options[key]) >= 0.0:
            raise ValueError(f"{key} must be a non-negative number, got {options[key]}")


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
        unknown = sorted(set(changes) - set(TRAINING_DEFAULTS))
        if unknown:
            raise ValueError(f"unknown training option(s) {unknown}; known: {sorted(TRAINING_DEFAULTS)}")
        options = {**self.training_options, **changes}
        validate_training_options(options)
        if options["method"] in ("baseline", "mldg") and self.use_memory:
            raise ValueError(f"method {options['method']!r} has no memory; build a new model for it")
        if options["method"] in ("mgml", "memory_agg") and not self.use_memory:
            raise ValueError(f"method {options['method']!r} needs the memory; build a new model for it")
        self.training_options = Options(options)
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

    # ------------------------------------------------------------------------------- functional runner
    def _stateless(self, trainable_values, non_trainable_values, fn):
        """Runs ``fn()`` with the model's variables replaced by the given tensors; returns
        ``(fn(), new non-trainable values)`` (e.g. BatchNorm moving statistics), assigning nothing."""
        mapping = list(zip(self.trainable_variables, trainable_values))
        mapping += list(zip(self.non_trainable_variables, non_trainable_values))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            result = fn()
        new_state = []
        for variable, value in zip(self.non_trainable_variables, non_trainable_values):
            current = scope.get_current_value(variable)
            new_state.append(value if current is None else current)
        return result, new_state

    def _episode(self, theta, state, memory, images, labels, with_update, seed=None, keep_m_hat=False):
        """Read losses (and, ``with_update``, the update loss) of one pass: ``(total, terms, state, M_hat)``
        where ``M_hat = update(M, images; theta)`` when the divergence loss or ``keep_m_hat`` needs it, else
        None."""
        opts = self.training_options
        use_memory = self.use_memory and memory is not None
        kept = {}

        def run():
            gumbel_seed = seed if use_memory and opts["memory_read"] == "gumbel" else None
            out = self.forward(images, memory if use_memory else None, training=True, gumbel_seed=gumbel_seed)
            # Pixel losses are sums over this replica's pixels divided by the labelled-pixel count of the
            # global batch, and terms every replica computes alike (the divergence of the shared M_hat) are
            # divided by the replica count: summed over replicas, each term equals its single-device value.
            seg_sum, count = losses_lib.pixel_cross_entropy_sum(labels, out["logits"])
            count = tf.maximum(all_reduce_sum(tf.stop_gradient(count)), 1.0)
            terms = {"seg": seg_sum / count}
            if "aux_logits" in out and opts["aux_weight"] > 0:
                terms["aux"] = losses_lib.pixel_cross_entropy_sum(labels, out["aux_logits"])[0] / count
            if use_memory and opts["use_cohesion"]:
                # eq. 6 on scores / T or on the scores, as memory_temperature_on says (model.forward)
                terms["cohesion"] = losses_lib.pixel_cross_entropy_sum(labels, out["cohesion_logits"])[0] / count
            if use_memory and with_update and (opts["use_divergence"] or keep_m_hat):
                m_hat = self.updated_memory(memory, out["features"], labels, training=True)
                kept["m_hat"] = m_hat
            if use_memory and with_update and opts["use_divergence"]:
                replicas = float(getattr(sync_replica_context(), "num_replicas_in_sync", 1))
                terms["div_cls"] = losses_lib.memory_classification_loss(self.memory_classifier(m_hat)) / replicas
                terms["div_cos"] = losses_lib.memory_cosine_loss(m_hat) / replicas
            return terms

        terms, state = self._stateless(theta, state, run)
        weights = {
            "seg": opts["seg_weight"],
            "aux": opts["aux_weight"],
            "cohesion": opts["cohesion_weight"],
            "div_cls": opts["divergence_classification_weight"],
            "div_cos": opts["divergence_cosine_weight"],
        }
        total = tf.add_n([weights[k] * v for k, v in terms.items()])
        return total, terms, state, kept.get("m_hat")

    def _memory_prime(self, theta_prime, state, memory, images, labels):
        """Eq. 10: ``M' = update(M, X_tr; copy(theta'_E), theta'_U)`` with the freeze of
        ``memory_prime_freeze`` (Table 6)."""
        freeze = self.training_options["memory_prime_freeze"]
        frozen = set()
        if freeze in ("encoder", "encoder_and_update"):
            frozen |= {id(v) for v in self.encoder_variables()}
        if freeze == "encoder_and_update":
            frozen |= {id(v) for v in self.update_variables()}
        theta_m = [tf.stop_gradient(t) if id(v) in frozen else t for v, t in zip(self.trainable_variables, theta_prime)]

        def run():
            features, _, _ = self.encode(images, training=True)
            return self.updated_memory(memory, features, labels, training=True)

        return self._stateless(theta_m, state, run)

    def _batch_norm_statistics(self):
        """Ids of every BatchNorm moving mean and variance among ``non_trainable_variables``."""
        ids = set()
        for layer in self._flatten_layers(include_self=False, recursive=True):
            if isinstance(layer, keras.layers.BatchNormalization):
                ids.update(id(v) for v in (layer.moving_mean, layer.moving_variance))
        return ids

    def _keep_meta_train_statistics(self, state, meta_train_state):
        """``state`` with the BatchNorm moving statistics taken from ``meta_train_state`` where
        ``bn_statistics_from="meta_train"`` (module docstring); ``state`` unchanged for ``every_pass``."""
        if self.training_options["bn_statistics_from"] != "meta_train":
            return state
        statistics = self._batch_norm_statistics()
        return [
            kept if id(v) in statistics else value
            for v, value, kept in zip(self.non_trainable_variables, state, meta_train_state)
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
        method = opts["method"]
        images_tr, labels_tr = meta_train
        labels_tr = self.check_batch(images_tr, labels_tr, "meta-train")
        if meta_test is not None:
            images_te, labels_te = meta_test
            labels_te = self.check_batch(images_te, labels_te, "meta-test")
        elif method in ("mgml", "mldg"):
            raise ValueError(
                f"method {method!r} needs a meta-test batch: feed episodes "
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
        zero = tf.UnconnectedGradients.ZERO
        scale = tf.constant(1.0, lr_dtype) if loss_scale is None else tf.cast(loss_scale, lr_dtype)

        if method in ("baseline", "memory_agg"):
            images, labels = self._aggregate(
                (images_tr, labels_tr), None if meta_test is None else (images_te, labels_te)
            )
            with tf.GradientTape() as tape:
                tape.watch(theta)
                objective, terms, state, _ = self._episode(
                    theta, state, memory, images, labels, with_update=True, seed=seeds[0]
                )
                scaled_objective = objective * scale  # on the tape: scaled outside, it would be unconnected
            gradients = tape.gradient(scaled_objective, theta, unconnected_gradients=zero)
            logs = self._named_terms(objective, objective, None, terms, None)
            return objective, gradients, {"non_trainable": state, "terms": logs, "memory_prime": None}

        order = int(opts["meta_order"])
        keep_m_hat = memory is not None and opts["meta_test_memory"] == "m_hat"
        alpha = tf.cast(opts["inner_lr_ratio"], lr.dtype) * lr
        add_inner = opts["outer_objective"] == "mldg"
        with tf.GradientTape() as outer:
            outer.watch(theta)
            if order == 0:
                inner_loss, inner_terms, state, m_hat = self._episode(
                    theta, state, memory, images_tr, labels_tr, with_update=True, seed=seeds[0], keep_m_hat=keep_m_hat
                )
                theta_prime = theta
            else:
                with tf.GradientTape() as inner:
                    inner.watch(theta)
                    inner_loss, inner_terms, state, m_hat = self._episode(
                        theta,
                        state,
                        memory,
                        images_tr,
                        labels_tr,
                        with_update=True,
                        seed=seeds[0],
                        keep_m_hat=keep_m_hat,
                    )
                    scaled_inner_loss = inner_loss * scale
                # This replica's inner gradient (of its share of s * L_in). Second order keeps it on the outer
                # tape (dtheta'/dtheta = I - alpha H); first order takes it off the tape.
                if order == 2:
                    local_inner_grads = inner.gradient(scaled_inner_loss, theta, unconnected_gradients=zero)
                else:
                    with outer.stop_recording():
                        local_inner_grads = inner.gradient(scaled_inner_loss, theta, unconnected_gradients=zero)
                    local_inner_grads = [tf.stop_gradient(g) for g in local_inner_grads]
                # The fast weights need the whole batch's gradient: the sum over replicas (the all-reduce is
                # differentiable, so second order stays exact).
                inner_grads = [g / tf.cast(scale, g.dtype) for g in all_reduce_sum(local_inner_grads)]
                theta_prime = [t - tf.cast(alpha, t.dtype) * g for t, g in zip(theta, inner_grads)]
            meta_train_state = state  # after the meta-train pass only
            memory_prime = None
            if keep_m_hat:
                memory_prime = m_hat  # Table 6, first row: the meta-test step reads M_hat (theta, not theta')
            elif memory is not None:
                memory_prime, state = self._memory_prime(theta_prime, state, memory, images_tr, labels_tr)
            outer_loss, outer_terms, state, _ = self._episode(
                theta_prime, state, memory_prime, images_te, labels_te, with_update=False, seed=seeds[1]
            )
            objective = inner_loss + outer_loss if add_inner else outer_loss
            # J = L_in(theta) + L_out(theta'(theta)) (the MLDG form) or L_out alone. At first order the
            # gradient of L_in is the inner gradient already taken: the outer tape differentiates L_out only,
            # instead of running L_in's backward pass a second time. (At second order the same sum makes
            # TensorFlow's oneDNN graph rewrite build a cyclic graph for ResNet-50, so the tape takes J.)
            reuse_inner = order == 1 and add_inner
            scaled_taped = (outer_loss if reuse_inner else objective) * scale
        gradients = outer.gradient(scaled_taped, theta, unconnected_gradients=zero)
        state = self._keep_meta_train_statistics(state, meta_train_state)
        if reuse_inner:
            gradients = [g + h for g, h in zip(gradients, local_inner_grads)]
        logs = self._named_terms(objective, inner_loss, outer_loss, inner_terms, outer_terms)
        return objective, gradients, {"non_trainable": state, "terms": logs, "memory_prime": memory_prime}

    @staticmethod
    def _named_terms(objective, inner_loss, outer_loss, inner_terms, outer_terms):
        """The logged values; under a strategy, summed over replicas (each replica holds its share)."""
        logs = MetaLearningTrainer._local_named_terms(objective, inner_loss, outer_loss, inner_terms, outer_terms)
        if sync_replica_context() is not None:
            names = list(logs)
            logs = dict(zip(names, all_reduce_sum([logs[k] for k in names])))
        return logs

    @staticmethod
    def _local_named_terms(objective, inner_loss, outer_loss, inner_terms, outer_terms):
        logs = {"loss": objective, "inner_loss": inner_loss, "inner_seg": inner_terms["seg"]}
        if outer_terms is not None:
            logs["outer_loss"] = outer_loss
            logs["outer_seg"] = outer_terms["seg"]
        for key in ("aux", "cohesion"):
            values = [t[key] for t in (inner_terms, outer_terms or {}) if key in t]
            if values:
                logs[key] = tf.add_n(values) / len(values)
        for key in ("div_cls", "div_cos"):
            if key in inner_terms:
                logs[key] = inner_terms[key]
        return logs

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
            if self.training_options["method"] in ("mgml", "mldg"):
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
        replica = sync_replica_context()
        replicas = replica.num_replicas_in_sync if replica is not None else 1
        decay = float(self.training_options["weight_decay"]) / replicas  # the optimiser sums replicas
        if decay:
            exempt = {id(v) for v in self.weight_decay_exempt_variables()}
            gradients = [
                g if id(v) in exempt else g + tf.cast(decay, g.dtype) * tf.cast(loss_scale, g.dtype) * v.value
                for g, v in zip(gradients, self.trainable_variables)
            ]
        # A step whose gradients are not finite (an overflowing float16 loss scale, a diverging run) must
        # not leak into the state either: the BatchNorm statistics of its passes and the memory written
        # with its weights are then discarded. (A LossScaleOptimizer skips such a step and lowers the scale.)
        objective_finite = tf.math.is_finite(tf.cast(objective, tf.float32))
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in gradients] + [objective_finite])
        if replica is not None:
            bad = replica.all_reduce(
                tf.distribute.ReduceOp.SUM,
                tf.stack([1.0 - tf.cast(finite, tf.float32), 1.0 - tf.cast(objective_finite, tf.float32)]),
            )
            finite, objective_finite = bad[0] < 0.5, bad[1] < 0.5  # every replica agrees
        loss_scaled = _is_loss_scaled(self.optimizer)
        # A fault: the loss or the gradients are not finite. Under loss scaling, scaled gradients that
        # overflow with a finite loss are the loss scale's normal adjustment (skipped by the optimiser), not a
        # fault. ``step_fault`` is this step's flag (the training loop stops or counts on it).
        fault = tf.logical_not(objective_finite) if loss_scaled else tf.logical_not(finite)
        if loss_scaled:
            self.optimizer.apply(gradients, self.trainable_variables)  # skips non-finite steps itself
        else:
            self._apply_if_finite(gradients, finite)
        memory = self.memory if self.use_memory else None
        for variable, value in zip(self.non_trainable_variables, updates["non_trainable"]):
            if variable is memory:
                continue
            value = tf.where(finite, value, variable.value)
            if replica is not None and value.dtype.is_floating:
                # Non-trainable variables are not synchronised by TF (aggregation NONE): replicas would
                # drift apart silently. With synchronised BatchNorm the values already agree; the mean
                # makes agreement a guarantee.
                value = replica.all_reduce(tf.distribute.ReduceOp.MEAN, value)
            variable.assign(value)
        if self.use_memory:
            aggregate = self.training_options["method"] == "memory_agg"
            images, labels = self._aggregate(meta_train, meta_test if aggregate else None)
            self.write_memory(images, labels, enabled=finite)
        logs = {}
        # Running means over finite steps only (one skipped step would otherwise turn them NaN for the
        # rest of the epoch); skipped steps are counted.
        weight = tf.cast(finite, tf.float32)
        for name, value in updates["terms"].items():
            value = tf.where(finite, tf.cast(value, tf.float32), 0.0)
            self._log_trackers[name].update_state(value, sample_weight=weight)
        self._skipped_steps.update_state(1.0 - weight)
        for name, tracker in self._log_trackers.items():
            if name in updates["terms"]:
                logs[name] = tracker.result()
        logs["nonfinite_steps"] = self._skipped_steps.result()
        logs["step_fault"] = tf.cast(fault, tf.float32)
        logs["lr"] = lr
        logs["inner_lr"] = tf.cast(self.training_options["inner_lr_ratio"], lr.dtype) * lr
        return logs
