"""Where the float32 difference between mirrored and one-device training comes from (docs/DISTRIBUTED.md).

Trains the same model, from the same variables (memory included) on the same global batches, for a few
steps in several ways, and measures after every step how far each run is from a reference run:

- ``reference``: one device, BatchNorm's two-pass moments (``MGML_TF_BATCH_NORM=two_pass``);
- ``mirrored``: a ``MirroredStrategy`` over 2 logical CPU devices (synchronised two-pass BatchNorm; the
  only difference from ``reference`` is the order of the sums that the all-reduces split in two);
- ``fused``: one device on the fused BatchNorm kernel (the CLI's one-device default in float32);
- ``permuted``: ``reference`` fed every batch with its images in reverse order: the same sums in another
  order, no replicas (the floor any change of summation order reaches);
- ``perturbed``: ``reference`` started from weights moved by at most one ulp each (random signs), with no
  other difference. Its distance from ``reference`` is the training dynamics' own amplification of a
  rounding-sized change: if ``mirrored`` grows like it, the all-reduce adds rounding, not a defect;
- ``mirrored_local_bn``: ``mirrored`` with a defect put in on purpose, BatchNorm moments taken per replica
  (``synchronized_bn=False``): the size of difference a real wiring fault makes, for scale.

Reported per step: the largest absolute difference of the softmax probabilities on a fixed probe batch
(the source images of the first step, inference mode), of the trainable weights, of the BatchNorm
statistics and of the memory; after the first step also the variables that differ most, in units of the
float32 spacing at their largest magnitude (ulps). ``--float64`` runs everything in float64 (then
``mirrored`` must equal ``reference`` to ~1e-15).

    python -m tools.float32_divergence --flagfile=configs/demo.cfg --steps=4 --output_json=FILE

The flagfile's model, method and data flags are used as in ``python -m mgml_tf.train``; the synthetic
suite is generated under ``--synthetic_root`` if missing (``--synthetic_num_train`` can be small: only
``--steps`` batches are read). Dropout is switched off (its masks are drawn per replica). Needs its own
process: the logical devices must be set before TensorFlow starts.
"""

import json
import os
import sys

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

RUNS = ("reference", "mirrored", "fused", "permuted", "perturbed", "mirrored_local_bn")


def parse(argv):
    """The run's ``RunConfig`` and the tool's own options from ``argv`` (training flags plus the tool's)."""
    from absl import flags

    from mgml_tf.cli import flags as flags_lib
    from mgml_tf.cli.train import make_flags

    fv = make_flags()
    flags.DEFINE_integer("steps", 4, "Training steps compared.", flag_values=fv)
    flags.DEFINE_boolean("float64", False, "Run every model in float64.", flag_values=fv)
    flags.DEFINE_string("output_json", "", "Write the measurements here as JSON.", flag_values=fv)
    flags.DEFINE_integer("perturb_seed", 0, "Seed of the one-ulp perturbation's signs.", flag_values=fv)
    flags.DEFINE_multi_enum("runs", list(RUNS[1:]), RUNS[1:], "Runs compared with the reference.", flag_values=fv)
    fv(argv)
    if not fv["model_dir"].present:
        fv.model_dir = "/tmp/unused_float32_divergence"  # required by the training flags; nothing is written
    config = flags_lib.config_from_flags(fv).replace(dropout=0.0)
    return config, fv


def one_ulp_noise(value, rng):
    """``value`` with each entry moved by -1, 0 or +1 units of float32 spacing at its magnitude."""
    spacing = np.spacing(np.abs(value).astype(np.float32)).astype(value.dtype)
    return value + rng.integers(-1, 2, size=value.shape).astype(value.dtype) * spacing


def variable_groups(model):
    """``[(path, group)]`` in ``model.variables`` order; group ``trainable``, ``memory`` or ``statistics``
    (BatchNorm moving moments). Every run builds the same model, so its variables come in this order."""
    memory = model.memory if model.use_memory else None
    return [
        (v.path, "memory" if v is memory else "trainable" if v.trainable else "statistics") for v in model.variables
    ]


def snapshot(model, strategy=None):
    """``(values, spread)``: every model variable's value (a mirrored variable: its first replica's) and the
    largest difference between the replicas of any mirrored variable."""
    values, spread = [], 0.0
    for v in model.variables:
        if strategy is None:
            values.append(v.numpy())
            continue
        local = [np.asarray(x) for x in strategy.experimental_local_results(v.value)]
        values.append(local[0])
        for x in local[1:]:
            spread = max(spread, float(np.max(np.abs(x - local[0]))) if x.size else 0.0)
    return values, spread


def compare(values, reference, groups):
    """The largest absolute difference per group, and per variable in float32 ulps at its largest magnitude."""
    by_group, ulps = dict.fromkeys(sorted({g for _, g in groups}), 0.0), {}
    for (path, group), a, b in zip(groups, values, reference):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if not a.size:
            continue
        diff = float(np.max(np.abs(a - b)))
        by_group[group] = max(by_group[group], diff)
        ulps[path] = diff / float(np.spacing(np.float32(np.max(np.abs(b)) or 1.0)))
    return by_group, ulps


def main(argv):
    config, fv = parse(argv)
    from mgml_tf import distribution

    distribution.configure_devices(2)
    import keras
    import tensorflow as tf

    import mgml_tf
    from mgml_tf import layers
    from mgml_tf.data import aggregated_batches
    from mgml_tf.data.augment import GEOMETRY_ONLY
    from mgml_tf.training import data as data_lib
    from mgml_tf.training.loop import _input_pipeline

    if fv.float64:
        keras.config.set_floatx("float64")
        keras.config.set_dtype_policy("float64")
    tf.config.experimental.enable_op_determinism()
    sources = data_lib.load(data_lib.expand(config.training.sources, "source", config.synthetic), "train", "sources")
    # The global batches of a 2-replica run, [replica, domain, image]; every run reads these same tensors.
    stream = _input_pipeline(config, sources, 0, num_replicas=2).take(fv.steps)
    dtype = keras.config.floatx()
    batches = [tf.nest.map_structure(lambda x: tf.cast(x, dtype) if x.dtype.is_floating else x, b) for b in stream]
    probe = tf.concat([x for x in tf.nest.flatten(batches[0]) if x.dtype.is_floating], axis=0)

    def dynamic_batches():
        """``batches`` as a dataset whose batch sizes are unknown (as the training stream's)."""
        spec = tf.nest.map_structure(lambda x: tf.TensorSpec([None, *x.shape[1:]], x.dtype), batches[0])
        return tf.data.Dataset.from_generator(lambda: iter(batches), output_signature=spec)

    options = config.model_options()
    mirrored_strategy = tf.distribute.MirroredStrategy(["CPU:0", "CPU:1"])

    def build(strategy=None, synchronized_bn=True):
        keras.utils.set_random_seed(int(config.method.seed))
        if strategy is None:
            return mgml_tf.build_model(**options)
        with strategy.scope():
            return mgml_tf.build_model(**{**options, "synchronized_bn": synchronized_bn})

    first = build()
    if first.use_memory and config.training.memory_init_batches:
        memory_batches = aggregated_batches(
            sources,
            config.training.batch_per_domain,
            config.training.crop,
            seed=config.method.seed,
            deterministic=True,
            augment_config=GEOMETRY_ONLY,
        )
        first.initialize_memory(memory_batches, max_batches=config.training.memory_init_batches)
    initial = [v.numpy() for v in first.variables]
    groups = variable_groups(first)
    rng = np.random.default_rng(fv.perturb_seed)

    def train(name):
        """Per-step snapshots and probe probabilities of run ``name``."""
        strategy = mirrored_strategy if name.startswith("mirrored") else None
        layers.set_batch_norm_mode("auto" if name == "fused" else "two_pass")
        model = first if name == "reference" else build(strategy, synchronized_bn=name != "mirrored_local_bn")
        for v, value in zip(model.variables, initial):
            v.assign(one_ulp_noise(value, rng) if name == "perturbed" and v.trainable else value)
        if strategy is None:
            step = tf.function(model.train_step)
        else:
            # As the CLI traces it: once, with the distributed dataset's signature (batch sizes unknown).
            signature = strategy.experimental_distribute_dataset(dynamic_batches()).element_spec

            @tf.function(input_signature=[signature])
            def step(batch):
                return strategy.run(model.train_step, args=(batch,))

        states, probabilities = [], []
        if strategy is not None:
            batches_in = iter(strategy.experimental_distribute_dataset(dynamic_batches()))
        for batch in batches:
            if name == "permuted":
                batch = tf.nest.map_structure(lambda x: tf.reverse(x, [0]), batch)
            if strategy is not None:
                batch = next(batches_in)
            step(batch)
            states.append(snapshot(model, strategy))
            probabilities.append(model.predict_with_weights(probe)[0].numpy())
        layers.set_batch_norm_mode(None)
        return states, probabilities

    compared = [name for name in RUNS[1:] if name in fv.runs]
    runs = {name: train(name) for name in ["reference", *compared]}
    ref_states, ref_probs = runs["reference"]
    report = {
        "config": {
            "command": " ".join(argv[1:]),
            "steps": fv.steps,
            "dtype": dtype,
            "learning_rate": config.optimizer.learning_rate,
            "lr_schedule": config.optimizer.lr_schedule,
            "meta_order": options.get("meta_order"),
            "crop": list(config.training.crop),
            "batch_per_domain": config.training.batch_per_domain,
            "sources": len(sources),
        },
        "runs": {},
    }
    for name in compared:
        states, probs = runs[name]
        rows = []
        for s, ((values, spread), (ref, _)) in enumerate(zip(states, ref_states)):
            by_group, ulps = compare(values, ref, groups)
            row = {
                "step": s + 1,
                "probabilities": float(np.max(np.abs(probs[s] - ref_probs[s]))),
                **by_group,
                "replicas_disagree": spread,
            }
            if s == 0:
                top = sorted(ulps.items(), key=lambda kv: -kv[1])[:5]
                row["largest_in_ulps"] = {k: round(v, 1) for k, v in top}
            rows.append(row)
        report["runs"][name] = rows
    moved = max(
        float(np.max(np.abs(np.asarray(a, np.float64) - x))) for a, x in zip(ref_states[0][0], initial) if x.size
    )
    report["first_step_moves_weights_by"] = moved
    text = json.dumps(report, indent=1)
    print(text)
    if fv.output_json:
        with open(fv.output_json, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
