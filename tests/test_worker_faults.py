"""Faults of a two-worker run (docs/RELIABILITY.md), on loopback workers with TF_CONFIG: a worker killed with
SIGKILL ends the survivor within a bound with one line naming the lost worker and its address; SIGTERM to the
chief stops both workers after the same step with its checkpoint and exit 0; every rerun resumes from the
newest complete checkpoint, and the run ends bit-identical to an uninterrupted one.

One chain of launches shares the model directory (each one costs tens of seconds): kill worker 1, rerun and
SIGTERM the chief, rerun to the end.
"""

import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from tests.cli_helpers import REPO, env, launch_workers, tiny_args
from tools.launch_workers import free_ports, tf_config

STEPS = 6
ARGS = (
    f"--train_steps={STEPS}",
    "--batch_per_domain=2",
    "--dropout=0",
    "--deterministic",
    "--targets=",
    "--checkpoint_every=2",
    "--keep_checkpoints=10",
    "--log_every=1",
    "--memory_init_batches=1",
)
#: The survivor of a killed worker must end within this many seconds (measured: under 2 s on loopback).
LOST_WORKER_BOUND = 30
#: Seconds a launch may take: about a minute on an idle 2-core machine, ten under a loaded one.
TIMEOUT = 1800


class Workers:
    """Two workers of ``mgml_tf.train`` (one thread each), their output lines recorded as they come."""

    def __init__(self, model_dir, synth):
        ports = free_ports(2)
        self.addresses = [f"127.0.0.1:{p}" for p in ports]
        self.lines, self.procs = ([], []), []
        for i in range(2):
            e = dict(env(), TF_CONFIG=tf_config(ports, i), TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1")
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "mgml_tf.train",
                    *tiny_args(model_dir, synth, *ARGS),
                    "--distribution_strategy=multi_worker",
                ],
                cwd=REPO,
                env=e,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            threading.Thread(target=self._read, args=(proc, self.lines[i]), daemon=True).start()
            self.procs.append(proc)

    @staticmethod
    def _read(proc, out):
        for line in proc.stdout:
            out.append(line.rstrip("\n"))

    def wait_for_step(self, worker, step, timeout=TIMEOUT):
        deadline = time.time() + timeout
        pattern = re.compile(rf"^(\[worker:\d\] )?step {step}/")
        while not any(pattern.match(line) for line in list(self.lines[worker])):
            assert time.time() < deadline and all(p.poll() is None for p in self.procs), self.output()
            time.sleep(0.05)

    def wait(self, timeout=TIMEOUT):
        try:
            for p in self.procs:
                p.wait(timeout=timeout)
        finally:
            for p in self.procs:
                if p.poll() is None:
                    p.kill()
        time.sleep(0.2)  # the readers' last lines
        return [p.returncode for p in self.procs]

    def output(self):
        return "\n".join(f"[{i}] {line}" for i in range(2) for line in self.lines[i])


def _newest(model_dir):
    path = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    return int(path.rsplit("-", 1)[1]) if path else 0


def _variables(path):
    reader = tf.train.load_checkpoint(path)
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map() if not k.startswith("save_counter")}


def _stop_steps(workers):
    """The step each worker's 'stopped after step N' line names."""
    steps = []
    for lines in workers.lines:
        found = [re.search(r"stopped after step (\d+)/", line) for line in lines]
        steps.append([int(m.group(1)) for m in found if m])
    return steps


def _sigterm_stops_both(model_dir, synth, worker):
    """Reruns both workers, sends SIGTERM to ``worker`` once a step ran: both end 0 after the same step."""
    start = _newest(model_dir)
    workers = Workers(model_dir, synth)
    workers.wait_for_step(worker, start + 1)
    workers.procs[worker].send_signal(signal.SIGTERM)
    assert workers.wait() == [0, 0], workers.output()
    for lines in workers.lines:
        assert any(f"(step {start})" in line and "resumed from" in line for line in lines), workers.output()
    (chief_steps, other_steps) = _stop_steps(workers)
    assert len(chief_steps) == len(other_steps) == 1 and chief_steps == other_steps, workers.output()
    assert _newest(model_dir) == chief_steps[0] > start
    said = [line for line in workers.lines[worker] if "stopped after step" in line][0]
    assert "SIGTERM" in said
    return chief_steps[0]


def _generate_synthetic_suite(root):
    """The tiny synthetic suite, generated here: two workers generating it at once would collide."""
    from mgml_tf.cli import flags as flags_lib
    from mgml_tf.cli import train as train_cli
    from mgml_tf.training import data as data_lib

    fv = train_cli.make_flags()
    fv(["prog", *tiny_args(os.path.join(os.path.dirname(root), "unused"), root)])
    data_lib.synthetic_suite(flags_lib.validate_train_flags(fv).synthetic, log=lambda message: None)


@pytest.mark.slow  # four two-worker launches
def test_lost_worker_and_signalled_chief_resume_to_the_uninterrupted_result(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # the flagfiles' paths
    synth = str(tmp_path / "synth")
    _generate_synthetic_suite(synth)
    reference = str(tmp_path / "reference")
    # The uninterrupted run, beside the chain of interrupted ones.
    straight = Workers(reference, synth)

    model_dir = str(tmp_path / "run")
    workers = Workers(model_dir, synth)
    workers.wait_for_step(0, 3)  # the checkpoint of step 2 is written
    workers.procs[1].send_signal(signal.SIGKILL)
    killed = time.time()
    workers.procs[0].wait(timeout=LOST_WORKER_BOUND + 60)
    survived = time.time() - killed
    assert workers.procs[0].returncode == 1 and survived < LOST_WORKER_BOUND, (survived, workers.output())
    errors = [line for line in workers.lines[0] if line.startswith("mgml_tf.train: error:")]
    assert len(errors) == 1, workers.output()
    newest = _newest(model_dir)
    assert newest >= 2
    assert f"lost worker:1 ({workers.addresses[1]})" in errors[0], errors[0]
    assert (
        f"the newest complete checkpoint is {os.path.join(model_dir, 'checkpoints', f'ckpt-{newest}')}" in (errors[0])
    )
    assert "restart every worker with the same command" in errors[0]
    workers.wait()

    _sigterm_stops_both(model_dir, synth, worker=0)
    proc = launch_workers(str(tmp_path / "logs"), *tiny_args(model_dir, synth, *ARGS), timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert straight.wait() == [0, 0], straight.output()
    a = _variables(os.path.join(model_dir, "checkpoints", f"ckpt-{STEPS}"))
    b = _variables(os.path.join(reference, "checkpoints", f"ckpt-{STEPS}"))
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
