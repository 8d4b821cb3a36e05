"""A lost worker: when a process of a multi-worker run ends (killed, or its host went down), the others stop
with one line naming it, and rerunning every worker resumes from the newest complete checkpoint.

TensorFlow reports the loss as an error of the collective op the survivors are in: ``UnavailableError``
("Connection reset by peer", or "... is down" from the cluster's heartbeat), ``DeadlineExceededError`` or
``AbortedError`` / ``CancelledError`` for the collectives aborted after it. The error names the peer as a
device (``/job:worker/replica:0/task:1``); ``lost_worker_error`` turns it into one ``RunError`` line with the
task's address from the cluster spec, the step and the newest complete checkpoint.

On loopback a killed peer resets its connections, and the survivor's collective fails within a second; the
survivor then ends at once (``LostWorkerError.exit_at_once``). A host that vanishes without closing its
connections is found by TensorFlow's cluster heartbeat instead (docs/RELIABILITY.md).
"""

import os
import re

import tensorflow as tf

from mgml_tf.errors import RunError

#: The errors a collective op raises when a peer is gone.
PEER_ERRORS = (
    tf.errors.UnavailableError,
    tf.errors.DeadlineExceededError,
    tf.errors.AbortedError,
    tf.errors.CancelledError,
)

_TASK = re.compile(r"/job:(\w+)/replica:\d+/task:(\d+)")


class LostWorkerError(RunError):
    """A peer of a multi-worker run is gone. ``exit_at_once``: the command line ends the process right after
    its line, because TensorFlow's runtime, shutting down, waits for the lost peer (34 s with the chief
    surviving, 61 s with worker 1 surviving, measured on loopback)."""

    exit_at_once = True


def lost_tasks(message, own):
    """``(job, index)`` of every task ``message`` names, in order, except ``own``."""
    found = []
    for job, index in _TASK.findall(message):
        task = (job, int(index))
        if task != own and task not in found:
            found.append(task)
    return found


def describe(tasks, cluster):
    """``worker:1 (127.0.0.1:23456)`` for each task, its address from ``cluster`` (job -> address list)."""
    named = []
    for job, index in tasks:
        addresses = cluster.get(job, [])
        address = f" ({addresses[index]})" if index < len(addresses) else ""
        named.append(f"{job}:{index}{address}")
    return ", ".join(named)


def lost_worker_error(error, strategy, model_dir, step):
    """The one-line ``LostWorkerError`` of a collective that failed because a peer is gone (``error``)."""
    resolver = strategy.cluster_resolver
    own = (resolver.task_type, int(resolver.task_id))
    cluster = resolver.cluster_spec().as_dict()
    tasks = lost_tasks(str(error), own)
    who = f"lost {describe(tasks, cluster)}" if tasks else "lost a worker (TensorFlow's error names none)"
    reason = str(error).split("\n", 1)[0]
    reason = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", reason)[:160]
    newest = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    return LostWorkerError(
        f"{who} after step {step} ({type(error).__name__}: {reason}); the newest complete checkpoint is "
        f"{newest or 'none'}: restart every worker with the same command to resume from it"
    )
