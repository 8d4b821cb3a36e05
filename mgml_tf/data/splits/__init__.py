"""Published split lists shipped as data (README.md here names their sources): pass `path(name, split)` as
`load_domain`'s `split_list`, e.g. ``load_domain("synthia", root, "val", split_list=splits.path("synthia",
"val"))``.

On the command line a domain selects its files with a split list as ``name:root:split_list=LIST``
(`parse_spec`), LIST being ``published`` (the list shipped here for the split the command reads) or a file
(`resolve`)."""

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


#: The value of a domain's ``split_list`` option that names the list shipped here.
PUBLISHED = "published"
_OPTION = ":split_list="


def parse_spec(item):
    """``(name, root, split_list)`` of a ``name:root`` or ``name:root:split_list=LIST`` domain of a command
    line's comma list (``split_list`` None when not given; not resolved: see `resolve`). The option is split
    off the end, so a root may hold colons."""
    item = item.strip()
    body, option, split_list = item.rpartition(_OPTION)
    if not option:
        body, split_list = item, None
    name, _, root = body.partition(":")
    return name.strip().lower(), root, split_list


def resolve(split_list, name, split):
    """The absolute path of a domain's split list: ``published`` -> `path` (name, split); otherwise the file
    (``~`` expanded, relative to the current directory). ValueError (one line, saying what to give) when there
    is no published list or no such file."""
    value = str(split_list).strip()
    if value == PUBLISHED:
        return path(name, split)
    if not value:
        raise ValueError(f"split_list= needs a value: {PUBLISHED} or a text file of file stems")
    full = os.path.abspath(os.path.expanduser(value))
    if not os.path.isfile(full):
        raise ValueError(
            f"split list {full} of {name} not found; give split_list={PUBLISHED} or a text file of file stems"
        )
    return full
