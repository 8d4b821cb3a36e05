"""Published split lists shipped as data (README.md here names their sources): pass `path(name, split)` as
`load_domain`'s `split_list`, e.g. ``load_domain("synthia", root, "val", split_list=splits.path("synthia",
"val"))``."""

import os

_HERE = os.path.dirname(os.path.abspath(__file__))

#: (dataset, split) -> file name of the list in this folder
LISTS = {
    ("synthia", "train"): "synthia_split_train.txt",
    ("synthia", "val"): "synthia_split_val.txt",
}


def path(name, split):
    """The absolute path of the shipped split list of `name` (a dataset) and `split`; ValueError (one line)
    when there is none."""
    key = (str(name).strip().lower(), str(split).strip().lower())
    if key not in LISTS:
        known = ", ".join(f"{n}/{s}" for n, s in LISTS)
        raise ValueError(f"no published split list for {name}/{split}; shipped: {known}")
    return os.path.join(_HERE, LISTS[key])
