"""Starts N local training workers of one MultiWorkerMirroredStrategy cluster on 127.0.0.1.

    python -m tools.launch_workers --num_workers=2 [--log_dir=DIR] [--timeout=SECONDS] -- \\
        --flagfile=configs/demo_tiny.cfg --model_dir=/tmp/mw --batch_per_domain=2

Every worker runs ``python -m mgml_tf.train <train args> --distribution_strategy=multi_worker`` with its own
``TF_CONFIG`` (``{"cluster": {"worker": [...N free loopback ports...]}, "task": {"type": "worker",
"index": i}}``); worker 0 is the chief. The chief's output is streamed to this terminal, the other workers'
output goes to ``<log_dir>/worker_<i>.log`` (printed when that worker fails). The exit status is 0 when
every worker succeeded, else the first failing worker's status (the others are then stopped).

For trying multi-worker training on one machine; on a real cluster each host runs the training command
itself with its TF_CONFIG (docs/DISTRIBUTED.md). ``launch`` does the work.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_ports(n):
    """``n`` distinct free TCP ports on 127.0.0.1 (held open together while choosing, then released)."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tf_config(ports, index):
    return json.dumps(
        {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker", "index": index}}
    )


def _pump(stream, out):
    for line in iter(stream.readline, ""):
        out.write(line)
        out.flush()
    stream.close()


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], usage="%(prog)s --num_workers=N [--log_dir=DIR] -- <mgml_tf.train args>"
    )
    parser.add_argument("--num_workers", type=int, required=True, help="Worker processes (>= 1).")
    parser.add_argument(
        "--log_dir", default=None, help="Where the non-chief workers' logs go (default: a new temporary folder)."
    )
    parser.add_argument(
        "--timeout", type=float, default=0, help="Stop every worker after this many seconds (0: no limit)."
    )
    parser.add_argument("--python", default=sys.executable, help=argparse.SUPPRESS)
    if "--" in argv:
        split = argv.index("--")
        own, train_args = argv[:split], argv[split + 1 :]
    else:
        own, train_args = argv, []
    args = parser.parse_args(own)
    if args.num_workers < 1:
        parser.error(f"--num_workers must be >= 1, got {args.num_workers}")
    if not train_args:
        parser.error("give the training flags after --, e.g. -- --flagfile=configs/demo_tiny.cfg --model_dir=DIR")
    if any(a.startswith("--distribution_strategy") and a != "--distribution_strategy=multi_worker" for a in train_args):
        parser.error("the workers run --distribution_strategy=multi_worker; drop the other value")
    return args, train_args


def launch(num_workers, train_args, log_dir=None, timeout=0, python=sys.executable):
    """Runs ``num_workers`` workers of ``python -m mgml_tf.train <train_args>`` (from the repository root) until
    all end, one fails or ``timeout`` seconds pass (0: no limit); returns the exit status (see above)."""
    log_dir = log_dir or tempfile.mkdtemp(prefix="mgml_workers_")
    os.makedirs(log_dir, exist_ok=True)
    ports = free_ports(num_workers)
    command = [python, "-m", "mgml_tf.train", *train_args, "--distribution_strategy=multi_worker"]
    procs, logs, pumps = [], [], []
    env0 = dict(os.environ)
    env0.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    print(
        f"launch_workers: {num_workers} workers on 127.0.0.1 ports {', '.join(map(str, ports))}; "
        f"worker 0 (chief) below, the others in {log_dir}",
        flush=True,
    )
    try:
        for i in range(num_workers):
            env = dict(env0, TF_CONFIG=tf_config(ports, i))
            if i == 0:
                p = subprocess.Popen(
                    command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1
                )
                for stream, out in ((p.stdout, sys.stdout), (p.stderr, sys.stderr)):
                    t = threading.Thread(target=_pump, args=(stream, out), daemon=True)
                    t.start()
                    pumps.append(t)
                logs.append(None)
            else:
                f = open(os.path.join(log_dir, f"worker_{i}.log"), "w")
                p = subprocess.Popen(command, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT, text=True)
                logs.append(f)
            procs.append(p)
        deadline = time.monotonic() + timeout if timeout else None
        status = 0
        while any(p.poll() is None for p in procs):
            failed = [i for i, p in enumerate(procs) if p.poll() not in (None, 0)]
            if failed:
                status = procs[failed[0]].returncode
                print(
                    f"launch_workers: worker {failed[0]} failed with status {status}; stopping the others",
                    file=sys.stderr,
                    flush=True,
                )
                break
            if deadline and time.monotonic() > deadline:
                print(
                    f"launch_workers: timeout after {timeout:.0f} s; stopping the workers",
                    file=sys.stderr,
                    flush=True,
                )
                status = 124
                break
            time.sleep(0.2)
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for t in pumps:
            t.join(timeout=5)
        if status == 0:
            bad = [i for i, p in enumerate(procs) if p.returncode != 0]
            status = procs[bad[0]].returncode if bad else 0
        for i, p in enumerate(procs):
            if i and p.returncode not in (0, None) and logs[i] is not None:
                logs[i].flush()
                with open(logs[i].name) as f:
                    tail = f.read().splitlines()[-20:]
                print(
                    f"launch_workers: worker {i} exited with {p.returncode}; last lines of {logs[i].name}:\n"
                    + "\n".join(tail),
                    file=sys.stderr,
                    flush=True,
                )
        return status
    finally:
        for f in logs:
            if f is not None:
                f.close()
        for p in procs:
            if p.poll() is None:
                p.kill()


def main(argv=None):
    args, train_args = parse_args(list(sys.argv[1:] if argv is None else argv))
    return launch(args.num_workers, train_args, args.log_dir, args.timeout, args.python)


if __name__ == "__main__":
    sys.exit(main())
