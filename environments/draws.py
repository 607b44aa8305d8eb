"""Random numbers pre-drawn in batches from one seeded generator, handed out in order.

Simulators draw a few scalars per event; one numpy call per scalar costs about a microsecond, a batch
costs a fraction of that per number. Consumption order is fixed by the simulation, so a seed still
gives the same run.
"""

from __future__ import annotations

import numpy as np


class Draws:
    """Uniform [0, 1) numbers (`u`) and standard exponentials (`e`)."""

    __slots__ = ("rng", "n", "uniform", "exponential", "iu", "ie")

    def __init__(self, rng: np.random.Generator, n: int = 4096):
        self.rng, self.n = rng, n
        self.uniform = rng.random(n).tolist()
        self.exponential = rng.standard_exponential(n).tolist()
        self.iu = self.ie = 0

    def u(self) -> float:
        if self.iu == self.n:
            self.uniform, self.iu = self.rng.random(self.n).tolist(), 0
        self.iu += 1
        return self.uniform[self.iu - 1]

    def e(self) -> float:
        if self.ie == self.n:
            self.exponential, self.ie = self.rng.standard_exponential(self.n).tolist(), 0
        self.ie += 1
        return self.exponential[self.ie - 1]

