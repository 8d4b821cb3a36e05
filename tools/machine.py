"""The machine a benchmark or study ran on: CPU model, cores, memory, GPUs, OS, Python, TensorFlow and Keras.

The one machine description of the tools: ``describe()`` is recorded with every section of ``tools.benchmark``
and, as one line (``summary``), printed by the other benchmarks and written into ``tools.study``'s report.

    python -m tools.machine     # prints describe() as JSON
"""

import argparse
import contextlib
import json
import os
import platform


def cpu_name():
    """The CPU model from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return cpu


def memory_gb():
    """Total memory in GB (one decimal) from /proc/meminfo, or None where it cannot be read."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/meminfo") as f:
            return round(int(f.readline().split()[1]) / 1024**2, 1)
    return None


def describe():
    """``{cpu, cores, memory_gb, gpus, os, python, tensorflow, keras}`` of this machine (imports TensorFlow)."""
    import keras
    import tensorflow as tf

    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "memory_gb": memory_gb(),
        "gpus": len(tf.config.list_physical_devices("GPU")),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }


def summary(info):
    """One line of a ``describe()`` dict: CPU, cores, OS, Python, TensorFlow, Keras."""
    return (
        f"{info['cpu']}, {info['cores']} cores, {info['os']}, Python {info['python']}, "
        f"TensorFlow {info['tensorflow']}, Keras {info['keras']}"
    )


def main(argv=None):
    argparse.ArgumentParser(description="Prints the machine description the benchmarks record, as JSON.").parse_args(
        argv
    )
    print(json.dumps(describe(), indent=1))


if __name__ == "__main__":
    main()
