"""``MemorySegmenter``: the memory-guided segmentation network of Sec. 3.2 (Fig. 3) as a Keras 3 model.

``image -> backbone -> encoder head (ASPP / projection) -> F -> memory read-and-fuse -> R -> decoder ->
logits`` plus an auxiliary FCN head on conv4_x (weight 0.4) and the memory classifier ``G`` (Dense N) used
by the divergence loss. With ``use_memory=False`` the decoder reads ``F`` directly (the baseline and MLDG
rows of the paper's tables).

Every piece of the forward pass is a method that takes the memory as a tensor and assigns nothing, so the
meta-learning step (``mgml_tf.models.meta_learning``) can run it on fast weights inside a
``keras.StatelessScope`` and differentiate through it twice.
"""

import keras
import tensorflow as tf

from mgml_tf import config as config_lib
from mgml_tf import memory as memory_ops
from mgml_tf.layers.memory import CategoricalMemory, MemoryReadFuse, MemoryUpdateNetwork
from mgml_tf.models import backbones as backbones_lib
from mgml_tf.models import foundation
from mgml_tf.models import heads as heads_lib
from mgml_tf.models.meta_learning import MetaLearningTrainer
from mgml_tf.ops import all_reduce_sum, resize_bilinear

LEGACY_OPTIONS = config_lib.LEGACY_OPTIONS
with_legacy_options = config_lib.with_legacy_options


def _fail(message):
    raise ValueError(message)


@keras.saving.register_keras_serializable(package="mgml_tf")
class MemorySegmenter(MetaLearningTrainer, keras.Model):
    """Memory-guided segmentation model; ``fit`` runs Algorithm 1 (see ``MetaLearningTrainer``).

    ``model(images)`` takes float RGB images ``[B, H, W, 3]`` in 0..255 and returns float32 logits
    ``[B, H, W, num_classes]`` at input resolution, read through the stored memory.
    ``model.forward(images, memory, training)`` returns every intermediate the training step needs.

    Args: the fields of ``mgml_tf.config.ModelConfig`` (network) and ``MethodConfig`` (the method and
    Algorithm 1), checked there; their names are the command-line flag names. ``backbone_architecture``
    (``mgml_tf.models.foundation.architecture_of``, kept in ``get_config`` and model directories) rebuilds a
    keras-hub backbone without its preset: the weights then come from a checkpoint or a saved model.
    """

    def __init__(self, backbone_architecture=None, **options):
        model_names, method_names = config_lib.ModelConfig.names(), config_lib.MethodConfig.names()
        unknown = sorted(set(options) - set(model_names) - set(method_names) - {"name", "dtype", "trainable"})
        if unknown:
            _fail(f"unknown option(s) {unknown}; known: {sorted(model_names + method_names)}")
        base = {k: options.pop(k) for k in ("name", "dtype", "trainable") if k in options}
        super().__init__(name=base.pop("name", "memory_segmenter"), **base)
        # Every value is checked here, once, by the configuration sections (one-line ValueErrors).
        training = config_lib.MethodConfig.from_dict({k: v for k, v in options.items() if k in method_names})
        model = config_lib.ModelConfig.from_dict({k: v for k, v in options.items() if k in model_names})
        config_lib.check_model_and_method(model, training)
        self.model_options = model.resolved(training)
        self.training_options = training
        config = self.model_options
        self.num_classes = int(config["num_classes"])
        self.use_memory = bool(config["use_memory"])
        bn = dict(bn_momentum=config["bn_momentum"], synchronized_bn=config["synchronized_bn"])
        heads_bn = dict(bn, bn_epsilon=float(config["bn_epsilon"]))  # the backbone keeps Keras ResNet's epsilon
        policy = self.dtype_policy
        c = int(config["feature_channels"])

        if foundation.is_foundation(config["backbone"]):
            self.backbone = foundation.build_foundation_backbone(
                config["backbone"],
                output_stride=config["output_stride"],
                tuning=config["backbone_tuning"],
                lora_rank=config["lora_rank"],
                adapter_tokens=config["adapter_tokens"],
                adapter_rank=config["adapter_rank"],
                architecture=backbone_architecture,
                dtype=policy,
            )
            self.backbone_architecture = self.backbone.architecture
        else:
            self.backbone = backbones_lib.build_backbone(
                config["backbone"],
                output_stride=config["output_stride"],
                weights=config["backbone_weights"],
                dtype=policy,
                **bn,
            )
            self.backbone_architecture = None
        if training.meta_order is None:
            training = training.replace(meta_order=foundation.default_meta_order(self.backbone))
            self.training_options = training
        rate_scale = 16 // config["output_stride"] if config["output_stride"] <= 16 else 1
        if config["head"] == "deeplabv3plus":
            self.encoder_head = heads_lib.ASPP(
                filters=c,
                rates=tuple(r * rate_scale for r in config["aspp_rates"]),
                dropout=config["dropout"],
                dtype=policy,
                name="aspp",
                **heads_bn,
            )
            self.decoder = heads_lib.DeepLabV3PlusDecoder(
                self.num_classes,
                filters=config["decoder_channels"],
                low_level_filters=config["low_level_channels"],
                dtype=policy,
                name="decoder",
                **heads_bn,
            )
        else:
            self.encoder_head = heads_lib.FeatureProjection(filters=c, dtype=policy, name="projection", **heads_bn)
            self.decoder = heads_lib.DeepLabV2Head(self.num_classes, dtype=policy, name="decoder")
        self.aux_head = (
            heads_lib.AuxiliaryHead(
                self.num_classes,
                filters=config["decoder_channels"],
                dropout=config["dropout"],
                dtype=policy,
                name="aux_head",
                **heads_bn,
            )
            if config["aux_head"]
            else None
        )
        if self.use_memory:
            self.memory_bank = CategoricalMemory(self.num_classes, c, dtype=policy, name="memory")
            self.update_network = (
                MemoryUpdateNetwork(c, dtype=policy, name="update_network", **heads_bn)
                if config["use_update_network"]
                else None
            )
            learned = config["memory_score_scale"] == "learned"
            read_temperature = (
                float(config["memory_temperature"])
                if config["memory_temperature_on"] in ("read", "both") and not learned
                else 1.0
            )
            self.memory_fuse = MemoryReadFuse(
                c,
                temperature=read_temperature,
                score_scale=config["memory_score_scale"],
                initial_scale=1.0 / float(config["memory_temperature"]),
                centering=config["memory_centering"],
                dtype=policy,
                name="memory_read",
                **heads_bn,
            )
            self.memory_classifier = keras.layers.Dense(self.num_classes, dtype=policy, name="memory_classifier")
        self._build_layers()
        self._init_trainer()

    # ----------------------------------------------------------------------------------------- building
    def _build_layers(self):
        """Builds every sub-layer from shapes alone, so that weights exist before the first call (loading
        a ``.keras`` file or a checkpoint into a fresh model needs them)."""
        backbone = self.backbone
        spec = backbone.compute_output_spec(keras.KerasTensor((1, 64, 64, 3), dtype=self.compute_dtype))
        high, low, aux = spec["high_level"].shape, spec["low_level"].shape, spec["aux"].shape
        c = int(self.model_options["feature_channels"])
        self.encoder_head.build(high)
        feature_shape = high[:-1] + (c,)
        if self.model_options["head"] == "deeplabv3plus":
            self.decoder.build(feature_shape, low)
        else:
            self.decoder.build(feature_shape)
        if self.aux_head is not None:
            self.aux_head.build(aux)
        if self.use_memory:
            if self.update_network is not None:
                self.update_network.build(feature_shape)
            self.memory_fuse.build(feature_shape)
            self.memory_classifier.build((self.num_classes, c))
        self.built = True

    # ----------------------------------------------------------------------------------- forward pieces
    @property
    def memory(self):
        """The memory variable ``M`` (``num_classes x feature_channels``), or None without memory."""
        return self.memory_bank.memory if self.use_memory else None

    def encoder_variables(self):
        """Variables of ``Theta_E`` (backbone and encoder head)."""
        return self.backbone.trainable_variables + self.encoder_head.trainable_variables

    def update_variables(self):
        """Variables of ``Theta_U`` (the update network)."""
        if self.use_memory and self.update_network is not None:
            return self.update_network.trainable_variables
        return []

    def weight_decay_exempt_variables(self):
        """The learned memory score scale ``log_s`` (``memory_score_scale="learned"``): as CLIP's logit scale
        it has no weight decay, which would pull it towards ``s = 1``, the uniform read it exists to leave."""
        if self.use_memory and self.memory_fuse.log_scale is not None:
            return [self.memory_fuse.log_scale]
        return []

    def encode(self, images, training=False):
        """``(F, low_level, aux_features)`` for float RGB images in 0..255."""
        feats = self.backbone(images, training=training)
        features = self.encoder_head(feats["high_level"], training=training)
        return features, feats["low_level"], feats["aux"]

    def update_features(self, features, training=False):
        """``Z = U(normalize(F))`` (the paper, Sec. 3.2), ``U(F)`` with ``update_network_input="raw"`` (the
        reference code), or ``normalize(F)`` without the update network, for eqs. 1-2 (which normalise ``Z``
        per pixel again)."""
        if self.update_network is not None and self.model_options["update_network_input"] == "raw":
            return self.update_network(features, training=training)
        q = (
            tf.cast(memory_ops.l2_normalize(tf.cast(features, tf.float32)), features.dtype)
            if features.dtype in (tf.float16, tf.bfloat16)
            else memory_ops.l2_normalize(features)
        )
        if self.update_network is None:
            return q
        return self.update_network(q, training=training)

    def updated_memory(self, memory, features, labels, training=False):
        """``M_hat = update(M, X)`` (eq. 3) from encoder features ``F`` of the images labelled ``labels``.

        Under a multi-replica strategy the per-class sums and counts are all-reduced first, so every
        replica computes the update of the whole global batch (equal to the single-device update)."""
        z = self.update_features(features, training=training)
        sums, counts = memory_ops.class_feature_sums(
            tf.cast(z, memory.dtype), labels, self.num_classes, self.training_options["ignore_index"]
        )
        sums, counts = all_reduce_sum(sums), all_reduce_sum(counts)
        return memory_ops.update_memory_from_sums(
            memory, sums, counts, momentum=float(self.model_options["memory_momentum"])
        )

    def decode(self, x, low_level, training=False):
        if self.model_options["head"] == "deeplabv3plus":
            return self.decoder(x, low_level, training=training)
        return self.decoder(x, training=training)

    def forward(self, images, memory=None, training=False, gumbel_seed=None):
        """All outputs of one pass: a dict with ``logits`` and ``aux_logits`` (float32, input resolution),
        ``features`` (F), and with memory ``weights`` (W, eq. 4), ``scores``, ``score_scale`` and
        ``cohesion_logits``:

        - ``scores``: the cosines the read starts from, before any scale or temperature: ``normalize(F) . M[n]``
          (eq. 4), or with ``memory_centering="mean_row"`` the centred cosines ``normalize(q - m) .
          normalize(M[n] - m)`` (``mgml_tf.memory.centered_scores``);
        - ``score_scale``: the scalar that multiplies ``scores`` to give the read logits, ``W = softmax(
          score_scale * scores)`` (Gumbel noise added to the logits in a Gumbel read): the learned
          ``s = exp(min(log_s, log 100))`` with ``memory_score_scale="learned"``, else ``1 / memory_temperature``
          where ``memory_temperature_on`` is ``read`` or ``both`` and 1 otherwise;
        - ``cohesion_logits``: the logits of the cohesion loss (eq. 6): ``s * scores`` when learned; else
          ``scores / memory_temperature`` where ``memory_temperature_on`` is ``cohesion`` or ``both``, else
          ``scores``.

        ``gumbel_seed`` (a ``[2]`` int tensor) makes the read a Gumbel-softmax with noise drawn
        statelessly from that seed (the reference's training read; never used in evaluation)."""
        images = tf.cast(images, self.compute_dtype)
        size = tf.shape(images)[1:3]
        features, low_level, aux_features = self.encode(images, training=training)
        out = {"features": features}
        x = features
        if self.use_memory:
            if memory is None:
                memory = self.memory_bank.memory.value
            noise = None
            if gumbel_seed is not None:
                shape = tf.concat([tf.shape(features)[:3], [self.num_classes]], axis=0)
                u = tf.random.stateless_uniform(shape, seed=gumbel_seed, minval=1e-7, maxval=1.0 - 1e-7)
                noise = -tf.math.log(-tf.math.log(u))
            x, out["weights"], out["scores"] = self.memory_fuse(features, memory, gumbel_noise=noise, training=training)
            out["score_scale"] = self.memory_fuse.scale(out["scores"].dtype)
            out["cohesion_logits"] = out["scores"]
            if self.model_options["memory_score_scale"] == "learned":
                out["cohesion_logits"] = out["score_scale"] * out["scores"]
            elif self.model_options["memory_temperature_on"] in ("cohesion", "both"):
                out["cohesion_logits"] = out["scores"] / tf.cast(
                    self.model_options["memory_temperature"], out["scores"].dtype
                )
        logits = self.decode(x, low_level, training=training)
        # Logits leave the model in float32 (float64 when the whole model is float64), upsampled with the
        # twice-differentiable resize (mgml_tf.ops).
        out_dtype = tf.float64 if self.compute_dtype == "float64" else tf.float32
        out["logits"] = resize_bilinear(tf.cast(logits, out_dtype), size)
        if self.aux_head is not None:
            aux = self.aux_head(aux_features, training=training)
            out["aux_logits"] = resize_bilinear(tf.cast(aux, out_dtype), size)
        return out

    def check_images(self, images):
        """Clear errors for inputs that are not ``[batch, height, width, 3]`` images."""
        shape = getattr(images, "shape", None)
        if shape is None or len(shape) != 4:
            _fail(
                f"images must be a 4-D batch [batch, height, width, 3], got shape {shape}; "
                "add a batch dimension with images[None] for a single image"
            )
        if shape[-1] is not None and shape[-1] != 3:
            _fail(
                f"images must have 3 (RGB) channels, got {shape[-1]} in shape {tuple(shape)}; "
                "convert grayscale or RGBA images to RGB first"
            )

    def call(self, images, training=False):
        self.check_images(images)
        return self.forward(images, training=training)["logits"]

    def predict_with_weights(self, images):
        """``(probabilities, memory weights)`` in inference mode; weights at input resolution (Fig. 6, 8)."""
        self.check_images(images)
        out = self.forward(images, training=False)
        probabilities = tf.nn.softmax(out["logits"], axis=-1)
        if not self.use_memory:
            return probabilities, None
        weights = resize_bilinear(tf.cast(out["weights"], tf.float32), tf.shape(images)[1:3])
        return probabilities, weights

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.num_classes,)

    def get_config(self):
        config = {"name": self.name, **self.model_options, **self.training_options}
        config["aspp_rates"] = list(config["aspp_rates"])
        config["backbone_weights"] = None  # the weights travel with the model, not the path they came from
        if self.backbone_architecture is not None:
            config["backbone_architecture"] = self.backbone_architecture
        return config

    @classmethod
    def from_config(cls, config):
        """A config saved before an option existed keeps its old meaning (``LEGACY_OPTIONS``)."""
        config = with_legacy_options(dict(config))
        config.pop("trainable", None)
        config.pop("dtype", None)
        return cls(**config)
