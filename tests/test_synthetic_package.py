"""The generator package as a whole: its tables are the loaders', `mgml_tf.data` stands alone, the family
registry, and the generator identity recorded in SYNTHETIC.json."""

import ast
import json
import os
import subprocess
import sys

import pytest

import mgml_tf.data as data_pkg
import mgml_tf.synthetic as synthetic_pkg
from mgml_tf.data import datasets
from mgml_tf.synthetic import families, layout_writer


def _sources(pkg):
    here = os.path.dirname(pkg.__file__)
    for name in sorted(os.listdir(here)):
        if name.endswith(".py"):
            with open(os.path.join(here, name)) as f:
                yield name, ast.parse(f.read())


def _imported(tree):
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


# ---------------------------------------------------------------------------------------- shared tables
def test_layouts_and_split_tables_are_the_loaders():
    """The same objects, not equal copies."""
    assert layout_writer.LAYOUTS is datasets.KNOWN_DATASETS
    for name in families.FAMILIES:
        assert families.load(name).LAYOUTS is datasets.KNOWN_DATASETS
    assert layout_writer.FILE_LAYOUTS is datasets.FILE_LAYOUTS
    assert datasets.FILE_LAYOUTS["mapillary"].split_folders is datasets.MAPILLARY_SPLITS
    assert set(datasets.FILE_LAYOUTS) == set(datasets.KNOWN_DATASETS)


def test_generator_keeps_no_copy_of_the_layout_tables():
    """No folder name, file suffix or Mapillary split folder of the loaders' layouts is spelled out in the
    generator's sources: they come from `mgml_tf.data.datasets` only."""
    spelled = set(datasets.MAPILLARY_SPLITS.values())
    for fl in datasets.FILE_LAYOUTS.values():
        spelled |= {fl.image_suffix, fl.label_suffix} - {".png", ".jpg"}  # a bare extension picks the encoder
        for folder in (fl.image_dir, fl.label_dir):
            spelled |= {part for part in folder.split("/") if part != "{split}"}
            spelled.add(folder)
    for name, tree in _sources(synthetic_pkg):
        constants = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
        assert not constants & spelled, (name, constants & spelled)


@pytest.mark.parametrize("layout", datasets.KNOWN_DATASETS)
def test_written_paths_follow_the_loaders_layouts(tmp_path, layout):
    fl = datasets.FILE_LAYOUTS[layout]
    image_dir, label_dir = fl.dirs(str(tmp_path), "val")
    image, label = layout_writer.paths(layout, str(tmp_path), "val", "rainy_realistic", 123)
    assert image.startswith(image_dir + os.sep) and image.endswith(fl.image_suffix)
    assert label.startswith(label_dir + os.sep) and label.endswith(fl.label_suffix)
    stem = os.path.relpath(image, image_dir)[: -len(fl.image_suffix)]
    assert os.path.relpath(label, label_dir) == stem + fl.label_suffix  # an image and its label pair up


# ------------------------------------------------------------------------------------- package boundary
def test_data_package_does_not_import_the_generator():
    for name, tree in _sources(data_pkg):
        assert not {m for m in _imported(tree) if m.startswith("mgml_tf.synthetic")}, name
    code = "import sys, mgml_tf.data; print(sorted(m for m in sys.modules if m.startswith('mgml_tf.synthetic')))"
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        timeout=300,
    )
    assert r.returncode == 0 and r.stdout.strip() == "[]", (r.stdout, r.stderr)


def test_old_module_paths_are_gone():
    """No shim modules: the generator lives in mgml_tf.synthetic only."""
    here = os.path.dirname(data_pkg.__file__)
    assert not [n for n in os.listdir(here) if "synthetic" in n or "towns" in n or n == "layout_writer.py"]


# ------------------------------------------------------------------------------------------- registry
def test_family_registry():
    from mgml_tf.cli import flags as flags_lib

    assert flags_lib.SYNTHETIC_FAMILIES is families.FAMILIES
    assert list(families.FAMILIES) == ["streets", "towns"] and families.DEFAULT_FAMILY == "streets"
    for name, module_name in families.FAMILIES.items():
        module = families.load(name)
        assert module.__name__ == module_name
        assert not [attr for attr in families.FAMILY_API if not hasattr(module, attr)], name
    with pytest.raises(ValueError, match=r"^unknown family 'forest'; known families: streets, towns$"):
        families.load("forest")


def test_registry_imports_no_family():
    code = (
        "import sys, mgml_tf.synthetic.families; "
        "print(sorted(m for m in sys.modules if m.startswith(('mgml_tf.synthetic.', 'mgml_tf.data', 'tensorflow'))))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "['mgml_tf.synthetic.families']", (r.stdout, r.stderr)


# ------------------------------------------------------------------------------------ generator identity
@pytest.mark.parametrize(
    "family, recorded", [("streets", "mgml_tf.data.synthetic"), ("towns", "mgml_tf.data.synthetic_towns")]
)
def test_roots_written_before_the_move_are_the_same_generator(tmp_path, family, recorded):
    """SYNTHETIC.json records the generator by the module path it had before the move to mgml_tf.synthetic,
    so an existing root keeps its record (its other splits) when a split is added."""
    module = families.load(family)
    assert module.GENERATOR == recorded
    style = next(iter(module.TARGET_STYLES))
    old = {
        "generator": recorded,
        "style": style,
        "layout": "cityscapes",
        "seed": 0,
        "height": 64,
        "width": 128,
        "splits": {"train": 3},
    }
    (tmp_path / "SYNTHETIC.json").write_text(json.dumps(old, indent=1, sort_keys=True) + "\n")
    module.write_dataset(style, "cityscapes", 1, tmp_path, height=64, width=128, split="val")
    record = json.loads((tmp_path / "SYNTHETIC.json").read_text())
    assert record == dict(old, splits={"train": 3, "val": 1})
