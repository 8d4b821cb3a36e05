"""Data: dataset loaders (real layouts), label maps, augmentation and meta-learning episodes."""
from mgml_tf.data.datasets import (  # noqa: F401
    KNOWN_DATASETS, LABEL_FORMATS, CorruptFileError, DataError, DatasetNotFoundError, Domain,
    LabelFormat, NoFilesFoundError, SizeMismatchError, SplitListError, UnknownDatasetError,
    UnpairedFilesError, decode_image, decode_label, load_domain, parse_domains, read_pair)
from mgml_tf.data.augment import AugmentConfig, augment  # noqa: F401
from mgml_tf.data.episodes import (  # noqa: F401
    EpisodeError, aggregated_batches, episodes, evaluation_dataset, split_domains)
