"""Ruin and recreate under a time budget: the search that improves a CVRP solution after the decoder.

Each iteration removes a few customers that lie close together (the customers nearest a random one,
or a random handful), puts each back where it costs least (any route with room, or a new route), and
keeps the result by simulated annealing: better always, worse with probability exp(-worse / T), the
temperature cooling from ``T_START`` to ``T_END`` times the mean cost per customer over the budget.
This is the scheme of Christiaens & Vanden Berghe's SISR ("Slack Induction by String Removals",
Transportation Science 2020) without its string detail. It handles asymmetric costs (every insertion
is costed in the driving direction) and keeps the best solution seen, so it never returns a worse one.

Why compiled. One iteration on 50 customers is some thousand insertion costings; numba runs it in
tens of microseconds, so a 250 ms budget is thousands of iterations, where the same loop in Python
managed a few dozen. The first call compiles (cached on disk by numba afterwards).
"""

from __future__ import annotations

import time

import numpy as np
from numba import njit

T_START = 1.0  # temperatures, in units of the start solution's mean cost per customer
T_END = 0.01
RUIN_MAX = 10  # customers removed per iteration, at most (and at most a fifth of them)
CHUNK = 200  # iterations between clock checks


def ruin_recreate(distances: np.ndarray, demands: np.ndarray, capacity: float, routes: list[list[int]],
                  time_budget_s: float, seed: int = 0, iterations: int | None = None) -> list[list[int]]:
    """The best solution found from ``routes`` within ``time_budget_s`` (never worse than ``routes``).

    iterations : run exactly this many iterations instead, cooling over them and ignoring the clock, so
        that one seed gives one solution on any machine (the router's training data needs that)
    """
    n = len(demands) - 1
    routes = [list(r) for r in routes if r]
    if n < 2 or (time_budget_s <= 0 if iterations is None else iterations <= 0):
        return routes
    warm_up()
    d = np.ascontiguousarray(distances, dtype=np.float64)
    q = np.ascontiguousarray(demands, dtype=np.float64)
    nodes, lens = _to_arrays(routes, n)
    # each customer's others, nearest first: the ruin removes neighbourhoods
    sym = d[1:, 1:] + d[1:, 1:].T
    near = (np.argsort(sym, axis=1) + 1).astype(np.int64)
    cost = _cost(d, nodes, lens)
    best_nodes, best_lens, best_cost = nodes.copy(), lens.copy(), cost
    per_customer = cost / n
    rng_state = np.array([seed * 2654435761 % (2**31) + 1], dtype=np.int64)
    if iterations is not None:
        for done in range(0, iterations, CHUNK):
            temperature = per_customer * T_START * (T_END / T_START) ** (done / iterations)
            cost, best_cost = _iterate(d, q, float(capacity), near, nodes, lens, cost, best_nodes, best_lens,
                                       best_cost, temperature, min(CHUNK, iterations - done), rng_state)
        return _routes(best_nodes, best_lens)
    deadline = time.perf_counter() + time_budget_s
    t_start = time.perf_counter()
    while True:
        now = time.perf_counter()
        if now >= deadline:
            break
        progress = (now - t_start) / time_budget_s
        temperature = per_customer * T_START * (T_END / T_START) ** progress
        cost, best_cost = _iterate(d, q, float(capacity), near, nodes, lens, cost, best_nodes, best_lens, best_cost,
                                   temperature, CHUNK, rng_state)
    return _routes(best_nodes, best_lens)


def _routes(nodes: np.ndarray, lens: np.ndarray) -> list[list[int]]:
    return [[int(c) for c in nodes[r, :lens[r]]] for r in range(len(lens)) if lens[r] > 0]


def warm_up() -> None:
    """Compile (or load from numba's disk cache) once per process, before any clock runs: ~0.7 s from the
    cache, ~10 s on a fresh machine. ``ruin_recreate`` calls it; callers on a deadline call it early."""
    global _compiled
    if _compiled:
        return
    rng = np.random.default_rng(0)
    xy = rng.random((6, 2))
    d = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    q = np.array([0.0, 1, 1, 1, 1, 1])
    nodes, lens = _to_arrays([[1, 2, 3], [4, 5]], 5)
    near = (np.argsort(d[1:, 1:], axis=1) + 1).astype(np.int64)
    cost = _cost(d, nodes, lens)
    _iterate(d, q, 3.0, near, nodes, lens, cost, nodes.copy(), lens.copy(), cost, 1.0, 1, np.array([1], np.int64))
    _compiled = True


_compiled = False


def _to_arrays(routes: list[list[int]], n: int) -> tuple[np.ndarray, np.ndarray]:
    nodes = np.zeros((n + 1, n + 1), dtype=np.int64)  # at most one route per customer, plus a spare
    lens = np.zeros(n + 1, dtype=np.int64)
    for r, route in enumerate(routes):
        nodes[r, :len(route)] = route
        lens[r] = len(route)
    return nodes, lens


@njit(cache=True)
def _cost(d, nodes, lens):
    total = 0.0
    for r in range(len(lens)):
        prev = 0
        for i in range(lens[r]):
            total += d[prev, nodes[r, i]]
            prev = nodes[r, i]
        if lens[r] > 0:
            total += d[prev, 0]
    return total


@njit(cache=True)
def _rand(state):
    """xorshift64*: a uniform float in [0, 1) (numba's own generator would be shared with the caller's)."""
    x = state[0]
    x ^= (x >> 12) & 0x000FFFFFFFFFFFFF
    x ^= x << 25
    x ^= (x >> 27) & 0x0000001FFFFFFFFF
    state[0] = x
    return ((x * 2685821657736338717) >> 11 & 0x1FFFFFFFFFFFFF) / 9007199254740992.0


@njit(cache=True)
def _iterate(d, q, cap, near, nodes, lens, cost, best_nodes, best_lens, best_cost, temperature, n_iter, state):
    n = len(q) - 1
    n_routes = len(lens)
    route_of = np.empty(n + 1, dtype=np.int64)
    loads = np.zeros(n_routes)
    removed = np.empty(n, dtype=np.int64)
    work_nodes = nodes.copy()
    work_lens = lens.copy()
    for _ in range(n_iter):
        work_nodes[:, :] = nodes
        work_lens[:] = lens
        for r in range(n_routes):
            loads[r] = 0.0
            for i in range(work_lens[r]):
                route_of[work_nodes[r, i]] = r
                loads[r] += q[work_nodes[r, i]]
        # ruin: the customers nearest a random one, or a random handful
        k = 2 + int(_rand(state) * (min(RUIN_MAX, max(2, n // 5)) - 1))
        seed_customer = 1 + int(_rand(state) * n)
        radial = _rand(state) < 0.75
        n_removed = 0
        j = -1
        while n_removed < k:
            if radial:
                c = seed_customer if j < 0 else near[seed_customer - 1, j]
                j += 1
            else:
                c = 1 + int(_rand(state) * n)
            dup = False
            for m in range(n_removed):
                if removed[m] == c:
                    dup = True
            if dup:
                continue
            r = route_of[c]
            for i in range(work_lens[r]):
                if work_nodes[r, i] == c:
                    for t in range(i, work_lens[r] - 1):
                        work_nodes[r, t] = work_nodes[r, t + 1]
                    work_lens[r] -= 1
                    break
            loads[r] -= q[c]
            removed[n_removed] = c
            n_removed += 1
        # recreate: in random order, each where it costs least (a new route if none has room)
        for m in range(n_removed - 1, 0, -1):
            o = int(_rand(state) * (m + 1))
            removed[m], removed[o] = removed[o], removed[m]
        for m in range(n_removed):
            c = removed[m]
            best_delta, best_r, best_i, empty = 1e300, -1, 0, -1
            for r in range(n_routes):
                if work_lens[r] == 0:
                    if empty < 0:
                        empty = r
                    continue
                if loads[r] + q[c] > cap + 1e-9:
                    continue
                prev = 0
                for i in range(work_lens[r] + 1):
                    nxt = work_nodes[r, i] if i < work_lens[r] else 0
                    delta = d[prev, c] + d[c, nxt] - d[prev, nxt]
                    if delta < best_delta and _rand(state) > 0.01:  # "blinks": SISR's small randomisation
                        best_delta, best_r, best_i = delta, r, i
                    prev = nxt
            if empty >= 0 and d[0, c] + d[c, 0] < best_delta:
                best_r, best_i = empty, 0
            for t in range(work_lens[best_r], best_i, -1):
                work_nodes[best_r, t] = work_nodes[best_r, t - 1]
            work_nodes[best_r, best_i] = c
            work_lens[best_r] += 1
            loads[best_r] += q[c]
        new_cost = _cost(d, work_nodes, work_lens)
        if new_cost < cost - 1e-12 or _rand(state) < np.exp(-(new_cost - cost) / temperature):
            nodes[:, :] = work_nodes
            lens[:] = work_lens
            cost = new_cost
            if cost < best_cost - 1e-12:
                best_nodes[:, :] = nodes
                best_lens[:] = lens
                best_cost = cost
    return cost, best_cost
