"""Preemption: SIGTERM or SIGINT asks training to stop after the current step with a checkpoint.

Cloud machines are preempted with SIGTERM and killed a few seconds later. ``StopRequest`` records the first
signal and lets the step in progress finish; the training loop then writes a checkpoint of that step, says
so in one line and returns, and the process exits 0. Running the same command again resumes from that
checkpoint (exactly: the input stream is a function of the step). A second signal exits at once, with the
signal's own status. A signal during an evaluation ends it at the next image. Under a multi-worker strategy
every worker learns of a signal any worker received (one all-reduce per step), so all stop after the same
step and save the same checkpoint.
"""

import os
import signal
import threading

import tensorflow as tf

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(Exception):
    """Raised inside an evaluation that a stop request ends before its last image."""


def signal_self(signum=signal.SIGTERM):
    """Sends ``signum`` to this process: the ``sigterm_in_*`` fault hooks (a preemption at a chosen point)."""
    print(f"fault injection: {signal.Signals(signum).name} to this process", flush=True)
    os.kill(os.getpid(), signum)


class StopRequest:
    """A context manager that turns the first SIGTERM/SIGINT into a request (``requested``, ``name``) and a
    second into an immediate exit; outside the main thread it installs nothing."""

    def __init__(self):
        self.signum = None
        self._previous = {}

    @property
    def requested(self):
        return self.signum is not None

    @property
    def name(self):
        return signal.Signals(self.signum).name if self.signum else None

    def _handle(self, signum, frame):
        if self.signum is not None:  # the second signal: leave now, as the default action would
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
            return
        self.signum = signum

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc):
        for s, previous in self._previous.items():
            signal.signal(s, previous)
        self._previous = {}
        return False


class StopAgreement:
    """Whether to stop after this step: this process's request, or under a multi-worker strategy any
    worker's (the flags summed over all replicas by one compiled all-reduce, so every worker decides alike
    after the same step)."""

    def __init__(self, strategy, multi_worker):
        self.multi_worker = multi_worker
        if multi_worker:

            @tf.function(autograph=False)  # plain ops: nothing to convert (AutoGraph warned it could not)
            def any_worker(flag):
                per_replica = strategy.run(lambda: tf.identity(flag))
                return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

            self._any_worker = any_worker

    def __call__(self, local_request):
        if not self.multi_worker:
            return local_request
        return int(self._any_worker(tf.constant(1 if local_request else 0, tf.int32)).numpy()) > 0
