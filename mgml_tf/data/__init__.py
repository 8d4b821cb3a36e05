"""Data: dataset loaders (real layouts), label maps, augmentation and meta-learning episodes."""

# `augment` and `episodes` are submodules (their main functions share the module name, so they are not
# re-exported here: `from mgml_tf.data.episodes import episodes`).
from mgml_tf.data import augment, episodes
from mgml_tf.data.augment import AugmentConfig
from mgml_tf.data.datasets import (
    KNOWN_DATASETS,
    LABEL_FORMATS,
    CorruptFileError,
    DataError,
    DatasetNotFoundError,
    Domain,
    LabelFormat,
    NoFilesFoundError,
    SizeMismatchError,
    SplitListError,
    UnknownDatasetError,
    UnknownLabelValueError,
    UnpairedFilesError,
    check_image_file,
    decode_image,
    decode_label,
    load_domain,
    parse_domains,
    read_pair,
    unknown_label_values,
)
from mgml_tf.data.episodes import EpisodeError, aggregated_batches, evaluation_dataset, split_domains

__all__ = [
    "KNOWN_DATASETS",
    "LABEL_FORMATS",
    "AugmentConfig",
    "CorruptFileError",
    "DataError",
    "DatasetNotFoundError",
    "Domain",
    "EpisodeError",
    "LabelFormat",
    "NoFilesFoundError",
    "SizeMismatchError",
    "SplitListError",
    "UnknownDatasetError",
    "UnknownLabelValueError",
    "UnpairedFilesError",
    "aggregated_batches",
    "augment",
    "check_image_file",
    "decode_image",
    "decode_label",
    "episodes",
    "evaluation_dataset",
    "load_domain",
    "parse_domains",
    "read_pair",
    "split_domains",
    "unknown_label_values",
]
