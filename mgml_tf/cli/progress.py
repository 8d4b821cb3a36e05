"""A progress line for long loops of the command-line tools, e.g. ``predict: 12/40 images, 3.1 img/s``.

On a terminal the line is rewritten in place (carriage return), as often as it changes; written to a file or
a pipe (a log, a test) a carriage return would pile up as one endless line, so there it is a plain line
every ``every`` seconds and once at the end."""

import sys
import time


class Progress:
    """Counts done items of ``total`` (None when unknown) and reports them with their rate.

    ``unit`` names the items (``images``), ``rate_unit`` their rate (``img/s``); the rate counts from the
    first ``update`` call's start (the object's creation), so loading a model before it is not counted."""

    def __init__(self, prog, total, unit, rate_unit, stream=None, every=10.0, clock=time.monotonic):
        self.prog, self.total, self.unit, self.rate_unit = prog, total, unit, rate_unit
        self.stream = stream or sys.stdout
        self.every, self.clock = every, clock
        isatty = getattr(self.stream, "isatty", None)
        self.in_place = bool(isatty and isatty())
        self.start = self.last = clock()
        self.done = 0
        self._shown = 0  # length of the line on the terminal

    def line(self):
        seconds = self.clock() - self.start
        rate = f"{self.done / seconds:.1f}" if seconds > 0 else "?"
        count = f"{self.done}/{self.total}" if self.total else f"{self.done}"
        return f"{self.prog}: {count} {self.unit}, {rate} {self.rate_unit}"

    def update(self, done=None):
        """One more item done (or ``done`` in all)."""
        self.done = self.done + 1 if done is None else done
        now = self.clock()
        if self.in_place:
            self._write_in_place(self.line())
        elif now - self.last >= self.every:
            self.last = now
            self.stream.write(self.line() + "\n")
            self.stream.flush()

    def _write_in_place(self, text):
        self.stream.write("\r" + text + " " * max(self._shown - len(text), 0))
        self.stream.flush()
        self._shown = len(text)

    def close(self):
        """The final line (ends the line in place on a terminal)."""
        if self.in_place:
            self._write_in_place(self.line())
            self.stream.write("\n")
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()
