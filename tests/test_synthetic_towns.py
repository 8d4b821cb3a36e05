"""The second synthetic family ("towns"): scenes, styles, written layouts, held-out source images, CLI flags."""

import ast
import glob
import json
import os
from types import SimpleNamespace

import numpy as np
import pytest

from mgml_tf.synthetic import towns

H, W = 64, 128  # small images keep the tests fast
STYLES = list(towns.SOURCE_STYLES) + list(towns.TARGET_STYLES)


def _expected_label(style, seed, index, held_out=False):
    return towns.generate_scene(style, H, W, towns.image_rng(style, seed, index, held_out))[1]


def _files(root):
    out = {}
    for p in sorted(glob.glob(str(root / "**" / "*.*"), recursive=True)):
        with open(p, "rb") as f:
            out[os.path.relpath(p, root)] = f.read()
    return out


# ----------------------------------------------------------------------------------------------- scenes
@pytest.mark.parametrize("style", STYLES)
def test_generate_scene_types_and_values(style):
    image, label = towns.generate_scene(style, H, W, rng=3)
    assert image.shape == (H, W, 3) and image.dtype == np.uint8
    assert label.shape == (H, W) and label.dtype == np.uint8
    assert label.max() < towns.NUM_CLASSES
    assert image.std() > 5  # not a flat image


def test_reproducible_seed_dependent_and_style_independent_layout():
    a = towns.generate_scene("snow_sim", H, W, rng=5)
    b = towns.generate_scene("snow_sim", H, W, rng=5)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[1], towns.generate_scene("snow_sim", H, W, rng=6)[1])
    for style in STYLES:  # the layout is drawn before the appearance: same generator state, same labels
        np.testing.assert_array_equal(towns.generate_scene(style, H, W, rng=5)[1], a[1])
    assert towns.image_rng("snow_sim", 0, 1).random() != towns.image_rng("snow_sim", 1, 1).random()
    assert towns.image_rng("snow_sim", 0, 1).random() != towns.image_rng("snow_sim", 0, 1, held_out=True).random()


def test_every_class_occurs():
    images, _ = towns.class_frequencies(num_images=36, height=96, width=192, seed=1)
    missing = [towns.CLASS_NAMES[c] for c in range(19) if images[c] < 0.15]
    assert not missing, f"classes in fewer than 15% of the scenes: {missing} ({np.round(images, 2)})"


def test_target_styles_differ_from_sources():
    """Per-class mean colours (same layouts in every style) of each target are far from every source."""
    seeds = range(6)
    means = {}
    for style in STYLES:
        sums, counts = np.zeros((19, 3)), np.zeros(19)
        for s in seeds:
            image, label = towns.generate_scene(style, 96, 192, rng=s)
            for c in np.unique(label):
                sums[c] += image[label == c].sum(0)
                counts[c] += (label == c).sum()
        means[style] = sums / np.maximum(counts, 1)[:, None]
    present = counts > 0
    for target in towns.TARGET_STYLES:
        gaps = [np.linalg.norm(means[target] - means[source], axis=1)[present] for source in towns.SOURCE_STYLES]
        nearest = np.min(gaps, axis=0)  # per class, distance to the nearest source style
        assert nearest.mean() > 25, (target, nearest.round(1))
    for a in towns.SOURCE_STYLES:  # the sources differ from each other, too
        for b in towns.SOURCE_STYLES:
            if a < b:
                assert np.linalg.norm(means[a] - means[b], axis=1)[present].mean() > 25, (a, b)


def test_no_code_shared_with_the_streets_family():
    """The towns modules import neither the streets scene nor its styles (nor the streets module)."""
    import mgml_tf.synthetic as pkg

    banned = {"mgml_tf.synthetic._streets_scene", "mgml_tf.synthetic._streets_styles", "mgml_tf.synthetic.streets"}
    here = os.path.dirname(pkg.__file__)
    for name in ("towns.py", "_towns_scene.py", "_towns_styles.py"):
        with open(os.path.join(here, name)) as f:
            tree = ast.parse(f.read())
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                imported.add(node.module)
                imported |= {f"{node.module}.{a.name}" for a in node.names}
        assert not imported & banned, (name, imported & banned)
    assert not set(towns.STYLES) & set(__import__("mgml_tf.synthetic.streets", fromlist=["STYLES"]).STYLES)


# ----------------------------------------------------------------------------------------------- writing
def test_byte_identical_files(tmp_path):
    for d in ("a", "b"):
        towns.write_dataset("hazy_sepia", "bdd100k", 2, tmp_path / d, seed=1, height=H, width=W)
    towns.write_dataset("hazy_sepia", "bdd100k", 2, tmp_path / "c", seed=2, height=H, width=W)
    a, b, c = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert a == b and len(a) == 5  # 2 images, 2 labels, SYNTHETIC.json
    assert any(a[k] != c[k] for k in a if k.endswith(".png"))
    assert json.loads(a["SYNTHETIC.json"])["generator"] == "mgml_tf.data.synthetic_towns"


def test_written_layouts_read_back_with_project_loaders(tmp_path):
    """What `mgml_tf.data.load_domain` reads equals the generated labels (train ids) in every layout."""
    from mgml_tf.data import load_domain

    for layout in towns.LAYOUTS:
        root = tmp_path / layout
        towns.write_dataset("neon_comic", layout, 2, root, seed=4, height=H, width=W, split="val")
        dom = load_domain(layout, str(root), split="val")
        assert len(dom) == 2, layout
        for i, (ip, lp) in enumerate(dom.pairs):
            image, label = (t.numpy() for t in dom.read(ip, lp))
            expected = _expected_label("neon_comic", 4, i)
            if layout == "synthia":  # Synthia has no terrain, truck, train: written as void, read as ignore
                expected = np.where(np.isin(expected, [9, 14, 16]), 255, expected)
            np.testing.assert_array_equal(label[..., 0] if label.ndim == 3 else label, expected, err_msg=layout)
            assert image.shape == (H, W, 3)


def test_default_suite_with_held_out_source_images(tmp_path):
    specs = towns.write_default_suite(
        str(tmp_path), num_train=1, num_val=1, seed=0, height=H, width=W, num_source_val=2
    )
    assert specs.sources == [
        f"gtav:{tmp_path}/clay_lowpoly",
        f"synthia:{tmp_path}/snow_sim",
        f"idd:{tmp_path}/neon_comic",
    ]
    assert specs.targets == [
        f"cityscapes:{tmp_path}/dusk_dashcam",
        f"bdd100k:{tmp_path}/hazy_sepia",
        f"mapillary:{tmp_path}/teal_drizzle",
    ]
    assert sorted(os.listdir(tmp_path)) == sorted(STYLES + [s + "_val" for s in towns.SOURCE_STYLES])
    assert os.path.exists(tmp_path / "neon_comic_val" / "leftImg8bit" / "val" / "0" / "000001_leftImg8bit.png")
    held = _files(tmp_path / "clay_lowpoly_val")
    train = _files(tmp_path / "clay_lowpoly")
    assert held["images/00001.png"] != train["images/00001.png"]  # a disjoint seed stream
    assert json.loads(held["SYNTHETIC.json"])["held_out"] is True


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown towns style 'foggy'; known styles: clay_lowpoly"):
        towns.generate_scene("foggy", H, W, 0)
    with pytest.raises(ValueError, match="unknown layout 'kitti'"):
        towns.write_dataset("snow_sim", "kitti", 1, tmp_path)
    with pytest.raises(ValueError, match="height must be an integer >= 32"):
        towns.generate_scene("snow_sim", 8, W, 0)
    assert not os.listdir(tmp_path)


# ------------------------------------------------------------------------------------- command-line suite
def _fv(root, **kw):
    base = dict(
        synthetic_root=str(root),
        synthetic_num_train=1,
        synthetic_num_val=1,
        synthetic_height=H,
        synthetic_width=W,
        synthetic_family="towns",
        synthetic_num_source_val=1,
    )
    base.update(kw)
    return SimpleNamespace(**base)


def test_in_domain_targets_expand_to_held_out_roots(tmp_path):
    from mgml_tf.evaluation import domain_label
    from mgml_tf.training import data as data_lib

    fv = _fv(tmp_path / "suite")
    specs = data_lib.expand("synthetic,synthetic:in_domain", "target", fv, log=lambda m: None)
    domains = data_lib.load(specs, "val", "targets")
    labels = [domain_label(d) for d in domains]
    assert labels == [
        "cityscapes:dusk_dashcam",
        "bdd100k:hazy_sepia",
        "mapillary:teal_drizzle",
        "gtav:clay_lowpoly_val",
        "synthia:snow_sim_val",
        "idd:neon_comic_val",
    ]
    assert all(len(d) == 1 for d in domains)
    with open(tmp_path / "suite" / "SUITE.json") as f:
        assert json.load(f) == {
            "num_train": 1,
            "num_val": 1,
            "height": H,
            "width": W,
            "seed": 0,
            "family": "towns",
            "num_source_val": 1,
        }
    sources = data_lib.expand("synthetic", "source", fv, log=lambda m: None)
    assert [os.path.basename(s) for s in sources] == list(towns.SOURCE_STYLES)


def test_in_domain_refused_without_held_out_images_or_as_source(tmp_path):
    from mgml_tf.errors import UsageError
    from mgml_tf.training import data as data_lib

    with pytest.raises(
        UsageError,
        match="synthetic:in_domain needs held-out source images; set "
        r"--synthetic_num_source_val=N \(N > 0\)",
    ):
        data_lib.expand("synthetic:in_domain", "target", _fv(tmp_path / "a", synthetic_num_source_val=0))
    with pytest.raises(UsageError, match="is for --targets only"):
        data_lib.expand("synthetic:in_domain", "source", _fv(tmp_path / "b"))
    assert not os.path.exists(tmp_path / "a") and not os.path.exists(tmp_path / "b")


def test_default_suite_marker_unchanged_and_other_parameters_refused(tmp_path):
    """Suites made before the family/held-out flags existed keep matching; another family is refused."""
    from mgml_tf.errors import UsageError
    from mgml_tf.training import data as data_lib

    legacy = SimpleNamespace(
        synthetic_root=str(tmp_path), synthetic_num_train=1, synthetic_num_val=1, synthetic_height=H, synthetic_width=W
    )
    defaults = _fv(tmp_path, synthetic_family="streets", synthetic_num_source_val=0)
    expected = {"num_train": 1, "num_val": 1, "height": H, "width": W, "seed": 0}
    assert data_lib._suite_params(legacy) == data_lib._suite_params(defaults) == expected
    (tmp_path / "SUITE.json").write_text(json.dumps(expected))  # an existing default suite
    specs = data_lib.synthetic_suite(defaults, generate=False)
    assert specs["sunny_game"] == f"gtav:{tmp_path}/sunny_game"
    with pytest.raises(UsageError, match="holds a suite made with other parameters"):
        data_lib.synthetic_suite(_fv(tmp_path, synthetic_num_source_val=0), generate=False)


@pytest.mark.parametrize(
    "args, words",
    [
        (["--synthetic_family=forest"], "--synthetic_family='forest' is unknown; valid: streets, towns"),
        (["--synthetic_num_source_val=-1"], "--synthetic_num_source_val must be >= 0, got -1"),
    ],
)
def test_synthetic_flag_validation(args, words):
    from absl import flags

    from mgml_tf.cli import flags as flags_lib
    from mgml_tf.errors import UsageError

    fv = flags.FlagValues()
    flags_lib.define_synthetic_flags(fv)
    fv(["prog", *args])
    with pytest.raises(UsageError) as e:
        flags_lib.validate_synthetic_flags(fv)
    assert str(e.value) == words
