"""The typed configuration: flags generated from its fields, every value checked once, model directories."""

import dataclasses
import json

import pytest
from absl import flags

from mgml_tf import config as config_lib
from mgml_tf.cli import flags as flags_lib
from mgml_tf.errors import RunError, UsageError
from mgml_tf.training import model_dir as md


def _train_flags(*args):
    from mgml_tf.cli import train

    fv = train.make_flags()
    fv(["prog", *args])
    return fv


def test_every_field_is_a_flag_of_the_train_command_and_nothing_else_is():
    fv = _train_flags()
    fields = {n for section in config_lib.SECTIONS.values() for n in section.names()}
    absl_own = {"flagfile", "undefok", "help", "helpfull", "helpshort", "helpxml"}
    command_own = {"preset"}  # where the first weights come from, not an option of the run it starts
    assert {n for n in fv} - absl_own - command_own == fields
    assert not command_own & fields
    for section in config_lib.SECTIONS.values():
        for field in dataclasses.fields(section):
            assert fv[field.name].help.endswith(field.metadata["help"]), field.name  # enums: "<a|b>: help"


def test_flags_without_values_give_the_default_configuration():
    fv = _train_flags("--model_dir=/tmp/x", "--sources=synthetic")
    got = flags_lib.config_from_flags(fv)
    want = config_lib.RunConfig().replace(model_dir="/tmp/x", sources="synthetic")
    assert got == want


def test_flags_set_the_fields_of_their_sections():
    fv = _train_flags("--meta_order=1", "--crop_size=96,128", "--window_size=64", "--backbone_weights=", "--flip")
    config = flags_lib.config_from_flags(fv)
    assert config.method.meta_order == 1 and config.training.crop == (96, 128)
    assert config.evaluation.window == (64, 64) and config.evaluation.flip
    assert config.model.backbone_weights is None


def test_round_trips():
    config = config_lib.RunConfig().replace(meta_order=1, crop_size=(96,), memory_score_scale="learned")
    assert config_lib.RunConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    options = config.model_options()
    assert config_lib.RunConfig.from_flat(options).model_options() == options


@pytest.mark.parametrize(
    "changes, python, command_line",
    [
        (dict(memory_momentum=1.0), "memory_momentum must be in [0, 1), got 1.0", "--memory_momentum must be in"),
        (dict(meta_order=3), "unknown meta_order 3; choose one of [0, 1, 2]", "--meta_order=3 is unknown"),
        (dict(crop_size=(16,)), "crop_size must be at least 32 pixels, got 16", "--crop_size must be at least 32"),
        (dict(batch_per_domain=0), "batch_per_domain must be a positive integer, got 0", "--batch_per_domain must"),
        (dict(synthetic_family="forest"), "unknown synthetic_family", "--synthetic_family='forest' is unknown"),
        (dict(ignore_index=3), "ignore_index must be in [num_classes, 255], got 3", "--ignore_index must be in"),
        (dict(method="mgml", use_memory=False), "method 'mgml' needs the memory", "drop --nouse_memory"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_option(changes, python, command_line):
    with pytest.raises(config_lib.ConfigError) as e:
        config_lib.RunConfig().replace(**changes)
    assert python in str(e.value) and "\n" not in str(e.value)
    assert command_line in e.value.for_command_line()


def test_the_model_checks_its_options_with_the_same_messages():
    import mgml_tf

    with pytest.raises(ValueError, match=r"memory_momentum must be in \[0, 1\), got 1.5"):
        mgml_tf.build_model(backbone="resnet_small", memory_momentum=1.5, compile=False)
    with pytest.raises(ValueError, match=r"learning_rate must be a positive number, got -1"):
        mgml_tf.build_model(backbone="resnet_small", learning_rate=-1.0)


def test_command_line_refuses_with_the_flag_name():
    fv = _train_flags("--model_dir=/tmp/x", "--sources=synthetic", "--dropout=1.5")
    with pytest.raises(UsageError, match=r"^--dropout must be in \[0, 1\), got 1.5$"):
        flags_lib.validate_train_flags(fv)


# ------------------------------------------------------------------------------------------ model dirs
SMALL = dict(backbone="resnet_small", num_classes=4, feature_channels=8, decoder_channels=8, low_level_channels=4)


def _write(model_dir, saved):
    model_dir.mkdir()
    (model_dir / md.CONFIG_JSON).write_text(json.dumps(saved))


def test_a_model_dir_of_the_previous_version_loads_as_the_same_model(tmp_path):
    """flags.json written before the typed configuration holds the flat "options" only: the model rebuilt
    from it equals the one rebuilt from a directory of this version (options and sections)."""
    config = config_lib.RunConfig().replace(**SMALL, meta_order=1, memory_score_scale="learned")
    options = md.json_options(config.model_options())
    _write(tmp_path / "old", {"options": options, "flags": {}})
    _write(tmp_path / "new", {"config": config.to_dict(), "options": options, "flags": {}})
    old, _, _ = md.build_from_dir(str(tmp_path / "old"), restore=False)
    new, _, _ = md.build_from_dir(str(tmp_path / "new"), restore=False)
    assert old.get_config() == new.get_config()
    assert new.training_options.meta_order == 1 and new.model_options.memory_score_scale == "learned"


@pytest.mark.parametrize("where", ["config", "options", "both"])
def test_an_unreadable_or_inconsistent_configuration_is_refused_in_one_line(tmp_path, where):
    config = config_lib.RunConfig().replace(**SMALL)
    sections, options = config.to_dict(), md.json_options(config.model_options())
    if where in ("config", "both"):
        sections["model"]["backbone"] = "resnet9000"
    if where in ("options", "both"):
        options["backbone"] = "resnet9000"
    _write(tmp_path / "bad", {"config": sections, "options": options, "flags": {}})
    with pytest.raises(RunError) as e:
        md.build_from_dir(str(tmp_path / "bad"), restore=False)
    message = str(e.value)
    assert "\n" not in message and md.CONFIG_JSON in message and "resnet9000" in message
    assert "--flagfile" in message  # says how to convert


def test_flags_of_a_section_are_generated_with_the_section():
    fv = flags.FlagValues()
    flags_lib.define_section_flags(fv, config_lib.OptimizerConfig)
    fv(["prog"])
    assert {n for n in fv if n in config_lib.OptimizerConfig.names()} == set(config_lib.OptimizerConfig.names())
    assert flags_lib.section_from_flags(fv, config_lib.OptimizerConfig) == config_lib.OptimizerConfig()
