"""The four training methods compared in the paper's tables, as one table of what each one does.

Code asks the table (``METHODS[name].uses_memory``), never the method's name, so a new method is one row.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Method:
    """One training method.

    ``uses_memory``: the network reads, writes and regularises the categorical memory (Sec. 3.2).
    ``meta_learns``: a step is an episode of a meta-train and a meta-test batch from disjoint source domains
    (Algorithm 1, or MLDG without memory); otherwise a step is one batch aggregated over every source domain.
    """

    name: str
    uses_memory: bool
    meta_learns: bool
    description: str

    @property
    def aggregates(self) -> bool:
        """Trains on batches aggregated over all source domains (no episodes)."""
        return not self.meta_learns


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("mgml", uses_memory=True, meta_learns=True, description="memory-guided meta-learning (Algorithm 1)"),
        Method("baseline", uses_memory=False, meta_learns=False, description="aggregate training, no memory"),
        Method("mldg", uses_memory=False, meta_learns=True, description="episodic meta-learning (MLDG), no memory"),
        Method("memory_agg", uses_memory=True, meta_learns=False, description="the memory on aggregated batches"),
    )
}


def get_method(name: str) -> Method:
    """The method called ``name``; a one-line ``ValueError`` naming the choices for an unknown name."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {list(METHODS)}")
    return METHODS[name]
