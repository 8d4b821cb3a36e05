"""mgml_tf.files: atomic writes leave the new content, no temporary file, and the mode ``open()`` would give."""

import os
import stat

import pytest

from mgml_tf import files


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_writes_take_the_mode_open_would_give(tmp_path, umask):
    previous = os.umask(umask)
    try:
        with open(tmp_path / "plain", "wb"):
            pass
        files.atomic_write_text(str(tmp_path / "atomic.json"), "{}\n")
    finally:
        os.umask(previous)
    mode = stat.S_IMODE(os.stat(tmp_path / "atomic.json").st_mode)
    assert mode == stat.S_IMODE(os.stat(tmp_path / "plain").st_mode) == 0o666 & ~umask
    assert os.umask(previous) == previous  # the umask is left as it was


def test_atomic_write_replaces_and_leaves_no_temporary_file(tmp_path):
    path = str(tmp_path / "a.bin")
    files.atomic_write_bytes(path, b"old")
    files.atomic_write_bytes(path, b"new")
    assert open(path, "rb").read() == b"new"
    assert os.listdir(tmp_path) == ["a.bin"]
