"""The two errors the command line reports as one line, raised wherever they arise (flags, data, training,
serving). Low level: this module imports nothing of mgml_tf, so any layer can raise them."""


class UsageError(Exception):
    """Bad input the user can fix before any work starts (a flag value, a path, a dataset root): reported as
    one line, exit status 2, nothing written."""


class RunError(Exception):
    """A failure during the run (an unreadable file, an incompatible model_dir, a non-finite loss): reported
    as one line, exit status 1."""


def one_line(message):
    """``message`` on one line: every run of whitespace (newlines included) becomes one space."""
    return " ".join(str(message).split())
