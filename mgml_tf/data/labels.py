"""Label tables: every supported dataset mapped to the 19 Cityscapes train ids (255 = ignore).

The tables are plain Python/NumPy data (facts of the published datasets); the mapping itself runs in
TensorFlow ops (`map_ids`, `map_colours`) so that it can live inside a `tf.data` pipeline.

Sources of the facts:
- Cityscapes: the official `cityscapesscripts.helpers.labels` table (the tests check ours against it).
- GTAV (Richter et al. 2016): labels are palette PNGs whose indices are Cityscapes label ids and whose
  palette is the Cityscapes colour table; `tf.io.decode_png` expands palettes to RGB, so GTAV is read by
  colour (grey-level PNGs holding label ids are read as ids).
- SYNTHIA RAND_CITYSCAPES: its own 23-class id table (README of the release), class id in channel 0.
- Mapillary Vistas v1.2: 66 classes (`config.json` of the release, index order), grouped to the 19
  Cityscapes classes as in RobustNet / the Pin-the-Memory evaluation protocol.
- IDD: `*_gtFine_labelcsTrainIds.png` produced by IDD's own `createLabels` already hold Cityscapes
  train ids; BDD100K `sem_seg/masks` likewise.
"""

import collections
import functools

import numpy as np
import tensorflow as tf

IGNORE_ID = 255
NUM_CLASSES = 19

CityscapesClass = collections.namedtuple("CityscapesClass", ["train_id", "name", "label_id", "color"])

#: The 19 evaluated Cityscapes classes, in train-id order.
CITYSCAPES_CLASSES = (
    CityscapesClass(0, "road", 7, (128, 64, 128)),
    CityscapesClass(1, "sidewalk", 8, (244, 35, 232)),
    CityscapesClass(2, "building", 11, (70, 70, 70)),
    CityscapesClass(3, "wall", 12, (102, 102, 156)),
    CityscapesClass(4, "fence", 13, (190, 153, 153)),
    CityscapesClass(5, "pole", 17, (153, 153, 153)),
    CityscapesClass(6, "traffic light", 19, (250, 170, 30)),
    CityscapesClass(7, "traffic sign", 20, (220, 220, 0)),
    CityscapesClass(8, "vegetation", 21, (107, 142, 35)),
    CityscapesClass(9, "terrain", 22, (152, 251, 152)),
    CityscapesClass(10, "sky", 23, (70, 130, 180)),
    CityscapesClass(11, "person", 24, (220, 20, 60)),
    CityscapesClass(12, "rider", 25, (255, 0, 0)),
    CityscapesClass(13, "car", 26, (0, 0, 142)),
    CityscapesClass(14, "truck", 27, (0, 0, 70)),
    CityscapesClass(15, "bus", 28, (0, 60, 100)),
    CityscapesClass(16, "train", 31, (0, 80, 100)),
    CityscapesClass(17, "motorcycle", 32, (0, 0, 230)),
    CityscapesClass(18, "bicycle", 33, (119, 11, 32)),
)
CLASS_NAMES = tuple(c.name for c in CITYSCAPES_CLASSES)
#: [19, 3] uint8 colours, indexed by train id (for visualisation and colour-coded labels).
TRAIN_ID_COLORS = np.array([c.color for c in CITYSCAPES_CLASSES], dtype=np.uint8)

#: Cityscapes label id (0..33 as stored in `*_gtFine_labelIds.png`) -> train id; others are ignored.
CITYSCAPES_LABEL_ID_TO_TRAIN_ID = {c.label_id: c.train_id for c in CITYSCAPES_CLASSES}
#: Number of label ids defined by Cityscapes (0..33; the licence plate's -1 never appears in files).
CITYSCAPES_NUM_LABEL_IDS = 34

#: GTAV colour -> train id: the Cityscapes colours of the 19 classes. Every other colour is ignored
#: (e.g. (0,0,0) unlabeled/ego vehicle/static, (111,74,0) dynamic, (81,0,81) ground, (250,170,160)
#: parking, (0,0,90) caravan). Pole and polegroup share (153,153,153) and read as pole; car and licence
#: plate share (0,0,142) and read as car.
GTAV_COLOR_TO_TRAIN_ID = {c.color: c.train_id for c in CITYSCAPES_CLASSES}

#: The colour of every Cityscapes label id 0..33 (and of the licence plate, -1), as in
#: `cityscapesscripts.helpers.labels`: the colours a GTAV colour label may hold. Colours of classes that are
#: not evaluated map to ignore; any colour outside this set is an unknown value (`check_files=True`).
CITYSCAPES_ALL_COLORS = (
    (0, 0, 0),
    (111, 74, 0),
    (81, 0, 81),
    (250, 170, 160),
    (230, 150, 140),
    (180, 165, 180),
    (150, 100, 100),
    (150, 120, 90),
    (0, 0, 90),
    (0, 0, 110),
) + tuple(c.color for c in CITYSCAPES_CLASSES)

#: SYNTHIA (RAND_CITYSCAPES) class names, indexed by the id stored in channel 0 of `GT/LABELS/*.png`.
SYNTHIA_CLASS_NAMES = (
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
)
#: SYNTHIA id -> train id (void, parking-slot, road-work and lanemarking are ignored).
SYNTHIA_ID_TO_TRAIN_ID = {
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
    16: 9,
    17: 12,
    18: 14,
    19: 15,
    20: 16,
    21: 3,
}
#: The 16 classes shared by SYNTHIA and Cityscapes (train ids), for the 16-class mIoU of Table 4.
SYNTHIA_16_TRAIN_IDS = (0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 15, 17, 18)

#: Mapillary Vistas v1.2 classes: (name, colour), indexed by label id (0..65) in `config.json` order.
MAPILLARY_CLASSES = (
    ("animal--bird", (165, 42, 42)),
    ("animal--ground-animal", (0, 192, 0)),
    ("construction--barrier--curb", (196, 196, 196)),
    ("construction--barrier--fence", (190, 153, 153)),
    ("construction--barrier--guard-rail", (180, 165, 180)),
    ("construction--barrier--other-barrier", (90, 120, 150)),
    ("construction--barrier--wall", (102, 102, 156)),
    ("construction--flat--bike-lane", (128, 64, 255)),
    ("construction--flat--crosswalk-plain", (140, 140, 200)),
    ("construction--flat--curb-cut", (170, 170, 170)),
    ("construction--flat--parking", (250, 170, 160)),
    ("construction--flat--pedestrian-area", (96, 96, 96)),
    ("construction--flat--rail-track", (230, 150, 140)),
    ("construction--flat--road", (128, 64, 128)),
    ("construction--flat--service-lane", (110, 110, 110)),
    ("construction--flat--sidewalk", (244, 35, 232)),
    ("construction--structure--bridge", (150, 100, 100)),
    ("construction--structure--building", (70, 70, 70)),
    ("construction--structure--tunnel", (150, 120, 90)),
    ("human--person", (220, 20, 60)),
    ("human--rider--bicyclist", (255, 0, 0)),
    ("human--rider--motorcyclist", (255, 0, 100)),
    ("human--rider--other-rider", (255, 0, 200)),
    ("marking--crosswalk-zebra", (200, 128, 128)),
    ("marking--general", (255, 255, 255)),
    ("nature--mountain", (64, 170, 64)),
    ("nature--sand", (230, 160, 50)),
    ("nature--sky", (70, 130, 180)),
    ("nature--snow", (190, 255, 255)),
    ("nature--terrain", (152, 251, 152)),
    ("nature--vegetation", (107, 142, 35)),
    ("nature--water", (0, 170, 30)),
    ("object--banner", (255, 255, 128)),
    ("object--bench", (250, 0, 30)),
    ("object--bike-rack", (100, 140, 180)),
    ("object--billboard", (220, 220, 220)),
    ("object--catch-basin", (220, 128, 128)),
    ("object--cctv-camera", (222, 40, 40)),
    ("object--fire-hydrant", (100, 170, 30)),
    ("object--junction-box", (40, 40, 40)),
    ("object--mailbox", (33, 33, 33)),
    ("object--manhole", (100, 128, 160)),
    ("object--phone-booth", (142, 0, 0)),
    ("object--pothole", (70, 100, 150)),
    ("object--street-light", (210, 170, 100)),
    ("object--support--pole", (153, 153, 153)),
    ("object--support--traffic-sign-frame", (128, 128, 128)),
    ("object--support--utility-pole", (0, 0, 80)),
    ("object--traffic-light", (250, 170, 30)),
    ("object--traffic-sign--back", (192, 192, 192)),
    ("object--traffic-sign--front", (220, 220, 0)),
    ("object--trash-can", (140, 140, 20)),
    ("object--vehicle--bicycle", (119, 11, 32)),
    ("object--vehicle--boat", (150, 0, 255)),
    ("object--vehicle--bus", (0, 60, 100)),
    ("object--vehicle--car", (0, 0, 142)),
    ("object--vehicle--caravan", (0, 0, 90)),
    ("object--vehicle--motorcycle", (0, 0, 230)),
    ("object--vehicle--on-rails", (0, 80, 100)),
    ("object--vehicle--other-vehicle", (128, 64, 64)),
    ("object--vehicle--trailer", (0, 0, 110)),
    ("object--vehicle--truck", (0, 0, 70)),
    ("object--vehicle--wheeled-slow", (0, 0, 192)),
    ("void--car-mount", (32, 32, 32)),
    ("void--ego-vehicle", (120, 10, 10)),
    ("void--unlabeled", (0, 0, 0)),
)
#: Mapillary v1.2 label id -> train id (every id not listed is ignored).
MAPILLARY_ID_TO_TRAIN_ID = {
    13: 0,
    24: 0,
    41: 0,  # road, lane marking (general), manhole -> road
    2: 1,
    15: 1,  # curb, sidewalk -> sidewalk
    17: 2,  # building
    6: 3,  # wall
    3: 4,  # fence
    45: 5,
    47: 5,  # pole, utility pole -> pole
    48: 6,  # traffic light
    50: 7,  # traffic sign (front)
    30: 8,  # vegetation
    29: 9,  # terrain
    27: 10,  # sky
    19: 11,  # person
    20: 12,
    21: 12,
    22: 12,  # bicyclist, motorcyclist, other rider -> rider
    55: 13,  # car
    61: 14,  # truck
    54: 15,  # bus
    58: 16,  # on rails -> train
    57: 17,  # motorcycle
    52: 18,  # bicycle
}
#: Mapillary colour -> train id (for the palette/colour label PNGs as distributed).
MAPILLARY_COLOR_TO_TRAIN_ID = {
    color: MAPILLARY_ID_TO_TRAIN_ID.get(i, IGNORE_ID) for i, (_, color) in enumerate(MAPILLARY_CLASSES)
}
assert len(MAPILLARY_CLASSES) == 66 and len(MAPILLARY_COLOR_TO_TRAIN_ID) == 66  # colours are unique

#: IDD `labelcsTrainIds` and BDD100K masks already hold train ids: 0..18 kept, everything else ignored.
TRAIN_ID_IDENTITY = {i: i for i in range(NUM_CLASSES)}


def lookup_table(mapping, size=256):
    """A NumPy uint8 table of `size` entries: `table[id] = mapping.get(id, 255)`."""
    table = np.full([size], IGNORE_ID, dtype=np.uint8)
    for k, v in mapping.items():
        if not 0 <= k < size:
            raise ValueError(f"id {k} outside the table of size {size}")
        table[k] = v
    return table


def map_ids(ids, mapping_or_table):
    """Map an integer id image (any int dtype, any shape) to uint8 train ids in TF ops.

    Ids outside the table (negative or >= its size) become 255.
    """
    table = mapping_or_table
    if isinstance(table, dict):
        table = lookup_table(table)
    table = tf.constant(np.asarray(table, dtype=np.uint8))
    size = int(table.shape[0])
    ids = tf.cast(ids, tf.int32)
    inside = (ids >= 0) & (ids < size)
    mapped = tf.gather(table, tf.clip_by_value(ids, 0, size - 1))
    return tf.where(inside, mapped, tf.constant(IGNORE_ID, tf.uint8))


def color_keys(colors):
    """Integer keys r*65536 + g*256 + b of an [..., 3] colour array (NumPy)."""
    c = np.asarray(colors, dtype=np.int64)
    return c[..., 0] * 65536 + c[..., 1] * 256 + c[..., 2]


@functools.cache
def _perfect_hash(items):
    """Smallest modulus m that sends every colour key to its own slot, with the slot tables."""
    keys = [k for k, _ in items]
    for m in range(len(keys), 1 << 20):
        slots = [k % m for k in keys]
        if len(set(slots)) == len(slots):
            break
    slot_keys = np.full([m], -1, np.int32)
    slot_values = np.full([m], IGNORE_ID, np.uint8)
    for (k, v), slot in zip(items, slots):
        slot_keys[slot], slot_values[slot] = k, v
    return m, slot_keys, slot_values


def map_colours(rgb, color_to_train_id):
    """Map an [H, W, 3] (or [H, W, 4]: alpha dropped) colour label image to uint8 train ids in TF ops.

    Colours not in the table become 255. Implemented as a collision-free hash (key mod m, m found once
    per table) plus a key comparison: two gathers per pixel, no hash-table resource in the graph.
    """
    items = tuple(
        sorted((int(k), int(v)) for k, v in zip(color_keys(list(color_to_train_id.keys())), color_to_train_id.values()))
    )
    m, slot_keys, slot_values = _perfect_hash(items)
    rgb = tf.cast(rgb[..., :3], tf.int32)
    key = rgb[..., 0] * 65536 + rgb[..., 1] * 256 + rgb[..., 2]
    slot = tf.math.floormod(key, m)
    found = tf.equal(tf.gather(tf.constant(slot_keys), slot), key)
    return tf.where(found, tf.gather(tf.constant(slot_values), slot), tf.constant(IGNORE_ID, tf.uint8))


def colorize(train_ids):
    """uint8 [..., 3] colour image of a train-id map (255 and unknown ids -> black), NumPy."""
    ids = np.asarray(train_ids)
    out = np.zeros(ids.shape + (3,), np.uint8)
    valid = ids < NUM_CLASSES
    out[valid] = TRAIN_ID_COLORS[ids[valid]]
    return out
