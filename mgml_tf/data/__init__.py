"""Data: dataset loaders (real layouts), label maps, augmentation and meta-learning episodes.

The names below are imported on first use (PEP 562 ``__getattr__``), not with the package: the loaders
import TensorFlow, which the data tools that do not need it (``python -m mgml_tf.data.gtav_split``, and
``python -m mgml_tf.data.check`` until it reads files) would otherwise load, with its start-up lines on
stderr and seconds of start-up, before they could check their flags. ``from mgml_tf.data import X`` works
as before for every name listed here.
"""

import importlib

# `augment` and `episodes` are submodules (their main functions share the module name, so they are not
# re-exported here: `from mgml_tf.data.episodes import episodes`).
_SUBMODULES = ("augment", "check", "datasets", "episodes", "gtav_split", "labels", "names", "splits")

#: name -> the submodule that defines it
_LAZY = {
    "AugmentConfig": "augment",
    **dict.fromkeys(
        (
            "KNOWN_DATASETS",
            "LABEL_FORMATS",
            "CorruptFileError",
            "DataError",
            "DatasetNotFoundError",
            "Domain",
            "LabelFormat",
            "NoFilesFoundError",
            "SizeMismatchError",
            "SplitListError",
            "UnknownDatasetError",
            "UnknownLabelValueError",
            "UnpairedFilesError",
            "check_image_file",
            "decode_image",
            "decode_label",
            "load_domain",
            "parse_domains",
            "read_pair",
            "unknown_label_values",
        ),
        "datasets",
    ),
    **dict.fromkeys(("EpisodeError", "aggregated_batches", "evaluation_dataset", "split_domains"), "episodes"),
}


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value  # later look-ups skip __getattr__
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *_SUBMODULES, *_LAZY})


__all__ = sorted({*_LAZY, "augment", "episodes"})
