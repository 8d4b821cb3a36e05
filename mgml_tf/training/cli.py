"""Shared command-line plumbing: one-line errors, exit codes, a quiet TensorFlow import, atomic writes."""
import contextlib
import json
import os
import re
import sys
import tempfile

#: C++ start-up chatter of TensorFlow that ignores TF_CPP_MIN_LOG_LEVEL (written before absl logging is
#: initialised); dropped by ``quiet_import``, every other line written during the import is replayed.
_NOISE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog|I0000 |W0000 |To enable the "
                    r"following instructions|E0000 .*(cuInit|cuda))")


class UsageError(Exception):
    """A bad flag or argument: reported as one line, exit status 2, nothing written."""


class RunError(Exception):
    """A failure while running (unreadable input, incompatible model_dir): one line, exit status 1."""


def one_line(message):
    return " ".join(str(message).split())


@contextlib.contextmanager
def quiet_stderr():
    """Captures file descriptor 2 (C++ logging included); replays the lines that are not known noise."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", "replace")
            kept = [line for line in text.splitlines() if line.strip() and not _NOISE.match(line)]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")


def quiet_import(initialize=True):
    """Imports TensorFlow and Keras without their start-up chatter on stderr. ``initialize=False`` leaves
    the runtime (devices) uninitialised, so that logical devices can still be configured; call
    ``quiet_initialize`` afterwards."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    with quiet_stderr():
        import tensorflow as tf  # noqa: F401
        import keras  # noqa: F401
    if initialize:
        quiet_initialize()


def quiet_initialize():
    """Initialises the TensorFlow runtime (devices) quietly (its CUDA probe logs an error line on CPUs)."""
    with quiet_stderr():
        import tensorflow as tf
        tf.constant(0) + 1


def fail(prog, message, status):
    print(f"{prog}: error: {one_line(message)}", file=sys.stderr, flush=True)
    return status


def run(prog, main, argv=None):
    """Runs ``main(argv)``; maps errors to one stderr line and an exit status (2 usage, 1 run time)."""
    argv = list(sys.argv if argv is None else argv)
    try:
        status = main(argv)
    except UsageError as e:
        status = fail(prog, e, 2)
    except KeyboardInterrupt:
        status = fail(prog, "interrupted", 130)
    except RunError as e:
        status = fail(prog, e, 1)
    except (ValueError, OSError, LookupError) as e:
        status = fail(prog, f"{type(e).__name__}: {e}" if type(e).__name__ not in str(e) else e, 1)
    except Exception as e:  # noqa: BLE001  (TensorFlow errors and the like: still one line)
        status = fail(prog, f"{type(e).__name__}: {getattr(e, 'message', None) or e}", 1)
    sys.stdout.flush()
    sys.exit(status or 0)


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
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def write_json(path, value):
    atomic_write_text(path, json.dumps(value, indent=2, sort_keys=False, allow_nan=False) + "\n")


def parse_flags(flag_values, argv, prog):
    """Parses ``argv`` into ``flag_values`` (``--flagfile`` nests); ``--help`` prints help and exits 0."""
    from absl import flags

    if any(a in ("-h", "--help", "--helpfull", "-help") for a in argv[1:]):
        print(f"usage: python -m {prog} [--flagfile=FILE] [--flag=value ...]\n")
        print(flag_values.get_help())
        sys.exit(0)
    try:
        rest = flag_values(argv)
    except flags.Error as e:
        raise UsageError(str(e)) from None
    if len(rest) > 1:
        raise UsageError(f"unexpected positional argument(s): {' '.join(rest[1:])}; flags look like --name=value")
    return rest
