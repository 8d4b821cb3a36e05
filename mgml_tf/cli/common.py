"""Shared command-line plumbing: flag parsing with flagfiles, one-line errors and exit codes, a quiet TensorFlow
import, output-path checks."""

import codecs
import contextlib
import dataclasses
import os
import re
import sys
import tempfile

from mgml_tf.errors import RunError, UsageError, one_line

#: C++ start-up chatter of TensorFlow that ignores TF_CPP_MIN_LOG_LEVEL (written before absl logging is
#: initialised); dropped by ``quiet_import``, every other line written during the import is replayed.
_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog|I0000 |W0000 |To enable the "
    r"following instructions|E0000 .*(cuInit|cuda)|INFO: Created TensorFlow Lite XNNPACK delegate for CPU)"
)


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
        # Imported for their loading (and its chatter) under the quieted stderr; the names are not used here.
        import keras  # noqa: F401
        import tensorflow as tf  # noqa: F401
    if initialize:
        quiet_initialize()


def quiet_initialize():
    """Initialises the TensorFlow runtime (devices) quietly (its CUDA probe logs an error line on CPUs)."""
    with quiet_stderr():
        import tensorflow as tf

        tf.constant(0) + 1


#: The message of an assertion of `mgml_tf.data.datasets` (a bad file met in a tf.data pipeline) inside
#: TensorFlow's error, which also names the dataset op and the graph node.
_DATA_ASSERTION = re.compile(r"assertion failed: \[mgml_tf\.data: (.*?)\]\s*(?:\[\[|$)", re.S)


def data_check_message(message):
    """The message of a data check (`mgml_tf.data.datasets`) in the text of a TensorFlow error, as the check wrote
    it (TensorFlow escapes its quotes), or None when the error is not one."""
    found = _DATA_ASSERTION.search(str(message))
    if found is None:
        return None
    return codecs.escape_decode(found.group(1).encode("utf-8"))[0].decode("utf-8", "replace")


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
        if getattr(e, "exit_at_once", False):  # a lost worker: TensorFlow's teardown would wait 30-60 s for it
            sys.stdout.flush()
            os._exit(status)
    except (ValueError, OSError, LookupError) as e:
        status = fail(prog, f"{type(e).__name__}: {e}" if type(e).__name__ not in str(e) else e, 1)
    except Exception as e:  # noqa: BLE001  (TensorFlow errors and the like: still one line)
        message = str(getattr(e, "message", None) or e)
        data = data_check_message(message)  # a data check in a tf.data pipeline: its message, not the graph's
        status = fail(prog, data or f"{type(e).__name__}: {message}", 1)
    sys.stdout.flush()
    sys.exit(status or 0)


def _flagfile_name(arg, rest):
    """The file of a ``--flagfile`` directive (``(name, consumed_next)``), or ``(None, False)``."""
    for prefix in ("--flagfile=", "-flagfile="):
        if arg.startswith(prefix):
            return os.path.expanduser(arg[len(prefix) :].strip()), False
    if arg in ("--flagfile", "-flagfile"):
        return (os.path.expanduser(rest[0]) if rest else ""), True
    return None, False


def _read_flagfile(path, stack, files=()):
    """Lines of one flagfile as absl reads them, each as ``(line, origin, files)``: its origin ``path:line`` and
    the flagfiles it is in, outermost first (``files[-1]`` holds the line); nested flagfiles are expanded.
    Raises ``UsageError`` naming the file when it is missing, a folder, unreadable or not text."""
    where = f" (included from {stack[-1]})" if stack else ""
    if not path:
        raise UsageError(f"--flagfile needs a file name{where}")
    if path in files:
        return []  # absl ignores a circular include (with a warning); so do we
    if not os.path.exists(path):
        raise UsageError(
            f"flagfile {path} not found{where}; check the path (relative paths are resolved from the current directory)"
        )
    if os.path.isdir(path):
        raise UsageError(f"flagfile {path} is a folder{where}; give a text file of --name=value lines")
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
    except UnicodeDecodeError:
        raise UsageError(f"flagfile {path} is not UTF-8 text{where}; give a text file of --name=value lines") from None
    except OSError as e:
        raise UsageError(f"cannot read flagfile {path}{where}: {e.strerror or e}; check its permissions") from None
    files = (*files, path)
    out = []
    for number, line in enumerate(lines, 1):
        if line.isspace() or line.startswith("#") or line.startswith("//"):
            continue
        text = line.strip()
        nested, _ = _flagfile_name(text, [])
        if nested is not None:
            out.extend(_read_flagfile(nested, stack + [f"{path}:{number}"], files))
        else:
            out.append((text, f"{path}:{number}", files))
    return out


def _expand_args(argv):
    """``[(arg, origin)]`` of the command line with every flagfile expanded (origin: ``FILE:LINE`` or
    ``the command line``)."""
    return [(arg, origin) for arg, origin, _ in _expand_args_in_files(argv)]


def _expand_args_in_files(argv):
    """``[(arg, origin, files)]``: ``_expand_args`` with, for each argument, the flagfiles it is in (outermost
    first; empty for the command line)."""
    out, rest = [], list(argv)
    while rest:
        arg, rest = rest[0], rest[1:]
        name, consumed = _flagfile_name(arg, rest)
        if name is None:
            out.append((arg, "the command line", ()))
            continue
        if consumed:
            rest = rest[1:]
        out.extend(_read_flagfile(name, []))
    return out


def _flag_error(flag_values, error, expanded):
    """A one-line message for an absl parse error: which flag, where it came from, what to do."""
    from absl import flags

    def origin_of(name):
        for arg, origin in reversed(expanded):
            bare = arg.lstrip("-").split("=", 1)[0]
            if bare in (name, "no" + name):
                return origin
        return None

    text = " ".join(str(error).split())
    if isinstance(error, flags.UnrecognizedFlagError):
        name = error.flagname
        origin = origin_of(name)
        where = f" in {origin}" if origin else ""
        return f"unknown flag --{name}{where}; `--help` lists the flags (a flagfile line looks like --name=value)"
    if isinstance(error, flags.IllegalFlagValueError) and text.startswith("flag --"):
        name = text[len("flag --") :].split("=", 1)[0].split(":", 1)[0]
        origin = origin_of(name)
        where = f" (in {origin})" if origin and origin != "the command line" else ""
        value = text.split("=", 1)[1].split(":", 1)[0] if "=" in text else ""
        if value.startswith("-") and name in flag_values and not flag_values[name].boolean:
            return (
                f"--{name} has no value{where} (the next argument {value!r} was taken as its value); "
                f"write --{name}=VALUE"
            )
        return f"{text}{where}; fix the value (`--help` describes the flag)"
    return text


def parse_flags(flag_values, argv, prog):
    """Parses ``argv`` into ``flag_values`` (``--flagfile`` nests); ``--help`` prints help and exits 0.

    Flagfiles are read once up front so that a missing, unreadable or non-text flagfile, a line that is
    not a flag, and an unknown or malformed flag are reported as one ``UsageError`` line naming the file
    and line they came from."""
    _print_help_if_asked(flag_values, argv, prog)
    expanded = _expand_args(argv[1:])
    return _parse(flag_values, argv, expanded)


def _print_help_if_asked(flag_values, argv, prog):
    if any(a in ("-h", "--help", "--helpfull", "-help") for a in argv[1:]):
        print(f"usage: python -m {prog} [--flagfile=FILE] [--flag=value ...]\n")
        print(flag_values.get_help())
        sys.exit(0)


def _parse(flag_values, argv, expanded):
    """absl's parse of ``argv`` (``expanded``: its arguments with their origins, for the messages)."""
    from absl import flags

    try:
        rest = flag_values(argv)
    except flags.Error as e:
        raise UsageError(_flag_error(flag_values, e, expanded)) from None
    if len(rest) > 1:
        origins = {arg: origin for arg, origin in expanded}
        stray = rest[1]
        origin = origins.get(stray, "the command line")
        raise UsageError(
            f"unexpected argument {stray!r} in {origin}: flags look like --name=value"
            + (f" ({len(rest) - 2} more)" if len(rest) > 2 else "")
        )
    return rest


# ------------------------------------------------------------------ one flagfile for every command
# evaluate, export and predict read the training flagfile (docs/CLI.md, "One flagfile for every command").


@dataclasses.dataclass
class ParsedFlags:
    """What ``parse_command_flags`` did besides parsing.

    ``ignored``: the training flags the command does not define that flagfiles set (first appearance order);
    ``ignored_files``: the flagfiles named on the command line that set them (themselves or by inclusion);
    ``from_training``: ``{name: FILE:LINE}`` of the flags the command shares with ``mgml_tf.train`` whose value
    a *training flagfile* gave (one that sets, itself or through the flagfiles it includes, a flag the command
    ignores); ``rest``: absl's remaining arguments."""

    rest: list
    ignored: list = dataclasses.field(default_factory=list)
    ignored_files: list = dataclasses.field(default_factory=list)
    from_training: dict = dataclasses.field(default_factory=dict)


def training_flags():
    """``{name: is_boolean}`` of every ``mgml_tf.train`` flag."""
    from mgml_tf.cli import train

    fv = train.make_flags()
    return {name: fv[name].boolean for name in fv}


def _flag_name(arg):
    """``(name, has_value)`` of a ``-name``/``--name[=value]`` argument as absl splits it, or ``(None, False)``."""
    if not arg.startswith("-") or arg.strip("-") == "":
        return None, False
    bare = arg[2:] if arg.startswith("--") else arg[1:]
    name, eq, _ = bare.partition("=")
    return name, bool(eq)


def _canonical(name, flag_values, training):
    """The flag ``name`` (or ``noNAME`` of a boolean) refers to, as ``(name, where)``: ``where`` is ``"own"``
    for a flag of the command, ``"training"`` for a training flag it does not define, else None."""
    if name in flag_values:
        return name, "own"
    if name.startswith("no") and len(name) > 2 and name[2:] in flag_values and flag_values[name[2:]].boolean:
        return name[2:], "own"
    if name in training:
        return name, "training"
    if name.startswith("no") and training.get(name[2:]):
        return name[2:], "training"
    return name, None


def parse_command_flags(flag_values, argv, prog):
    """``parse_flags`` for evaluate, export and predict: they also read the training flagfile.

    A flag of ``mgml_tf.train`` that ``flag_values`` does not define is dropped when a flagfile sets it (with
    its value, also a ``--name value`` pair); on the command line it is refused as an unknown flag, as is a
    flag no command knows, wherever it is. Returns a ``ParsedFlags``; ``report_ignored`` prints its line."""
    _print_help_if_asked(flag_values, argv, prog)
    expanded = _expand_args_in_files(argv[1:])
    training = training_flags()
    kept, ignored, given, training_files = [], {}, {}, set()
    args = iter(expanded)
    for arg, origin, files in args:
        name, has_value = _flag_name(arg)
        name, where = _canonical(name, flag_values, training) if name else (None, None)
        if where != "training" or not files:
            kept.append((arg, origin, files))
            continue
        ignored[name] = given[files[0]] = True  # the flagfile given on the command line is named
        training_files.update(files)
        if not training[name] and not has_value:
            next(args, None)  # absl takes the next argument as the value of --name
    parsed = ParsedFlags(rest=[], ignored=list(ignored), ignored_files=list(given))
    for arg, origin, files in kept:
        name, _ = _flag_name(arg)
        name, where = _canonical(name, flag_values, training) if name else (None, None)
        if where == "own" and name in training:
            if files and files[-1] in training_files:
                parsed.from_training[name] = origin
            else:
                parsed.from_training.pop(name, None)  # the last value counts, as in absl
    if not ignored:  # exactly the arguments of before
        parsed.rest = _parse(flag_values, argv, [(a, o) for a, o, _ in expanded])
    else:
        parsed.rest = _parse(flag_values, [argv[0], *(a for a, _, _ in kept)], [(a, o) for a, o, _ in expanded])
    return parsed


def report_ignored(prog, parsed, note=""):
    """Prints, on stdout like the tools' other reports (stderr holds only errors), the one line naming the
    training flags the command ignored, with ``note`` appended; nothing when it ignored none."""
    if not parsed.ignored:
        return
    names = ", ".join(f"--{n}" for n in parsed.ignored)
    line = f"{prog}: ignoring training flags it does not use: {names} (from {', '.join(parsed.ignored_files)})"
    print(one_line(line + (f"; {note}" if note else "")), flush=True)


def check_writable(flag, path, folder=True):
    """Refuses (``UsageError``) an output path that cannot be created or written: an existing file where a
    folder is wanted (or the reverse), a parent that is a file, or no write permission on the nearest
    existing parent. Writes nothing."""
    path = os.path.abspath(os.path.expanduser(path))
    if os.path.exists(path):
        if folder and not os.path.isdir(path):
            raise UsageError(f"--{flag}={path} exists and is not a folder; choose another path")
        if not folder and os.path.isdir(path):
            raise UsageError(f"--{flag}={path} is a folder; give a file name")
        if not os.access(path if folder else os.path.dirname(path), os.W_OK | os.X_OK):
            raise UsageError(f"--{flag}={path} is not writable; fix its permissions or choose another path")
        return
    parent = os.path.dirname(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise UsageError(f"--{flag}={path} cannot be created: {parent} is a file, not a folder; choose another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(
            f"--{flag}={path} cannot be created: {parent} is not writable; fix its permissions or choose another path"
        )
