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


class UnitGamma:
    """Gamma variates with mean 1 and coefficient of variation ``cv`` (scale them to the mean you need)."""

    __slots__ = ("rng", "shape", "n", "values", "i")

    def __init__(self, rng: np.random.Generator, cv: float, n: int = 2048):
        assert cv > 0, f"cv must be positive, got {cv}"
        self.rng, self.shape, self.n = rng, 1.0 / (cv * cv), n
        self.values, self.i = self._draw(), 0

    def _draw(self) -> list[float]:
        return (self.rng.standard_gamma(self.shape, self.n) / self.shape).tolist()

    def __call__(self) -> float:
        if self.i == self.n:
            self.values, self.i = self._draw(), 0
        self.i += 1
        return self.values[self.i - 1]
