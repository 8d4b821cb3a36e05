"""Class tables of the synthetic generator: how each family's train ids are written in each layout.

Deliberately independent of the loaders' label maps (`mgml_tf.data.labels`), unlike the layout tables
(`layout_writer` imports those from `mgml_tf.data.datasets`): the tests that the loaders read back what the
generator wrote (tests/test_synthetic_streets.py, tests/test_synthetic_towns.py) and the loader tests on
generated data only mean something if the label encoding is written separately from the decoding.  The
streets tests check these tables against `cityscapesscripts` and Mapillary's class list instead.

The 19 Cityscapes evaluation classes with their train id (0..18), Cityscapes label id and colour,
plus the ids each written dataset layout uses for them:

* Synthia RAND_CITYSCAPES (`GT/LABELS`, channel 0): 1 sky, 2 building, 3 road, 4 sidewalk, 5 fence,
  6 vegetation, 7 pole, 8 car, 9 traffic sign, 10 pedestrian, 11 bicycle, 12 motorcycle, 15 traffic light,
  17 rider, 19 bus, 21 wall; 0 is void.  Synthia has no terrain, truck or train: those pixels are written
  as 0 (void), which every Synthia loader ignores.
* Mapillary Vistas v1.2 (66 classes, ids 0..65 in the order of its `config.json`): one id is chosen per
  train id (the id the usual 66 -> 19 mapping sends to that train id); 65 "Unlabeled" is void.
"""

import numpy as np

IGNORE_INDEX = 255
NUM_CLASSES = 19

# (name, train id, Cityscapes label id, colour)
CLASSES = (
    ("road", 0, 7, (128, 64, 128)),
    ("sidewalk", 1, 8, (244, 35, 232)),
    ("building", 2, 11, (70, 70, 70)),
    ("wall", 3, 12, (102, 102, 156)),
    ("fence", 4, 13, (190, 153, 153)),
    ("pole", 5, 17, (153, 153, 153)),
    ("traffic light", 6, 19, (250, 170, 30)),
    ("traffic sign", 7, 20, (220, 220, 0)),
    ("vegetation", 8, 21, (107, 142, 35)),
    ("terrain", 9, 22, (152, 251, 152)),
    ("sky", 10, 23, (70, 130, 180)),
    ("person", 11, 24, (220, 20, 60)),
    ("rider", 12, 25, (255, 0, 0)),
    ("car", 13, 26, (0, 0, 142)),
    ("truck", 14, 27, (0, 0, 70)),
    ("bus", 15, 28, (0, 60, 100)),
    ("train", 16, 31, (0, 80, 100)),
    ("motorcycle", 17, 32, (0, 0, 230)),
    ("bicycle", 18, 33, (119, 11, 32)),
)
CLASS_NAMES = tuple(c[0] for c in CLASSES)

(
    ROAD,
    SIDEWALK,
    BUILDING,
    WALL,
    FENCE,
    POLE,
    TRAFFIC_LIGHT,
    TRAFFIC_SIGN,
    VEGETATION,
    TERRAIN,
    SKY,
    PERSON,
    RIDER,
    CAR,
    TRUCK,
    BUS,
    TRAIN,
    MOTORCYCLE,
    BICYCLE,
) = range(NUM_CLASSES)

# Lookup tables indexed by train id; index 255 (ignore) is handled by the 256-entry versions.
TRAIN_TO_LABEL_ID = np.zeros(256, np.uint8)  # ignore -> 0 ("unlabeled")
TRAIN_TO_COLOR = np.zeros((256, 3), np.uint8)  # ignore -> black ("unlabeled")
for _name, _tid, _lid, _col in CLASSES:
    TRAIN_TO_LABEL_ID[_tid] = _lid
    TRAIN_TO_COLOR[_tid] = _col

# Synthia RAND_CITYSCAPES class id per train id (0 = void: terrain, truck, train do not exist there).
SYNTHIA_IDS = {
    "void": 0,
    "sky": 1,
    "building": 2,
    "road": 3,
    "sidewalk": 4,
    "fence": 5,
    "vegetation": 6,
    "pole": 7,
    "car": 8,
    "traffic sign": 9,
    "person": 10,
    "bicycle": 11,
    "motorcycle": 12,
    "parking-slot": 13,
    "road-work": 14,
    "traffic light": 15,
    "terrain": 16,
    "rider": 17,
    "truck": 18,
    "bus": 19,
    "train": 20,
    "wall": 21,
    "lanemarking": 22,
}
SYNTHIA_ABSENT = ("terrain", "truck", "train")
TRAIN_TO_SYNTHIA = np.zeros(256, np.uint16)
for _name, _tid, _lid, _col in CLASSES:
    TRAIN_TO_SYNTHIA[_tid] = 0 if _name in SYNTHIA_ABSENT else SYNTHIA_IDS[_name]

# Mapillary Vistas v1.2 class names (id = position), and the id written for each train id.
MAPILLARY_V12_NAMES = (
    "Bird",
    "Ground Animal",
    "Curb",
    "Fence",
    "Guard Rail",
    "Barrier",
    "Wall",
    "Bike Lane",
    "Crosswalk - Plain",
    "Curb Cut",
    "Parking",
    "Pedestrian Area",
    "Rail Track",
    "Road",
    "Service Lane",
    "Sidewalk",
    "Bridge",
    "Building",
    "Tunnel",
    "Person",
    "Bicyclist",
    "Motorcyclist",
    "Other Rider",
    "Lane Marking - Crosswalk",
    "Lane Marking - General",
    "Mountain",
    "Sand",
    "Sky",
    "Snow",
    "Terrain",
    "Vegetation",
    "Water",
    "Banner",
    "Bench",
    "Bike Rack",
    "Billboard",
    "Catch Basin",
    "CCTV Camera",
    "Fire Hydrant",
    "Junction Box",
    "Mailbox",
    "Manhole",
    "Phone Booth",
    "Pothole",
    "Street Light",
    "Pole",
    "Traffic Sign Frame",
    "Utility Pole",
    "Traffic Light",
    "Traffic Sign (Back)",
    "Traffic Sign (Front)",
    "Trash Can",
    "Bicycle",
    "Boat",
    "Bus",
    "Car",
    "Caravan",
    "Motorcycle",
    "On Rails",
    "Other Vehicle",
    "Trailer",
    "Truck",
    "Wheeled Slow",
    "Car Mount",
    "Ego Vehicle",
    "Unlabeled",
)
_MAPILLARY_PICK = {
    "road": "Road",
    "sidewalk": "Sidewalk",
    "building": "Building",
    "wall": "Wall",
    "fence": "Fence",
    "pole": "Pole",
    "traffic light": "Traffic Light",
    "traffic sign": "Traffic Sign (Front)",
    "vegetation": "Vegetation",
    "terrain": "Terrain",
    "sky": "Sky",
    "person": "Person",
    "rider": "Bicyclist",
    "car": "Car",
    "truck": "Truck",
    "bus": "Bus",
    "train": "On Rails",
    "motorcycle": "Motorcycle",
    "bicycle": "Bicycle",
}
MAPILLARY_UNLABELED = MAPILLARY_V12_NAMES.index("Unlabeled")  # 65
TRAIN_TO_MAPILLARY = np.full(256, MAPILLARY_UNLABELED, np.uint8)
for _name, _tid, _lid, _col in CLASSES:
    TRAIN_TO_MAPILLARY[_tid] = MAPILLARY_V12_NAMES.index(_MAPILLARY_PICK[_name])

# Train ids as written (bdd100k masks, IDD labelcsTrainIds): identity, 255 stays ignore.
TRAIN_TO_TRAIN = np.arange(256, dtype=np.uint8)
TRAIN_TO_TRAIN[NUM_CLASSES:] = IGNORE_INDEX


def colorize(label):
    """Train-id map [H, W] -> Cityscapes colour image [H, W, 3] uint8 (ignore is black)."""
    return TRAIN_TO_COLOR[np.asarray(label, np.uint8)]
