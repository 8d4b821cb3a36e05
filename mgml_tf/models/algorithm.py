"""Algorithm 1 (Sec. 3.3) as objectives: functions of the weights that return ``J`` and ``dJ/dtheta``.

``meta_objective`` is the meta step of ``mgml`` (and of ``mldg``, the same without memory);
``aggregate_objective`` is the one-tape step of ``baseline`` and ``memory_agg``. Both change no variable:
the network runs on weight tensors through ``FunctionalNetwork``, so nested ``tf.GradientTape``s see fast
weights as ordinary tensors. What every method's step shares (loss scaling, weight decay, non-finite steps,
BatchNorm statistics, replica sums of the logs, the final memory write of eq. 12) is the step wrapper's:
``mgml_tf.models.meta_learning``.
"""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from mgml_tf import losses as losses_lib
from mgml_tf.ops import all_reduce_sum

ZERO = tf.UnconnectedGradients.ZERO


@dataclasses.dataclass
class PassLosses:
    """The losses of one pass: ``L_read``, ``L_update`` (0 without an update), their terms, and ``M_hat``."""

    read: tf.Tensor
    update: tf.Tensor
    terms: dict
    m_hat: tf.Tensor | None


class FunctionalNetwork:
    """A ``MemorySegmenter`` run on given weight tensors, assigning nothing.

    ``theta`` lists values aligned with ``model.trainable_variables``. The non-trainable state (BatchNorm
    moving statistics, dropout seeds) flows from pass to pass; ``states[i]`` is the state after pass ``i``.
    """

    def __init__(self, model, state, options, seeds=(None, None)):
        self.model, self.options, self.seeds = model, options, seeds
        self.states = [state]
        self.weights = losses_lib.LossWeights(
            seg=options["seg_weight"],
            aux=options["aux_weight"],
            cohesion=options["cohesion_weight"],
            divergence_classification=options["divergence_classification_weight"],
            divergence_cosine=options["divergence_cosine_weight"],
        )

    def run(self, theta, fn):
        """``fn()`` with the model's variables mapped onto ``theta`` and the current state; records the new state."""
        model, state = self.model, self.states[-1]
        mapping = list(zip(model.trainable_variables, theta)) + list(zip(model.non_trainable_variables, state))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            result = fn()
        new_state = [scope.get_current_value(v) for v in model.non_trainable_variables]
        self.states.append([old if new is None else new for old, new in zip(state, new_state)])
        return result

    def losses(self, theta, memory, batch, seed=None, with_update=True, keep_m_hat=False):
        """``L_read(theta, M, X)`` and, ``with_update``, ``L_update(M_hat)`` with ``M_hat = update(M, X; theta)``
        from the same encoder pass (eq. 8). ``M_hat`` is kept when the divergence loss or ``keep_m_hat`` needs it."""
        images, labels = batch
        opts, model = self.options, self.model
        use_memory = memory is not None

        def run():
            gumbel = seed if use_memory and opts["memory_read"] == "gumbel" else None
            out = model.forward(images, memory, training=True, gumbel_seed=gumbel)
            aux = out.get("aux_logits") if opts["aux_weight"] > 0 else None
            cohesion = out["cohesion_logits"] if use_memory and opts["use_cohesion"] else None
            read, terms = losses_lib.read_loss(labels, out["logits"], aux, cohesion, self.weights)
            update, m_hat = tf.zeros_like(read), None
            if use_memory and with_update and (opts["use_divergence"] or keep_m_hat):
                m_hat = model.updated_memory(memory, out["features"], labels, training=True)
            if use_memory and with_update and opts["use_divergence"]:
                update, update_terms = losses_lib.update_loss(m_hat, model.memory_classifier(m_hat), self.weights)
                terms.update(update_terms)
            return PassLosses(read, update, terms, m_hat)

        return self.run(theta, run)

    def memory_prime(self, theta_prime, memory, batch):
        """Eq. 10: ``M' = update(M, X_tr; copy(theta'_E), theta'_U)``; ``memory_prime_freeze`` chooses what is
        frozen (Table 6). None without memory."""
        if memory is None:
            return None
        model, freeze = self.model, self.options["memory_prime_freeze"]
        frozen = set()
        if freeze in ("encoder", "encoder_and_update"):
            frozen |= {id(v) for v in model.encoder_variables()}
        if freeze == "encoder_and_update":
            frozen |= {id(v) for v in model.update_variables()}
        theta_m = [
            tf.stop_gradient(t) if id(v) in frozen else t for v, t in zip(model.trainable_variables, theta_prime)
        ]
        images, labels = batch

        def run():
            features, _, _ = model.encode(images, training=True)
            return model.updated_memory(memory, features, labels, training=True)

        return self.run(theta_m, run)


def inner_gradient(inner, outer, scaled_loss, theta, order, scale):
    """``(this replica's d(s L_in)/dtheta, the whole batch's dL_in/dtheta)`` for the fast weights of eq. 9.

    Second order leaves the gradient on the ``outer`` tape (``dtheta'/dtheta = I - alpha H``); first order
    takes it off. The all-reduce over replicas is differentiable, so second order stays exact."""
    if order == 2:
        local = inner.gradient(scaled_loss, theta, unconnected_gradients=ZERO)
    else:
        with outer.stop_recording():
            local = [tf.stop_gradient(g) for g in inner.gradient(scaled_loss, theta, unconnected_gradients=ZERO)]
    return local, [g / tf.cast(scale, g.dtype) for g in all_reduce_sum(local)]


def meta_objective(net, theta, memory, meta_train, meta_test, inner_lr, scale):
    """Algorithm 1 up to ``dJ/dtheta``: ``(J, gradients of s J, logs, M')``; ``s`` is the loss scale.

    ``meta_order`` 2 is the paper (second order), 1 stops the inner gradient (the reference code), 0 has no
    inner step (``theta' = theta``: Table 7's episodic row). ``outer_objective`` "mldg" is
    ``J = L_in(theta) + L_out(theta'(theta))`` (the reference), "meta_test_only" is ``J = L_out`` (eq. 11)."""
    opts = net.options
    order, add_inner = int(opts["meta_order"]), opts["outer_objective"] == "mldg"
    keep_m_hat = memory is not None and opts["meta_test_memory"] == "m_hat"
    with tf.GradientTape() as outer:
        outer.watch(theta)
        with tf.GradientTape() as inner:
            inner.watch(theta)
            # 1. Meta-training: L_read(theta, M, X_tr) and L_update(M_hat), M_hat = update(M, X_tr; theta) (eq. 8).
            train = net.losses(theta, memory, meta_train, net.seeds[0], keep_m_hat=keep_m_hat)
            inner_loss = train.read + train.update
            scaled_inner = inner_loss * scale  # on the inner tape: scaled outside, it would be unconnected
        # 2. Fast weights: theta' = theta - alpha dL_in/dtheta (eq. 9).
        theta_prime, local_inner = theta, None
        if order > 0:
            local_inner, grads = inner_gradient(inner, outer, scaled_inner, theta, order, scale)
            theta_prime = [t - tf.cast(inner_lr, t.dtype) * g for t, g in zip(theta, grads)]
        # 3. M' = update(M, X_tr; copy(theta'_E), theta'_U) (eq. 10); Table 6's first row reads M_hat instead.
        memory_prime = train.m_hat if keep_m_hat else net.memory_prime(theta_prime, memory, meta_train)
        # 4. Meta-testing: L_out = L_read(theta', M', X_te) (eq. 11).
        test = net.losses(theta_prime, memory_prime, meta_test, net.seeds[1], with_update=False)
        # 5. The objective J (eq. 11, or with L_in: the MLDG form). At first order dL_in/dtheta is the inner
        #    gradient already taken, so the tape differentiates L_out alone instead of a second L_in backward.
        objective = inner_loss + test.read if add_inner else test.read
        reuse_inner = order == 1 and add_inner
        taped = (test.read if reuse_inner else objective) * scale
    gradients = outer.gradient(taped, theta, unconnected_gradients=ZERO)
    if reuse_inner:
        gradients = [g + h for g, h in zip(gradients, local_inner)]
    return objective, gradients, named_terms(objective, inner_loss, train.terms, test.read, test.terms), memory_prime


def aggregate_objective(net, theta, memory, batch, scale):
    """``baseline`` and ``memory_agg``: ``J = L_read(theta, M, X) + L_update(M_hat)`` on the batch aggregated
    over every source domain, one tape: ``(J, gradients of s J, logs, None)``."""
    with tf.GradientTape() as tape:
        tape.watch(theta)
        losses = net.losses(theta, memory, batch, net.seeds[0])
        objective = losses.read + losses.update
        scaled = objective * scale  # on the tape: scaled outside, it would be unconnected
    gradients = tape.gradient(scaled, theta, unconnected_gradients=ZERO)
    return objective, gradients, named_terms(objective, objective, losses.terms), None


def named_terms(objective, inner_loss, inner_terms, outer_loss=None, outer_terms=None):
    """The logged values of one replica: the losses, and each term (read terms averaged over the passes)."""
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
