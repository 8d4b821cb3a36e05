"""Loaders on tiny trees written in each dataset's published layout; label maps against oracles."""

import os
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf
from cityscapesscripts.helpers import labels as cs

import mgml_tf.data as data
from mgml_tf.data import labels as L

# ------------------------------------------------------------------------------------------ writers


def _write(path, payload):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(payload)


def write_png(path, array):
    a = np.asarray(array)
    if a.ndim == 2:
        a = a[..., None]
    _write(path, tf.io.encode_png(tf.constant(a)).numpy())


def write_jpeg(path, array):
    _write(path, tf.io.encode_jpeg(tf.constant(np.asarray(array, np.uint8)), quality=98).numpy())


def _chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def write_palette_png(path, indices, palette):
    """An 8-bit palette PNG (the format GTAV and Mapillary labels are distributed in)."""
    idx = np.asarray(indices, np.uint8)
    h, w = idx.shape
    raw = b"".join(b"\x00" + idx[r].tobytes() for r in range(h))
    pal = np.zeros([256, 3], np.uint8)
    pal[: len(palette)] = np.asarray(palette, np.uint8)
    _write(
        path,
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0))
        + _chunk(b"PLTE", pal.tobytes())
        + _chunk(b"IDAT", zlib.compress(raw))
        + _chunk(b"IEND", b""),
    )


def grid(values, h=4, w=None):
    """An [h, w] map holding `values` (padded by repeating) so every value occurs."""
    values = np.asarray(values)
    w = w or int(np.ceil(len(values) / h))
    flat = np.resize(values, h * w)
    flat[: len(values)] = values
    return flat.reshape(h, w)


def blocks(ids, k=8):
    """Each id as a k x k block (JPEG tests: a smooth image of that size compresses almost losslessly)."""
    return np.kron(np.asarray(ids), np.ones([k, k], dtype=np.asarray(ids).dtype))


def image_like(h, w, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=[h, w, 3], dtype=np.uint8)


def smooth_image(h, w):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), np.full_like(x, 128)], -1).astype(np.uint8)


def load_all(domain):
    return [(i.numpy(), l.numpy()) for i, l in domain.as_dataset()]


# --------------------------------------------------------------------------------------- oracles
def cs_trainid_of_label_id(i):
    lab = cs.id2label.get(int(i))
    if lab is None or lab.trainId in (255, -1) or lab.ignoreInEval:
        return 255
    return lab.trainId


CS_COLOR_TO_TRAIN = {l.color: l.trainId for l in cs.labels if 0 <= l.trainId < 19}


def cs_trainid_of_color(c):
    return CS_COLOR_TO_TRAIN.get(tuple(int(v) for v in c), 255)


def test_cityscapes_table_matches_official():
    assert len(L.CITYSCAPES_CLASSES) == 19
    for c in L.CITYSCAPES_CLASSES:
        official = cs.trainId2label[c.train_id]
        assert (official.name, official.id, official.color) == (c.name, c.label_id, c.color)
    table = L.lookup_table(L.CITYSCAPES_LABEL_ID_TO_TRAIN_ID)
    for i in range(256):
        assert table[i] == cs_trainid_of_label_id(i), i


def test_gtav_colour_table_matches_official():
    assert L.GTAV_COLOR_TO_TRAIN_ID == CS_COLOR_TO_TRAIN


def test_map_colours_all_official_colours():
    colours = np.array([l.color for l in cs.labels] + [(1, 2, 3), (255, 255, 255)], np.uint8)[None]
    got = L.map_colours(tf.constant(colours), L.GTAV_COLOR_TO_TRAIN_ID).numpy()[0]
    assert got.tolist() == [cs_trainid_of_color(c) for c in colours[0]]


# ------------------------------------------------------------------------------------ cityscapes
CS_IDS = list(range(0, 34)) + [34, 35, 100, 254, 255]


def test_cityscapes_layout_and_ids(tmp_path):
    root = str(tmp_path / "cityscapes")
    expect = {}
    for city, frame, shift in [("aachen", "000000_000019", 0), ("bochum", "000001_000019", 7)]:
        ids = np.roll(grid(CS_IDS, 4), shift)
        h, w = ids.shape
        img = image_like(h, w, shift)
        base = f"{city}_{frame}"
        write_png(f"{root}/leftImg8bit/train/{city}/{base}_leftImg8bit.png", img)
        write_png(f"{root}/gtFine/train/{city}/{base}_gtFine_labelIds.png", ids.astype(np.uint8))
        # siblings of the official release that must not be mistaken for labels
        write_png(f"{root}/gtFine/train/{city}/{base}_gtFine_color.png", img)
        write_png(f"{root}/gtFine/train/{city}/{base}_gtFine_instanceIds.png", ids.astype(np.uint8))
        _write(f"{root}/gtFine/train/{city}/{base}_gtFine_polygons.json", b"{}")
        expect[base] = (img, np.vectorize(cs_trainid_of_label_id)(ids))
    write_png(f"{root}/leftImg8bit/val/frankfurt/frankfurt_000000_000294_leftImg8bit.png", image_like(4, 4))
    write_png(f"{root}/gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_labelIds.png", np.zeros([4, 4], np.uint8))

    dom = data.load_domain("cityscapes", root)
    assert dom.name == "cityscapes" and len(dom) == 2 and dom.root == os.path.abspath(root)
    assert [os.path.basename(p[1]) for p in dom.pairs] == [
        "aachen_000000_000019_gtFine_labelIds.png",
        "bochum_000001_000019_gtFine_labelIds.png",
    ]
    ds = dom.as_dataset()
    assert ds.element_spec[0].dtype == tf.uint8 and ds.element_spec[1].dtype == tf.uint8
    assert ds.element_spec[0].shape.as_list() == [None, None, 3]
    assert ds.element_spec[1].shape.as_list() == [None, None]
    for (img, lab), (image_path, _) in zip(load_all(dom), dom.pairs):
        base = os.path.basename(image_path).replace("_leftImg8bit.png", "")
        np.testing.assert_array_equal(img, expect[base][0])
        np.testing.assert_array_equal(lab, expect[base][1])
    assert len(data.load_domain("cityscapes", root, split="val")) == 1


# ------------------------------------------------------------------------------------------- gtav
def test_gtav_palette_rgb_and_grey_labels(tmp_path):
    root = str(tmp_path / "GTAV")
    palette = [cs.id2label[i].color for i in range(34)]  # GTAV: index = label id, palette = CS colours
    ids = grid(list(range(34)), 4)
    h, w = ids.shape
    img = image_like(h, w, 1)
    write_png(f"{root}/images/00001.png", img)
    write_palette_png(f"{root}/labels/00001.png", ids, palette)
    # an RGB colour label with colours outside the table
    rgb = np.array(palette, np.uint8)[ids]
    rgb[0, 0] = (1, 2, 3)
    rgb[0, 1] = (255, 255, 255)
    write_png(f"{root}/images/00002.png", img)
    write_png(f"{root}/labels/00002.png", rgb)
    # a grey label of Cityscapes label ids (converted GTAV)
    write_png(f"{root}/images/00003.png", img)
    write_png(f"{root}/labels/00003.png", ids.astype(np.uint8))
    dom = data.load_domain("gtav", root)
    assert [os.path.basename(p[0]) for p in dom.pairs] == ["00001.png", "00002.png", "00003.png"]
    (i1, l1), (i2, l2), (i3, l3) = load_all(dom)
    np.testing.assert_array_equal(i1, img)
    expect_colour = np.array([[cs_trainid_of_color(palette[v]) for v in row] for row in ids])
    np.testing.assert_array_equal(l1, expect_colour)
    assert l1[ids == 18].tolist() == [5]  # polegroup shares the pole colour
    e2 = expect_colour.copy()
    e2[0, 0] = e2[0, 1] = 255
    np.testing.assert_array_equal(l2, e2)
    np.testing.assert_array_equal(l3, np.vectorize(cs_trainid_of_label_id)(ids))


def test_gtav_split_list_and_split_folders(tmp_path):
    root = str(tmp_path / "GTAV")
    for stem in ["00001", "00002", "00003"]:
        write_png(f"{root}/images/{stem}.png", image_like(2, 3))
        write_png(f"{root}/labels/{stem}.png", np.zeros([2, 3, 3], np.uint8))
    lst = tmp_path / "val.txt"
    lst.write_text("00003\n00001.png\n\n")
    dom = data.load_domain("gtav", root, split="val", split_list=str(lst))
    assert [os.path.basename(p[0]) for p in dom.pairs] == ["00001.png", "00003.png"]
    bad = tmp_path / "bad.txt"
    bad.write_text("00001\n09999\n")
    with pytest.raises(data.SplitListError, match="09999"):
        data.load_domain("gtav", root, split_list=str(bad))
    with pytest.raises(data.SplitListError, match="not found"):
        data.load_domain("gtav", root, split_list=str(tmp_path / "nope.txt"))


# ---------------------------------------------------------------------------------------- synthia
SYNTHIA_NAMES = [
    "void",
    "sky",
    "building",
    "road",
    "sidewalk",
    "fence",
    "vegetation",
    "pole",
    "car",
    "traffic sign",
    "pedestrian",
    "bicycle",
    "motorcycle",
    "parking-slot",
    "road-work",
    "traffic light",
    "terrain",
    "rider",
    "truck",
    "bus",
    "train",
    "wall",
    "lanemarking",
]
SYNTHIA_TO_CS_NAME = {"pedestrian": "person"}


def synthia_expected(i):
    if i >= len(SYNTHIA_NAMES):
        return 255
    name = SYNTHIA_TO_CS_NAME.get(SYNTHIA_NAMES[i], SYNTHIA_NAMES[i])
    lab = cs.name2label.get(name)
    return 255 if lab is None or not 0 <= lab.trainId < 19 else lab.trainId


def test_synthia_16bit_channel0(tmp_path):
    root = str(tmp_path / "RAND_CITYSCAPES")
    ids = grid(list(range(23)) + [23, 24, 255, 256, 300, 4096, 65535], 3)
    h, w = ids.shape
    gt = np.zeros([h, w, 3], np.uint16)
    gt[..., 0] = ids
    gt[..., 1] = 1000 + np.arange(h * w).reshape(h, w)  # instance ids: must be ignored
    gt[..., 2] = 7
    img = image_like(h, w, 2)
    write_png(f"{root}/RGB/0000000.png", img)
    write_png(f"{root}/GT/LABELS/0000000.png", gt)
    # an 8-bit variant of the same ids (< 256 only)
    ids8 = grid(list(range(23)) + [23, 200, 255], 3)
    write_png(f"{root}/RGB/0000001.png", image_like(*ids8.shape, 3))
    write_png(f"{root}/GT/LABELS/0000001.png", np.stack([ids8, ids8 * 0, ids8 * 0], -1).astype(np.uint8))
    dom = data.load_domain("synthia", root)
    (i0, l0), (_, l1) = load_all(dom)
    np.testing.assert_array_equal(i0, img)
    np.testing.assert_array_equal(l0, np.vectorize(synthia_expected)(ids))
    np.testing.assert_array_equal(l1, np.vectorize(synthia_expected)(ids8))
    assert sorted(set(l0.ravel()) - {255}) == list(range(19))


# ---------------------------------------------------------------------------------------- bdd100k
TRAIN_ID_VALUES = list(range(19)) + [19, 20, 100, 254, 255]


def _identity_expected(v):
    return v if v < 19 else 255


def test_bdd100k_layouts(tmp_path):
    root = str(tmp_path / "bdd100k")
    ids = blocks(grid(TRAIN_ID_VALUES, 4))
    img = smooth_image(*ids.shape)
    for split, stem in [("train", "0004a4c0-d4dff0ad"), ("val", "7d2f7975-e0c1c5a7")]:
        write_jpeg(f"{root}/images/10k/{split}/{stem}.jpg", img)
        write_png(f"{root}/labels/sem_seg/masks/{split}/{stem}.png", ids.astype(np.uint8))
        write_png(f"{root}/labels/sem_seg/colormaps/{split}/{stem}.png", img)
    dom = data.load_domain("bdd100k", root, split="val")
    [(i, l)] = load_all(dom)
    assert i.shape == img.shape and np.abs(i.astype(int) - img).mean() < 3  # JPEG: loose
    np.testing.assert_array_equal(l, np.vectorize(_identity_expected)(ids))

    old = str(tmp_path / "bdd_old")
    write_jpeg(f"{old}/seg/images/train/00054602-3bf57337.jpg", img)
    write_png(f"{old}/seg/labels/train/00054602-3bf57337_train_id.png", ids.astype(np.uint8))
    write_png(f"{old}/seg/color_labels/train/00054602-3bf57337_train_color.png", img)
    [(i, l)] = load_all(data.load_domain("bdd100k", old))
    np.testing.assert_array_equal(l, np.vectorize(_identity_expected)(ids))


# -------------------------------------------------------------------------------------- mapillary
# Mapillary v1.2 name -> Cityscapes name (the grouping used by RobustNet / Pin the Memory), written here
# independently of the module's id table.
MAPILLARY_TO_CS = {
    "construction--flat--road": "road",
    "marking--general": "road",
    "object--manhole": "road",
    "construction--barrier--curb": "sidewalk",
    "construction--flat--sidewalk": "sidewalk",
    "construction--structure--building": "building",
    "construction--barrier--wall": "wall",
    "construction--barrier--fence": "fence",
    "object--support--pole": "pole",
    "object--support--utility-pole": "pole",
    "object--traffic-light": "traffic light",
    "object--traffic-sign--front": "traffic sign",
    "nature--vegetation": "vegetation",
    "nature--terrain": "terrain",
    "nature--sky": "sky",
    "human--person": "person",
    "human--rider--bicyclist": "rider",
    "human--rider--motorcyclist": "rider",
    "human--rider--other-rider": "rider",
    "object--vehicle--car": "car",
    "object--vehicle--truck": "truck",
    "object--vehicle--bus": "bus",
    "object--vehicle--on-rails": "train",
    "object--vehicle--motorcycle": "motorcycle",
    "object--vehicle--bicycle": "bicycle",
}
# a few colours from the release's config.json, as a spot check of the module's colour column
MAPILLARY_SPOT_COLOURS = {
    0: (165, 42, 42),
    13: (128, 64, 128),
    24: (255, 255, 255),
    27: (70, 130, 180),
    55: (0, 0, 142),
    63: (32, 32, 32),
    65: (0, 0, 0),
}


def mapillary_expected(i):
    if i >= 66:
        return 255
    name = MAPILLARY_TO_CS.get(L.MAPILLARY_CLASSES[i][0])
    return 255 if name is None else cs.name2label[name].trainId


def test_mapillary_table():
    assert len(L.MAPILLARY_CLASSES) == 66
    assert L.MAPILLARY_CLASSES[13][0] == "construction--flat--road"
    assert L.MAPILLARY_CLASSES[65][0] == "void--unlabeled"
    for i, c in MAPILLARY_SPOT_COLOURS.items():
        assert L.MAPILLARY_CLASSES[i][1] == c
    table = L.lookup_table(L.MAPILLARY_ID_TO_TRAIN_ID)
    assert [int(table[i]) for i in range(256)] == [mapillary_expected(i) for i in range(256)]


def test_mapillary_palette_and_grey(tmp_path):
    root = str(tmp_path / "mapillary")
    ids = blocks(grid(list(range(66)), 6))
    img = smooth_image(*ids.shape)
    palette = [c for _, c in L.MAPILLARY_CLASSES]
    write_jpeg(f"{root}/training/images/--0a1b2c3d4e5f.jpg", img)
    write_palette_png(f"{root}/training/labels/--0a1b2c3d4e5f.png", ids, palette)
    write_jpeg(f"{root}/training/images/zz_grey.jpg", img)
    write_png(f"{root}/training/labels/zz_grey.png", ids.astype(np.uint8))
    _write(f"{root}/training/instances/--0a1b2c3d4e5f.png", b"not read")
    dom = data.load_domain("mapillary", root, split="train")
    assert len(dom) == 2
    expect = np.vectorize(mapillary_expected)(ids)
    for i, l in load_all(dom):
        np.testing.assert_array_equal(l, expect)
        assert np.abs(i.astype(int) - img).mean() < 3
    # validation split in the v2.0 package layout (v1.2 labels in a subfolder)
    grey = np.array([[13, 27], [65, 70]], np.uint8)
    write_jpeg(f"{root}/validation/images/abc.jpg", image_like(2, 2))
    write_png(f"{root}/validation/v1.2/labels/abc.png", grey)
    [(_, l)] = load_all(data.load_domain("mapillary", root, split="val"))
    assert l.tolist() == [[0, 10], [255, 255]]


# -------------------------------------------------------------------------------------------- idd
def test_idd_layout(tmp_path):
    root = str(tmp_path / "IDD_Segmentation")
    ids = grid(TRAIN_ID_VALUES, 4)
    img = image_like(*ids.shape, 5)
    for seq, frame in [("0", "000123"), ("201", "frame0029")]:
        write_png(f"{root}/leftImg8bit/train/{seq}/{frame}_leftImg8bit.png", img)
        write_png(f"{root}/gtFine/train/{seq}/{frame}_gtFine_labelcsTrainIds.png", ids.astype(np.uint8))
        write_png(f"{root}/gtFine/train/{seq}/{frame}_gtFine_labellevel3Ids.png", ids.astype(np.uint8) + 1)
        _write(f"{root}/gtFine/train/{seq}/{frame}_gtFine_polygons.json", b"{}")
    dom = data.load_domain("idd", root)
    assert len(dom) == 2
    for i, l in load_all(dom):
        np.testing.assert_array_equal(i, img)
        np.testing.assert_array_equal(l, np.vectorize(_identity_expected)(ids))


# ------------------------------------------------------------------------------------------ errors
def _gtav_tree(root, stems=("00001", "00002"), size=(4, 6)):
    for s in stems:
        write_png(f"{root}/images/{s}.png", image_like(*size))
        write_png(f"{root}/labels/{s}.png", np.zeros(size + (3,), np.uint8))


def test_unknown_name():
    with pytest.raises(data.UnknownDatasetError, match="gtav, synthia, cityscapes") as e:
        data.load_domain("kitti", "/tmp")
    assert isinstance(e.value, ValueError) and isinstance(e.value, data.DataError)


def test_missing_root_shows_layout(tmp_path):
    with pytest.raises(data.DatasetNotFoundError, match=r"images/\*\.png.*labels/\*\.png") as e:
        data.load_domain("gtav", str(tmp_path / "nowhere"))
    assert isinstance(e.value, FileNotFoundError) and "\n" not in str(e.value)
    (tmp_path / "cs").mkdir()
    with pytest.raises(data.DatasetNotFoundError, match="leftImg8bit/val"):
        data.load_domain("cityscapes", str(tmp_path / "cs"), split="val")


def test_no_files(tmp_path):
    (tmp_path / "g" / "images").mkdir(parents=True)
    (tmp_path / "g" / "labels").mkdir()
    with pytest.raises(data.NoFilesFoundError, match="no files"):
        data.load_domain("gtav", str(tmp_path / "g"))


def test_unpaired_files_named(tmp_path):
    root = str(tmp_path / "g")
    _gtav_tree(root, stems=("00001", "00002", "00003"))
    os.remove(f"{root}/labels/00002.png")
    write_png(f"{root}/labels/00009.png", np.zeros([4, 6, 3], np.uint8))
    with pytest.raises(data.UnpairedFilesError, match=r"images/00002\.png.*labels/00009\.png") as e:
        data.load_domain("gtav", root)
    assert "without a label" in str(e.value) and "without an image" in str(e.value)


def test_size_mismatch(tmp_path):
    root = str(tmp_path / "g")
    _gtav_tree(root)
    write_png(f"{root}/labels/00002.png", np.zeros([5, 6, 3], np.uint8))
    dom = data.load_domain("gtav", root)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"sizes differ.*00002\.png"):
        load_all(dom)
    with pytest.raises(data.SizeMismatchError, match=r"00002\.png.*4x6.*5x6"):
        data.load_domain("gtav", root, check_files=True)
    for check in (False, True):
        dom = data.load_domain("gtav", root, check_files=check, skip_bad=True)
        assert len(dom) == 1 and len(dom.skipped) == 1 and dom.skipped[0][0].endswith("00002.png")
        assert len(load_all(dom)) == 1


def test_truncated_file_named_at_read_time(tmp_path):
    root = str(tmp_path / "g")
    _gtav_tree(root, size=(32, 32))
    path = f"{root}/images/00002.png"
    with open(path, "rb") as f:
        payload = f.read()
    with open(path, "wb") as f:
        f.write(payload[: len(payload) // 2])
    dom = data.load_domain("gtav", root)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"truncated.*images/00002\.png"):
        load_all(dom)
    with pytest.raises(data.CorruptFileError, match=r"images/00002\.png"):
        data.load_domain("gtav", root, check_files=True)
    dom = data.load_domain("gtav", root, skip_bad=True)
    assert len(dom) == 1 and "00002" in dom.skipped[0][0] and len(load_all(dom)) == 1


def test_corrupt_body_found_by_check_files(tmp_path):
    root = str(tmp_path / "g")
    _gtav_tree(root, size=(16, 16))
    # valid signature and end marker, garbage compressed data: only decoding can tell
    write_palette_png(f"{root}/labels/00001.png", np.zeros([16, 16]), [(0, 0, 0)])
    path = f"{root}/labels/00001.png"
    payload = bytearray(open(path, "rb").read())
    start = payload.index(b"IDAT") + 4
    payload[start : start + 8] = b"\xde\xad\xbe\xef" * 2
    open(path, "wb").write(bytes(payload))
    with pytest.raises(data.CorruptFileError, match=r"labels/00001\.png"):
        data.load_domain("gtav", root, check_files=True)
    dom = data.load_domain("gtav", root, check_files=True, skip_bad=True)
    assert [os.path.basename(p[0]) for p in dom.pairs] == ["00002.png"]


def test_jpeg_truncated_and_not_an_image(tmp_path):
    root = str(tmp_path / "bdd")
    for stem in ["a", "b"]:
        write_jpeg(f"{root}/images/10k/train/{stem}.jpg", image_like(128, 128))  # noise: ~40 KB
        write_png(f"{root}/labels/sem_seg/masks/train/{stem}.png", np.zeros([128, 128], np.uint8))
    p = f"{root}/images/10k/train/b.jpg"
    payload = open(p, "rb").read()
    assert len(payload) > 3 * 4096
    open(p, "wb").write(payload[: len(payload) // 2])
    with pytest.raises(data.CorruptFileError, match=r"b\.jpg"):
        data.load_domain("bdd100k", root, check_files=True)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"train/b\.jpg"):
        load_all(data.load_domain("bdd100k", root))
    open(p, "wb").write(b"hello, not an image")
    with pytest.raises(data.CorruptFileError, match=r"b\.jpg"):
        data.load_domain("bdd100k", root, skip_bad=False, check_files=True)
    assert len(data.load_domain("bdd100k", root, skip_bad=True)) == 1


def test_jpeg_with_bytes_after_end_marker_is_accepted(tmp_path):
    root = str(tmp_path / "bdd")
    write_jpeg(f"{root}/images/10k/train/a.jpg", smooth_image(64, 64))
    write_png(f"{root}/labels/sem_seg/masks/train/a.png", np.zeros([64, 64], np.uint8))
    with open(f"{root}/images/10k/train/a.jpg", "ab") as f:
        f.write(b"\x00" * 1000)
    dom = data.load_domain("bdd100k", root, skip_bad=True)
    assert len(dom) == 1 and not dom.skipped
    assert load_all(dom)[0][0].shape == (64, 64, 3)
    assert len(data.load_domain("bdd100k", root, check_files=True)) == 1


def test_parse_domains(tmp_path):
    _gtav_tree(str(tmp_path / "g"))
    doms = data.parse_domains(f"gtav:{tmp_path}/g, gtav:{tmp_path}/g")
    assert [d.name for d in doms] == ["gtav", "gtav"]
    with pytest.raises(data.UnknownDatasetError, match="name:root"):
        data.parse_domains("gtav")
