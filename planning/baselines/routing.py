"""Static capacitated vehicle routing (CVRP): the instance, solution checks and two classical constructions.

Index 0 is the depot, customers are ``1..n``. A solution is a list of routes, each the list of customer
indices one vehicle visits in order; every route starts and ends at the depot (not written out).

* `nearest_neighbour`: from the depot, always drive to the closest unvisited customer that still fits;
  when none fits, return and start a new route.
* `clarke_wright_savings`: the parallel savings algorithm of Clarke and Wright (1964), "Scheduling of
  vehicles from a central depot to a number of delivery points", Operations Research 12(4).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from environments.errors import ShopfloorInputError


@dataclass(frozen=True, eq=False)
class CVRPInstance:
    """One CVRP instance; index 0 is the depot.

    Attributes
    ----------
    distances : np.ndarray, shape = (n + 1, n + 1)
        Travel cost between every pair (km, or VRPLIB units). Need not be symmetric.
    demands : np.ndarray, shape = (n + 1,)
        Demand of every customer, units; ``demands[0]`` (the depot) is 0.
    capacity : float
        Vehicle capacity, units (one homogeneous fleet, unlimited in number).
    coords : np.ndarray | None, shape = (n + 1, 2)
        Positions, for plots.
    node_ids : list[int] | None
        Road-network node of every index, when the instance comes from the fleet simulator.
    time_windows : np.ndarray | None, shape = (n + 1, 2)
        Earliest and latest service start per index, minutes. The constructions here ignore them.
    name : str
    """

    distances: np.ndarray
    demands: np.ndarray
    capacity: float
    coords: np.ndarray | None = None
    node_ids: list[int] | None = None
    time_windows: np.ndarray | None = None
    name: str = "cvrp"

    def __post_init__(self) -> None:
        d, q = np.asarray(self.distances, dtype=float), np.asarray(self.demands, dtype=float)
        object.__setattr__(self, "distances", d)
        object.__setattr__(self, "demands", q)
        n = len(q)
        assert d.shape == (n, n), f"distances shape {d.shape} does not match {n} demands"
        assert n >= 1 and q[0] == 0, "index 0 is the depot and must have demand 0"
        assert self.capacity > 0, f"capacity {self.capacity} must be > 0"
        assert q.max() <= self.capacity, f"a demand of {q.max()} exceeds the capacity {self.capacity}"
        if self.coords is not None:
            assert np.shape(self.coords) == (n, 2), f"coords shape {np.shape(self.coords)}, expected ({n}, 2)"
        if self.node_ids is not None:
            assert len(self.node_ids) == n, f"{len(self.node_ids)} node ids for {n} indices"
        if self.time_windows is not None:
            assert np.shape(self.time_windows) == (n, 2), "time_windows must have shape (n + 1, 2)"

    @property
    def n_customers(self) -> int:
        return len(self.demands) - 1


# ---------------------------------------------------------------------------------------------- checking
def route_cost(instance: CVRPInstance, route: list[int]) -> float:
    """Cost of depot -> route[0] -> ... -> route[-1] -> depot (0 for an empty route)."""
    if not route:
        return 0.0
    d = instance.distances
    cost = d[0, route[0]] + d[route[-1], 0]
    for a, b in zip(route, route[1:]):
        cost += d[a, b]
    return float(cost)


def solution_cost(instance: CVRPInstance, routes: list[list[int]]) -> float:
    return sum(route_cost(instance, r) for r in routes)


def validate_solution(instance: CVRPInstance, routes: list[list[int]]) -> None:
    """Check every customer is visited exactly once and no route exceeds the capacity.

    Raises
    ------
    ValueError
        Naming the first problem found.
    """
    seen = np.zeros(instance.n_customers + 1, dtype=int)
    for k, route in enumerate(routes):
        for c in route:
            if not 1 <= c <= instance.n_customers:
                raise ValueError(f"route {k} visits {c}; customers are 1..{instance.n_customers}")
            seen[c] += 1
        load = float(instance.demands[route].sum()) if route else 0.0
        if load > instance.capacity + 1e-9:
            raise ValueError(f"route {k} carries {load} units; the capacity is {instance.capacity}")
    if (seen[1:] != 1).any():
        c = int(np.flatnonzero(seen[1:] != 1)[0]) + 1
        raise ValueError(f"customer {c} is visited {seen[c]} times; every customer must be visited once")


# ------------------------------------------------------------------------------------------ constructions
def nearest_neighbour(instance: CVRPInstance) -> list[list[int]]:
    """Greedy routes: always go to the nearest unvisited customer that fits the remaining capacity.

    Ties go to the lowest index, so the result is deterministic.
    """
    d, q, cap = instance.distances, instance.demands, instance.capacity
    unvisited = np.ones(len(q), dtype=bool)
    unvisited[0] = False
    routes: list[list[int]] = []
    while unvisited.any():
        route, here, load = [], 0, 0.0
        while True:
            ok = unvisited & (q <= cap - load + 1e-9)
            if not ok.any():
                break
            nxt = int(np.argmin(np.where(ok, d[here], np.inf)))
            route.append(nxt)
            unvisited[nxt] = False
            load += q[nxt]
            here = nxt
        routes.append(route)
    return routes


def savings_list(distances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All customer pairs (i, j), i < j, with positive savings ``d[i,0] + d[0,j] - d[i,j]``, best first.

    Returns
    -------
    (pairs, savings) : np.ndarray of shape (m, 2), int, and shape (m,), float
        Sorted by decreasing savings; ties by (i, j), so the order is deterministic.
    """
    d = np.asarray(distances, dtype=float)
    n = d.shape[0]
    i, j = np.triu_indices(n - 1, k=1)
    i, j = i + 1, j + 1
    # Symmetrised for asymmetric matrices: the merge may join the two routes in either orientation.
    s = 0.5 * (d[i, 0] + d[0, j] - d[i, j] + d[j, 0] + d[0, i] - d[j, i])
    keep = s > 1e-12
    i, j, s = i[keep], j[keep], s[keep]
    order = np.lexsort((j, i, -s))
    return np.stack([i[order], j[order]], axis=1), s[order]


def clarke_wright_savings(instance: CVRPInstance) -> list[list[int]]:
    """Parallel Clarke-Wright savings.

    Start with one route per customer; walk the pairs by decreasing savings and join the routes of i and
    j when i and j are at ends of two different routes and the joined load fits. The savings list is built
    with numpy; the merge pass is O(n^2) list work in the worst case (well under a second at n = 1000).

    Returns
    -------
    list[list[int]]
        Routes ordered by their first customer.
    """
    q, cap = instance.demands, instance.capacity
    n = instance.n_customers
    route_of = list(range(n + 1))  # customer -> route id (a route id is the customer it started from)
    routes: dict[int, list[int]] = {c: [c] for c in range(1, n + 1)}
    load = {c: float(q[c]) for c in range(1, n + 1)}
    pairs, _ = savings_list(instance.distances)
    for i, j in pairs.tolist():
        ri, rj = route_of[i], route_of[j]
        if ri == rj or load[ri] + load[rj] > cap + 1e-9:
            continue
        a, b = routes[ri], routes[rj]
        # i must end route a and j must start route b; reverse routes to get there when allowed.
        if a[-1] != i:
            if a[0] != i:
                continue
            a.reverse()
        if b[0] != j:
            if b[-1] != j:
                continue
            b.reverse()
        a.extend(b)
        load[ri] += load.pop(rj)
        for c in routes.pop(rj):
            route_of[c] = ri
    return sorted(routes.values(), key=lambda r: min(r))


def two_opt(instance: CVRPInstance, route: list[int], max_passes: int = 20) -> list[int]:
    """Improve one route with 2-opt (segment reversal) until no move gains; symmetric costs assumed."""
    d = instance.distances
    tour = [0, *route, 0]
    for _ in range(max_passes):
        improved = False
        for a in range(len(tour) - 3):
            for b in range(a + 2, len(tour) - 1):
                p, q, r, s = tour[a], tour[a + 1], tour[b], tour[b + 1]
                gain = d[p, q] + d[r, s] - d[p, r] - d[q, s]
                if gain > 1e-9:
                    tour[a + 1:b + 1] = tour[a + 1:b + 1][::-1]
                    improved = True
        if not improved:
            break
    return tour[1:-1]


# ------------------------------------------------------------------------------------------------ VRPLIB
def instance_from_vrplib(path: str | os.PathLike) -> CVRPInstance:
    """Read a CVRPLIB instance (VRPLIB format) with the ``vrplib`` package.

    Distances follow VRPLIB: ``EUC_2D`` is rounded to the nearest integer (TSPLIB ``nint``), so the costs
    match the published best known solutions; explicit matrices are used as given. The depot is moved to
    index 0 if the file puts it elsewhere.

    Raises
    ------
    ShopfloorInputError
        When the file is missing, unreadable or not a single-depot CVRP.
    """
    import vrplib

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ShopfloorInputError(f"{path}: no such instance file; give the path of a CVRPLIB .vrp file")
    try:
        data = vrplib.read_instance(path)
    except Exception as exc:  # vrplib raises ValueError, KeyError, IndexError... on malformed files
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ShopfloorInputError(f"{path}: not a readable VRPLIB instance ({first}); "
                                  "expected a CVRPLIB .vrp file") from None
    for key in ("capacity", "demand", "edge_weight"):
        if key not in data:
            raise ShopfloorInputError(f"{path}: the instance has no {key.upper()} section; "
                                      "a CVRP instance needs CAPACITY, DEMAND_SECTION and coordinates or weights")
    depots = np.atleast_1d(data.get("depot", [0])).astype(int)
    if len(depots) != 1:
        raise ShopfloorInputError(f"{path}: {len(depots)} depots; only single-depot CVRP instances are supported")
    dist = np.asarray(data["edge_weight"], dtype=float)
    if str(data.get("edge_weight_type", "")).upper() == "EUC_2D":
        dist = np.floor(dist + 0.5)
    demands = np.asarray(data["demand"], dtype=float)
    coords = np.asarray(data["node_coord"], dtype=float) if "node_coord" in data else None
    if dist.shape != (len(demands), len(demands)):
        raise ShopfloorInputError(f"{path}: {len(demands)} demands but a {dist.shape} distance matrix; "
                                  "DIMENSION, DEMAND_SECTION and the coordinates must agree")
    capacity = float(np.atleast_1d(data["capacity"])[0])
    depot = int(depots[0])
    if depot != 0:  # put the depot first
        order = [depot] + [i for i in range(len(demands)) if i != depot]
        dist, demands = dist[np.ix_(order, order)], demands[order]
        coords = coords[order] if coords is not None else None
    if demands[0] != 0 or (demands < 0).any():
        raise ShopfloorInputError(f"{path}: the depot must have demand 0 and customers demand >= 0")
    if capacity <= 0 or demands.max() > capacity:
        raise ShopfloorInputError(f"{path}: capacity {capacity} with a largest demand of {demands.max()}; "
                                  "the capacity must be > 0 and at least every single demand")
    if not np.isfinite(dist).all() or (dist < 0).any():
        raise ShopfloorInputError(f"{path}: the distances must be finite and >= 0")
    return CVRPInstance(dist, demands, capacity, coords=coords, name=str(data.get("name", os.path.basename(path))))


def instance_from_json(path: str | os.PathLike) -> CVRPInstance:
    """Read our JSON instance: ``{"name"?, "capacity", "demands": [0, ...], and "coords": [[x, y], ...] (straight-line
    distances) or "distances": [[...], ...]}``; index 0 is the depot.

    Raises
    ------
    ShopfloorInputError
        When the file is missing, not JSON, lacks a field, or is infeasible (a demand above the capacity).
    """
    import json

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ShopfloorInputError(f"{path}: no such instance file; give a .vrp (VRPLIB) or .json instance")
    try:
        data = json.loads(open(path, encoding="utf-8").read())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ShopfloorInputError(f"{path}: not valid JSON ({str(exc).splitlines()[0]}); allowed: "
                                  '{"capacity", "demands", "coords" or "distances"}') from None
    if not isinstance(data, dict):
        raise ShopfloorInputError(f"{path}: the instance must be a JSON object with capacity, demands and coords "
                                  "or distances")
    missing = [k for k in ("capacity", "demands") if k not in data]
    if missing or ("coords" not in data and "distances" not in data):
        raise ShopfloorInputError(f"{path}: missing {', '.join(missing + ([] if 'coords' in data or 'distances' in data else ['coords or distances']))}; "
                                  'allowed: {"capacity", "demands", "coords" or "distances", "name"?}')
    try:
        demands = np.asarray(data["demands"], dtype=float)
        capacity = float(data["capacity"])
        coords = np.asarray(data["coords"], dtype=float) if "coords" in data else None
        dist = np.asarray(data["distances"], dtype=float) if "distances" in data else None
    except (TypeError, ValueError):
        raise ShopfloorInputError(f"{path}: capacity, demands, coords and distances must be numbers") from None
    n = len(demands)
    if demands.ndim != 1 or n < 2 or demands[0] != 0 or (demands < 0).any() or not np.isfinite(demands).all():
        raise ShopfloorInputError(f"{path}: demands must list the depot (0) then at least one customer, all >= 0")
    if coords is not None and coords.shape != (n, 2):
        raise ShopfloorInputError(f"{path}: coords has shape {coords.shape}; allowed: one [x, y] per demand ({n}, 2)")
    if dist is None:
        dist = np.sqrt(((coords[:, None, :] - coords[None, :, :]) ** 2).sum(-1))
    if dist.shape != (n, n) or not np.isfinite(dist).all() or (dist < 0).any():
        raise ShopfloorInputError(f"{path}: distances must be a {n} x {n} matrix of finite numbers >= 0")
    too_big = np.flatnonzero(demands > capacity)
    if capacity <= 0 or len(too_big):
        raise ShopfloorInputError(f"{path}: infeasible: customer {int(too_big[0]) if len(too_big) else '-'} demands "
                                  f"{demands.max():g} but a vehicle holds {capacity:g}; allowed: every demand <= "
                                  "capacity, capacity > 0")
    return CVRPInstance(dist, demands, capacity, coords=coords, name=str(data.get("name", os.path.basename(path))))


def read_instance(path: str | os.PathLike) -> CVRPInstance:
    """A CVRP instance from a VRPLIB file (.vrp, any other suffix) or our JSON (.json)."""
    return instance_from_json(path) if os.fspath(path).lower().endswith(".json") else instance_from_vrplib(path)


def read_vrplib_solution_cost(path: str | os.PathLike) -> float:
    """The ``Cost`` line of a VRPLIB ``.sol`` file."""
    import vrplib

    return float(vrplib.read_solution(os.fspath(path))["cost"])


def euclidean_instance(coords: np.ndarray, demands: np.ndarray, capacity: float,
                       name: str = "euclidean") -> CVRPInstance:
    """A CVRP on points in the plane with straight-line distances (coords[0] is the depot)."""
    coords = np.asarray(coords, dtype=float)
    diff = coords[:, None, :] - coords[None, :, :]
    return CVRPInstance(np.sqrt((diff ** 2).sum(-1)), np.asarray(demands, dtype=float), capacity, coords=coords,
                        name=name)


def lower_bound_routes(instance: CVRPInstance) -> int:
    """The trivial bound on the number of routes: ceil(total demand / capacity)."""
    return math.ceil(float(instance.demands.sum()) / instance.capacity - 1e-9)
