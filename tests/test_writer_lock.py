"""One writer per model directory (docs/RELIABILITY.md): a second training while one runs is refused in one
line naming the holder and writes nothing; a lock left by a killed run is taken over."""

import os
import signal
import subprocess
import sys
import time

import pytest

from mgml_tf.errors import RunError
from mgml_tf.training import writer_lock
from mgml_tf.training.writer_lock import WriterLock
from tests.cli_helpers import REPO, env, refused, run_cli, tiny_args


def _listing(root):
    return sorted(
        (os.path.relpath(os.path.join(d, f), root), os.stat(os.path.join(d, f)).st_mtime_ns)
        for d, _, files in os.walk(root)
        for f in files
    )


def test_second_holder_is_refused_and_a_released_lock_is_reusable(tmp_path):
    logs = []
    with WriterLock(str(tmp_path), logs.append):
        assert writer_lock.holder(str(tmp_path))["pid"] == os.getpid()
        # another open file description (as another process would have) cannot take it
        with (
            pytest.raises(RunError, match=rf"is being written by mgml_tf.train \(pid {os.getpid()} on "),
            WriterLock(str(tmp_path)),
        ):
            pass
        with pytest.raises(RunError, match="wait for it to end or use another --model_dir"):
            writer_lock.refuse_if_held(str(tmp_path))
    assert writer_lock.holder(str(tmp_path)) is None
    with WriterLock(str(tmp_path), logs.append):
        pass
    assert logs == []  # a cleanly released lock is empty: nothing to take over


def test_lock_of_a_killed_process_is_taken_over(tmp_path):
    script = (
        "import sys, time\n"
        f"sys.path.insert(0, {REPO!r})\n"
        "from mgml_tf.training.writer_lock import WriterLock\n"
        f"with WriterLock({str(tmp_path)!r}):\n"
        "    print('locked', flush=True)\n"
        "    time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    assert writer_lock.holder(str(tmp_path))["pid"] == proc.pid
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    logs = []
    with WriterLock(str(tmp_path), logs.append):
        pass
    assert len(logs) == 1 and f"pid {proc.pid}" in logs[0] and "which has ended" in logs[0]


@pytest.mark.slow  # two training subprocesses
def test_second_training_is_refused_in_one_line_and_writes_nothing(tmp_path):
    model_dir, synth = str(tmp_path / "run"), str(tmp_path / "synth")
    args = tiny_args(model_dir, synth, "--train_steps=200", "--checkpoint_every=100", "--log_every=1", "--targets=")
    first = subprocess.Popen(
        [sys.executable, "-m", "mgml_tf.train", *args], cwd=REPO, env=env(), stdout=subprocess.PIPE, text=True
    )
    try:
        deadline = time.time() + 300
        for line in first.stdout:  # training has started: the lock is held
            if line.startswith("step 1/"):
                break
            assert time.time() < deadline
        before = _listing(model_dir)
        second = run_cli("train", *args)
        refused(second, "is being written by mgml_tf.train", f"pid {first.pid}")
        assert second.returncode == 1
        # The first run wrote its configuration once at its start; a second writer would have rewritten it.
        after = dict(_listing(model_dir))
        for name in ("flags.json", "flags.cfg", writer_lock.LOCK_FILE):
            assert after[name] == dict(before)[name], name
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()


def _hold_lock_in_a_process(folder, path=None, what="mgml_tf.train"):
    """A process holding the writer lock of ``folder`` (``path``: another lock file); returns the Popen."""
    script = (
        "import sys, time\n"
        f"sys.path.insert(0, {REPO!r})\n"
        "from mgml_tf.training.writer_lock import WriterLock\n"
        f"with WriterLock({folder!r}, what={what!r}, path={path!r}):\n"
        "    print('locked', flush=True)\n"
        "    time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_export_lock_refuses_a_folder_inside_a_held_model_dir_and_a_second_export(tmp_path):
    model_dir = str(tmp_path / "run")
    export_dir = os.path.join(model_dir, "export")
    assert writer_lock.export_lock_path(export_dir) == os.path.join(model_dir, ".export.writer.lock")
    with WriterLock(model_dir):
        for inside in (model_dir, export_dir, os.path.join(export_dir, "1")):
            with pytest.raises(RunError, match=r"is being written by mgml_tf.train \(pid \d+ .*another --export_dir"):
                writer_lock.export_lock(inside, "mgml_tf.export")
        assert not os.path.exists(writer_lock.export_lock_path(export_dir))  # refused: nothing written
    other = str(tmp_path / "exports" / "model")
    with writer_lock.export_lock(other, "mgml_tf.export"):
        with pytest.raises(RunError, match=r"exports/model is being written by mgml_tf.export \(pid \d+"):
            writer_lock.export_lock(other, "mgml_tf.export").__enter__()
    with writer_lock.export_lock(other, "mgml_tf.export"):  # released: the next export takes it
        pass


@pytest.mark.slow  # two export subprocesses
def test_export_into_a_training_model_dir_or_beside_another_export_is_refused(tmp_path):
    """The CLI refuses before any work, in one line naming the holder's pid, and writes nothing."""
    model_dir = str(tmp_path / "run")
    os.makedirs(model_dir)
    training = _hold_lock_in_a_process(model_dir)
    try:
        before = _listing(str(tmp_path))
        proc = run_cli("export", f"--model_dir={model_dir}", f"--export_dir={model_dir}/export")
        refused(proc, "is being written by mgml_tf.train", f"pid {training.pid}", "--export_dir")
        assert _listing(str(tmp_path)) == before
    finally:
        training.kill()
        training.wait()
    export_dir = str(tmp_path / "exported")
    exporting = _hold_lock_in_a_process(export_dir, writer_lock.export_lock_path(export_dir), "mgml_tf.export")
    try:
        before = _listing(str(tmp_path))
        proc = run_cli("export", f"--model_dir={model_dir}", f"--export_dir={export_dir}")
        refused(proc, f"{export_dir} is being written by mgml_tf.export", f"pid {exporting.pid}")
        assert _listing(str(tmp_path)) == before
    finally:
        exporting.kill()
        exporting.wait()
