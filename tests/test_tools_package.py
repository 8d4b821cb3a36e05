"""The tools package: every module imports as ``tools.<name>`` (no sys.path edits), defines no flags on import,
and every tool has a command line ``main``; the one Markdown block writer, ``tools.markdown_blocks``."""

import importlib
import importlib.util
import os
import pkgutil

import pytest
from absl import flags

import tools
from tools import markdown_blocks

# Modules other modules import, with no command line of their own.
LIBRARIES = {"tools.markdown_blocks", "tools.refcmp.data", "tools.refcmp.refload", "tools.refcmp.worker_common"}
# The PyTorch side of the reference comparison (torch is no dependency of mgml_tf).
NEEDS_TORCH = {"tools.refcmp.refload", "tools.refcmp.sanity_ref"}
MODULES = sorted(m.name for m in pkgutil.walk_packages(tools.__path__, "tools.") if not m.ispkg)
TOOLS_DIR = os.path.dirname(tools.__file__)


def test_the_walk_finds_the_tools():
    assert {"tools.benchmark", "tools.study", "tools.machine", "tools.refcmp.timing"} <= set(MODULES)
    assert LIBRARIES | NEEDS_TORCH <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_every_module_imports_without_defining_flags_and_every_tool_has_a_main(name):
    if name in NEEDS_TORCH and importlib.util.find_spec("torch") is None:
        pytest.skip("imports torch, which is not installed (the PyTorch side of tools/refcmp)")
    before = set(flags.FLAGS)
    module = importlib.import_module(name)
    assert set(flags.FLAGS) == before, f"{name} defines flags on import: {sorted(set(flags.FLAGS) - before)}"
    if name in LIBRARIES:
        assert not hasattr(module, "main"), f"{name} has a main: take it out of LIBRARIES"
    else:
        assert callable(getattr(module, "main", None)), f"{name} has no main"


def test_only_the_reference_loader_edits_sys_path():
    edits = []
    for folder, _, files in os.walk(TOOLS_DIR):
        for file in files:
            if file.endswith(".py"):
                path = os.path.join(folder, file)
                with open(path) as f:
                    text = f.read()
                if "sys.path.insert" in text or "sys.path.append" in text:
                    edits.append(os.path.relpath(path, TOOLS_DIR))
    assert edits == [os.path.join("refcmp", "refload.py")]


BEGIN, END = "<!-- begin -->", "<!-- end -->"


def test_replace_block_replaces_only_the_text_between_the_markers(tmp_path):
    path = tmp_path / "doc.md"
    path.write_text(f"# Title\n\nhand-written\n{BEGIN}\nold\nlines\n{END}\nafter\n")
    markdown_blocks.replace_block(str(path), BEGIN, END, "new")
    assert path.read_text() == f"# Title\n\nhand-written\n{BEGIN}\nnew\n{END}\nafter\n"
    markdown_blocks.replace_block(str(path), BEGIN, END, "new\n")  # the same block again: the same file
    assert path.read_text() == f"# Title\n\nhand-written\n{BEGIN}\nnew\n{END}\nafter\n"
    assert not os.path.exists(f"{path}.tmp")


@pytest.mark.parametrize(
    "text, words",
    [
        ("# Title\nno markers\n", f"{BEGIN!r} occurs 0 times"),
        (f"# Title\n{BEGIN}\nno end\n", f"{END!r} occurs 0 times"),
        (f"{END}\nswapped\n{BEGIN}\n", "comes before"),
        (f"{BEGIN}\n{END}\n{BEGIN}\n{END}\n", "occurs 2 times"),
    ],
)
def test_replace_block_refuses_a_file_without_its_markers_and_leaves_it_alone(tmp_path, text, words):
    path = tmp_path / "doc.md"
    path.write_text(text)
    with pytest.raises(markdown_blocks.MissingMarkersError, match="cannot place the generated block") as error:
        markdown_blocks.replace_block(str(path), BEGIN, END, "block", new_file_text="# Title\n")
    assert words in str(error.value) and str(path) in str(error.value)
    assert path.read_text() == text


def test_replace_block_creates_a_new_file_only_when_asked(tmp_path):
    path = tmp_path / "new.md"
    with pytest.raises(FileNotFoundError):
        markdown_blocks.replace_block(str(path), BEGIN, END, "block")
    markdown_blocks.replace_block(str(path), BEGIN, END, "block", new_file_text="# Results\n")
    assert path.read_text() == f"# Results\n\n{BEGIN}\nblock\n{END}\n"
    markdown_blocks.replace_block(str(path), BEGIN, END, "other")  # it has its markers now
    assert path.read_text() == f"# Results\n\n{BEGIN}\nother\n{END}\n"
