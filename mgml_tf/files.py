"""Atomic file writes: a reader sees the old file or the new one, never a part (model directories, exports,
predictions, evaluation results)."""

import contextlib
import errno
import json
import os
import tempfile


def atomic_write_text(path, text):
    """Writes ``text`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path, data):
    """Writes ``data`` to ``path`` through a temporary file in the same folder (flushed to disk) and
    ``os.replace``: readers see the old file or the new one, never a part."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        # mkstemp creates the file 0600; give it the mode open() would (0666 less the umask), so that a
        # model served or read by another user (TF Serving's account, a shared cluster) can read it.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_json(path, value):
    """``value`` as indented JSON (NaN refused) through ``atomic_write_text``."""
    atomic_write_text(path, json.dumps(value, indent=2, sort_keys=False, allow_nan=False) + "\n")


def is_no_space(error):
    """Whether ``error`` is a full disk: ``OSError(ENOSPC)`` or a TensorFlow error saying so (TensorFlow's
    file writes raise ``ResourceExhaustedError: ...; No space left on device``)."""
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return True
    return "No space left on device" in str(error) and type(error).__name__.endswith("Error")
