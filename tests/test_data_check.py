"""Data preparation: ``mgml_tf.data.check`` on a good tree (every published layout) and on one tree per fault,
``mgml_tf.data.gtav_split`` (GTAV's split.mat -> split lists) and the shipped Synthia split lists.

Every refusal is one line, every fault one line of the report, and nothing on disk changes (a listing with
sizes and mtimes is compared before and after). The checker runs in-process, and once as a subprocess."""

import hashlib
import os
import shutil
import sys

import numpy as np
import pytest
import tensorflow as tf

from mgml_tf.cli import common
from mgml_tf.data import check, gtav_split, splits
from mgml_tf.data import datasets as D
from mgml_tf.synthetic import streets
from tests.cli_helpers import run_cli, stderr_lines

H, W = 32, 48
#: layout -> (flag, split) as the train command reads them: sources on train, targets on val
LAYOUTS = {
    "gtav": ("sources", "train"),
    "synthia": ("sources", "train"),
    "cityscapes": ("targets", "val"),
    "bdd100k": ("targets", "val"),
    "mapillary": ("targets", "val"),
    "idd": ("targets", "val"),
}


# ------------------------------------------------------------------------------------------- helpers
def snapshot(root):
    """Every folder and file under ``root`` with its size and mtime (ns)."""
    out = []
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            st = os.lstat(os.path.join(folder, name))
            out.append((os.path.relpath(os.path.join(folder, name), root), st.st_size, st.st_mtime_ns))
    return sorted(out)


def run_check(capsys, *args):
    """``python -m mgml_tf.data.check args`` in-process: (status, stdout, non-empty stderr lines)."""
    with pytest.raises(SystemExit) as e:
        common.run(check.PROG, check.main, [check.PROG, *args])
    captured = capsys.readouterr()
    return e.value.code, captured.out, [line for line in captured.err.splitlines() if line.strip()]


def png(array):
    a = np.asarray(array)
    return tf.io.encode_png(tf.constant(a if a.ndim == 3 else a[..., None])).numpy()


def read_png(path):
    with open(path, "rb") as f:
        return tf.io.decode_png(f.read(), channels=0, dtype=tf.uint16 if "LABELS" in path else tf.uint8).numpy()


def write(path, payload):
    with open(path, "wb") as f:
        f.write(payload)


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """One tiny dataset (3 pairs) per published layout, on the split training reads it on."""
    base = tmp_path_factory.mktemp("good")
    roots = {}
    for layout, (_, split) in LAYOUTS.items():
        roots[layout] = str(base / layout)
        streets.write_dataset("sunny_game", layout, 3, roots[layout], height=H, width=W, split=split)
    return roots


@pytest.fixture
def copy(good, tmp_path):
    """A fresh copy of one good tree, to damage."""

    def make(layout):
        root = str(tmp_path / layout)
        shutil.copytree(good[layout], root)
        return root

    return make


# --------------------------------------------------------------------------------------- the good tree
def test_good_tree_of_every_layout_passes_and_is_unchanged(good, capsys):
    before = {k: snapshot(r) for k, r in good.items()}
    sources = ",".join(f"{k}:{r}" for k, r in good.items() if LAYOUTS[k][0] == "sources")
    targets = ",".join(f"{k}:{r}" for k, r in good.items() if LAYOUTS[k][0] == "targets")
    status, out, err = run_check(capsys, f"--sources={sources}", f"--targets={targets}", "--progress_seconds=1e-9")
    assert status == 0 and err == [], (out, err)
    for layout, (_, split) in LAYOUTS.items():
        assert f"{layout}:{good[layout]} ({split} split)" in out
        assert f"  {layout}: OK" in out
    assert out.count("files: 3 images, 3 labels, 3 pairs") == 6
    assert out.count("checked 3 pairs") == 6
    assert "layout: images/*{.png,.jpg} + labels/*.png (flat, as distributed; no split folders" in out
    assert "layout: leftImg8bit/val/*/*_leftImg8bit.png + gtFine/val/*/*_gtFine_labelIds.png" in out
    assert "layout: images/10k/val/*.jpg + labels/sem_seg/masks/val/*.png (the 10K release)" in out
    assert "layout: validation/images/*.jpg + validation/labels/*.png (v1.2)" in out
    assert "pairs checked" in out  # the progress line
    assert "FAULT" not in out and out.rstrip().endswith("all 6 domains OK")
    assert {k: snapshot(r) for k, r in good.items()} == before


# ------------------------------------------------------------------------------------- one tree per fault
def unknown_gtav_colour(root):
    label = read_png(f"{root}/labels/00002.png")
    label[0, :2] = (1, 2, 3)
    write(f"{root}/labels/00002.png", png(label))


def unknown_cityscapes_id(root):
    path = D._glob(f"{root}/gtFine/val/*/*_000001_gtFine_labelIds.png")[0]
    label = read_png(path)
    label[0, 0] = 40
    write(path, png(label))


def unknown_synthia_id(root):
    label = read_png(f"{root}/GT/LABELS/0000001.png")
    label[0, :3, 0] = 30  # 16-bit, channel 0: the class id
    write(f"{root}/GT/LABELS/0000001.png", png(label))


def size_mismatch(root):
    write(f"{root}/images/00002.png", png(np.zeros([H, W - 8, 3], np.uint8)))


def truncated_image(root):
    with open(f"{root}/images/00002.png", "rb") as f:
        data = f.read()
    write(f"{root}/images/00002.png", data[: len(data) // 2])


def damaged_image_data(root):  # structure intact (signature, IEND): only decoding finds it
    with open(f"{root}/images/00002.png", "rb") as f:
        data = bytearray(f.read())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(16)
    write(f"{root}/images/00002.png", bytes(data))


def empty_label(root):
    write(f"{root}/GT/LABELS/0000001.png", b"")


def unpaired_image(root):
    write(f"{root}/images/00004.png", png(np.zeros([H, W, 3], np.uint8)))


def missing_labels_folder(root):
    shutil.rmtree(f"{root}/labels")


FAULTS = {
    "unknown_gtav_colour": (
        "gtav",
        unknown_gtav_colour,
        "label values",
        ["FAULT label values outside the gtav label map", "(1, 2, 3) in 1 file (2 px)", "labels/00002.png"],
    ),
    "unknown_cityscapes_id": (
        "cityscapes",
        unknown_cityscapes_id,
        "label values",
        ["FAULT label values outside the cityscapes label map (ids 0..33 or 255)", "40 in 1 file (1 px)"],
    ),
    "unknown_synthia_id": (
        "synthia",
        unknown_synthia_id,
        "label values",
        ["FAULT label values outside the synthia label map (ids 0..22 or 255)", "30 in 1 file (3 px)"],
    ),
    "size_mismatch": (
        "gtav",
        size_mismatch,
        "size mismatch",
        ["FAULT size mismatch: 1 pair", f"images/00002.png is {H}x{W - 8} but labels/00002.png is {H}x{W}"],
    ),
    "truncated_image": (
        "gtav",
        truncated_image,
        "unreadable or corrupt",
        ["FAULT unreadable or corrupt: 1 file: images/00002.png: truncated (no end marker)"],
    ),
    "damaged_image_data": (
        "gtav",
        damaged_image_data,
        "unreadable or corrupt",
        ["FAULT unreadable or corrupt: 1 file: images/00002.png: cannot be decoded"],
    ),
    "empty_label": (
        "synthia",
        empty_label,
        "unreadable or corrupt",
        ["FAULT unreadable or corrupt: 1 file: GT/LABELS/0000001.png: empty (0 bytes)"],
    ),
    "unpaired_image": (
        "gtav",
        unpaired_image,
        "unpaired",
        ["files: 4 images, 3 labels, 3 pairs", "FAULT unpaired: 1 image without a label (images/00004.png)"],
    ),
    "missing_labels_folder": (
        "gtav",
        missing_labels_folder,
        "layout",
        ["layout: not found (labels/ is missing)", "FAULT layout: folder", "expected"],
    ),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_each_fault_is_named_in_one_line(copy, capsys, fault):
    layout, damage, kind, words = FAULTS[fault]
    root = copy(layout)
    damage(root)
    before = snapshot(root)
    flag = LAYOUTS[layout][0]
    status, out, err = run_check(capsys, f"--{flag}={layout}:{root}")
    assert status == 1, out
    faults = [line for line in out.splitlines() if line.startswith("  FAULT")]
    assert len(faults) == 1, out  # one fault, one line
    for word in words:
        assert word in out, (word, out)
    assert len(err) == 1 and err[0].startswith("mgml_tf.data.check: error: faults in 1 of 1 domain:"), err
    assert f"{layout} ({LAYOUTS[layout][1]}): {kind};" in err[0]
    assert snapshot(root) == before


def test_faults_of_several_domains_and_a_split_list(copy, capsys, tmp_path):
    """Two faulty domains and one good one: every fault reported, the good domain OK; a split list selects
    files and one naming a missing file is a fault."""
    gtav, synthia, cityscapes = copy("gtav"), copy("synthia"), copy("cityscapes")
    unpaired_image(gtav)
    size_mismatch(gtav)
    empty_label(synthia)
    status, out, err = run_check(
        capsys, f"--sources=gtav:{gtav},synthia:{synthia}", f"--targets=cityscapes:{cityscapes}"
    )
    assert status == 1 and len(err) == 1
    assert "gtav (train): unpaired, size mismatch; synthia (train): unreadable or corrupt" in err[0]
    assert "  cityscapes: OK" in out and "  gtav: 2 faults" in out
    lst = tmp_path / "list.txt"
    lst.write_text("# two of three\n00001\n00003.png\n")
    status, out, err = run_check(capsys, f"--sources=gtav:{gtav}", f"--split_list={lst}")
    assert status == 0, out  # the stray image and the mismatched pair are not in the list
    assert "(the split list selects 2 images, 2 labels), 2 pairs" in out and "split list" in out
    lst.write_text("00001\n09999\n")
    status, out, err = run_check(capsys, f"--sources=gtav:{gtav}", f"--split_list={lst}")
    assert status == 1 and "FAULT split list: names 1 file(s) with no image under images/: '09999'" in out


@pytest.mark.parametrize(
    "args, words",
    [
        (["--sources=kitti:{root}"], ["unknown dataset 'kitti'", "known: gtav, synthia"]),
        (["--sources=gtav:{root}/nowhere"], ["dataset root", "nowhere", "not found"]),
        (["--targets=cityscapes"], ["is not name:root"]),
        (["--sources=synthetic"], ["'synthetic' domains are generated"]),
        ([], ["give --sources and/or --targets"]),
        (["--sources=gtav:{root},gtav:{root}", "--split_list={root}/x.txt"], ["one domain; 2 domains"]),
        (["--sources=gtav:{root}", "--split_list={root}/nowhere.txt"], ["--split_list=", "not found"]),
        (["--sources=gtav:{root}", "--workers=0"], ["--workers"]),
    ],
)
def test_bad_usage_is_one_line_with_status_2(good, capsys, args, words):
    root = good["gtav"]
    before = snapshot(root)
    status, out, err = run_check(capsys, *[a.format(root=root) for a in args])
    assert status == 2 and out == "" and len(err) == 1, (out, err)
    for word in words:
        assert word in err[0], err[0]
    assert snapshot(root) == before


def test_label_scan_agrees_with_the_loaders_check():
    """The checker's fast scan finds exactly the values `unknown_label_values` (check_files=True) finds."""
    colours = np.zeros([4, 6, 3], np.uint8)
    colours[...] = (128, 64, 128)
    colours[0, 0], colours[1, 1] = (1, 2, 3), (250, 250, 250)
    ids16 = np.full([4, 6, 1], 7, np.uint16)
    ids16[0, :2], ids16[1, 0] = 300, 40
    synthia = np.zeros([4, 6, 3], np.uint16)
    synthia[..., 0] = 3
    synthia[0, 0, 0], synthia[0, 1, 1] = 30, 99  # channel 1 (instances) is not a class id
    cases = [
        ("gtav", png(colours), {(1, 2, 3): 1, (250, 250, 250): 1}),
        ("gtav", png(np.array([[7, 50], [255, 7]], np.uint8)), {50: 1}),
        ("cityscapes", png(ids16), {300: 2, 40: 1}),
        ("cityscapes", png(colours), None),  # a colour PNG of ids is read as grey, as the loader does
        ("synthia", png(synthia), {30: 1}),
        ("mapillary", png(colours), None),
        ("idd", png(np.array([[0, 18], [19, 255]], np.uint8)), {19: 1}),
    ]
    for name, data, expected in cases:
        fmt = D.LABEL_FORMATS[name]
        h, w, found = check.LabelScanner(fmt).scan(data)
        assert sorted(found, key=str) == sorted(D.unknown_label_values(data, fmt), key=str), name
        assert (h, w) == tuple(tf.io.decode_png(data).shape[:2])
        if expected is not None:
            assert found == expected, (name, found)


def test_subprocess_reports_a_fault_in_one_stderr_line(copy):
    root = copy("gtav")
    unknown_gtav_colour(root)
    before = snapshot(root)
    proc = run_cli("data.check", f"--sources=gtav:{root}", timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAULT label values outside the gtav label map" in proc.stdout
    # one line: TensorFlow is imported after the flags are checked, with its start-up lines quieted
    lines = stderr_lines(proc)
    assert len(lines) == 1 and lines[0].startswith("mgml_tf.data.check: error: faults in 1 of 1 domain"), lines
    assert snapshot(root) == before


# ----------------------------------------------------------------------------------------- GTAV's split
def write_split_mat(path, **fields):
    scipy_io = pytest.importorskip("scipy.io")
    # MATLAB stores the ids as double column vectors, as GTAV's split.mat does
    scipy_io.savemat(path, {k: np.asarray(v, np.float64).reshape(-1, 1) for k, v in fields.items()})


def run_split(capsys, *args):
    with pytest.raises(SystemExit) as e:
        common.run(gtav_split.PROG, gtav_split.main, [gtav_split.PROG, *args])
    captured = capsys.readouterr()
    return e.value.code, captured.out, [line for line in captured.err.splitlines() if line.strip()]


def test_gtav_split_mat_to_the_lists_the_loader_reads(good, tmp_path, capsys):
    mat = str(tmp_path / "split.mat")
    write_split_mat(mat, trainIds=[3, 1], valIds=[2], testIds=[4, 5])
    out_dir = str(tmp_path / "lists")
    status, out, err = run_split(capsys, f"--split_mat={mat}", f"--output_dir={out_dir}")
    assert status == 0 and err == [], err
    assert "train: 2 images (00001..00003)" in out
    with open(f"{out_dir}/train.txt") as f:
        lines = f.read().splitlines()
    assert lines[0].startswith("# GTAV train split: 2 images, from split.mat (sha256 ")
    assert lines[1:] == ["00001", "00003"]  # sorted, five digits: the stems of GTAV's file names
    # the loader reads the list and finds the files the synthetic GTAV tree names 00001.png, 00002.png, ...
    domain = D.load_domain("gtav", good["gtav"], split="train", split_list=f"{out_dir}/train.txt")
    assert [os.path.basename(i) for i, _ in domain.pairs] == ["00001.png", "00003.png"]
    domain = D.load_domain("gtav", good["gtav"], split="val", split_list=f"{out_dir}/val.txt")
    assert [os.path.basename(i) for i, _ in domain.pairs] == ["00002.png"]
    with pytest.raises(D.SplitListError, match="00004"):  # the tiny tree has three images
        D.load_domain("gtav", good["gtav"], split="test", split_list=f"{out_dir}/test.txt")


@pytest.mark.parametrize(
    "fields, words",
    [
        ({"trainIds": [1, 2], "valIds": [2], "testIds": [3]}, ["1 image number(s) are in both trainIds and valIds"]),
        ({"trainIds": [1, 1], "valIds": [2], "testIds": [3]}, ["trainIds lists 1 image number(s) twice"]),
        ({"trainIds": [0, 1], "valIds": [2], "testIds": [3]}, ["not image numbers 1..99999", "1-based"]),
        ({"trainIds": [1.5], "valIds": [2], "testIds": [3]}, ["not image numbers", "first: 1.5"]),
        ({"trainIds": [1], "valIds": [2]}, ["has no testIds", "fields found: trainIds, valIds"]),
        (None, ["is not a readable MATLAB .mat file"]),
        ("missing", ["--split_mat=", "not found"]),
        ("exists", ["exists; pass --overwrite"]),
        ("no_scipy", ["reading split.mat needs SciPy: pip install scipy"]),
    ],
)
def test_gtav_split_refusals_are_one_line_and_write_nothing(tmp_path, capsys, monkeypatch, fields, words):
    mat = str(tmp_path / "split.mat")
    out_dir = tmp_path / "lists"
    out_dir.mkdir()
    if isinstance(fields, dict):
        write_split_mat(mat, **fields)
    elif fields is None:
        write(mat, b"not a mat file")
    elif fields in ("exists", "no_scipy"):
        write_split_mat(mat, trainIds=[1], valIds=[2], testIds=[3])
    if fields == "exists":
        (out_dir / "val.txt").write_text("keep me\n")
    if fields == "no_scipy":
        monkeypatch.setitem(sys.modules, "scipy", None)
        monkeypatch.setitem(sys.modules, "scipy.io", None)
    before = snapshot(str(out_dir))
    status, out, err = run_split(capsys, f"--split_mat={mat}", f"--output_dir={out_dir}")
    assert status == 2 and out == "" and len(err) == 1, (out, err)
    assert err[0].startswith("mgml_tf.data.gtav_split: error: ")
    for word in words:
        assert word in err[0], err[0]
    assert snapshot(str(out_dir)) == before


# ------------------------------------------------------------------------------------ Synthia's split
def test_shipped_synthia_split_is_the_published_one():
    """The DGSS split of SYNTHIA-RAND-CITYSCAPES (RobustNet's split_data, also in Pin the Memory's): the
    README's checksums, 6580 + 2820 disjoint stems covering 0000000..0009399, read by the loader's reader."""
    readme = open(os.path.join(os.path.dirname(splits.path("synthia", "train")), "README.md")).read()
    stems = {}
    for split, count in (("train", 6580), ("val", 2820)):
        path = splits.path("synthia", split)
        with open(path, "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() in readme
        stems[split] = D._read_split_list("synthia", path)
        assert len(stems[split]) == len(set(stems[split])) == count
    assert not set(stems["train"]) & set(stems["val"])
    assert set(stems["train"]) | set(stems["val"]) == {f"{i:07d}" for i in range(9400)}
    with pytest.raises(ValueError, match="no published split list for gtav/train"):
        splits.path("gtav", "train")


def test_synthia_split_list_selects_files_in_the_loader(copy, capsys, tmp_path):
    """A Synthia tree read through a list in the shipped format (file names with .png): checker and loader
    agree on the files."""
    root = copy("synthia")
    lst = tmp_path / "synthia_val.txt"
    lst.write_text("0000000.png\n0000002.png\n")
    status, out, _ = run_check(capsys, f"--targets=synthia:{root}", f"--split_list={lst}")
    assert status == 0 and "2 pairs" in out and "checked 2 pairs" in out
    domain = D.load_domain("synthia", root, split="val", split_list=str(lst))
    assert [os.path.basename(i) for i, _ in domain.pairs] == ["0000000.png", "0000002.png"]
