"""Helpers for the command-line tests: run a CLI as a subprocess from the repository root."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def env():
    e = dict(os.environ)
    e["PYTHONPATH"] = REPO + os.pathsep + e.get("PYTHONPATH", "")
    e.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return e


def run_cli(module, *args, timeout=600, check=False, extra_env=None):
    """``python -m mgml_tf.<module> args`` in the repository root (``extra_env`` added to the environment);
    returns the CompletedProcess."""
    proc = subprocess.run(
        [sys.executable, "-m", f"mgml_tf.{module}", *args],
        cwd=REPO,
        env={**env(), **(extra_env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"mgml_tf.{module} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def tiny_args(model_dir, synthetic_root, *extra):
    """The demo shortened to a few steps on tiny images (configs/demo_tiny.cfg)."""
    return (
        "--flagfile=configs/demo_tiny.cfg",
        f"--model_dir={model_dir}",
        f"--synthetic_root={synthetic_root}",
        *extra,
    )


def stderr_lines(proc):
    return [line for line in proc.stderr.splitlines() if line.strip()]


def refused(proc, *words):
    """Asserts a one-line refusal: non-zero exit, exactly one stderr line containing every word."""
    assert proc.returncode != 0, proc.stdout
    lines = stderr_lines(proc)
    assert len(lines) == 1, proc.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def launch_workers(log_dir, *train_args, timeout=600):
    """``tools/launch_workers.py``: two loopback workers of ``mgml_tf.train train_args``, one thread each (two
    processes on two cores); returns the CompletedProcess."""
    e = env()
    e.update(TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1")
    return subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "tools", "launch_workers.py"),
            "--num_workers=2",
            f"--log_dir={log_dir}",
            f"--timeout={timeout - 60}",
            "--",
            *train_args,
        ],
        cwd=REPO,
        env=e,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
