"""Local-search polish of a CVRP solution under a time budget.

Two stages:

1. ruin and recreate (``planning.ruin_recreate``, compiled) for most of the budget: remove a few
   customers that lie close together, put them back where they cost least, keep by simulated annealing;
2. a descent to a local optimum of three classical neighbourhoods on the best solution found:

   * 2-opt within each route (`planning.baselines.routing.two_opt`);
   * relocate: move one customer to the best place in another route, or to a route of its own;
   * swap: exchange two customers of different routes, each taking the other's place.

The descent alone stopped at a local optimum +7.8% behind PyVRP on CVRP-50 (benchmarks/RESULTS.md,
issue 6) within 0.25 s; ruin and recreate spends the rest of the budget leaving such optima.

Moves are best-improvement per customer, with the costs of both directions, so asymmetric distance
matrices are handled; every accepted move is re-costed on the routes it touches and undone if it did
not gain (so the polish never makes a solution worse), and capacity is checked before a move is made.
"""

from __future__ import annotations

import time

import numpy as np

from planning.baselines.routing import CVRPInstance, route_cost, solution_cost, two_opt, validate_solution
from planning.ruin_recreate import ruin_recreate

EPS = 1e-9
DESCENT_SHARE = 0.1  # of the budget, kept for the final descent (it rarely needs more than a few ms)


def polish(instance: CVRPInstance, routes: list[list[int]], time_budget_s: float, seed: int = 0,
           ruin: bool = True, iterations: int | None = None) -> list[list[int]]:
    """A solution at most as costly as ``routes``, found within ``time_budget_s``: ruin and recreate,
    then a descent to a local optimum (``ruin=False``: the descent alone, stopping at its optimum).

    iterations : a fixed number of ruin-and-recreate iterations and a descent run to its optimum,
        whatever the clock says (``time_budget_s`` is then ignored): the same result on any machine
    """
    deadline = time.perf_counter() + time_budget_s if iterations is None else np.inf
    routes = [list(r) for r in routes if r]
    start = solution_cost(instance, routes)
    if ruin:
        routes = ruin_recreate(instance.distances, instance.demands, instance.capacity, routes,
                               (1.0 - DESCENT_SHARE) * time_budget_s, seed, iterations)
    while time.perf_counter() < deadline:
        improved = _two_opt_routes(instance, routes)
        improved = _inter_route(instance, routes, deadline) or improved
        if not improved:
            break
    routes = [r for r in routes if r]
    validate_solution(instance, routes)
    assert solution_cost(instance, routes) <= start + 1e-6, "the polish made the solution worse"
    return routes


def _two_opt_routes(instance: CVRPInstance, routes: list[list[int]]) -> bool:
    improved = False
    for i, r in enumerate(routes):
        if len(r) > 2:
            new = two_opt(instance, r)
            if route_cost(instance, new) < route_cost(instance, r) - EPS:  # two_opt assumes symmetric costs
                routes[i], improved = new, True
    return improved


def _inter_route(instance: CVRPInstance, routes: list[list[int]], deadline: float) -> bool:
    """One pass of relocate and swap over every customer; True if any move was made."""
    d, q, cap = instance.distances, instance.demands, instance.capacity
    n = instance.n_customers
    improved = False
    for c in range(1, n + 1):
        if time.perf_counter() >= deadline:
            break
        route_of, pos, prev, nxt, load = _where(routes, n, q)
        rc = route_of[c]
        removal = d[prev[c], c] + d[c, nxt[c]] - d[prev[c], nxt[c]]
        # relocate: insert c between consecutive nodes (a, b) of another route, or alone on a new route
        src, dst, edge_route, edge_pos = _edges(routes)
        ok = (edge_route != rc) & (load[edge_route] + q[c] <= cap + EPS)
        gain_reloc = np.where(ok, removal - (d[src, c] + d[c, dst] - d[src, dst]), -np.inf)
        best_reloc = int(np.argmax(gain_reloc)) if len(gain_reloc) else -1
        new_route_gain = removal - d[0, c] - d[c, 0] if len(routes[rc]) > 1 else -np.inf
        # swap: c takes e's place and e takes c's place, e on another route
        e = np.arange(1, n + 1)
        re = route_of[e]
        ok = (re != rc) & (load[rc] - q[c] + q[e] <= cap + EPS) & (load[re] - q[e] + q[c] <= cap + EPS)
        gain_swap = (d[prev[c], c] + d[c, nxt[c]] - d[prev[c], e] - d[e, nxt[c]]
                     + d[prev[e], e] + d[e, nxt[e]] - d[prev[e], c] - d[c, nxt[e]])
        gain_swap = np.where(ok, gain_swap, -np.inf)
        best_swap = int(np.argmax(gain_swap))
        options = [(gain_swap[best_swap], "swap"), (new_route_gain, "new"),
                   (gain_reloc[best_reloc] if best_reloc >= 0 else -np.inf, "relocate")]
        gain, kind = max(options, key=lambda o: o[0])
        if gain <= EPS:
            continue
        before = [list(r) for r in routes]
        touched = {rc}
        routes[rc].pop(pos[c])
        if kind == "relocate":
            touched.add(int(edge_route[best_reloc]))
            routes[edge_route[best_reloc]].insert(int(edge_pos[best_reloc]), c)
        elif kind == "new":
            routes.append([c])
            touched.add(len(routes) - 1)
        else:
            other = int(e[best_swap])
            ro = int(route_of[other])
            routes[rc].insert(pos[c], other)
            routes[ro][pos[other]] = c
            touched.add(ro)
        old = sum(route_cost(instance, before[r]) for r in touched if r < len(before))
        if sum(route_cost(instance, routes[r]) for r in touched) < old - EPS:
            improved = True
        else:  # a rounding corner case: keep the old routes
            routes[:] = before
    routes[:] = [r for r in routes if r]
    return improved


def _where(routes: list[list[int]], n: int, q: np.ndarray):
    """Per customer: route, position, previous and next node (0 = depot); per route: load."""
    route_of, pos = np.zeros(n + 1, dtype=int), np.zeros(n + 1, dtype=int)
    prev, nxt = np.zeros(n + 1, dtype=int), np.zeros(n + 1, dtype=int)
    for k, r in enumerate(routes):
        tour = [0, *r, 0]
        for i, c in enumerate(r):
            route_of[c], pos[c], prev[c], nxt[c] = k, i, tour[i], tour[i + 2]
    load = np.array([q[r].sum() for r in routes])
    return route_of, pos, prev, nxt, load


def _edges(routes: list[list[int]]):
    """Every edge (a, b) of every route's tour, with its route and the insert position between a and b."""
    src, dst, rid, at = [], [], [], []
    for k, r in enumerate(routes):
        tour = [0, *r, 0]
        src += tour[:-1]
        dst += tour[1:]
        rid += [k] * (len(tour) - 1)
        at += list(range(len(tour) - 1))
    return np.array(src), np.array(dst), np.array(rid), np.array(at)
