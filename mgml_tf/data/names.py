"""The names of the datasets the loaders read. A module of its own, without TensorFlow, so that the data tools
check a dataset name before they import it (``mgml_tf.data.datasets`` re-exports it)."""

KNOWN_DATASETS = ("gtav", "synthia", "cityscapes", "bdd100k", "mapillary", "idd")
