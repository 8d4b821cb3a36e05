"""Data: dataset loaders (real layouts), label maps, augmentation and meta-learning episodes."""
from mgml_tf.data.datasets import (  # noqa: F401
    KNOWN_DATASETS, LABEL_FORMATS, CorruptFileError, DataError, DatasetNotFoundError, Domain,
    LabelFormat, NoFilesFoundError, SizeMismatchError, SplitListError, UnknownDatasetError,
    UnknownLabelValueError, UnpairedFilesError, check_image_file, decode_image, decode_label, load_domain,
    parse_domains, read_pair, unknown_label_values)
# `augment` and `episodes` are submodules (their main functions share the module name, so they are not
# re-exported here: `from mgml_tf.data.episodes import episodes`).
from mgml_tf.data import augment, episodes  # noqa: F401,E402
from mgml_tf.data.augment import AugmentConfig  # noqa: F401
from mgml_tf.data.episodes import (  # noqa: F401
    EpisodeError, aggregated_batches, evaluation_dataset, split_domains)
