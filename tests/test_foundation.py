"""keras-hub foundation backbones (mgml_tf.models.foundation): tiny random DINOv2/DINOv3 saved as local
presets and loaded by ``backbone=PATH``; features against keras-hub's own backbone; any input size; what each
tuning mode trains; the second-order meta step through a ViT with LoRA or the token adapter against float64
finite differences; rebuilding without the preset; one-line errors."""

import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

import mgml_tf
from mgml_tf.models import foundation
from tests.helpers import NUM_CLASSES, episode, tiny_vit_preset
from tests.test_meta_learning import directional_check

HEADS = dict(num_classes=NUM_CLASSES, feature_channels=8, decoder_channels=8, low_level_channels=4, dropout=0.0)
HEADS["aspp_rates"] = (1, 2, 3)
FAMILIES = [("dinov2", 0), ("dinov2", 2), ("dinov3", 4)]
IDS = ["dinov2", "dinov2_registers", "dinov3"]


@pytest.fixture(scope="module")
def presets(tmp_path_factory):
    root = tmp_path_factory.mktemp("presets")
    return {
        (family, registers): tiny_vit_preset(root / f"{family}_{registers}", family, registers)
        for family, registers in FAMILIES
    }


def float64():
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")


def normalised(images):
    x = (images / 255.0 - np.array(foundation.IMAGENET_MEAN)) / np.array(foundation.IMAGENET_STD)
    return x.astype(images.dtype)


@pytest.mark.parametrize("family", FAMILIES, ids=IDS)
def test_features_equal_keras_hub_backbone_at_its_image_shape(presets, family):
    """At the preset's image_shape the layer-by-layer run equals keras-hub's functional backbone (float64):
    the neck's grids are its pyramid outputs without the prefix tokens, the last one after its LayerNorm."""
    float64()
    backbone = foundation.build_foundation_backbone(presets[family], dtype="float64")
    hub, prefix = backbone.hub, backbone.num_prefix_tokens
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3))
    reference = keras.Model(hub.inputs, hub.pyramid_outputs)(normalised(images))
    got = backbone(images)
    low, aux, high = backbone.feature_layers
    assert (low, aux, high) == (1, 3, 4)

    def grid(tokens):
        return np.asarray(tokens)[:, prefix:].reshape(2, 4, 4, 16)

    np.testing.assert_allclose(got["high_level"], grid(hub.layernorm(reference[f"stage{high}"])), atol=1e-10)
    np.testing.assert_allclose(got["aux"], grid(reference[f"stage{aux}"]), atol=1e-10)
    expected_low = tf.image.resize(grid(reference[f"stage{low}"]), (16, 16), "bilinear").numpy()
    np.testing.assert_allclose(got["low_level"], expected_low, atol=1e-6)  # tf.image.resize: float32


@pytest.mark.parametrize("family", FAMILIES, ids=IDS)
@pytest.mark.parametrize("size", [(32, 32), (40, 72), (72, 40), (24, 56)])
@pytest.mark.parametrize("output_stride", [16, 8])
def test_feature_shapes_at_any_input_size(presets, family, size, output_stride):
    backbone = foundation.build_foundation_backbone(presets[family], output_stride=output_stride)
    out = backbone(np.zeros((1, *size, 3), np.float32))
    h, w = size[0] // 8, size[1] // 8
    up = 16 // output_stride
    assert out["high_level"].shape == (1, h * up, w * up, 16)
    assert out["aux"].shape == (1, h * up, w * up, 16)
    assert out["low_level"].shape == (1, 4 * h, 4 * w, 16)
    assert np.all(np.isfinite(out["high_level"]))


def test_model_on_a_local_preset_predicts_any_size(presets):
    model = mgml_tf.build_model(backbone=presets[("dinov2", 2)], **HEADS)
    fresh = foundation.load_preset(presets[("dinov2", 2)])
    for a, b in zip(model.backbone.hub.weights, fresh.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for size in [(32, 32), (48, 80), (80, 48)]:
        assert model(np.zeros((1, *size, 3), np.float32)).shape == (1, *size, NUM_CLASSES)


# What each tuning mode trains in the backbone (keras-hub's enable_lora leaves the query and value biases
# trainable beside the low-rank factors).
TRAINED = {
    "frozen": set(),
    "lora": {
        "query/bias",
        "query/lora_kernel_a",
        "query/lora_kernel_b",
        "value/bias",
        "value/lora_kernel_a",
        "value/lora_kernel_b",
    },
    "adapter": {
        "adapter/token_a",
        "adapter/token_b",
        "adapter/token_kernel",
        "adapter/token_bias",
        "adapter/feature_kernel",
        "adapter/feature_bias",
    },
}


def _suffix(variable):
    parts = variable.path.split("/")
    return "/".join(parts[-2:])


@pytest.mark.parametrize("tuning", ["frozen", "lora", "adapter", "full"])
def test_each_tuning_trains_exactly_its_variables(presets, tuning):
    keras.utils.set_random_seed(0)
    model = mgml_tf.build_model(
        backbone=presets[("dinov2", 2)],
        backbone_tuning=tuning,
        adapter_tokens=4,
        adapter_rank=2,
        lora_rank=2,
        learning_rate=0.05,
        **HEADS,
    )
    backbone = model.backbone
    trainable = {id(v) for v in backbone.trainable_variables}
    if tuning == "full":
        # everything of keras-hub's own that is trainable; the stored position embeddings never are
        assert trainable == {id(v) for v in backbone.hub.trainable_variables}
        assert len(trainable) == len(backbone.hub.weights) - 1
    else:
        names = {_suffix(v) for v in backbone.trainable_variables}
        assert names == TRAINED[tuning]
    assert all(id(v) in {id(w) for w in model.trainable_variables} for v in backbone.trainable_variables)
    before = {v.path: v.numpy().copy() for v in backbone.weights}
    rng = np.random.default_rng(0)
    for _ in range(2):
        model.train_step(episode(rng))
    for v in backbone.weights:
        if id(v) in trainable:
            continue
        np.testing.assert_array_equal(v.numpy(), before[v.path], err_msg=v.path)
    changed = [v.path for v in backbone.trainable_variables if not np.array_equal(v.numpy(), before[v.path])]
    if tuning != "frozen":
        assert len(changed) >= len(trainable) - 2, changed  # a mask token has no gradient (full)


@pytest.mark.parametrize(
    "tuning, family", [("lora", ("dinov2", 2)), ("adapter", ("dinov2", 0)), ("full", ("dinov3", 4))]
)
def test_second_order_meta_step_matches_finite_differences(presets, tuning, family):
    """dJ/dtheta of the whole mgml step (inner step, M', outer read) through a tiny ViT, float64, against
    central differences; LoRA's B and the adapter's output kernel start at zero, so they are set at random
    first (else the directions through them are trivially flat)."""
    float64()
    keras.utils.set_random_seed(0)
    model = mgml_tf.build_model(
        backbone=presets[family],
        backbone_tuning=tuning,
        adapter_tokens=4,
        adapter_rank=2,
        lora_rank=2,
        method="mgml",
        meta_order=2,
        memory_prime_freeze="none",
        **HEADS,
    )
    rng = np.random.default_rng(1)
    for v in model.backbone.trainable_variables:
        if not np.any(v.numpy()):
            v.assign(rng.normal(scale=0.1, size=v.shape))
    model.memory.assign(tf.math.l2_normalize(rng.normal(size=model.memory.shape), axis=-1))
    tr, te = episode(np.random.default_rng(0), dtype=np.float64)
    for seed in (0, 1):
        analytic, numeric = directional_check(model, tr, te, seed=seed)
        assert abs(analytic - numeric) / abs(numeric) < 1e-5, (analytic, numeric)


def test_rebuilt_from_its_config_without_the_preset(presets, tmp_path):
    """get_config carries the backbone's architecture: a .keras file loads with the preset gone."""
    preset = shutil.copytree(presets[("dinov3", 4)], tmp_path / "preset")
    model = mgml_tf.build_model(backbone=str(preset), backbone_tuning="lora", lora_rank=2, **HEADS)
    images = np.random.default_rng(0).uniform(0, 255, (1, 40, 56, 3)).astype(np.float32)
    expected = model(images).numpy()
    path = str(tmp_path / "model.keras")
    model.save(path)
    shutil.rmtree(preset)
    loaded = keras.saving.load_model(path)
    assert loaded.backbone.tuning == "lora"
    np.testing.assert_allclose(loaded(images).numpy(), expected, atol=1e-6)


def test_bad_backbones_are_one_line(presets, tmp_path, monkeypatch):
    def refused(match, **options):
        with pytest.raises(ValueError, match=match) as info:
            mgml_tf.build_model(**{**HEADS, **options})
        assert "\n" not in str(info.value)
        return str(info.value)

    refused("directory .*missing not found", backbone=str(tmp_path / "missing"))
    os.makedirs(tmp_path / "empty")
    refused("not a keras-hub preset directory", backbone=str(tmp_path / "empty"))
    refused("unknown backbone 'no_such_preset_xyz'; choose one of", backbone="no_such_preset_xyz")
    refused("resnet backbone, not supported", backbone="resnet_50_imagenet")
    refused("carries its own weights", backbone=presets[("dinov2", 0)], backbone_weights="imagenet")
    refused("needs a keras-hub backbone", backbone="resnet_small", backbone_tuning="lora")
    refused("output_stride is its patch grid", backbone=presets[("dinov2", 0)], output_stride=32)
    from keras_hub.models import ViTBackbone

    ViTBackbone(
        image_shape=(32, 32, 3), patch_size=8, num_layers=1, num_heads=2, hidden_dim=8, mlp_dim=8
    ).save_to_preset(str(tmp_path / "vit"))
    refused("is ViTBackbone, not supported", backbone=str(tmp_path / "vit"))


def test_preset_name_without_network_is_one_line(monkeypatch, tmp_path):
    """A real preset name on a machine without network (no proxy answers): one line, no traceback."""
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ValueError, match="cannot load keras-hub preset 'dinov2_small'.*needs the network") as info:
        mgml_tf.build_model(backbone="dinov2_small", **HEADS)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["gs_dinov2_mgml", "g_dinov2_mgml", "dinov2_tiny"])
def test_foundation_configs_parse_to_their_settings(name, monkeypatch):
    """The flagfiles resolve (nested, relative to the repository root) to a checked configuration with the
    foundation papers' crops and test resize; the real ones name a preset keras-hub knows (not downloaded)."""
    from mgml_tf.cli import common
    from mgml_tf.cli import flags as flags_lib
    from mgml_tf.cli.train import make_flags
    from tests.cli_helpers import REPO

    monkeypatch.chdir(REPO)
    fv = make_flags()
    common.parse_flags(fv, ["prog", f"--flagfile=configs/{name}.cfg"], "test")
    config = flags_lib.config_from_flags(fv)
    assert config.model.backbone_tuning == "adapter" and config.method.meta_order in (None, 2)
    if name != "dinov2_tiny":
        foundation.check_backbone_spec(config.model.backbone)
        assert config.training.crop_size == (512,) and config.evaluation.eval_resize == (512, 1024)
        assert config.evaluation.sliding_window and config.method.meta_order is None


@pytest.mark.slow  # six traced steps of a ViT model
@pytest.mark.parametrize(
    "method, order", [("baseline", 2), ("memory_agg", 2), ("mldg", 1), ("mgml", 0), ("mgml", 1), ("mgml", 2)]
)
def test_every_method_and_meta_order_trains_a_vit(presets, method, order):
    keras.utils.set_random_seed(0)
    model = mgml_tf.build_model(
        backbone=presets[("dinov2", 2)],
        backbone_tuning="lora",
        lora_rank=2,
        method=method,
        meta_order=order,
        learning_rate=0.05,
        **HEADS,
    )
    before = [v.numpy().copy() for v in model.trainable_variables]
    step = tf.function(model.train_step)
    rng = np.random.default_rng(0)
    for _ in range(2):
        logs = step(episode(rng))
    assert all(np.isfinite(float(v)) for v in logs.values()), logs
    moved = [not np.array_equal(v.numpy(), b) for v, b in zip(model.trainable_variables, before)]
    assert sum(moved) >= len(moved) - 1  # every part trains (LoRA's query/value factors included)


@pytest.mark.slow  # mixed-precision steps traced on CPU
@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_vit_steps_are_finite(presets, policy):
    keras.config.set_dtype_policy(policy)
    model = mgml_tf.build_model(
        backbone=presets[("dinov3", 4)],
        backbone_tuning="adapter",
        adapter_tokens=4,
        adapter_rank=2,
        meta_order=2,
        **HEADS,
    )
    step = tf.function(model.train_step)
    rng = np.random.default_rng(0)
    for _ in range(3):
        logs = step(episode(rng))
    assert float(logs["nonfinite_steps"]) < 3 and np.isfinite(float(logs["loss"]))
    assert model.memory.dtype == "float32" and model(episode(rng)[0][0]).dtype == tf.float32


def test_fit_and_default_meta_order_on_a_vit(presets, monkeypatch):
    """``fit`` runs the method on a ViT; ``meta_order`` left unset is 2 for a small backbone, 1 above
    ``SECOND_ORDER_MAX_PARAMS`` (lowered here to the tiny ViT's size)."""
    from tests.helpers import episode_dataset

    model = mgml_tf.build_model(backbone=presets[("dinov2", 0)], backbone_tuning="frozen", **HEADS)
    assert model.training_options.meta_order == 2
    history = model.fit(episode_dataset(0, 3), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    monkeypatch.setattr(foundation, "SECOND_ORDER_MAX_PARAMS", 1000)
    big = mgml_tf.build_model(backbone=presets[("dinov2", 0)], **HEADS)
    assert big.training_options.meta_order == 1
    assert mgml_tf.build_model(backbone=presets[("dinov2", 0)], meta_order=2, **HEADS).training_options.meta_order == 2
