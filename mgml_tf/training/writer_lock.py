"""One writer per model directory: ``model_dir/.writer.lock``, held with ``fcntl.flock`` while a training run
(the chief, under a multi-worker strategy) writes the directory. An export holds ``.<name>.writer.lock`` beside
its ``--export_dir`` (``export_lock_path``: the export folder itself is replaced by a rename) and refuses a
folder inside a model directory that a training holds (``refuse_if_inside_held``).

The kernel releases the lock when its process ends, however it ends, so a lock file left by a killed run
is stale by construction: the next run takes it over and says so. A second run while the first is alive is
refused in one line naming the holder's process id, host and start time. The file is never removed (removing
it would let two processes lock two different files of the same name).
"""

import datetime
import fcntl
import json
import os
import socket

from mgml_tf.errors import RunError

LOCK_FILE = ".writer.lock"


class WriterLock:
    """``with WriterLock(model_dir, log):`` holds the directory's writer lock for the block. ``path``: another
    lock file (an export's, ``export_lock_path``); ``flag`` is the option a refusal tells to change."""

    def __init__(self, model_dir, log=print, what="mgml_tf.train", path=None, flag="--model_dir"):
        self.folder = model_dir
        self.path = path or os.path.join(model_dir, LOCK_FILE)
        self.log, self.what, self.flag, self._fd = log, what, flag, None

    def __enter__(self):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        previous = _read_holder(fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise _busy(self.folder, previous or {}, self.flag) from None
        if previous:
            self.log(
                f"taking over the writer lock of {previous.get('what', 'a run')} (pid {previous.get('pid', '?')} "
                f"on {previous.get('host', '?')}, since {previous.get('since', '?')}), which has ended"
            )
        holder = {
            "what": self.what,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.datetime.now().isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def __exit__(self, *exc):
        if self._fd is not None:
            os.ftruncate(self._fd, 0)  # an ended run leaves an empty, unlocked file: nothing to take over
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        return False


def _read_holder(fd):
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
        return json.loads(text) if text else None
    except ValueError:
        return None


def _busy(model_dir, live, flag="--model_dir", inside=""):
    return RunError(
        f"{model_dir}{inside} is being written by {live.get('what', 'another process')} (pid {live.get('pid', '?')} "
        f"on {live.get('host', '?')}, since {live.get('since', '?')}); wait for it to end or use another {flag}"
    )


def refuse_if_held(model_dir):
    """One ``RunError`` line when a live process holds ``model_dir``'s writer lock (checked without taking it,
    so that a refused run writes nothing)."""
    live = holder(model_dir) if os.path.isdir(model_dir) else None
    if live is not None:
        raise _busy(model_dir, live)


def export_lock_path(export_dir):
    """The lock file of an export into ``export_dir``: ``.<name>.writer.lock`` in its parent folder."""
    parent, name = os.path.split(os.path.abspath(export_dir))
    return os.path.join(parent, f".{name}.writer.lock")


def export_lock(export_dir, what):
    """The writer lock of an export into ``export_dir`` (a ``WriterLock`` to enter). Refuses at once, in one
    ``RunError`` line naming the holder, an ``export_dir`` inside a model directory that a training holds; a
    second export into the same ``export_dir`` is refused when it enters the lock."""
    refuse_if_inside_held(export_dir, "--export_dir")
    return WriterLock(export_dir, what=what, path=export_lock_path(export_dir), flag="--export_dir")


def refuse_if_inside_held(path, flag):
    """One ``RunError`` line when ``path`` or a folder above it is a model directory a live training holds."""
    inner = os.path.abspath(path)
    folder = inner
    while True:
        live = holder(folder) if os.path.isdir(folder) else None
        if live is not None:
            inside = "" if folder == inner else f", which holds {inner},"
            raise _busy(folder, live, flag, inside)
        parent = os.path.dirname(folder)
        if parent == folder:
            return
        folder = parent


def holder(model_dir, path=None):
    """The live writer of ``model_dir`` (its record) or None, without taking the lock (``path``: another lock
    file, as for ``WriterLock``)."""
    path = path or os.path.join(model_dir, LOCK_FILE)
    if not os.path.exists(path):
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(fd) or {}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
