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
