"""A kernel choice set from Python or from an environment variable (the fast-kernel layers' modes)."""

import os


class KernelMode:
    """One of ``modes``: the last :meth:`set` value, else the environment variable ``env``, else the first mode.

    ``what`` names the choice in errors (e.g. "dilated convolution mode")."""

    def __init__(self, env, modes, what):
        self.env, self.modes, self.what = env, tuple(modes), what
        self._mode = None

    def set(self, mode):
        """Sets the mode for layers traced from now on; ``None``: back to the environment variable or default."""
        if mode is not None and mode not in self.modes:
            raise ValueError(f"unknown {self.what} {mode!r}; choose one of {list(self.modes)}")
        self._mode = mode

    def get(self):
        if self._mode is not None:
            return self._mode
        mode = os.environ.get(self.env, "") or self.modes[0]
        if mode not in self.modes:
            raise ValueError(f"{self.env}={mode!r} is not a {self.what}; set it to one of {list(self.modes)}")
        return mode
