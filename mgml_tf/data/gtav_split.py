"""``python -m mgml_tf.data.gtav_split --split_mat=read_mapping/split.mat --output_dir=DIR [--overwrite]``

GTAV's official train/val/test split (Richter et al. 2016) is published as a MATLAB file, ``split.mat``
of the ``read_mapping`` code of the GTAV download, holding ``trainIds``, ``valIds`` and ``testIds``: arrays
of 1-based image numbers (image 1 is ``images/00001.png``). This writes them as the split lists
``load_domain("gtav", root, split_list=...)`` reads: ``DIR/train.txt``, ``DIR/val.txt``, ``DIR/test.txt``,
one file stem per line (``00001``; five digits, as GTAV names its files), sorted, after a ``#`` comment
line naming the source. Check the result with ``python -m mgml_tf.data.check --sources=gtav:ROOT
--split_list=DIR/train.txt``.

Reading the .mat needs SciPy (``scipy.io.loadmat``; not an install requirement of mgml_tf). Every input
is checked before anything is written (numbers positive integers below 100000, no number twice, no number
in two parts), existing lists are replaced only with ``--overwrite``, and each file is written atomically.
Exit status 0; 2 for bad input, with one line on stderr and nothing written.
"""

import hashlib
import os
import sys

from mgml_tf.cli import common
from mgml_tf.errors import UsageError, one_line

PROG = "mgml_tf.data.gtav_split"
#: split.mat field -> the split list written from it
FIELDS = {"trainIds": "train", "valIds": "val", "testIds": "test"}
_MAX_NUMBER = 99999  # five-digit file names


def make_flags():
    from absl import flags

    fv = flags.FlagValues()
    flags.DEFINE_string("split_mat", None, "GTAV's split.mat (trainIds, valIds, testIds).", flag_values=fv)
    flags.DEFINE_string("output_dir", None, "Folder for train.txt, val.txt and test.txt.", flag_values=fv)
    flags.DEFINE_boolean("overwrite", False, "Replace existing split lists in --output_dir.", flag_values=fv)
    return fv


def stem(number):
    """The GTAV file stem of 1-based image ``number``: ``00001``."""
    return f"{int(number):05d}"


def read_split_mat(path):
    """``{"train": [numbers], "val": [...], "test": [...]}`` from GTAV's split.mat, sorted; ``UsageError``
    (one line) for a file that is not such a split."""
    if not os.path.isfile(path):
        raise UsageError(f"--split_mat={path} not found; it is split.mat of GTAV's read_mapping code")
    try:
        import scipy.io
        import scipy.io.matlab
    except ImportError:
        raise UsageError("reading split.mat needs SciPy: pip install scipy") from None
    import numpy as np

    try:
        contents = scipy.io.loadmat(path)
    except NotImplementedError:  # scipy's answer to MATLAB v7.3 (HDF5) files
        raise UsageError(
            f"{path} is a MATLAB v7.3 (HDF5) file, which scipy cannot read; re-save it in MATLAB or Octave with "
            "save('split.mat', 'trainIds', 'valIds', 'testIds', '-v7')"
        ) from None
    except (ValueError, TypeError, OSError, scipy.io.matlab.MatReadError) as e:
        raise UsageError(f"{path} is not a readable MATLAB .mat file ({one_line(e)})") from None
    missing = [f for f in FIELDS if f not in contents]
    if missing:
        found = ", ".join(k for k in contents if not k.startswith("__")) or "none"
        raise UsageError(
            f"{path} has no {', '.join(missing)} (fields found: {found}); give split.mat of GTAV's read_mapping code"
        )
    parts, seen = {}, {}
    for field, split in FIELDS.items():
        values = np.asarray(contents[field])
        if not (np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating)):
            raise UsageError(f"{path}: {field} is not a numeric array; give split.mat of GTAV's read_mapping code")
        values = values.ravel().astype(np.float64)
        if values.size == 0:
            raise UsageError(f"{path}: {field} is empty")
        bad = values[(values != np.round(values)) | (values < 1) | (values > _MAX_NUMBER)]
        if bad.size:
            raise UsageError(
                f"{path}: {field} holds {bad.size} value(s) that are not image numbers 1..{_MAX_NUMBER} "
                f"(first: {bad[0]:g}); image numbers are 1-based"
            )
        numbers = values.astype(np.int64)
        unique, counts = np.unique(numbers, return_counts=True)
        if (counts > 1).any():
            twice = unique[counts > 1]
            raise UsageError(f"{path}: {field} lists {twice.size} image number(s) twice (first: {twice[0]})")
        for other, numbers_other in seen.items():
            both = np.intersect1d(unique, numbers_other)
            if both.size:
                raise UsageError(
                    f"{path}: {both.size} image number(s) are in both {other} and {field} (first: {both[0]})"
                )
        seen[field] = unique
        parts[split] = [int(n) for n in unique]
    return parts


def write_lists(parts, output_dir, source, overwrite=False):
    """Writes ``output_dir/{train,val,test}.txt``; returns their paths. Refuses (``UsageError``) existing
    lists without ``overwrite`` before writing any."""
    from mgml_tf.files import atomic_write_text

    paths = {split: os.path.join(output_dir, f"{split}.txt") for split in parts}
    existing = [p for p in paths.values() if os.path.exists(p)]
    if existing and not overwrite:
        raise UsageError(
            f"{', '.join(existing)} exist{'s' if len(existing) == 1 else ''}; pass --overwrite to replace "
            "them or choose another --output_dir"
        )
    for split, numbers in parts.items():
        text = f"# GTAV {split} split: {len(numbers)} image{'' if len(numbers) == 1 else 's'}, from {source}\n"
        text += "".join(stem(n) + "\n" for n in numbers)
        atomic_write_text(paths[split], text)
    return paths


def main(argv):
    fv = make_flags()
    common.parse_flags(fv, argv, PROG)
    for name in ("split_mat", "output_dir"):
        if not fv[name].value:
            raise UsageError(f"--{name} is required")
    split_mat = os.path.abspath(os.path.expanduser(fv.split_mat))
    output_dir = os.path.abspath(os.path.expanduser(fv.output_dir))
    common.check_writable("output_dir", output_dir)
    parts = read_split_mat(split_mat)
    with open(split_mat, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    paths = write_lists(parts, output_dir, f"{os.path.basename(split_mat)} (sha256 {digest[:16]})", fv.overwrite)
    for split, path in paths.items():
        numbers = parts[split]
        images = f"{len(numbers)} image{'' if len(numbers) == 1 else 's'}"
        print(f"{split}: {images} ({stem(numbers[0])}..{stem(numbers[-1])}) -> {path}")
    return 0


if __name__ == "__main__":
    common.run(PROG, main, sys.argv)
