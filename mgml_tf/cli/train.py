"""``python -m mgml_tf.train --flagfile=configs/NAME.cfg [--model_dir=DIR] [--flag=value ...]``

Trains a ``MemorySegmenter`` with Algorithm 1 (or the baseline / MLDG rows) on the source domains,
checkpointing into ``--model_dir`` and resuming from its newest checkpoint; evaluates on the targets every
``--eval_every`` steps and at the end. ``--preset=DIR`` fine-tunes a preset (``python -m mgml_tf.preset``) in a new
``--model_dir``. ``--help`` lists every flag; docs/CLI.md describes them.
"""

from mgml_tf.cli import common
from mgml_tf.cli import preset as preset_cli
from mgml_tf.errors import UsageError

PROG = "mgml_tf.train"


def make_flags():
    from absl import flags

    from mgml_tf.cli import flags as flags_lib

    fv = flags.FlagValues()
    flags_lib.define_model_flags(fv)
    flags_lib.define_train_flags(fv)
    flags_lib.define_distribution_flags(fv)
    preset_cli.define_preset_flag(
        fv,
        "a fresh initialisation: fine-tuning starts from its weights and memory, and its network, method and "
        "optimiser options are the defaults",
    )
    return fv


def main(argv):
    common.quiet_import(initialize=False)  # devices stay unconfigured until --num_devices is known
    from mgml_tf import distribution
    from mgml_tf.cli import flags as flags_lib
    from mgml_tf.training import data as data_lib

    fv = make_flags()
    common.parse_flags(fv, argv, PROG)
    preset = None
    if fv.preset:  # checked, and its network, method and optimiser options taken, before any other check
        from mgml_tf.training import preset as preset_lib

        preset = preset_lib.open_preset(fv.preset)
        preset_cli.take_preset_options(fv, preset)
    config = flags_lib.validate_train_flags(fv, check_backbone=preset is None)
    with common.quiet_stderr():  # counting GPUs probes CUDA, which logs an error line on CPU machines
        flags_lib.validate_distribution_flags(fv)
    data_lib.check_specs(fv.sources, "sources")
    data_lib.check_specs(fv.targets, "targets")
    if fv.distribution_strategy == "mirrored":
        try:
            with common.quiet_stderr():
                distribution.configure_devices(fv.num_devices)
        except ValueError as e:
            raise UsageError(str(e)) from None
    from mgml_tf.training import loop

    def log(message):
        print(message, flush=True)

    # Before the runtime starts: MultiWorkerMirroredStrategy configures collective ops at start-up.
    with common.quiet_stderr():
        strategy = loop.create_strategy(config, log)
    common.quiet_initialize()
    given = {name for name in fv if fv[name].present}
    loop.run_training(config, log=log, strategy=strategy, given=given, preset=preset)
    return 0
