"""The "streets" scene family: scenes, styles, the six written layouts (its CLI: tests/test_synthetic_cli.py)."""

import glob
import os

import numpy as np
import pytest

from mgml_tf.synthetic import streets as syn

H, W = 64, 128  # small images keep the file tests fast

# Independent oracles written out here (not imported from the code under test).
# Synthia RAND_CITYSCAPES ids (README of the release) -> Cityscapes train id; terrain/truck/train are void.
SYNTHIA_TO_TRAIN = {
    1: 10,
    2: 2,
    3: 0,
    4: 1,
    5: 4,
    6: 8,
    7: 5,
    8: 13,
    9: 7,
    10: 11,
    11: 18,
    12: 17,
    15: 6,
    17: 12,
    19: 15,
    21: 3,
}
# Mapillary Vistas v1.2 class name (by id) expected for each train id.
MAPILLARY_NAME = {
    0: "Road",
    1: "Sidewalk",
    2: "Building",
    3: "Wall",
    4: "Fence",
    5: "Pole",
    6: "Traffic Light",
    7: "Traffic Sign (Front)",
    8: "Vegetation",
    9: "Terrain",
    10: "Sky",
    11: "Person",
    12: "Bicyclist",
    13: "Car",
    14: "Truck",
    15: "Bus",
    16: "On Rails",
    17: "Motorcycle",
    18: "Bicycle",
}


def _cs_labels():
    labels = pytest.importorskip("cityscapesscripts.helpers.labels")
    return [lab for lab in labels.labels if 0 <= lab.trainId < 19]


def _decode_png(path, dtype="uint8"):
    import tensorflow as tf

    return tf.io.decode_png(
        tf.io.read_file(path), channels=0, dtype=tf.uint16 if dtype == "uint16" else tf.uint8
    ).numpy()


def _expected_label(style, seed, index):
    return syn.generate_scene(style, H, W, syn.image_rng(style, seed, index))[1]


# ------------------------------------------------------------------------------------------ class table
def test_class_table_matches_cityscapesscripts():
    cs = _cs_labels()
    assert len(cs) == 19
    from mgml_tf.synthetic.labels import CLASSES

    for lab in cs:
        name, tid, lid, colour = CLASSES[lab.trainId]
        assert (name, tid, lid, colour) == (lab.name, lab.trainId, lab.id, tuple(lab.color))


def test_layout_id_tables():
    from mgml_tf.synthetic.labels import MAPILLARY_V12_NAMES

    assert len(MAPILLARY_V12_NAMES) == 66
    for tid in range(19):
        assert MAPILLARY_V12_NAMES[syn.TRAIN_TO_MAPILLARY[tid]] == MAPILLARY_NAME[tid]
        sid = int(syn.TRAIN_TO_SYNTHIA[tid])
        if syn.CLASS_NAMES[tid] in ("terrain", "truck", "train"):
            assert sid == 0
        else:
            assert SYNTHIA_TO_TRAIN[sid] == tid


# ----------------------------------------------------------------------------------------------- scenes
@pytest.mark.parametrize("style", list(syn.STYLES))
def test_generate_scene_types_and_values(style):
    image, label = syn.generate_scene(style, 96, 160, rng=3)
    assert image.shape == (96, 160, 3) and image.dtype == np.uint8
    assert label.shape == (96, 160) and label.dtype == np.uint8
    assert label.max() <= 18
    assert image.std() > 5  # not blank


def test_reproducible_and_seed_dependent():
    a = syn.generate_scene("rainy_realistic", H, W, rng=7)
    b = syn.generate_scene("rainy_realistic", H, W, rng=np.random.default_rng(7))
    c = syn.generate_scene("rainy_realistic", H, W, rng=8)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1]) and not np.array_equal(a[0], c[0])


def test_style_changes_appearance_not_labels():
    """The layout is drawn before the style: same generator state -> same labels, different pixels."""
    labels, images = [], []
    for style in syn.STYLES:
        img, lab = syn.generate_scene(style, H, W, rng=11)
        labels.append(lab)
        images.append(img)
    for lab in labels[1:]:
        np.testing.assert_array_equal(lab, labels[0])
    for i in range(len(images)):
        for j in range(i + 1, len(images)):
            assert np.abs(images[i].astype(int) - images[j].astype(int)).mean() > 10


def test_every_class_occurs_often():
    img_frac, pix_frac = syn.class_frequencies(num_images=40, height=128, width=256, seed=1)
    for name, f in zip(syn.CLASS_NAMES, img_frac):
        assert f >= 0.2, f"{name} occurs in only {f:.0%} of images"
    assert abs(pix_frac.sum() - 1) < 1e-9
    for name in ("road", "building", "sky"):
        assert pix_frac[syn.CLASS_NAMES.index(name)] > 0.03


def test_scene_geometry_is_sane():
    """Sky is above the horizon, road below it; near things are lower in the image than far ones."""
    rng = np.random.default_rng(5)
    for _ in range(8):
        scene = syn.render_scene(rng, 128, 256)
        rows = np.arange(128)[:, None] + 0.5
        assert not ((scene.label == 10) & (rows > scene.horizon + 1)).any()
        assert not ((scene.label == 0) & (rows < scene.horizon)).any()
        road = scene.label == 0
        rows_with_road = np.nonzero(road.any(axis=1))[0]
        row_depth = np.array([scene.depth[r][road[r]].mean() for r in rows_with_road])
        assert np.all(np.diff(row_depth) <= 1e-3)  # road depth decreases downwards
        assert np.isinf(scene.depth[scene.label == 10]).all()


def _class_means(style, n=6):
    acc, cnt = np.zeros((19, 3)), np.zeros(19)
    for i in range(n):
        img, lab = syn.generate_scene(style, 96, 192, rng=100 + i)
        for c in range(19):
            m = lab == c
            acc[c] += img[m].sum(axis=0)
            cnt[c] += m.sum()
    return acc / np.maximum(cnt, 1)[:, None]


def test_target_styles_differ_from_sources():
    """Per-class mean colour of each target is far from every source (RGB distance, 0..255 scale)."""
    assert set(syn.SOURCE_STYLES).isdisjoint(syn.TARGET_STYLES)
    assert len(syn.SOURCE_STYLES) >= 3 and len(syn.TARGET_STYLES) >= 3
    means = {s: _class_means(s) for s in syn.STYLES}
    car = syn.CLASS_NAMES.index("car")
    for t in syn.TARGET_STYLES:
        d = np.array([[np.linalg.norm(means[t][c] - means[s][c]) for s in syn.SOURCE_STYLES] for c in range(19)]).min(
            axis=1
        )
        assert d.mean() > 25, (t, d.round(1))
        assert d[car] > 20, (t, d[car])
    # and the sources differ among themselves
    for i, a in enumerate(syn.SOURCE_STYLES):
        for b in syn.SOURCE_STYLES[i + 1 :]:
            assert np.linalg.norm(means[a] - means[b], axis=1).mean() > 25


# ---------------------------------------------------------------------------------------------- layouts
def test_gtav_layout(tmp_path):
    res = syn.write_dataset("sunny_game", "gtav", 2, tmp_path, seed=3, height=H, width=W)
    assert res["spec"] == f"gtav:{tmp_path}"
    assert sorted(os.listdir(tmp_path / "images")) == ["00001.png", "00002.png"]
    assert sorted(os.listdir(tmp_path / "labels")) == ["00001.png", "00002.png"]
    colour_to_train = {tuple(lab.color): lab.trainId for lab in _cs_labels()}
    for i in range(2):
        rgb = _decode_png(str(tmp_path / "labels" / f"{i + 1:05d}.png"))
        assert rgb.shape == (H, W, 3)
        got = np.vectorize(lambda r, g, b: colour_to_train[(r, g, b)])(rgb[..., 0], rgb[..., 1], rgb[..., 2])
        np.testing.assert_array_equal(got, _expected_label("sunny_game", 3, i))
        img = _decode_png(str(tmp_path / "images" / f"{i + 1:05d}.png"))
        np.testing.assert_array_equal(img, syn.generate_scene("sunny_game", H, W, syn.image_rng("sunny_game", 3, i))[0])


def test_synthia_layout(tmp_path):
    syn.write_dataset("overcast_sim", "synthia", 2, tmp_path, seed=4, height=H, width=W)
    assert sorted(os.listdir(tmp_path / "RGB")) == ["0000000.png", "0000001.png"]
    assert sorted(os.listdir(tmp_path / "GT" / "LABELS")) == ["0000000.png", "0000001.png"]
    for i in range(2):
        path = str(tmp_path / "GT" / "LABELS" / f"{i:07d}.png")
        with open(path, "rb") as f:
            assert f.read(25)[24] == 16  # IHDR bit depth
        raw = _decode_png(path, "uint16")
        assert raw.dtype == np.uint16 and raw.shape == (H, W, 3)
        expected = _expected_label("overcast_sim", 4, i)
        lut = np.full(65536, 255, np.uint8)
        for sid, tid in SYNTHIA_TO_TRAIN.items():
            lut[sid] = tid
        got = lut[raw[..., 0]]
        absent = np.isin(expected, [9, 14, 16])  # terrain, truck, train: void in Synthia
        np.testing.assert_array_equal(got[~absent], expected[~absent])
        assert (raw[..., 0][absent] == 0).all()


def test_cityscapes_layout(tmp_path):
    syn.write_dataset("foggy", "cityscapes", 2, tmp_path, seed=5, height=H, width=W, split="val")
    imgs = sorted(glob.glob(str(tmp_path / "leftImg8bit" / "val" / "*" / "*_leftImg8bit.png")))
    labs = sorted(glob.glob(str(tmp_path / "gtFine" / "val" / "*" / "*_gtFine_labelIds.png")))
    assert [os.path.basename(p) for p in imgs] == [
        "foggy_000000_000000_leftImg8bit.png",
        "foggy_000000_000001_leftImg8bit.png",
    ]
    assert [os.path.basename(p) for p in labs] == [
        "foggy_000000_000000_gtFine_labelIds.png",
        "foggy_000000_000001_gtFine_labelIds.png",
    ]
    id_to_train = {lab.id: lab.trainId for lab in _cs_labels()}
    for i, p in enumerate(labs):
        ids = _decode_png(p)[..., 0]
        got = np.vectorize(id_to_train.get)(ids)
        np.testing.assert_array_equal(got, _expected_label("foggy", 5, i))


@pytest.mark.parametrize(
    "layout,ipat,lpat",
    [
        ("bdd100k", "images/10k/val/*.jpg", "labels/sem_seg/masks/val/*.png"),
        ("idd", "leftImg8bit/val/0/*_leftImg8bit.png", "gtFine/val/0/*_gtFine_labelcsTrainIds.png"),
    ],
)
def test_train_id_layouts(tmp_path, layout, ipat, lpat):
    syn.write_dataset("night", layout, 2, tmp_path, seed=6, height=H, width=W, split="val")
    imgs, labs = sorted(glob.glob(str(tmp_path / ipat))), sorted(glob.glob(str(tmp_path / lpat)))
    assert len(imgs) == 2 and len(labs) == 2
    if layout == "idd":
        assert os.path.basename(labs[1]) == "000001_gtFine_labelcsTrainIds.png"
    for i, p in enumerate(labs):
        np.testing.assert_array_equal(_decode_png(p)[..., 0], _expected_label("night", 6, i))
    with open(imgs[0], "rb") as f:
        head = f.read(2)
    assert head == (b"\xff\xd8" if layout == "bdd100k" else b"\x89P")


def test_mapillary_layout(tmp_path):
    from mgml_tf.synthetic.labels import MAPILLARY_V12_NAMES

    syn.write_dataset("rainy_realistic", "mapillary", 2, tmp_path, seed=7, height=H, width=W, split="val")
    imgs = sorted(glob.glob(str(tmp_path / "validation" / "images" / "*.jpg")))
    labs = sorted(glob.glob(str(tmp_path / "validation" / "labels" / "*.png")))
    assert len(imgs) == 2 and len(labs) == 2
    assert [os.path.basename(p)[:-4] for p in imgs] == [os.path.basename(p)[:-4] for p in labs]
    name_to_train = {v: k for k, v in MAPILLARY_NAME.items()}
    for i, p in enumerate(labs):
        ids = _decode_png(p)[..., 0]
        got = np.vectorize(lambda k: name_to_train[MAPILLARY_V12_NAMES[k]])(ids)
        np.testing.assert_array_equal(got, _expected_label("rainy_realistic", 7, i))


def test_written_layouts_read_back_with_project_loaders(tmp_path):
    """What `mgml_tf.data.load_domain` reads equals the generated labels (train ids) in every layout."""
    datasets = pytest.importorskip("mgml_tf.data.datasets")
    for layout in syn.LAYOUTS:
        root = tmp_path / layout
        syn.write_dataset("desert_toon", layout, 2, root, seed=9, height=H, width=W, split="train")
        dom = datasets.load_domain(layout, str(root), split="train")
        assert len(dom) == 2, layout
        for i, (ip, lp) in enumerate(dom.pairs):
            image, label = (t.numpy() for t in dom.read(ip, lp))
            expected = _expected_label("desert_toon", 9, i)
            if layout == "synthia":
                expected = np.where(np.isin(expected, [9, 14, 16]), 255, expected)
            np.testing.assert_array_equal(label, expected, err_msg=layout)
            assert image.shape == (H, W, 3)


def test_byte_identical_files(tmp_path):
    for d in ("a", "b"):
        syn.write_dataset("night", "bdd100k", 2, tmp_path / d, seed=1, height=H, width=W)
    syn.write_dataset("night", "bdd100k", 2, tmp_path / "c", seed=2, height=H, width=W)

    def files(root):
        out = {}
        for p in sorted(glob.glob(str(root / "**" / "*.*"), recursive=True)):
            with open(p, "rb") as f:
                out[os.path.relpath(p, root)] = f.read()
        return out

    a, b, c = files(tmp_path / "a"), files(tmp_path / "b"), files(tmp_path / "c")
    assert a == b and len(a) == 5  # 2 images, 2 labels, SYNTHETIC.json
    assert any(a[k] != c[k] for k in a if k.endswith(".jpg"))


def test_default_suite(tmp_path):
    specs = syn.write_default_suite(str(tmp_path), num_train=1, num_val=1, seed=0, height=H, width=W)
    sources, targets = specs
    assert sources == [f"gtav:{tmp_path}/sunny_game", f"synthia:{tmp_path}/overcast_sim", f"idd:{tmp_path}/desert_toon"]
    assert targets == [
        f"cityscapes:{tmp_path}/foggy",
        f"bdd100k:{tmp_path}/night",
        f"mapillary:{tmp_path}/rainy_realistic",
    ]
    assert os.path.exists(tmp_path / "desert_toon" / "leftImg8bit" / "train" / "0" / "000000_leftImg8bit.png")
    assert os.path.exists(tmp_path / "foggy" / "gtFine" / "val" / "foggy" / "foggy_000000_000000_gtFine_labelIds.png")
    assert len(glob.glob(str(tmp_path / "rainy_realistic" / "validation" / "labels" / "*.png"))) == 1


# ------------------------------------------------------------------------------------------- bad input
def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown style 'nope'; known styles: sunny_game, "):
        syn.generate_scene("nope", H, W, 0)
    with pytest.raises(ValueError, match="unknown layout 'kitti'; known layouts: gtav, synthia, cityscapes"):
        syn.write_dataset("foggy", "kitti", 1, tmp_path)
    for n in (0, -3, 1.5):
        with pytest.raises(ValueError, match="num_images must be a positive integer"):
            syn.write_dataset("foggy", "gtav", n, tmp_path)
    with pytest.raises(ValueError, match="height must be an integer >= 32"):
        syn.generate_scene("foggy", 8, W, 0)
    assert not os.listdir(tmp_path)
