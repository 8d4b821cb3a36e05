"""Timing worker for mgml_tf (run with a Python that has mgml_tf and TensorFlow installed).

    python -m tools.refcmp.worker_tf --configs=mgml1,mgml2,baseline [--size=256] [--batch_per_domain=2] [--threads=2]
                        [--warmup=2] [--infer=512x1024] [--dropout=0.1]

Configurations: ``mgml_tf.build_model(backbone="resnet50", head="deeplabv3plus", num_classes=19, ...)``
  mgml1 / mgml2   method="mgml", meta_order=1 / 2 (Algorithm 1, project defaults otherwise)
  baseline        method="baseline"
  mldg1 / mldg2   method="mldg", meta_order=1 / 2
  memory_agg      method="memory_agg"
each stepped as tools.benchmark_train_step does it: ``tf.function(model.train_step, reduce_retracing=True)``
on ((meta-train images, labels), (meta-test images, labels)) = (domain 0, domain 1), first call untimed,
``float(logs["loss"])`` to wait for the step. ``infer_memory`` / ``infer_baseline``: the evaluate CLI's
``mgml_tf.training.inference.Predictor(model).probabilities`` (softmax of model(images, training=False))
of one image of size --infer.
Any configuration name with the suffix ``_fallback`` (e.g. ``baseline_fallback``) is built and traced with the
fallback kernels (dilated convolutions through space-to-batch, BatchNorm with two-pass moments: what mgml_tf
ran before its fast kernels), ``_s2b`` with the dilation fallback only, ``_twopass`` with the BatchNorm
fallback only, so one run times the kernel choices side by side.
Threads: TF_NUM_INTRAOP_THREADS / TF_NUM_INTEROP_THREADS are set from --threads before TensorFlow loads.
Started by ``tools.refcmp.timing``; ``build_steps`` builds the configurations, ``main`` serves them
(``worker_common``).
"""

import argparse
import os


def build_steps(names, size=256, batch_per_domain=2, infer="512x1024", dropout=0.1):
    """``(steps, info)``: name -> a zero-argument callable running one step of that configuration, and what
    the driver is told about this worker (versions, threads)."""
    import keras
    import numpy as np
    import tensorflow as tf

    import mgml_tf
    from tools.refcmp import data

    images, labels = data.episode(size, batch_per_domain)
    episode = tuple((tf.constant(images[d]), tf.constant(labels[d])) for d in range(2))
    options = dict(backbone="resnet50", head="deeplabv3plus", num_classes=19, dropout=dropout)
    kinds = {
        "mgml1": dict(method="mgml", meta_order=1),
        "mgml2": dict(method="mgml", meta_order=2),
        "baseline": dict(method="baseline"),
        "mldg1": dict(method="mldg", meta_order=1),
        "mldg2": dict(method="mldg", meta_order=2),
        "memory_agg": dict(method="memory_agg"),
    }
    steps = {}
    info = {
        "tf": tf.__version__,
        "keras": keras.__version__,
        "intra": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter": tf.config.threading.get_inter_op_parallelism_threads(),
    }
    rng = np.random.default_rng(0)

    def unit_rows(model):
        m = rng.uniform(size=model.memory.shape).astype(np.float32)
        model.memory.assign(m / np.linalg.norm(m, axis=1, keepdims=True))

    from mgml_tf.layers import convolution, normalization

    for full_name in names:
        suffix = next((x for x in ("_fallback", "_twopass", "_s2b") if full_name.endswith(x)), "")
        name = full_name[: len(full_name) - len(suffix)]
        convolution.set_dilated_convolution_mode("space_to_batch" if suffix in ("_fallback", "_s2b") else None)
        normalization.set_batch_norm_mode("two_pass" if suffix in ("_fallback", "_twopass") else None)
        if name in kinds:
            keras.utils.set_random_seed(0)
            model = mgml_tf.build_model(**options, **kinds[name])
            if model.use_memory:
                unit_rows(model)
            step = tf.function(model.train_step, reduce_retracing=True)
            step(episode)  # trace + first run, untimed

            def run(step=step):
                logs = step(episode)
                float(logs["loss"])

            steps[full_name] = run
        elif name.startswith("infer_"):
            from mgml_tf.evaluation import Predictor

            keras.utils.set_random_seed(0)
            model = mgml_tf.build_model(
                **options, method="mgml" if name == "infer_memory" else "baseline", compile=False
            )
            if model.use_memory:
                unit_rows(model)
            predictor = Predictor(model)
            h, w = (int(v) for v in infer.split("x"))
            img = data.image(h, w)
            predictor.probabilities(img)

            def run(predictor=predictor, img=img):
                predictor.probabilities(img)

            steps[full_name] = run
        elif name in ("aspp", "decoder"):
            # diagnostic: forward + backward of one head block alone (training=True)
            from mgml_tf import losses
            from mgml_tf.ops import resize_bilinear

            keras.utils.set_random_seed(0)
            model = mgml_tf.build_model(**options, method="baseline", compile=False)
            nb, s16, s4 = 2 * batch_per_domain, size // 16, size // 4
            r = np.random.default_rng(0)
            if name == "aspp":
                block = model.encoder_head
                args_ = (tf.constant(np.maximum(r.normal(size=(nb, s16, s16, 2048)), 0).astype(np.float32)),)

                def fwd(x, block=block):
                    return tf.reduce_mean(block(x, training=True))
            else:
                block = model.decoder
                lab = tf.constant(labels.reshape(-1, size, size))
                args_ = (
                    tf.constant(np.maximum(r.normal(size=(nb, s16, s16, 256)), 0).astype(np.float32)),
                    tf.constant(np.maximum(r.normal(size=(nb, s4, s4, 256)), 0).astype(np.float32)),
                )

                def fwd(feat, low, block=block, lab=lab):
                    logits = resize_bilinear(block(feat, low, training=True), (size, size))
                    return losses.segmentation_loss(lab, logits)

            @tf.function
            def fb(*xs, fwd=fwd, block=block):
                with tf.GradientTape() as tape:
                    loss = fwd(*xs)
                grads = tape.gradient(loss, block.trainable_variables)
                return loss, tf.add_n([tf.reduce_sum(g) for g in grads])

            fb(*args_)

            def run(fb=fb, args_=args_):
                float(fb(*args_)[1])

            steps[full_name] = run
        elif name in ("backbone", "backbone_keras"):
            # diagnostic: forward + backward of the backbone alone (training=True), 2 x batch_per_domain images
            keras.utils.set_random_seed(0)
            if name == "backbone":  # mgml_tf's ResNet-50 (MetaBatchNormalization), OS16
                from mgml_tf.models import backbones

                net = backbones.build_backbone("resnet50", output_stride=16)
                out_key = "high_level"
            else:  # stock keras.applications.ResNet50 (keras BatchNormalization), OS32
                net = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(size, size, 3))
                out_key = None
            x = tf.constant(images.reshape(-1, *images.shape[2:]))

            @tf.function
            def fb(x, net=net, out_key=out_key):
                with tf.GradientTape() as tape:
                    y = net(x, training=True)
                    y = y[out_key] if out_key else y
                    loss = tf.reduce_mean(y)
                grads = tape.gradient(loss, net.trainable_variables)
                return loss, tf.add_n([tf.reduce_sum(g) for g in grads])

            fb(x)

            def run(fb=fb, x=x):
                loss, g = fb(x)
                float(g)

            steps[full_name] = run
        else:
            raise SystemExit(f"unknown config {name}")
    convolution.set_dilated_convolution_mode(None)
    normalization.set_batch_norm_mode(None)
    return steps, info


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default="mgml1,mgml2,baseline")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch_per_domain", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--infer", default="512x1024")
    p.add_argument("--dropout", type=float, default=0.1)
    a = p.parse_args(argv)
    os.environ["TF_NUM_INTRAOP_THREADS"] = str(a.threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = str(a.threads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    from tools.refcmp import worker_common

    tf.config.threading.set_intra_op_parallelism_threads(a.threads)
    tf.config.threading.set_inter_op_parallelism_threads(a.threads)
    steps, info = build_steps(a.configs.split(","), a.size, a.batch_per_domain, a.infer, a.dropout)
    for name in steps:
        for _ in range(a.warmup):
            steps[name]()
    worker_common.serve(steps, info)


if __name__ == "__main__":
    main()
