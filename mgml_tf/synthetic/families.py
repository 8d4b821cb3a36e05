"""The registry of synthetic scene families: family name -> the module that implements it.

Every family module has the same API (`FAMILY_API`): its styles (`STYLES`, `SOURCE_STYLES`, `TARGET_STYLES`),
its default suite (`DEFAULT_SUITE`: style -> layout), `generate_scene`, `image_rng`, `write_dataset`,
`write_default_suite`, `class_frequencies` and the identity it records in SYNTHETIC.json (`GENERATOR`).
The names here are the values of ``--family`` (``python -m mgml_tf.synthetic``) and of ``--synthetic_family``
(the training and evaluation commands). Reading the registry imports no family.
"""

import importlib

#: family name -> module implementing it.
FAMILIES = {"streets": "mgml_tf.synthetic.streets", "towns": "mgml_tf.synthetic.towns"}
#: The family ``synthetic`` means unless a flag says otherwise.
DEFAULT_FAMILY = "streets"
#: What every family module provides.
FAMILY_API = (
    "GENERATOR",
    "CLASS_NAMES",
    "STYLES",
    "SOURCE_STYLES",
    "TARGET_STYLES",
    "DEFAULT_SUITE",
    "get_style",
    "generate_scene",
    "image_rng",
    "write_dataset",
    "write_default_suite",
    "class_frequencies",
)


def load(name):
    """The module of family `name`; ValueError (one line, listing the families) for an unknown name."""
    if name not in FAMILIES:
        raise ValueError(f"unknown family {name!r}; known families: {', '.join(FAMILIES)}")
    return importlib.import_module(FAMILIES[name])
