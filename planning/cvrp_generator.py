"""Seeded random CVRP instances for training and evaluating the route planner.

The recipe follows Uchoa et al. (2017), "New benchmark instances for the Capacitated Vehicle Routing
Problem", European Journal of Operational Research 257(3) (the X set), scaled to the unit square, and
keeps Kool et al.'s (2019) "Attention, learn to solve routing problems!" setting as one of its cases,
because that is the setting the learned-routing literature reports on.

Every instance is a `CVRPInstance` with Euclidean distances (`euclidean_instance`) and coordinates in
[0, 1]^2; index 0 is the depot.

=================  ==========================================================================================
choice             values (``GeneratorConfig`` field: default)
=================  ==========================================================================================
customers          ``n`` in ``n_min..n_max`` (20..100), uniform
positions          ``uniform``: i.i.d. in the square. ``clustered``: 3..8 cluster centres uniform in the
                   square (Uchoa: S in [3, 8]); each customer is drawn around a random centre with a
                   Gaussian of sigma 0.03..0.08 (Uchoa use an exponential attraction of scale 40 on a
                   1000-grid, i.e. 0.04) and reflected into the square. ``mixed``: half of each (Uchoa's
                   random-clustered). Weights: ``positions`` = uniform 0.5, clustered 0.25, mixed 0.25
depot              ``random`` (uniform in the square), ``centre`` (0.5, 0.5), ``corner`` (0, 0) (Uchoa's
                   eccentric depot). Weights: ``depots`` = random 0.5, centre 0.25, corner 0.25
demands            ``kool``: U{1..9}. ``unit``: all 1. ``small``: U{1..10}. ``small_narrow``: U{5..10}.
                   ``large``: U{1..100}. ``large_narrow``: U{50..100}. ``many_small``: 70..95 % of the
                   customers U{1..10}, the rest U{50..100} (Uchoa's "many small values, few large").
                   Weights: ``demands`` = kool 0.4, unit 0.1, small 0.15, small_narrow 0.1, large 0.1,
                   large_narrow 0.05, many_small 0.1
capacity           ``ceil(r * total demand / n)``, so a route holds about ``r`` customers, never less than
                   the largest demand (Uchoa's rule). ``r`` is Kool's: capacity 30/40/50 at n = 20/50/100
                   with mean demand 5 gives r = 6/8/10; ``r`` is interpolated in n between those and
                   multiplied by a factor U[0.7, 1.3] (``route_size_jitter``), except for ``kool``
                   demands, which keep Kool's capacities exactly (interpolated in n) so that those
                   instances are Kool's distribution when the positions are uniform and the depot random
=================  ==========================================================================================

`kool_instance` draws exactly Kool et al.'s CVRP distribution (n = 20, 50 or 100 gives capacity 30,
40, 50); the benchmarks' "CVRP-50 random instances" are those.

All randomness comes from the ``numpy.random.Generator`` passed in, so one seed gives one instance
sequence (`generate_instances`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from environments.errors import ShopfloorInputError
from planning.baselines.routing import CVRPInstance, euclidean_instance

POSITIONS = ("uniform", "clustered", "mixed")
DEPOTS = ("random", "centre", "corner")
DEMANDS = ("kool", "unit", "small", "small_narrow", "large", "large_narrow", "many_small")

# Kool et al. (2019), Appendix: capacity 30, 40, 50 for 20, 50, 100 customers with demands U{1..9}.
KOOL_N = (20, 50, 100)
KOOL_CAPACITY = (30.0, 40.0, 50.0)


@dataclass(frozen=True)
class GeneratorConfig:
    """What `random_instance` draws from. Weights need not sum to 1 (they are normalised)."""

    n_min: int = 20
    """Fewest customers."""
    n_max: int = 100
    """Most customers."""
    positions: dict[str, float] = field(default_factory=lambda: {"uniform": 0.5, "clustered": 0.25, "mixed": 0.25})
    """Weights of the customer position kinds (`POSITIONS`)."""
    depots: dict[str, float] = field(default_factory=lambda: {"random": 0.5, "centre": 0.25, "corner": 0.25})
    """Weights of the depot positions (`DEPOTS`)."""
    demands: dict[str, float] = field(default_factory=lambda: {
        "kool": 0.4, "unit": 0.1, "small": 0.15, "small_narrow": 0.1, "large": 0.1, "large_narrow": 0.05,
        "many_small": 0.1})
    """Weights of the demand distributions (`DEMANDS`)."""
    route_size_jitter: float = 0.3
    """Customers per route are Kool's r(n) times U[1 - jitter, 1 + jitter] (not for ``kool`` demands)."""

    def __post_init__(self) -> None:
        if not 1 <= self.n_min <= self.n_max:
            raise ShopfloorInputError(f"n_min={self.n_min}, n_max={self.n_max} are invalid; allowed: "
                                      "1 <= n_min <= n_max.")
        for name, allowed in (("positions", POSITIONS), ("depots", DEPOTS), ("demands", DEMANDS)):
            weights = getattr(self, name)
            bad = sorted(set(weights) - set(allowed))
            if bad or not weights or min(weights.values()) < 0 or sum(weights.values()) <= 0:
                raise ShopfloorInputError(f"{name}={weights} is invalid; allowed: non-negative weights, not all 0, "
                                          f"over {list(allowed)}.")
        if not 0 <= self.route_size_jitter < 1:
            raise ShopfloorInputError(f"route_size_jitter={self.route_size_jitter} is invalid; allowed: 0..1 "
                                      "(exclusive).")


def kool_capacity(n: int) -> float:
    """Kool et al.'s capacity for demands U{1..9}: 30, 40, 50 at n = 20, 50, 100, linear in between."""
    return float(np.interp(n, KOOL_N, KOOL_CAPACITY))


def customer_positions(rng: np.random.Generator, n: int, kind: str) -> np.ndarray:
    """``n`` customer positions in [0, 1]^2, shape (n, 2)."""
    assert kind in POSITIONS, kind
    if kind == "uniform":
        return rng.random((n, 2))
    n_clustered = n if kind == "clustered" else n // 2
    centres = rng.random((int(rng.integers(3, 9)), 2))
    sigma = rng.uniform(0.03, 0.08)
    pts = centres[rng.integers(0, len(centres), n_clustered)] + rng.normal(0.0, sigma, (n_clustered, 2))
    pts = np.abs(pts)  # reflect at 0 and at 1, so the cluster stays a cluster at the border
    pts = np.where(pts > 1.0, 2.0 - pts, pts).clip(0.0, 1.0)
    return rng.permutation(np.concatenate([pts, rng.random((n - n_clustered, 2))]))


def depot_position(rng: np.random.Generator, kind: str) -> np.ndarray:
    assert kind in DEPOTS, kind
    return {"random": lambda: rng.random(2), "centre": lambda: np.array([0.5, 0.5]),
            "corner": lambda: np.array([0.0, 0.0])}[kind]()


def customer_demands(rng: np.random.Generator, n: int, kind: str) -> np.ndarray:
    """Integer demands of ``n`` customers, shape (n,), float."""
    assert kind in DEMANDS, kind
    if kind == "many_small":
        small = rng.random(n) < rng.uniform(0.70, 0.95)
        return np.where(small, rng.integers(1, 11, n), rng.integers(50, 101, n)).astype(float)
    lo, hi = {"kool": (1, 9), "unit": (1, 1), "small": (1, 10), "small_narrow": (5, 10), "large": (1, 100),
              "large_narrow": (50, 100)}[kind]
    return rng.integers(lo, hi + 1, n).astype(float)


def make_instance(rng: np.random.Generator, n: int, positions: str = "uniform", depot: str = "random",
                  demands: str = "kool", route_size_jitter: float = 0.3) -> CVRPInstance:
    """One instance of the given kinds (see the module docstring for what each means)."""
    assert n >= 1, n
    coords = np.concatenate([depot_position(rng, depot)[None], customer_positions(rng, n, positions)])
    q = customer_demands(rng, n, demands)
    if demands == "kool":
        capacity = kool_capacity(n)
    else:
        route_size = kool_capacity(n) / 5.0 * rng.uniform(1.0 - route_size_jitter, 1.0 + route_size_jitter)
        capacity = max(float(math.ceil(route_size * q.sum() / n)), float(q.max()))
    return euclidean_instance(coords, np.concatenate([[0.0], q]), capacity,
                              name=f"gen-n{n}-{positions}-{depot}-{demands}")


def _pick(rng: np.random.Generator, weights: dict[str, float]) -> str:
    keys = sorted(weights)  # sorted: the draw must not depend on the dict's insertion order
    p = np.array([weights[k] for k in keys], dtype=float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def random_instance(rng: np.random.Generator, cfg: GeneratorConfig = GeneratorConfig(),
                    n: int | None = None) -> CVRPInstance:
    """One instance with its kinds drawn from ``cfg``; ``n`` overrides the drawn number of customers."""
    n = int(rng.integers(cfg.n_min, cfg.n_max + 1)) if n is None else n
    return make_instance(rng, n, _pick(rng, cfg.positions), _pick(rng, cfg.depots), _pick(rng, cfg.demands),
                         cfg.route_size_jitter)


def kool_instance(rng: np.random.Generator, n: int) -> CVRPInstance:
    """Kool et al.'s CVRP: depot and customers uniform in the square, demands U{1..9}, capacity 30/40/50."""
    return make_instance(rng, n, "uniform", "random", "kool")


def generate_instances(seed: int, count: int, cfg: GeneratorConfig = GeneratorConfig(),
                       n: int | None = None) -> list[CVRPInstance]:
    """``count`` instances from one seed (the same seed and config always give the same list)."""
    rng = np.random.default_rng(seed)
    return [random_instance(rng, cfg, n) for _ in range(count)]
